"""Overlap-tile inference for valid-padding networks such as the original U-Net.

Reference:
    O. Ronneberger, P. Fischer, T. Brox. "U-Net: Convolutional Networks for Biomedical Image
    Segmentation". MICCAI 2015, Sec. 2 and Fig. 2. https://arxiv.org/abs/1505.04597

A network with unpadded convolutions predicts only the centre of its input tile: ``margin`` voxels of
context are lost on every side. The overlap-tile strategy tiles the *output* plane into tiles of the
network's output size, feeds each with its surrounding context, and supplies the context missing at the
image borders by mirroring the image. Stitching the tile predictions gives a seamless segmentation of an
image of any size.
"""

from __future__ import annotations

import itertools
import logging
import math
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data.meta_tensor import MetaTensor
from monai.data.utils import compute_importance_map
from monai.inferers import Inferer
from monai.utils import convert_data_type, convert_to_dst_type, ensure_tuple_rep
from torch import nn

from app.inferers.tta import Symmetry, apply_symmetry, flip_combinations, invert_symmetry, square_symmetries

__all__ = ["BLEND_MODES", "PADDING_MODES", "OverlapTileInferer", "mirror_pad"]

logger = logging.getLogger(__name__)

BLEND_MODES = ("constant", "gaussian")
"""How overlapping tile predictions are weighted when averaged."""

PADDING_MODES = ("reflect", "symmetric", "replicate", "constant")
"""How context beyond the image border is filled: ``"reflect"`` mirrors without repeating the edge voxel
(``dcb|abcd|cba``, the paper's mirroring), ``"symmetric"`` mirrors with it (``cba|abcd|dcb``),
``"replicate"`` repeats the edge voxel and ``"constant"`` fills zeros."""


def _source_indices(
    length: int, before: int, after: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Indices into an axis of ``length`` for the padded axis ``[-before, length + after)``.

    Mirroring uses the periodic index map, so pads of any size work (period ``2 * (length - 1)`` for
    ``"reflect"``, ``2 * length`` for ``"symmetric"``). A length-1 axis cannot be reflected and is
    replicated. For ``"constant"`` also returns the mask of positions inside the axis (else None).
    """
    coords = torch.arange(-before, length + after)
    if mode == "reflect" and length > 1:
        period = 2 * (length - 1)
        folded = torch.remainder(coords, period)
        return torch.where(folded < length, folded, period - folded), None
    if mode == "symmetric":
        period = 2 * length
        folded = torch.remainder(coords, period)
        return torch.where(folded < length, folded, period - 1 - folded), None
    inside = (coords >= 0) & (coords < length) if mode == "constant" else None
    return coords.clamp(0, length - 1), inside


def mirror_pad(
    image: torch.Tensor, before: Sequence[int], after: Sequence[int], mode: str = "reflect"
) -> torch.Tensor:
    """Pad the spatial dimensions of ``image`` by any amount, mirroring the image at its borders.

    Unlike ``torch.nn.functional.pad(mode="reflect")`` the pads may exceed the image size: the mirror is
    repeated periodically. A size-1 dimension is replicated instead of reflected.

    Args:
        image: tensor of shape ``(B, C, H, W[, D])``.
        before: pad before each spatial dimension (one int per dimension, >= 0).
        after: pad after each spatial dimension (one int per dimension, >= 0).
        mode: one of :data:`PADDING_MODES`.

    Returns:
        the padded tensor, ``(B, C, H + before[0] + after[0], ...)``.

    Raises:
        ValueError: for an unknown ``mode``, negative pads, or pads not matching the spatial dimensions.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"padding mode must be one of {PADDING_MODES}, got {mode!r}")
    spatial = image.shape[2:]
    if len(before) != len(spatial) or len(after) != len(spatial):
        raise ValueError(f"need one pad per spatial dimension {tuple(spatial)}, got {before=} and {after=}")
    if min((*before, *after)) < 0:
        raise ValueError(f"pads must be >= 0, got {before=} and {after=}")
    for dim, (length, pad_lo, pad_hi) in enumerate(zip(spatial, before, after, strict=True)):
        if pad_lo == 0 and pad_hi == 0:
            continue
        index, inside = _source_indices(length, pad_lo, pad_hi, mode)
        image = image.index_select(dim + 2, index.to(image.device))
        if inside is not None:
            shape = [1] * image.ndim
            shape[dim + 2] = -1
            image = image * inside.to(device=image.device, dtype=image.dtype).view(shape)
    return image


