"""Mirror test-time augmentation around any inferer.

The prediction of a flipped input, flipped back, is a second opinion on the same image; averaging the
``2**k`` flip combinations of ``k`` axes smooths out orientation-dependent mistakes (nnU-Net mirrors at
test time, the U-Net paper averaged rotated inputs). Mirror only along axes the network was trained to be
invariant to: flipping the anterior-posterior axis of a network that never saw it flipped makes its
predictions worse, not better.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.utils import convert_data_type, convert_to_dst_type

__all__ = [
    "MirrorTTAInferer",
    "ShiftTTAInferer",
    "apply_symmetry",
    "flip_combinations",
    "invert_symmetry",
    "square_symmetries",
]

Symmetry = tuple[int, tuple[int, ...]]
"""``(quarter turns in the first two spatial dims, flipped tensor dims)`` of a ``(B, C, *spatial)`` tensor."""


def flip_combinations(spatial_axes: Sequence[int]) -> list[Symmetry]:
    """Every subset of ``spatial_axes`` (0 = first spatial axis) as a flip: ``2**len(axes)`` symmetries,
    the identity first."""
    dims = tuple(2 + a for a in spatial_axes)
    return [(0, flips) for r in range(len(dims) + 1) for flips in itertools.combinations(dims, r)]


def square_symmetries() -> list[Symmetry]:
    """The 8 symmetries of the square in 2D: 4 quarter turns, each with and without a flip of the last
    axis; the identity first."""
    return [(k, flips) for k in range(4) for flips in ((), (3,))]


def apply_symmetry(x: torch.Tensor, symmetry: Symmetry) -> torch.Tensor:
    """``x`` flipped, then turned; ``(B, C, *spatial)`` in and out (turns swap the first two sizes)."""
    rotations, flips = symmetry
    if flips:
        x = torch.flip(x, flips)
    return torch.rot90(x, rotations, dims=(2, 3)) if rotations else x


def invert_symmetry(x: torch.Tensor, symmetry: Symmetry) -> torch.Tensor:
    """The inverse of :func:`apply_symmetry`: a prediction of the transformed input, back in place."""
    rotations, flips = symmetry
    if rotations:
        x = torch.rot90(x, -rotations, dims=(2, 3))
    return torch.flip(x, flips) if flips else x


def _spatial_axes(spatial_axes: Sequence[int]) -> tuple[int, ...]:
    """``spatial_axes`` as a tuple; ValueError unless they are distinct ints >= 0."""
    axes = tuple(spatial_axes)
    if any(not isinstance(a, int) or a < 0 for a in axes) or len(set(axes)) != len(axes):
        raise ValueError(f"spatial_axes must be distinct ints >= 0, got {spatial_axes!r}")
    return axes


class MirrorTTAInferer(Inferer):
    """Average the predictions of ``inferer`` over the flips of ``spatial_axes``.

    Args:
        inferer: any MONAI inferer (sliding window, simple, :class:`app.inferers.OverlapTileInferer`...).
        spatial_axes: spatial axes to mirror (0 = first spatial axis, after any ``Orientationd``); every
            subset is one pass, so ``k`` axes cost ``2**k`` passes. Empty: one plain pass (the wrapper is
            then the identity, so configs can keep it in place with test-time augmentation off).

    The raw network outputs (logits) are averaged, each transformed back first; a list or tuple output
    (deep supervision) is reduced to its first element. A ``MetaTensor`` input keeps its metadata.

    Example::

        inferer = MirrorTTAInferer(SlidingWindowInferer(roi_size=(40, 56, 40)), spatial_axes=(0,))
        logits = inferer(volume, network)  # mean of the plain and the left-right mirrored prediction
    """

    def __init__(self, inferer: Inferer, spatial_axes: Sequence[int] = ()) -> None:
        super().__init__()
        self.inferer = inferer
        self.spatial_axes = _spatial_axes(spatial_axes)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Predict ``inputs`` ``(B, C, *spatial)``; returns the mean prediction ``(B, C_out, *spatial)``.

        Raises:
            ValueError: when an axis in ``spatial_axes`` is not a spatial axis of ``inputs``.
        """
        if not self.spatial_axes:
            return self.inferer(inputs, network, *args, **kwargs)
        n_spatial = inputs.ndim - 2
        if max(self.spatial_axes) >= n_spatial:
            raise ValueError(
                f"spatial_axes {self.spatial_axes} do not fit an input with {n_spatial} spatial dims "
                f"{tuple(inputs.shape[2:])}"
            )
        pairs = [
            (
                functools.partial(apply_symmetry, symmetry=sym),
                functools.partial(invert_symmetry, symmetry=sym),
            )
            for sym in flip_combinations(self.spatial_axes)
        ]
        return _mean_prediction(self.inferer, inputs, network, pairs, *args, **kwargs)


