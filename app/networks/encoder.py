"""The contracting path shared by the U-Net family, its channel plan and its input-size contract.

The size arithmetic is the 2015 U-Net's (:mod:`app.networks.unet2015`): every block has two 3x3
convolutions, so a network of depth ``L`` with valid padding loses ``margin = 6 * 2**L - 4`` voxels per side
and accepts only the sizes :func:`app.networks.valid_input_sizes` lists; with same padding it accepts sizes
divisible by ``2**L`` and keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Pool
from torch import nn

from app.networks.blocks import check_norm, get_block
from app.networks.unet2015 import (
    _SPATIAL_DIMS,
    _check_padding,
    _invalid_size_message,
    _trace_output_size,
    unet2015_output_size,
)

__all__ = ["SizeContract", "UNetEncoder", "check_family_args", "check_input_size", "unet_channels"]


def unet_channels(
    features: int | Sequence[int] = (32, 64, 128, 256, 512),
    depth: int | None = None,
    width_multiplier: float = 1.0,
) -> list[int]:
    """Channels of every level, from the first to the bottleneck (``depth + 1`` entries).

    Args:
        features: channels per level (the last is the bottleneck), or the first level's channels, doubled
            at each of ``depth`` levels.
        depth: number of down-samplings; only with an int ``features`` (default 4 then).
        width_multiplier: scales every width (rounded, at least 1), e.g. 0.5 for a half-width network.

    Example: ``unet_channels(16, depth=3) == [16, 32, 64, 128]``;
    ``unet_channels((32, 64, 128), width_multiplier=0.5) == [16, 32, 64]``.

    Raises:
        ValueError: for fewer than two levels, a non-positive width or multiplier, or ``depth`` given with a
            sequence of ``features`` that does not match it.
    """
    if isinstance(features, int) and not isinstance(features, bool):
        depth = 4 if depth is None else depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
        widths = [features * 2**i for i in range(depth + 1)]
    else:
        widths = [int(f) for f in features]
        if depth is not None and depth != len(widths) - 1:
            raise ValueError(
                f"depth {depth} does not match features {tuple(widths)} (depth {len(widths) - 1})"
            )
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"features must give at least two levels of >= 1 channels, got {features!r}")
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier!r}")
    return [max(1, round(w * width_multiplier)) for w in widths]


def check_family_args(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    padding: str,
    norm: str | tuple | None,
    dropouts: dict[str, float],
) -> None:
    """Check the arguments every network of the family shares; raise ValueError naming the valid options."""
    if spatial_dims not in _SPATIAL_DIMS:
        raise ValueError(f"spatial_dims must be one of {_SPATIAL_DIMS}, got {spatial_dims!r}")
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    _check_padding(padding)
    check_norm(norm)
    for name, value in dropouts.items():
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_input_size(spatial_size: list[int], depth: int, padding: str) -> None:
    """Raise ValueError naming the nearest usable sizes if a spatial size is not usable (scriptable)."""
    for size in spatial_size:
        if _trace_output_size(size, depth, padding == "valid") < 1:
            raise ValueError(_invalid_size_message(size, depth, padding))


class SizeContract:
    """Mixin: ``margin``, ``output_size`` and ``check_input_size`` from ``self.depth`` and ``self.padding``.

    The networks set ``self.margin`` (context lost per side, 0 with same padding), read by
    :class:`app.inferers.OverlapTileInferer`.
    """

    def output_size(self, input_size: int | Sequence[int]) -> int | tuple[int, ...]:
        """Output spatial size for ``input_size`` (an int for one dimension, or one int per dimension).

        Raises:
            ValueError: when a size is not usable; the message names the nearest usable sizes.
        """
        if isinstance(input_size, int):
            return unet2015_output_size(input_size, self.depth, self.padding)
        return tuple(unet2015_output_size(s, self.depth, self.padding) for s in input_size)

    def check_input_size(self, spatial_size: list[int]) -> None:
        """Raise ValueError naming the nearest usable sizes if a spatial size is not usable."""
        check_input_size(spatial_size, self.depth, self.padding)


class UNetEncoder(nn.Module):
    """The contracting path: ``depth`` blocks each followed by a 2x2 max-pool, then the bottleneck block.

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels.
        channels: channels of each level, the last is the bottleneck (see :func:`unet_channels`).
        block: block name (:data:`app.networks.blocks.BLOCK_TYPES`).
        padding: ``"same"`` or ``"valid"``.
        norm, act: normalisation and activation (MONAI names).
        dropout_bottleneck: dropout in the bottleneck block ("drop-out at the end of the contracting path").

    Shapes: ``forward(x (B, in_channels, *S)) -> [(B, channels[i], *S_i) for i in 0..depth]``, ``S_i`` about
    ``S / 2**i`` (exactly with same padding).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        channels: Sequence[int],
        block: str = "plain",
        padding: str = "same",
        norm: str | tuple | None = "instance",
        act: str | tuple | None = "relu",
        dropout_bottleneck: float = 0.0,
    ) -> None:
        super().__init__()
        block_type = get_block(block)
        inputs = [in_channels, *channels[:-1]]
        last = len(channels) - 1
        self.blocks = nn.ModuleList(
            block_type(spatial_dims, c_in, c, padding, norm, act, dropout_bottleneck if i == last else 0.0)
            for i, (c_in, c) in enumerate(zip(inputs, channels, strict=True))
        )
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor, depth: int = -1) -> list[torch.Tensor]:
        """Feature maps of levels ``0..depth`` (all levels for ``depth < 0``)."""
        features: list[torch.Tensor] = []
        for level, block in enumerate(self.blocks):
            if depth < 0 or level <= depth:  # no `break`: TorchScript unrolls loops over a ModuleList
                if level > 0:
                    x = self.pool(x)
                x = block(x)
                features.append(x)
        return features