class OverlapTileInferer(Inferer):
    """Overlap-tile inference (Ronneberger et al. 2015, Fig. 2) for networks that lose a border.

    The output plane (the image, rounded up to whole tiles) is covered by tiles of the network's output
    size ``roi_size - 2 * margin``, starting at the image origin with a stride of ``tile * (1 - overlap)``.
    Each tile is predicted from an input tile of ``roi_size`` centred on it; context outside the image is
    mirrored (``padding_mode``). Tiles are batched ``sw_batch_size`` at a time, overlapping predictions are
    averaged (``mode="constant"``) or blended with a Gaussian (``mode="gaussian"``), and the result is
    cropped to the input's spatial size. Images smaller than one tile are mirror-padded to a tile.

    Networks without a lost border (same padding, ``margin == 0``) are tiled without context; with an
    explicit ``margin`` their full-size predictions are centre-cropped to the tile, which gives them
    context at tile borders too.

    Args:
        roi_size: the network's input tile size, one int per spatial dimension or one for all
            (e.g. 572 for the paper's U-Net). Must be a size the network accepts.
        margin: context lost per side, one int per spatial dimension or one for all. None (default) takes
            ``network.margin`` when the network has it (:class:`app.networks.UNet2015` does), else probes
            the network once with a zero tile: ``margin = (roi_size - output_size) / 2``.
        sw_batch_size: number of tiles per network call.
        overlap: fraction of the tile size by which neighbouring output tiles overlap, in ``[0, 1)``;
            0 (default) as in the paper: every output voxel is predicted exactly once.
        mode: weighting of overlapping predictions, one of :data:`BLEND_MODES`.
        padding_mode: how context outside the image is filled, one of :data:`PADDING_MODES`; pads of any
            size work (mirroring repeats periodically).
        tta: test-time augmentation: average the predictions over the 8 flips and 90-degree rotations of
            the plane in 2D (the paper averaged rotated inputs), or over the 8 combinations of flips along
            the spatial axes in 3D; each prediction is transformed back before averaging.
        tta_flip_axes: restrict ``tta`` to the flips of these spatial axes (0 = first spatial axis), every
            combination of them, ``2**k`` passes and no rotations: for a network trained with only those
            flips (e.g. labels that are offset from the image along the other axis). None (default): the
            full set above.
        device: device of the stitched output; default: the input's device.
        sw_device: device the network runs on; default: the input's device.

    Raises:
        ValueError: for non-positive ``roi_size`` or ``sw_batch_size``, negative ``margin``, ``overlap``
            outside ``[0, 1)``, an unknown ``mode`` or ``padding_mode``, or ``tta_flip_axes`` that are not
            distinct ints >= 0.

    Example::

        net = UNet2015(spatial_dims=2, in_channels=1, out_channels=2).eval()
        inferer = OverlapTileInferer(roi_size=572, sw_batch_size=4)
        with torch.no_grad():
            logits = inferer(torch.rand(1, 1, 512, 512), net)  # (1, 2, 512, 512)
    """

    def __init__(
        self,
        roi_size: int | Sequence[int],
        margin: int | Sequence[int] | None = None,
        sw_batch_size: int = 1,
        overlap: float = 0.0,
        mode: str = "constant",
        padding_mode: str = "reflect",
        tta: bool = False,
        tta_flip_axes: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        sw_device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        roi = (roi_size,) if isinstance(roi_size, int) else tuple(roi_size)
        if not roi or any(not isinstance(r, int) or r < 1 for r in roi):
            raise ValueError(f"roi_size must be a positive int or a sequence of them, got {roi_size!r}")
        if margin is not None:
            margins = (margin,) if isinstance(margin, int) else tuple(margin)
            if not margins or any(not isinstance(m, int) or m < 0 for m in margins):
                raise ValueError(f"margin must be None, an int >= 0 or a sequence of them, got {margin!r}")
        if not isinstance(sw_batch_size, int) or sw_batch_size < 1:
            raise ValueError(f"sw_batch_size must be an int >= 1, got {sw_batch_size!r}")
        if not 0.0 <= overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
        if mode not in BLEND_MODES:
            raise ValueError(f"mode must be one of {BLEND_MODES}, got {mode!r}")
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {padding_mode!r}")
        if tta_flip_axes is not None:
            axes = tuple(tta_flip_axes)
            if any(not isinstance(a, int) or a < 0 for a in axes) or len(set(axes)) != len(axes):
                raise ValueError(f"tta_flip_axes must be None or distinct ints >= 0, got {tta_flip_axes!r}")
            tta_flip_axes = axes
        self.roi_size = roi_size
        self.margin = margin
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.padding_mode = padding_mode
        self.tta = tta
        self.tta_flip_axes = tta_flip_axes
        self.device = device
        self.sw_device = sw_device
        # probed margins per network and (roi, in_channels); weak keys so networks can be freed
        self._probed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __call__(
        self, inputs: torch.Tensor, network: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> torch.Tensor:
        """Predict ``inputs`` of any spatial size with ``network``.

        Args:
            inputs: image batch ``(B, C, H, W[, D])``; a ``MetaTensor``'s metadata is kept on the output.
            network: maps ``(N, C, *roi_size)`` to ``(N, C_out, *(roi_size - 2 * margin))`` (or to
                ``(N, C_out, *roi_size)`` when ``margin`` is given explicitly; that is then centre-cropped).
                A list or tuple output (deep supervision) is reduced to its first element.
            args: extra positional arguments for ``network``.
            kwargs: extra keyword arguments for ``network``.

        Returns:
            predictions ``(B, C_out, H, W[, D])``, the input's spatial size, on ``device``.

        Raises:
            ValueError: when ``inputs`` is not ``(B, C, *spatial)`` with 1-3 spatial dimensions matching
                ``roi_size``/``margin``, when ``roi_size <= 2 * margin``, or when the network's output size
                does not match ``roi_size - 2 * margin``.
        """
        if inputs.ndim not in (3, 4, 5):
            raise ValueError(
                f"inputs must be (B, C, *spatial) with 1-3 spatial dims, got {tuple(inputs.shape)}"
            )
        temp_meta = (
            MetaTensor([]).copy_meta_from(inputs, copy_attr=False) if isinstance(inputs, MetaTensor) else None
        )
        image = convert_data_type(inputs, torch.Tensor)[0]
        n_dims = image.ndim - 2
        roi = self._per_dim(self.roi_size, n_dims, "roi_size")
        margin = self._resolve_margin(image, network, roi, args, kwargs)
        tile = tuple(r - 2 * m for r, m in zip(roi, margin, strict=True))
        if min(tile) < 1:
            raise ValueError(f"roi_size {roi} must exceed 2 * margin {margin} in every dimension")

        if self.tta:
            symmetries = self._symmetries(n_dims)
            output = None
            for symmetry in symmetries:
                pred = self._infer(apply_symmetry(image, symmetry), network, roi, margin, args, kwargs)
                pred = invert_symmetry(pred, symmetry)
                output = pred if output is None else output + pred
            output = output / len(symmetries)
        else:
            output = self._infer(image, network, roi, margin, args, kwargs)
        if temp_meta is not None:
            return convert_to_dst_type(output, temp_meta, device=output.device)[0]
        return output

    def _symmetries(self, n_dims: int) -> list[Symmetry]:
        """The test-time symmetries: flips of ``tta_flip_axes``, or the full set for ``n_dims``."""
        if self.tta_flip_axes is None:
            return square_symmetries() if n_dims == 2 else flip_combinations(range(n_dims))
        if self.tta_flip_axes and max(self.tta_flip_axes) >= n_dims:
            raise ValueError(
                f"tta_flip_axes {self.tta_flip_axes} do not fit an input with {n_dims} spatial dims"
            )
        return flip_combinations(self.tta_flip_axes)

    @staticmethod
    def _per_dim(value: int | Sequence[int], n_dims: int, name: str) -> tuple[int, ...]:
        """Broadcast ``value`` to one int per spatial dimension, checking a sequence's length."""
        if not isinstance(value, int) and len(value) != n_dims:
            raise ValueError(f"{name} {tuple(value)} does not match the {n_dims} spatial dims of the inputs")
        return ensure_tuple_rep(value, n_dims)

    def _resolve_margin(
        self,
        image: torch.Tensor,
        network: Callable[..., Any],
        roi: tuple[int, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> tuple[int, ...]:
        """The margin per dimension: explicit, ``network.margin``, or probed once with a zero tile."""
        n_dims = len(roi)
        if self.margin is not None:
            return self._per_dim(self.margin, n_dims, "margin")
        net_margin = getattr(network, "margin", None)
        if net_margin is not None:
            return self._per_dim(net_margin, n_dims, "network.margin")
        key = (roi, image.shape[1])
        try:
            cached = self._probed.get(network, {})
        except TypeError:  # not weak-referenceable: probe every call
            cached = {}
        if key in cached:
            return cached[key]

        probe = torch.zeros(
            (1, image.shape[1], *roi), dtype=image.dtype, device=self.sw_device or image.device
        )
        was_training = isinstance(network, nn.Module) and network.training
        if was_training:
            network.eval()  # keep e.g. batch-norm statistics untouched by the probe
        try:
            with torch.no_grad():
                out = _first(network(probe, *args, **kwargs))
        finally:
            if was_training:
                network.train()
        out_size = tuple(out.shape[2:])
        diffs = [r - o for r, o in zip(roi, out_size, strict=False)]
        if len(out_size) != n_dims or any(d < 0 or d % 2 for d in diffs):
            raise ValueError(
                f"cannot infer the margin: the network maps a {roi} tile to {out_size}; the output must be "
                "smaller by an even amount per dimension (pass margin= explicitly)"
            )
        margin = tuple(d // 2 for d in diffs)
        logger.debug("probed margin %s for roi_size %s", margin, roi)
        try:
            self._probed.setdefault(network, {})[key] = margin
        except TypeError:
            logger.debug(
                "network %r cannot be cached by weak reference; its margin is probed on every call", network
            )
        return margin

    def _infer(
        self,
        image: torch.Tensor,
        network: Callable[..., Any],
        roi: tuple[int, ...],
        margin: tuple[int, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> torch.Tensor:
        """Tile, predict and stitch one (possibly augmented) image batch ``(B, C, *spatial)``."""
        batch_size = image.shape[0]
        spatial = tuple(image.shape[2:])
        tile = tuple(r - 2 * m for r, m in zip(roi, margin, strict=True))
        strides = tuple(max(1, int(t * (1 - self.overlap))) for t in tile)
        counts = tuple(
            1 if s <= t else math.ceil((s - t) / st) + 1
            for s, t, st in zip(spatial, tile, strides, strict=True)
        )
        plane = tuple((n - 1) * st + t for n, st, t in zip(counts, strides, tile, strict=True))
        logger.debug(
            "overlap-tile: image %s, plane %s, %s tiles of %s (input %s)", spatial, plane, counts, tile, roi
        )

        # the output plane plus margin on every side, context beyond the image mirrored
        after = tuple(p - s + m for p, s, m in zip(plane, spatial, margin, strict=True))
        padded = mirror_pad(image, margin, after, self.padding_mode)
        device = torch.device(self.device) if self.device is not None else image.device
        sw_device = self.sw_device or image.device

        starts = list(
            itertools.product(
                *(range(0, (n - 1) * st + 1, st) for n, st in zip(counts, strides, strict=True))
            )
        )
        importance = compute_importance_map(tile, mode=self.mode, device=device)
        weights = torch.zeros(plane, dtype=importance.dtype, device=device)
        for start in starts:
            weights[_slices(start, tile)] += importance

        windows = [(b, start) for b in range(batch_size) for start in starts]
        output: torch.Tensor | None = None
        for first in range(0, len(windows), self.sw_batch_size):
            chunk = windows[first : first + self.sw_batch_size]
            batch = torch.cat(
                [padded[(slice(b, b + 1), slice(None), *_slices(start, roi))] for b, start in chunk]
            )
            pred = self._fit_tile(_first(network(batch.to(sw_device), *args, **kwargs)), roi, tile, margin)
            pred = pred.to(device)
            if output is None:
                dtype = torch.promote_types(pred.dtype, importance.dtype)
                output = torch.zeros((batch_size, pred.shape[1], *plane), dtype=dtype, device=device)
            for tile_pred, (b, start) in zip(pred, chunk, strict=True):
                output[(b, slice(None), *_slices(start, tile))] += tile_pred * importance
        output = output / weights
        return output[(slice(None), slice(None), *(slice(0, s) for s in spatial))]

    @staticmethod
    def _fit_tile(
        pred: torch.Tensor, roi: tuple[int, ...], tile: tuple[int, ...], margin: tuple[int, ...]
    ) -> torch.Tensor:
        """Check the network output size; centre-crop a full-size (``roi``) output to the tile."""
        size = tuple(pred.shape[2:])
        if size == tile:
            return pred
        if size == roi:
            return pred[(slice(None), slice(None), *_slices(margin, tile))]
        raise ValueError(
            f"the network maps a {roi} tile to {size}, expected {tile} "
            f"(roi_size - 2 * margin {margin}) or {roi}"
        )


def _first(output: Any) -> torch.Tensor:
    """The main prediction of a network output: the first element of a list or tuple (deep supervision)."""
    return output[0] if isinstance(output, (list, tuple)) else output


def _slices(start: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    return tuple(slice(s, s + n) for s, n in zip(start, size, strict=True))
