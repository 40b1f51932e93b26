"""Skip fusion of the U-Net family: how a decoder level combines an encoder map with the up-sampled path.

Every fusion module has the same call ``fusion(skip, up, coarse) -> (B, C_skip + C_up, *S_up)``:

- ``skip``: the encoder map of this level, ``(B, C_skip, *S_skip)`` with ``S_skip >= S_up`` (larger with
  valid padding: it is centre-cropped, the 2015 U-Net's "crop and copy");
- ``up``: the decoder path up-sampled to this level, ``(B, C_up, *S_up)``;
- ``coarse``: the decoder map of the coarser level before up-sampling, ``(B, C_coarse, *S_up / 2)``: the
  gating signal of attention gates (ignored by plain concatenation).

Both fusions optionally normalise the skip first (``skip_norm``: a 1x1 convolution + normalisation on the
encoder map, which rescales encoder features to the decoder's statistics before they are concatenated).

Reference (attention gates):
    O. Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", MIDL 2018.
    https://arxiv.org/abs/1804.03999
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Conv
from torch import nn
from torch.nn import functional as F

from app.networks.unet2015 import _center_crop

__all__ = ["SKIP_TYPES", "AttentionGate", "AttentionSkip", "ConcatSkip", "get_skip"]


def _skip_norm(spatial_dims: int, channels: int, norm: str | tuple | None, enabled: bool) -> nn.Module:
    """1x1 convolution + normalisation on the skip map when ``enabled``, else identity."""
    if not enabled:
        return nn.Identity()
    return Convolution(
        spatial_dims, channels, channels, kernel_size=1, norm=norm or "instance", act=None, bias=False
    )


class ConcatSkip(nn.Module):
    """Concatenate the (optionally normalised) centre-cropped skip map and the up-sampled map.

    Args:
        spatial_dims: 2 or 3.
        skip_channels: channels of the encoder map ``C_skip``.
        up_channels: channels of the up-sampled decoder map ``C_up``.
        coarse_channels: channels of the coarser decoder map (unused here; the signature of all fusions).
        norm: normalisation of the skip normalisation (None: instance normalisation).
        skip_norm: apply a 1x1 convolution + normalisation to the skip map before concatenation.

    Shapes: ``forward(skip, up, coarse) -> (B, C_skip + C_up, *S_up)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        up_channels: int,
        coarse_channels: int,
        norm: str | tuple | None = "instance",
        skip_norm: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = skip_channels + up_channels
        self.skip_norm = _skip_norm(spatial_dims, skip_channels, norm, skip_norm)

    def forward(self, skip: torch.Tensor, up: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        skip = self.skip_norm(_center_crop(skip, up.shape[2:]))
        return torch.cat([skip, up], dim=1)


class AttentionGate(nn.Module):
    """Additive attention gate (Oktay et al. 2018): scale the skip map by coefficients in ``[0, 1]``.

    The skip map ``x`` is brought to the gating signal's resolution by a 2x2 stride-2 convolution
    (``W_x``), the coarser decoder map ``g`` by a 1x1 convolution (``W_g``); then
    ``alpha = sigmoid(psi(relu(W_x x + W_g g)))`` is up-sampled (linear interpolation) to the skip map's size
    and ``x * alpha`` is returned.

    Read the coefficients with :meth:`coefficients`, or with a forward hook on :attr:`psi` (its output is
    ``alpha`` at the coarse resolution, ``(B, 1, *S_skip / 2)``).

    Args:
        spatial_dims: 2 or 3.
        skip_channels: channels of the skip map ``x``.
        gate_channels: channels of the gating signal ``g``.
        inter_channels: channels of the intermediate sum (default ``max(skip_channels // 2, 1)``).

    Shapes: ``forward(x (B, C_x, *S), g (B, C_g, *S / 2)) -> (B, C_x, *S)``; ``S`` must be even.
    """

    def __init__(
        self, spatial_dims: int, skip_channels: int, gate_channels: int, inter_channels: int | None = None
    ) -> None:
        super().__init__()
        inter = inter_channels or max(skip_channels // 2, 1)
        conv = Conv[Conv.CONV, spatial_dims]
        self.theta_x = conv(skip_channels, inter, kernel_size=2, stride=2, bias=False)
        self.phi_g = conv(gate_channels, inter, kernel_size=1, bias=True)
        self.psi = nn.Sequential(conv(inter, 1, kernel_size=1, bias=True), nn.Sigmoid())
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"

    def coefficients(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Attention coefficients ``(B, 1, *S)`` in ``[0, 1]`` for the skip map ``x`` ``(B, C_x, *S)``."""
        theta = self.theta_x(x)
        alpha = self.psi(F.relu(theta + self.phi_g(g)))
        return F.interpolate(alpha, size=x.shape[2:], mode=self.mode, align_corners=False)

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return x * self.coefficients(x, g)


class AttentionSkip(nn.Module):
    """Concatenate the attention-gated skip map and the up-sampled map (Attention U-Net skip fusion).

    The skip map is centre-cropped to the up-sampled map, optionally normalised (``skip_norm``), gated by
    :class:`AttentionGate` with the coarser decoder map as gating signal, then concatenated.

    Args: as :class:`ConcatSkip`; ``coarse_channels`` is the gating signal's channel count.

    Shapes: ``forward(skip, up, coarse) -> (B, C_skip + C_up, *S_up)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        skip_channels: int,
        up_channels: int,
        coarse_channels: int,
        norm: str | tuple | None = "instance",
        skip_norm: bool = False,
    ) -> None:
        super().__init__()
        self.out_channels = skip_channels + up_channels
        self.skip_norm = _skip_norm(spatial_dims, skip_channels, norm, skip_norm)
        self.gate = AttentionGate(spatial_dims, skip_channels, coarse_channels)

    def forward(self, skip: torch.Tensor, up: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        skip = self.skip_norm(_center_crop(skip, up.shape[2:]))
        return torch.cat([self.gate(skip, coarse), up], dim=1)


SKIP_TYPES: dict[str, type[nn.Module]] = {"concat": ConcatSkip, "attention": AttentionSkip}
"""Skip fusion names accepted by the networks' ``skip`` argument."""


def get_skip(name: str) -> type[nn.Module]:
    """The skip fusion class for ``name`` (one of :data:`SKIP_TYPES`).

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    if name not in SKIP_TYPES:
        raise ValueError(f"skip must be one of {tuple(SKIP_TYPES)}, got {name!r}")
    return SKIP_TYPES[name]
