"""U-Net++: nested, densely connected skip pathways, deep supervision and pruning at inference.

Reference:
    Z. Zhou, M. M. Rahman Siddiquee, N. Tajbakhsh, J. Liang. "UNet++: Redesigning Skip Connections to Exploit
    Multiscale Features in Image Segmentation". IEEE TMI 39(6), 2020. https://arxiv.org/abs/1912.05074
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from app.networks.decoder import DecoderBlock
from app.networks.encoder import SizeContract, UNetEncoder, check_family_args, unet_channels
from app.networks.heads import SegmentationHead
from app.networks.unet2015 import _center_crop, unet2015_margin

__all__ = ["UNetPlusPlus"]


class UNetPlusPlus(SizeContract, nn.Module):
    """U-Net++ (Zhou et al. 2018/2020) built from the family's blocks and skip fusions, in 2D or 3D.

    Nodes ``X[i][j]`` (level ``i``, column ``j``): ``X[i][0]`` is the encoder
    (:class:`app.networks.encoder.UNetEncoder`), and for ``j >= 1``
    ``X[i][j] = DecoderBlock(X[i+1][j-1], concat(X[i][0], ..., X[i][j-1]))``: the up-convolved node below
    fused (``skip``, ``skip_norm``) with all earlier nodes of the same level (centre-cropped with valid
    padding), then ``block``. The output is a 1x1 head on ``X[0][depth]``.

    With ``deep_supervision`` every ``X[0][j]`` (``j = 1..depth``) has its own head: in training the network
    returns ``[head_depth, head_depth-1, ..., head_1]`` (all full size; for MONAI's ``DeepSupervisionLoss``),
    in eval mode the output of ``X[0][prune_level]``, computing only the nodes it needs (``i + j <=
    prune_level``): the paper's pruned U-Net++ L1..L4. Without pruning eval returns ``head_depth``.

    Args:
        spatial_dims, in_channels, out_channels, features, depth, width_multiplier, block, skip, skip_norm,
            padding, norm, act, dropout_bottleneck, dropout_decoder: as :class:`app.networks.FlexUNet`.
        deep_supervision: heads on every ``X[0][j]``; training returns the list of their outputs.
        prune_level: ``1..depth``: in eval mode return the output of ``X[0][prune_level]`` (needs
            ``deep_supervision=True``, which trains those heads); None: the full network. Change it later
            with :meth:`set_prune_level`.

    Shapes:
        input: ``(B, in_channels, H, W[, D])`` with sizes usable at ``depth`` (divisible by ``2**depth`` for
        same padding; :func:`app.networks.valid_input_sizes` for valid padding).
        output: ``(B, out_channels, H - 2 * margin, ...)``; :attr:`margin` is 0 for same padding and
        ``unet2015_margin(prune_level or depth)`` for valid padding (a pruned network loses less context).
        In training with deep supervision every list entry has the full network's output size.

    Raises:
        ValueError: as :class:`app.networks.FlexUNet`; also for ``prune_level`` outside ``1..depth`` or
            without ``deep_supervision``.

    Example::

        net = UNetPlusPlus(2, 1, 2, features=(16, 32, 64, 128), deep_supervision=True, prune_level=2)
        net.eval()(torch.rand(1, 1, 64, 64))  # (1, 2, 64, 64) from X[0][2]
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
        prune_level: int | None = None,
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
        self.deep_supervision = bool(deep_supervision)
        self.set_prune_level(
            prune_level
        )  # sets prune_level (0: not pruned; TorchScript needs an int) and margin

        self.encoder = UNetEncoder(
            spatial_dims, in_channels, channels, block, padding, norm, act, dropout_bottleneck
        )
        # nodes in computation order: column by column, so X[i+1][j-1] and X[i][:j] exist when X[i][j] runs
        grid = [(i, j) for j in range(1, self.depth + 1) for i in range(self.depth + 1 - j)]
        self.node_levels = [i for i, _ in grid]
        self.node_columns = [j for _, j in grid]
        level_args = {
            "block": block,
            "skip": skip,
            "skip_norm": skip_norm,
            "padding": padding,
            "norm": norm,
            "act": act,
            "dropout": dropout_decoder,
        }
        self.nodes = nn.ModuleList(
            DecoderBlock(spatial_dims, channels[i + 1], j * channels[i], channels[i], **level_args)
            for i, j in grid
        )
        # heads[k] reads X[0][head_columns[k]]; the full network's head comes first
        self.head_columns = list(range(self.depth, 0, -1)) if self.deep_supervision else [self.depth]
        self.heads = nn.ModuleList(
            SegmentationHead(spatial_dims, channels[0], out_channels) for _ in self.head_columns
        )

    def set_prune_level(self, prune_level: int | None) -> None:
        """Evaluate only up to ``X[0][prune_level]`` in eval mode (None: all); updates :attr:`margin`.

        Raises:
            ValueError: for a level outside ``1..depth``, or a level below ``depth`` without deep supervision.
        """
        if prune_level is not None:
            if isinstance(prune_level, bool) or not isinstance(prune_level, int):
                raise ValueError(
                    f"prune_level must be None or an integer in 1..{self.depth}, got {prune_level!r}"
                )
            if not 1 <= prune_level <= self.depth:
                raise ValueError(f"prune_level must be None or in 1..{self.depth}, got {prune_level}")
            if prune_level < self.depth and not self.deep_supervision:
                raise ValueError(
                    "prune_level below depth needs deep_supervision=True (it trains the X[0][j] heads)"
                )
        self.prune_level = 0 if prune_level is None else prune_level
        self.margin = unet2015_margin(self.prune_level or self.depth, self.padding)

    def output_size(self, input_size: int | Sequence[int]) -> int | tuple[int, ...]:
        """Eval-mode output size for ``input_size`` (valid padding: a pruned network's output is larger).

        Raises:
            ValueError: when a size is not usable; the message names the nearest usable sizes.
        """
        super().output_size(input_size)  # raises for an unusable size
        if isinstance(input_size, int):
            return input_size - 2 * self.margin
        return tuple(s - 2 * self.margin for s in input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x`` ``(B, in_channels, *S)``; see the class doc for the output.

        Raises:
            ValueError: when a spatial size is not usable for this network (checked at full ``depth``).
        """
        self.check_input_size(x.shape[2:])
        supervise = self.training and self.deep_supervision
        last = self.depth if (self.training or self.prune_level == 0) else self.prune_level
        grid: list[list[torch.Tensor]] = [[f] for f in self.encoder(x, last)]
        for n, node in enumerate(self.nodes):
            i = self.node_levels[n]
            j = self.node_columns[n]
            if i + j <= last:
                coarse = grid[i + 1][j - 1]
                size = [2 * s for s in coarse.shape[2:]]  # the up-convolution doubles the size
                skip = torch.cat([_center_crop(m, size) for m in grid[i]], dim=1)
                grid[i].append(node(coarse, skip))
        outputs: list[torch.Tensor] = []
        for k, head in enumerate(self.heads):
            column = self.head_columns[k]
            if column == last or (supervise and column < last):
                outputs.append(head(grid[0][column]))
        if not supervise:
            return outputs[0]
        size = outputs[0].shape[
            2:
        ]  # with valid padding the earlier columns cover more: crop to the main output
        return [_center_crop(o, size) for o in outputs]
