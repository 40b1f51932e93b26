"""One level of the expansive path, shared by the U-Net family (U-Net, Attention U-Net, U-Net++, ...)."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv
from torch import nn

from app.networks.blocks import get_block
from app.networks.skips import get_skip

__all__ = ["DecoderBlock"]


class DecoderBlock(nn.Module):
    """2x2 up-convolution, skip fusion, then a convolution block (one decoder level).

    ``y = block(fusion(skip, upconv(coarse), coarse))``: the up-convolution (transposed convolution, stride 2)
    maps the coarser decoder map to ``out_channels`` at twice its size, the fusion
    (:data:`app.networks.skips.SKIP_TYPES`) combines it with the encoder map of this level, and the block
    (:data:`app.networks.blocks.BLOCK_TYPES`) maps the fused channels to ``out_channels``.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the coarser decoder map.
        skip_channels: channels of the skip map (several concatenated maps for U-Net++).
        out_channels: channels of this level.
        block: block name.
        skip: skip fusion name.
        skip_norm: 1x1 convolution + normalisation on the skip map before fusion.
        padding, norm, act: as for the blocks.
        dropout: dropout inside the block.

    Shapes: ``forward(coarse (B, in_channels, *S), skip (B, skip_channels, *S_skip))`` ->
    ``(B, out_channels, *S')`` with ``S' = 2 * S - 4`` (valid) or ``2 * S`` (same); ``S_skip >= 2 * S``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        block: str = "plain",
        skip: str = "concat",
        skip_norm: bool = False,
        padding: str = "same",
        norm: str | tuple | None = "instance",
        act: str | tuple | None = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.upconv = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        self.fusion = get_skip(skip)(spatial_dims, skip_channels, out_channels, in_channels, norm, skip_norm)
        self.block = get_block(block)(
            spatial_dims, skip_channels + out_channels, out_channels, padding, norm, act, dropout
        )

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.fusion(skip, self.upconv(coarse), coarse))