class ShiftTTAInferer(Inferer):
    """Average the predictions of ``inferer`` over circular shifts of the input by ``0`` or ``shift`` voxels.

    A U-Net that down-samples by ``s`` (8 for three 2x poolings) is equivariant to shifts of ``s`` voxels
    only: a shift by ``s / 2`` puts every voxel on another position of its pooling grid, so the prediction of
    the shifted input, shifted back, is a second opinion of the same network, like a mirrored pass. Every
    combination of ``{0, shift}`` along ``spatial_axes`` is one pass (``2**k`` passes for ``k`` axes).

    The shift is circular (``torch.roll``): the last ``shift`` voxels of an axis wrap round to its start.
    Meant for inputs whose borders are background or padding, like the hippocampus crops (padded to the
    patch): the wrapped voxels change predictions near the borders only.

    Args:
        inferer: any MONAI inferer (or a :class:`MirrorTTAInferer`).
        shift: voxels; 0 makes the wrapper the identity (configs keep it in place, switched off).
        spatial_axes: spatial axes to shift (0 = first spatial axis).

    Example::

        inferer = ShiftTTAInferer(SlidingWindowInferer(roi_size=(40, 56, 40)), shift=4)
        logits = inferer(volume, network)  # mean of 8 passes: shifts (0 or 4, 0 or 4, 0 or 4)
    """

    def __init__(self, inferer: Inferer, shift: int = 0, spatial_axes: Sequence[int] = (0, 1, 2)) -> None:
        super().__init__()
        if not isinstance(shift, int) or isinstance(shift, bool) or shift < 0:
            raise ValueError(f"shift must be an int >= 0 (voxels), got {shift!r}")
        self.inferer = inferer
        self.shift = shift
        self.spatial_axes = _spatial_axes(spatial_axes)

    def __call__(self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Predict ``inputs`` ``(B, C, *spatial)``; returns the mean prediction ``(B, C_out, *spatial)``.

        Raises:
            ValueError: when an axis in ``spatial_axes`` is not a spatial axis of ``inputs``, or ``shift`` is
                not smaller than the input along it.
        """
        if not self.shift or not self.spatial_axes:
            return self.inferer(inputs, network, *args, **kwargs)
        sizes = inputs.shape[2:]
        if max(self.spatial_axes) >= len(sizes) or any(self.shift >= sizes[a] for a in self.spatial_axes):
            raise ValueError(
                f"shift {self.shift} along spatial_axes {self.spatial_axes} does not fit an input of spatial "
                f"size {tuple(sizes)}"
            )
        pairs = []
        for r in range(len(self.spatial_axes) + 1):
            for axes in itertools.combinations(self.spatial_axes, r):
                dims = tuple(2 + a for a in axes)
                forward = functools.partial(torch.roll, shifts=(self.shift,) * len(dims), dims=dims)
                back = functools.partial(torch.roll, shifts=(-self.shift,) * len(dims), dims=dims)
                pairs.append((forward, back) if dims else (_identity, _identity))
        return _mean_prediction(self.inferer, inputs, network, pairs, *args, **kwargs)


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _mean_prediction(
    inferer: Inferer,
    inputs: torch.Tensor,
    network: Callable[..., Any],
    pairs: Sequence[tuple[Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]],
    *args: Any,
    **kwargs: Any,
) -> torch.Tensor:
    """The mean over ``(transform, inverse)`` pairs of ``inverse(inferer(transform(inputs)))``.

    Raw outputs (logits) are averaged; a list or tuple output (deep supervision) is reduced to its first
    element; a ``MetaTensor`` input keeps its metadata.
    """
    image = convert_data_type(inputs, torch.Tensor)[0]
    total = None
    for transform, inverse in pairs:
        pred = inferer(transform(image), network, *args, **kwargs)
        pred = pred[0] if isinstance(pred, (list, tuple)) else pred
        pred = inverse(convert_data_type(pred, torch.Tensor)[0])
        total = pred if total is None else total + pred
    mean = total / len(pairs)
    if isinstance(inputs, MetaTensor):
        meta = MetaTensor([]).copy_meta_from(inputs, copy_attr=False)
        return convert_to_dst_type(mean, meta, device=mean.device)[0]
    return mean
