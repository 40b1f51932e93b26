"""Output heads of the U-Net family: one segmentation head, several heads, deep-supervision heads.

All heads return logits: the softmax is applied by the loss (e.g. ``DiceCELoss(softmax=True)``) and by the
post-processing (``Activationsd(softmax=True)``), as everywhere in MONAI.

Deep supervision follows nnU-Net and MONAI's ``DeepSupervisionLoss``: in training a network returns the
list ``[main, aux_1, aux_2, ...]`` (main output first, coarser or earlier outputs after it); in eval mode
(validation, inference, ``torch.jit.script`` export of an ``.eval()`` model) it returns only the main output
tensor, so inferers and exported models never see the auxiliary heads.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import torch
from monai.networks.layers.factories import Act, Conv
from torch import nn

from app.networks.unet2015 import _center_crop

__all__ = ["DeepSupervisionHeads", "MultiHead", "SegmentationHead"]


class SegmentationHead(nn.Sequential):
    """A 1x1 convolution to ``out_channels`` class logits.

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S)``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int) -> None:
        super().__init__(Conv[Conv.CONV, spatial_dims](in_channels, out_channels, kernel_size=1))
        self.out_channels = out_channels


class MultiHead(nn.Module):
    """Several segmentation heads on the same decoder map, their logits stacked along the channels.

    Each head is a small per-voxel network (1x1 convolution + ReLU + 1x1 convolution) of its own, e.g. one
    head per structure. The output is one tensor, so the network stays TorchScript-friendly and works with
    every MONAI inferer; :meth:`split` turns it into a ``{name: logits}`` dictionary and :attr:`slices` says
    which channels belong to which head.

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of the decoder map.
        heads: ``{name: channels}`` in output order, e.g. ``{"liver": 2, "spleen": 2}``.

    Shapes: ``(B, in_channels, *S) -> (B, sum(heads.values()), *S)``.

    Raises:
        ValueError: when ``heads`` is empty or a head has fewer than 1 channel.
    """

    def __init__(self, spatial_dims: int, in_channels: int, heads: Mapping[str, int]) -> None:
        super().__init__()
        if not heads or any(int(c) < 1 for c in heads.values()):
            raise ValueError(f"heads must map at least one name to a channel count >= 1, got {heads!r}")
        conv = Conv[Conv.CONV, spatial_dims]
        self.names = [str(name) for name in heads]
        self.heads = nn.ModuleList(
            nn.Sequential(
                conv(in_channels, in_channels, kernel_size=1),
                Act[Act.RELU](),
                conv(in_channels, int(channels), kernel_size=1),
            )
            for channels in heads.values()
        )
        ends = list(itertools.accumulate(int(c) for c in heads.values()))
        self.slices = {
            name: (end - int(c), end) for name, c, end in zip(self.names, heads.values(), ends, strict=True)
        }
        self.out_channels = ends[-1]

    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: (B, channels, *S)}`` views of a stacked output ``(B, sum(channels), *S)``."""
        return {name: output[:, lo:hi] for name, (lo, hi) in self.slices.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor] = []
        for head in self.heads:
            outputs.append(head(x))
        return torch.cat(outputs, dim=1)


class DeepSupervisionHeads(nn.Module):
    """1x1 convolution heads on intermediate decoder maps (auxiliary outputs for deep supervision).

    Head ``k`` maps ``maps[k]`` to class logits and centre-crops them to ``main_size // scales[k]``, the
    region of the main output at that map's resolution (with valid padding the intermediate maps cover a
    larger region than the main output; with same padding the crop does nothing).

    Args:
        spatial_dims: 2 or 3.
        in_channels: channels of each supervised map.
        out_channels: classes.
        scales: down-sampling factor of each supervised map relative to the main output (1 = full size).

    Shapes: ``forward(maps, main_size) -> [(B, out_channels, *main_size // scales[k]) for each k]``.
    """

    def __init__(
        self, spatial_dims: int, in_channels: Sequence[int], out_channels: int, scales: Sequence[int]
    ) -> None:
        super().__init__()
        if len(in_channels) != len(scales):
            raise ValueError(
                f"need one scale per head, got {len(in_channels)} heads and {len(scales)} scales"
            )
        conv = Conv[Conv.CONV, spatial_dims]
        self.heads = nn.ModuleList(conv(c, out_channels, kernel_size=1) for c in in_channels)
        self.scales = [int(s) for s in scales]

    def forward(self, maps: list[torch.Tensor], main_size: list[int]) -> list[torch.Tensor]:
        outputs: list[torch.Tensor] = []
        for k, head in enumerate(self.heads):
            size = [s // self.scales[k] for s in main_size]
            outputs.append(head(_center_crop(maps[k], size)))
        return outputs
