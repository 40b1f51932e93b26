"""Class probabilities on the network's grid -> an argmax label on the input image's grid, slab by slab.

The reference post-processing ``Invertd`` -> ``AsDiscreted(argmax=True)`` resamples every class channel
to the full input resolution with ``affine_grid`` + ``grid_sample`` (a dense 3-vector per output voxel,
in float64) and then takes ``torch.argmax`` over a short channel axis, which is slow on CPU. When the two
grids are axis-aligned (true for ``Orientationd`` + ``Spacingd``: orientation only permutes and flips
axes and spacing keeps the direction cosines), trilinear interpolation factorises into one 1-D linear
interpolation per axis. :func:`resample_argmax` does those three passes and the argmax on slabs of the
output, so the full-resolution probabilities never exist and the peak memory is the uint8 label plus
one slab. Other grids fall back to MONAI's :class:`~monai.transforms.SpatialResample`.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SpatialResample
from monai.utils import GridSampleMode, GridSamplePadMode

__all__ = ["GRID_OPERATIONS", "ResampleArgmaxd", "axis_aligned_map", "channel_argmax", "resample_argmax"]

logger = logging.getLogger(__name__)

GRID_OPERATIONS = ("Orientation", "Spacing", "SpatialResample")
"""Recorded operations that only change the voxel grid; :class:`ResampleArgmaxd` inverts exactly these."""

_MODES = (GridSampleMode.BILINEAR.value, GridSampleMode.NEAREST.value)
_PADDING_MODES = (GridSamplePadMode.BORDER.value, GridSamplePadMode.ZEROS.value)
# voxels of one output slab (16 MB of float32 scores per class), whatever the image size: few enough
# operations that a busy CPU does not stall them, small next to the label
_SLAB_VOXELS = 1 << 22


def channel_argmax(probs: torch.Tensor, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
    """``torch.argmax(probs, dim=0, keepdim=True)`` by a running maximum over the channels.

    ``torch.argmax`` over a short leading axis is a slow strided reduction on CPU (seconds for a
    CT volume); comparing whole channels is memory-bound. Ties go to the first channel, as in
    ``torch.argmax``.

    Args:
        probs: ``(C, *spatial)`` scores without NaN.
        dtype: integer type of the label; must hold ``C - 1``.

    Returns:
        ``(1, *spatial)`` labels.
    """
    if probs.shape[0] - 1 > torch.iinfo(dtype).max:
        raise ValueError(f"{probs.shape[0]} channels do not fit labels of {dtype}")
    best = probs[0].clone()
    label = torch.zeros(probs.shape[1:], dtype=dtype, device=probs.device)
    for c in range(1, probs.shape[0]):
        label.masked_fill_(probs[c] > best, c)
        torch.maximum(best, probs[c], out=best)
    return label[None]


def axis_aligned_map(
    src_affine: torch.Tensor | np.ndarray, dst_affine: torch.Tensor | np.ndarray, atol: float = 1e-6
) -> list[tuple[int, float, float]] | None:
    """Per destination axis ``d``: ``(source axis, scale, offset)`` with ``src_index = scale * i + offset``.

    ``src_affine`` and ``dst_affine`` are ``(4, 4)`` voxel-to-world matrices. Returns None when the
    voxel map ``inv(src_affine) @ dst_affine`` is not a scaled, signed permutation (entries that
    should be zero exceed ``atol``, in source voxels per destination voxel).
    """
    xform = np.linalg.solve(np.asarray(src_affine, np.float64), np.asarray(dst_affine, np.float64))
    linear = xform[:3, :3]
    axes = np.abs(linear).argmax(axis=0)
    if sorted(axes.tolist()) != [0, 1, 2]:
        return None
    off_axis = linear.copy()
    off_axis[axes, range(3)] = 0.0
    if np.abs(off_axis).max() > atol:
        return None
    return [(int(s), float(linear[s, d]), float(xform[s, 3])) for d, s in enumerate(axes)]


def _axis_taps(
    coords: torch.Tensor, size: int, mode: str, padding_mode: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(indices, weights)`` per interpolation tap for source coordinates ``coords`` on an axis of ``size``.

    Follows ``grid_sample``: border padding clamps the coordinate into ``[0, size - 1]``; zeros padding
    gives taps outside the axis weight 0; nearest rounds half to even.
    """
    if padding_mode == GridSamplePadMode.BORDER:
        coords = coords.clamp(0, size - 1)
    if mode == GridSampleMode.NEAREST:
        starts, fracs = [torch.round(coords)], [torch.ones_like(coords)]
    else:
        low = torch.floor(coords)
        frac = coords - low
        starts, fracs = [low, low + 1], [1 - frac, frac]
    taps = []
    for index, weight in zip(starts, fracs, strict=True):
        inside = (index >= 0) & (index <= size - 1)
        taps.append((index.clamp(0, size - 1).long(), torch.where(inside, weight, 0.0)))
    return taps


