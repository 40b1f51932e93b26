"""FlexUNet: the U-Net family composed from shared parts (blocks, skip fusion, heads).

One class covers the plain U-Net, Residual U-Net, Dense U-Net, Mobile (depthwise-separable) U-Net,
Attention U-Net, Attention Residual U-Net (``block="residual", skip="attention"``), skip-normalised
U-Nets, multi-head and deeply supervised U-Nets, in 2D and 3D, with same or valid (2015) padding.

References:
    - O. Ronneberger et al., "U-Net", MICCAI 2015. https://arxiv.org/abs/1505.04597
    - O. Oktay et al., "Attention U-Net", MIDL 2018. https://arxiv.org/abs/1804.03999
    - F. Isensee et al., "nnU-Net", Nature Methods 2021 (deep supervision on decoder levels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from app.networks.decoder import DecoderBlock
from app.networks.encoder import SizeContract, UNetEncoder, check_family_args, unet_channels
from app.networks.heads import DeepSupervisionHeads, MultiHead, SegmentationHead
from app.networks.unet2015 import unet2015_margin

__all__ = ["FlexUNet"]


class FlexUNet(SizeContract, nn.Module):
    """A U-Net assembled from a block type, a skip fusion and heads (2D or 3D).

    - encoder: ``depth`` levels of ``block`` + 2x2 max-pool, then a bottleneck ``block``
      (:class:`app.networks.encoder.UNetEncoder`);
    - decoder: ``depth`` levels of 2x2 up-convolution, skip fusion (``skip``, optionally ``skip_norm``) and
      ``block`` (:class:`app.networks.decoder.DecoderBlock`);
    - head: a 1x1 convolution to ``out_channels`` logits, or several heads (``heads``); with
      ``deep_supervision`` also 1x1 heads on the decoder levels ``1..depth-1`` (1/2, 1/4, ... resolution).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        out_channels: output channels (classes); with ``heads`` it must equal the heads' total.
        features: channels per level, the last is the bottleneck (default ``(32, 64, 128, 256, 512)``,
            depth 4), or the first level's width, doubled at each of ``depth`` levels.
        depth: number of down-samplings; only with an int ``features`` (default 4 then).
        width_multiplier: scales every width, e.g. 0.5 for half the channels.
        block: ``"plain"`` (two convolutions), ``"residual"``, ``"dense"`` or ``"mobile"``
            (:data:`app.networks.blocks.BLOCK_TYPES`).
        skip: ``"concat"`` (crop and concatenate) or ``"attention"`` (additive attention gate).
        skip_norm: apply a 1x1 convolution + normalisation to every skip map before fusion.
        padding: ``"same"`` (zero-padded, output size = input size) or ``"valid"`` (unpadded as in 2015:
            the output is smaller by :attr:`margin` per side; use :class:`app.inferers.OverlapTileInferer`).
        norm: normalisation by MONAI name (``"instance"``, ``"batch"``, ``("group", {"num_groups": 8})``) or
            None.
        act: activation by MONAI name, e.g. ``"relu"`` or ``("leakyrelu", {"negative_slope": 0.01})``.
        dropout_bottleneck: dropout in the bottleneck block.
        dropout_decoder: dropout in the decoder blocks.
        deep_supervision: in training mode return ``[main, level 1, ..., level depth-1]`` logits (each
            level half the size of the previous one) for MONAI's ``DeepSupervisionLoss``; in eval mode and
            when exported from eval mode only the main output.
        heads: ``{name: channels}`` for several heads on the last decoder map (:class:`MultiHead`),
            their logits stacked along the channels in this order; None for one head.

    Shapes:
        input: ``(B, in_channels, H, W[, D])``; with same padding every size divisible by ``2**depth``,
        with valid padding a size of :func:`app.networks.valid_input_sizes`.
        output: ``(B, out_channels, H', W'[, D'])`` with ``H' = H`` (same) or ``H - 2 * margin`` (valid);
        in training with ``deep_supervision`` a list whose entry ``k`` has size ``H' / 2**k``.

    Raises:
        ValueError: for an unknown ``block``, ``skip``, ``padding`` or ``norm`` (the message lists the valid
            names), non-positive channels, dropouts outside ``[0, 1)``, ``deep_supervision`` with
            ``depth < 2``, or ``heads`` not matching ``out_channels``; in ``forward`` for an unusable input
            size (the message names the nearest usable sizes).

    Example::

        net = FlexUNet(3, 1, 2, features=(16, 32, 64), block="residual", skip="attention")
        y = net(torch.rand(1, 1, 32, 32, 32))  # (1, 2, 32, 32, 32)
        net2d = FlexUNet(2, 1, 2, features=16, depth=4, padding="valid")
        y2d = net2d(torch.rand(1, 1, 572, 572))  # (1, 2, 388, 388); net2d.margin == 92
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        features: int | Sequence[int] = (32, 64, 128, 256, 512),
        depth: int | None = None,
        width_multiplier: float = 1.0,
        block: str = "plain",
        skip: str = "concat",
        skip_norm: bool = False,
        padding: str = "same",
        norm: str | tuple | None = "instance",
        act: str | tuple | None = "relu",
        dropout_bottleneck: float = 0.0,
        dropout_decoder: float = 0.0,
        deep_supervision: bool = False,
        heads: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__()
        check_family_args(
            spatial_dims,
            in_channels,
            out_channels,
            padding,
            norm,
            {"dropout_bottleneck": dropout_bottleneck, "dropout_decoder": dropout_decoder},
        )
        channels = unet_channels(features, depth, width_multiplier)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.channels = channels
        self.depth = len(channels) - 1
        self.padding = padding
        self.margin = unet2015_margin(self.depth, padding)
        self.deep_supervision = bool(deep_supervision)
        if self.deep_supervision and self.depth < 2:
            raise ValueError(
                "deep_supervision needs depth >= 2 (at least one decoder level below the output)"
            )

        self.encoder = UNetEncoder(
            spatial_dims, in_channels, channels, block, padding, norm, act, dropout_bottleneck
        )
        level_args = {
            "block": block,
            "skip": skip,
            "skip_norm": skip_norm,
            "padding": padding,
            "norm": norm,
            "act": act,
            "dropout": dropout_decoder,
        }
        self.decoder = nn.ModuleList(
            DecoderBlock(spatial_dims, channels[k + 1], channels[k], channels[k], **level_args)
            for k in reversed(range(self.depth))
        )
        if heads is None:
            self.head: nn.Module = SegmentationHead(spatial_dims, channels[0], out_channels)
        else:
            self.head = MultiHead(spatial_dims, channels[0], heads)
            if self.head.out_channels != out_channels:
                raise ValueError(
                    f"out_channels ({out_channels}) must equal the heads' total channels {dict(heads)}"
                )
        levels = range(1, self.depth) if self.deep_supervision else range(0)
        self.aux_heads = DeepSupervisionHeads(
            spatial_dims, [channels[k] for k in levels], out_channels, [2**k for k in levels]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x`` ``(B, in_channels, *S)``: logits ``(B, out_channels, *S')``, see the class doc.

        Raises:
            ValueError: when a spatial size is not usable for this network.
        """
        self.check_input_size(x.shape[2:])
        skips = self.encoder(x)
        y = skips[-1]
        decoded: list[torch.Tensor] = []
        for k, level in enumerate(self.decoder):
            y = level(y, skips[self.depth - 1 - k])
            decoded.append(y)
        main = self.head(y)
        if not (self.training and self.deep_supervision):
            return main
        # decoder level k (1/2**k resolution) is decoded[depth - 1 - k]
        maps = [decoded[self.depth - 1 - k] for k in range(1, self.depth)]
        return [main] + self.aux_heads(maps, main.shape[2:])
