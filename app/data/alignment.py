"""Labels that sit a constant fraction of a pixel off their images: measure the offset, shift the images.

An annotation tool whose masks follow another half-pixel convention than the image's puts every label a
fraction of a pixel off its image, always the same way (ISBI 2012: about +0.13 px along x and +0.64 px
along y on all 24 slices). A network can learn such an offset only if training never mirrors or turns the
offset axis, which costs the augmentation the paper relied on. Shifting every image by the offset instead
(sub-pixel, bilinear) puts images and labels on one grid, so every flip and quarter turn is a valid
augmentation, and the predictions of shifted images land where the labels would.

:func:`resolve_image_shift` measures the shift on the training pairs (``"auto"``) or takes a given one and
records it in ``RUN_DIR/image_shift.json``; :func:`saved_image_shift` reads it back for evaluation and
inference, so that they shift their inputs exactly as training did.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from numbers import Real
from pathlib import Path

import numpy as np

from app.errors import InputError

__all__ = ["SHIFT_FILE", "label_offset", "measure_offsets", "resolve_image_shift", "saved_image_shift"]

logger = logging.getLogger(__name__)

SHIFT_FILE = "image_shift.json"

# slices whose offsets spread more than this (px, along any axis) show no constant offset to remove
_MAX_SPREAD = 1.0
# measured offsets below this (px) are noise (aligned generated pairs measure up to 0.02)
_MIN_SHIFT = 0.05
# members of an ensemble whose image shifts differ by more than this (px) are refused
_MEMBER_TOLERANCE = 0.1


def label_offset(image: np.ndarray, label: np.ndarray, max_shift: int = 2) -> np.ndarray:
    """The shift of ``label`` that best lines its boundaries up with ``image``, in pixels per axis.

    The correlation between the z-scored image and the z-scored foreground (``label > 0``) is evaluated
    for every integer shift in ``[-max_shift, max_shift]`` per axis (the label rolled by the shift, a
    ``max_shift`` border left out); its peak (largest absolute value, so dark or bright structures both
    work) is refined to sub-pixel precision by a parabola through the peak and its two neighbours along
    each axis. Suits thin structures of one intensity (EM membranes); organ labels next to asymmetric
    anatomy give peaks off-centre for anatomical, not annotation, reasons.

    Args:
        image: ``(*spatial)`` intensities, 2D or 3D.
        label: ``(*spatial)`` label map of the same shape (any values; ``> 0`` is foreground).
        max_shift: the largest integer shift tried per axis (>= 1).

    Returns:
        ``d`` of shape ``(ndim,)``: ``np.roll(label, round(d))`` fits the image best; 0 for aligned labels,
        ``d[k] > 0`` when the label sits ``d[k]`` pixels towards lower indices along axis ``k`` (the image
        translated by ``d``, MONAI ``Affine(translate_params=d)``, lines up with the label).

    Raises:
        ValueError: for different shapes, ``max_shift < 1``, an image too small for the shifts, or a
            constant image or label (nothing to align).
    """
    image = np.asarray(image, dtype=np.float64)
    fg = (np.asarray(label) > 0).astype(np.float64)
    if image.shape != fg.shape:
        raise ValueError(f"image {image.shape} and label {fg.shape} differ in shape")
    if max_shift < 1:
        raise ValueError(f"max_shift must be >= 1, got {max_shift}")
    if min(image.shape) <= 2 * max_shift + 2:
        raise ValueError(f"shape {image.shape} is too small for shifts of +-{max_shift}")
    if image.std() == 0 or fg.std() == 0:
        raise ValueError("a constant image or label has no boundaries to align")
    a = (image - image.mean()) / image.std()
    b = (fg - fg.mean()) / fg.std()
    core = tuple(slice(max_shift, -max_shift) for _ in range(a.ndim))
    a_core = a[core]
    shifts = range(-max_shift, max_shift + 1)
    scores = np.empty((len(shifts),) * a.ndim)
    for shift in itertools.product(shifts, repeat=a.ndim):
        rolled = np.roll(b, shift, axis=tuple(range(a.ndim)))[core]
        scores[tuple(s + max_shift for s in shift)] = float(np.mean(rolled * a_core))
    scores = np.abs(scores)
    peak = np.unravel_index(int(np.argmax(scores)), scores.shape)
    offset = np.array(peak, dtype=np.float64) - max_shift
    for axis, p in enumerate(peak):
        if 0 < p < len(shifts) - 1:
            before, at, after = (scores[peak[:axis] + (q,) + peak[axis + 1 :]] for q in (p - 1, p, p + 1))
            curvature = before - 2 * at + after
            if curvature < 0:
                offset[axis] += 0.5 * (before - after) / curvature
    return offset


def measure_offsets(items: Iterable[Mapping[str, str]], max_shift: int = 2) -> dict[str, list[float]]:
    """:func:`label_offset` of every ``{"image", "label"}`` entry, by image path (as the entry gives it).

    Images are read as the bundles read them (MONAI ``LoadImage``: axis 0 of a PNG is x). A pair that
    cannot be measured raises :class:`InputError` naming its label file.
    """
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True)
    offsets = {}
    for entry in items:
        try:
            d = label_offset(np.asarray(load(entry["image"])), np.asarray(load(entry["label"])), max_shift)
        except ValueError as e:
            raise InputError(entry["label"], f"cannot measure its offset from {entry['image']}: {e}") from e
        offsets[str(entry["image"])] = d.tolist()
    return offsets


def resolve_image_shift(
    value: str | Sequence[float], items: Sequence[Mapping[str, str]], run_dir: str | Path, spatial_dims: int
) -> list[float]:
    """The image shift of a training run, recorded in ``run_dir/image_shift.json``.

    Args:
        value: ``"auto"``: the per-axis median of :func:`measure_offsets` over ``items``, rounded to 0.01 px
            (0 below 0.05 px, measurement noise), or no shift where the pairs disagree by more than 1 px
            along an axis (no constant offset, a warning says so); or ``spatial_dims`` numbers in pixels
            (zeros: no shift).
        items: the training entries (``{"image", "label"}``), measured for ``"auto"``.
        run_dir: the run folder the record goes to (written atomically).
        spatial_dims: 2 or 3.

    Returns:
        the shift, ``spatial_dims`` floats: images are translated by it (MONAI ``Affined``) before training,
        validation and inference.

    Raises:
        ValueError: ``value`` is neither ``"auto"`` nor ``spatial_dims`` numbers.
    """
    record: dict[str, object]
    if isinstance(value, str) and value.strip().lower() == "auto":
        offsets = measure_offsets(items)
        values = np.array(list(offsets.values()), dtype=np.float64).reshape(len(offsets), spatial_dims)
        spread = values.max(0) - values.min(0) if len(values) else np.zeros(spatial_dims)
        if len(values) == 0 or (spread > _MAX_SPREAD).any():
            logger.warning(
                "image_shift auto: the %d training pairs show no constant label offset (spread %s px); "
                "images are not shifted",
                len(values),
                np.round(spread, 2).tolist(),
            )
            shift = [0.0] * spatial_dims
        else:
            shift = [round(float(v), 2) + 0.0 if abs(v) >= _MIN_SHIFT else 0.0 for v in np.median(values, 0)]
        record = {"image_shift": shift, "source": "measured", "spread_px": spread.tolist(), "pairs": offsets}
    elif (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == spatial_dims
        and all(isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v) for v in value)
    ):
        shift = [float(v) for v in value]
        record = {"image_shift": shift, "source": "given"}
    else:
        raise ValueError(
            f"image_shift must be 'auto' or {spatial_dims} numbers (pixels per axis), got {value!r}"
        )
    path = Path(run_dir) / SHIFT_FILE
    tmp = path.with_name(f".{SHIFT_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(path)
    logger.info("image shift %s px (%s) -> %s", shift, record["source"], path)
    return shift


def saved_image_shift(
    run_dir: str | Path,
    spatial_dims: int,
    members: Sequence[str | Path] = (),
    tolerance: float = _MEMBER_TOLERANCE,
) -> list[float]:
    """The image shift a run was trained with, from ``run_dir/image_shift.json``.

    A run folder without the file (trained before the option existed) was trained on unshifted images:
    zeros. An ensemble shifts its input once, for all its networks, so every run folder of ``members``
    (``--ensemble_runs``) must have been trained with the same shift as ``run_dir``, within ``tolerance``
    pixels along every axis (members trained on one split measure the same shift; other splits of the same
    data differ by a few hundredths of a pixel).

    Raises:
        InputError: an unreadable or malformed file, or a member trained with another shift, naming the
            file.
    """
    shift = _read_shift(Path(run_dir) / SHIFT_FILE, spatial_dims)
    for member in members:
        path = Path(member) / SHIFT_FILE
        other = _read_shift(path, spatial_dims)
        if max(abs(a - b) for a, b in zip(shift, other, strict=True)) > tolerance:
            raise InputError(
                path,
                f"ensemble member was trained on images shifted by {other} px, this run ({run_dir}) by "
                f"{shift} px; an ensemble shifts its input once, so its members must share the shift "
                f"(within {tolerance} px)",
            )
    return shift


def _read_shift(path: Path, spatial_dims: int) -> list[float]:
    """The ``image_shift`` of one record; zeros where the run folder has none."""
    if not path.is_file():
        return [0.0] * spatial_dims
    try:
        shift = json.loads(path.read_text())["image_shift"]
        if len(shift) != spatial_dims:
            raise ValueError(f"{len(shift)} numbers for {spatial_dims} axes")
        return [float(v) for v in shift]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(path, f"cannot read the run's image shift ({e}); train again or fix the file") from e