def _interpolate_axis(
    image: torch.Tensor, dim: int, coords: torch.Tensor, mode: str, padding_mode: str
) -> torch.Tensor:
    """1-D interpolation of ``image`` along ``dim`` at source coordinates ``coords`` (float64)."""
    shape = [1] * image.ndim
    shape[dim] = -1
    out = None
    for index, weight in _axis_taps(coords, image.shape[dim], mode, padding_mode):
        term = image.index_select(dim, index.to(image.device))
        term = term * weight.to(device=image.device, dtype=image.dtype).view(shape)
        out = term if out is None else out.add_(term)
    return out


def resample_argmax(
    probs: torch.Tensor,
    src_affine: torch.Tensor | np.ndarray,
    dst_affine: torch.Tensor | np.ndarray,
    dst_shape: Sequence[int],
    mode: str = "bilinear",
    padding_mode: str = "border",
    dtype: torch.dtype = torch.uint8,
) -> torch.Tensor:
    """Resample class scores from their grid onto another grid and take the argmax over classes.

    Gives the labels of ``SpatialResample`` (``align_corners=False``) followed by an argmax, without
    the full-resolution scores: axis-aligned grids are resampled separably, one output slab at a time.

    Args:
        probs: ``(C, H, W, D)`` class scores (e.g. softmax probabilities) on the grid of ``src_affine``.
        src_affine: ``(4, 4)`` voxel-to-world matrix of ``probs``.
        dst_affine: ``(4, 4)`` voxel-to-world matrix of the output grid.
        dst_shape: spatial shape of the output grid.
        mode: ``"bilinear"`` or ``"nearest"``.
        padding_mode: ``"border"`` or ``"zeros"`` (outside the source grid).
        dtype: integer type of the labels.

    Returns:
        ``(1, *dst_shape)`` labels of ``dtype`` on the device of ``probs``.

    Raises:
        ValueError: for another ``mode`` or ``padding_mode``, or ``probs`` that is not ``(C, H, W, D)``.

    Example::

        label = resample_argmax(softmax_probs, pred.affine, meta["original_affine"], meta["spatial_shape"])
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    if padding_mode not in _PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
    if probs.ndim != 4 or len(dst_shape) != 3:
        raise ValueError(
            f"need (C, H, W, D) scores and a 3-D shape, got {tuple(probs.shape)} and {dst_shape}"
        )
    probs = probs.as_tensor() if isinstance(probs, MetaTensor) else probs
    dst_shape = [int(s) for s in dst_shape]
    axes = axis_aligned_map(_numpy(src_affine), _numpy(dst_affine))
    if axes is None:
        logger.debug("grids are not axis-aligned: dense resampling with SpatialResample")
        source = MetaTensor(probs, affine=torch.as_tensor(_numpy(src_affine)))
        dense = SpatialResample(mode=mode, padding_mode=padding_mode, dtype=torch.float64)(
            source, dst_affine=torch.as_tensor(_numpy(dst_affine)), spatial_size=dst_shape
        )
        return channel_argmax(dense.as_tensor(), dtype)
    # source axes in destination order, so that spatial dim d + 1 of `source` feeds output axis d
    source = probs.permute(0, *(s + 1 for s, _, _ in axes))
    coords = [
        scale * torch.arange(n, dtype=torch.float64) + offset
        for (_, scale, offset), n in zip(axes, dst_shape, strict=True)
    ]
    label = torch.empty((1, *dst_shape), dtype=dtype, device=probs.device)
    step = max(1, _SLAB_VOXELS // (dst_shape[0] * dst_shape[1]))
    for first in range(0, dst_shape[2], step):
        slab = _interpolate_axis(source, 3, coords[2][first : first + step], mode, padding_mode)
        slab = _interpolate_axis(slab, 1, coords[0], mode, padding_mode)
        slab = _interpolate_axis(slab, 2, coords[1], mode, padding_mode)
        label[..., first : first + step] = channel_argmax(slab, dtype)
    return label


def _numpy(affine: torch.Tensor | np.ndarray) -> np.ndarray:
    return affine.detach().cpu().numpy() if isinstance(affine, torch.Tensor) else np.asarray(affine)


class ResampleArgmaxd(MapTransform):
    """``Invertd`` + ``AsDiscreted(argmax=True)`` for pre-processing that only changed the voxel grid.

    The scores under each key, predicted on the pre-processed grid, become argmax labels on the grid
    the image was loaded on (``original_affine`` and ``spatial_shape`` in the metadata of ``orig_key``),
    with the labels of ``Invertd`` (within float rounding of the interpolation weights) in a fraction
    of its time and memory (see :func:`resample_argmax`).

    Args:
        keys: keys of ``(C, H, W, D)`` score ``MetaTensor`` s whose affine is the pre-processed grid.
        orig_key: the pre-processed image, whose recorded operations must all be in
            :data:`GRID_OPERATIONS` (orientation, spacing) and whose metadata holds the input grid.
        mode: interpolation, ``"bilinear"`` or ``"nearest"`` (use the mode of ``Spacingd``).
        padding_mode: ``"border"`` (the ``Spacingd`` default) or ``"zeros"``.
        dtype: integer type of the labels.
        allow_missing_keys: skip keys that are not in the data.

    Raises:
        ValueError: when ``orig_key`` went through an operation other than a grid change (e.g. a crop,
            which ``Invertd`` would undo by padding): use ``Invertd`` for such pipelines.

    Example::

        post = Compose([Activationsd("pred", softmax=True), ResampleArgmaxd("pred"), SaveImaged("pred")])
    """

    def __init__(
        self,
        keys: KeysCollection,
        orig_key: str = "image",
        mode: str = "bilinear",
        padding_mode: str = "border",
        dtype: torch.dtype = torch.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.orig_key = orig_key
        self.mode = mode
        self.padding_mode = padding_mode
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        orig = d[self.orig_key]
        others = [op["class"] for op in orig.applied_operations if op["class"] not in GRID_OPERATIONS]
        if others:
            raise ValueError(
                f"{self.orig_key!r} went through {others}, not only grid changes {GRID_OPERATIONS}; "
                "invert it with Invertd"
            )
        for key in self.key_iterator(d):
            pred = d[key]
            meta = dict(pred.meta)
            label = resample_argmax(
                pred,
                pred.affine,
                orig.meta["original_affine"],
                orig.meta["spatial_shape"],
                self.mode,
                self.padding_mode,
                self.dtype,
            )
            meta["affine"] = torch.as_tensor(_numpy(orig.meta["original_affine"]), dtype=torch.float64)
            d[key] = MetaTensor(label, meta=meta)
        return d
