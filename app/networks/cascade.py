"""Cascaded U-Net: a coarse U-Net at half resolution guides a full-resolution U-Net.

Reference:
    F. Isensee et al. "nnU-Net: a self-configuring method for deep learning-based biomedical image
    segmentation". Nature Methods 18, 2021 (the "3d_cascade_fullres" configuration: the low-resolution
    stage's one-hot segmentation is an extra input of the full-resolution stage). Here both stages are one
    network trained end to end, and stage 2 receives stage 1's softmax probabilities.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.layers.factories import Pool
from torch import nn
from torch.nn import functional as F

from app.networks.unet import FlexUNet
from app.networks.unet2015 import _invalid_size_message, _trace_output_size

__all__ = ["CascadedUNet"]


class CascadedUNet(nn.Module):
    """Two :class:`app.networks.FlexUNet` stages: half resolution first, then full resolution.

    ``forward(x)``:

    1. stage 1 segments ``x`` average-pooled by 2: logits ``(B, out_channels, *S / 2)``;
    2. its softmax probabilities are up-sampled (linear interpolation) to ``S`` and concatenated to ``x``;
    3. stage 2 segments that ``(B, in_channels + out_channels, *S)`` input: logits ``(B, out_channels, *S)``.

    Gradients flow through both stages (one network, one optimiser). With ``deep_supervision`` training mode
    returns ``[stage-2 logits, stage-1 logits]`` for MONAI's ``DeepSupervisionLoss`` (which down-samples the
    label to stage 1's size), so stage 1 learns the coarse segmentation itself; eval mode returns only the
    stage-2 logits. Same padding only: the output has the input's size, so it works with
    ``SlidingWindowInferer`` (:attr:`margin` is 0).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: classes.
        deep_supervision: also return stage 1's logits in training mode.
        unet_kwargs: arguments of both :class:`app.networks.FlexUNet` stages (``features``, ``block``,
            ``skip``, ``norm``, ...); ``padding`` must be ``"same"``.

    Shapes:
        input: ``(B, in_channels, H, W[, D])``, sizes divisible by ``2**(depth + 1)`` (stage 1 runs at half
        resolution). output: ``(B, out_channels, H, W[, D])``.

    Raises:
        ValueError: for ``padding`` other than ``"same"``, ``deep_supervision`` or ``heads`` in
            ``unet_kwargs``, any invalid :class:`FlexUNet` argument; in ``forward`` for an unusable size.

    Example::

        net = CascadedUNet(3, 1, 2, features=(16, 32, 64, 128))
        net(torch.rand(1, 1, 64, 64, 64)).shape  # (1, 2, 64, 64, 64)
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        deep_supervision: bool = False,
        **unet_kwargs: Any,
    ) -> None:
        super().__init__()
        if unet_kwargs.get("padding", "same") != "same":
            raise ValueError(f"CascadedUNet supports padding='same' only, got {unet_kwargs['padding']!r}")
        for name in ("deep_supervision", "heads"):
            if name in unet_kwargs:
                raise ValueError(f"{name!r} is not a stage argument of CascadedUNet")
        self.stage1 = FlexUNet(spatial_dims, in_channels, out_channels, **unet_kwargs)
        self.stage2 = FlexUNet(spatial_dims, in_channels + out_channels, out_channels, **unet_kwargs)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.depth = self.stage1.depth
        self.padding = "same"
        self.margin = 0
        self.deep_supervision = bool(deep_supervision)
        self.downsample = Pool[Pool.AVG, spatial_dims](kernel_size=2, stride=2)
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def check_input_size(self, spatial_size: list[int]) -> None:
        """Raise ValueError naming the nearest usable sizes (multiples of ``2**(depth + 1)``) otherwise."""
        for size in spatial_size:
            if _trace_output_size(size, self.depth + 1, False) < 1:
                message = _invalid_size_message(size, self.depth + 1, "same")
                raise ValueError(f"{message} (stage 1 of the cascade runs at half resolution)")

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x`` ``(B, in_channels, *S)``: stage-2 logits ``(B, out_channels, *S)`` (see the class).

        Raises:
            ValueError: when a spatial size is not divisible by ``2**(depth + 1)``.
        """
        self.check_input_size(x.shape[2:])
        coarse = self.stage1(self.downsample(x))
        assert isinstance(coarse, torch.Tensor)  # the stages have no deep supervision (refines the type)
        probabilities = F.interpolate(
            torch.softmax(coarse, dim=1), size=x.shape[2:], mode=self.mode, align_corners=False
        )
        fine = self.stage2(torch.cat([x, probabilities], dim=1))
        assert isinstance(fine, torch.Tensor)
        if self.training and self.deep_supervision:
            return [fine, coarse]
        return fine
