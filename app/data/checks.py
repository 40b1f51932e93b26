"""Input checks run before any training: every image/label pair is opened once and checked.

Checks per entry: readable (header first, so an absurd header fails before any allocation),
expected dimensionality, positive spacing, no NaN/Inf, non-empty image, label on the image's grid
(shape, spacing, origin, direction within tolerance), label values in the declared set, and a
non-empty label. All problems of a dataset are collected and reported together.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from app.data.datalist import datalist_from_folder, detect_layout
from app.errors import InputError, InputErrors

__all__ = [
    "Header",
    "CheckOptions",
    "read_header",
    "read_array",
    "check_entry",
    "check_datalist",
    "check_dataset",
    "dataset_defaults",
    "assert_valid",
    "valid_inputs",
]

logger = logging.getLogger(__name__)

# A header claiming more voxels than this is refused before reading pixels (8 GiB of float32).
MAX_VOXELS = 2**31


@dataclass(frozen=True)
class Header:
    """Geometry of an image read from its header only; sizes and spacing in ITK (x, y, z) order."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int

    @property
    def dimension(self) -> int:
        return len(self.size)


@dataclass(frozen=True)
class CheckOptions:
    """What a bundle expects of its data.

    Args:
        spatial_dims: 2 (EM slices) or 3 (CT/MRI volumes).
        label_values: the declared label values, e.g. ``{0, 1}``; None skips the value check.
        allow_empty_label: accept labels with no foreground.
        spacing_rtol: relative tolerance on spacing between image and label.
        origin_atol: absolute tolerance on origin, in mm (pixels for 2D).
        direction_atol: absolute tolerance on direction cosines.
    """

    spatial_dims: int = 3
    label_values: frozenset[int] | None = None
    allow_empty_label: bool = False
    spacing_rtol: float = 1e-3
    origin_atol: float = 1e-2
    direction_atol: float = 1e-3


def _dicom_series_files(folder: Path) -> list[str]:
    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not ids:
        raise InputError(folder, "folder holds no DICOM series")
    if len(ids) > 1:
        raise InputError(folder, f"folder holds {len(ids)} DICOM series; give one series per folder")
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0]))


def read_header(path: str | Path) -> Header:
    """Read geometry without pixels. A folder is read as one DICOM series.

    Raises:
        InputError: missing, unreadable, or an implausible header.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(path, "file does not exist")
    if path.is_file() and _is_nifti(path):  # before ITK, which may refuse (or allocate) absurd sizes
        dim = _nifti_header(path)["dim"]
        _check_size(path, tuple(int(d) for d in dim[1 : max(1, min(int(dim[0]), 7)) + 1]))
    reader = sitk.ImageFileReader()
    try:
        reader.SetFileName(_dicom_series_files(path)[0] if path.is_dir() else str(path))
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise InputError(path, f"cannot be read as an image ({_first_line(e)})") from e
    header = Header(
        size=tuple(int(s) for s in reader.GetSize()),
        spacing=tuple(float(s) for s in reader.GetSpacing()),
        origin=tuple(float(o) for o in reader.GetOrigin()),
        direction=tuple(float(d) for d in reader.GetDirection()),
        components=int(reader.GetNumberOfComponents()),
    )
    if path.is_dir():
        header = Header(
            header.size[:2] + (len(_dicom_series_files(path)),),
            header.spacing,
            header.origin,
            header.direction,
            header.components,
        )
    _check_size(path, header.size)
    return header


def _first_line(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else type(e).__name__


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


def _nifti_header(path: Path) -> nib.Nifti1Header:
    """The raw NIfTI-1 or NIfTI-2 header of ``path``, unchecked and without reading pixels."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(540)
        klass = (
            nib.Nifti2Header
            if len(raw) >= 4 and int.from_bytes(raw[:4], "little") in (540, 469893120)
            else nib.Nifti1Header
        )
        return klass.from_fileobj(io.BytesIO(raw), check=False)
    except Exception as e:  # gzip and nibabel raise several types for corrupt headers
        raise InputError(path, f"cannot be read as NIfTI ({type(e).__name__}: {e})") from e


def _nifti_spacing(path: Path) -> tuple[float, ...]:
    """Spacing as stored in a NIfTI header, unchecked: ITK and nibabel both silently replace zero
    pixdims by 1 when loading, which would hide a broken header."""
    header = _nifti_header(path)
    dims = int(header["dim"][0])
    return tuple(float(v) for v in header["pixdim"][1 : dims + 1])


def _check_size(path: Path, size: tuple[int, ...]) -> None:
    n_voxels = int(np.prod(size, dtype=np.float64))
    if n_voxels == 0:
        raise InputError(path, f"image is empty (size {size})")
    if n_voxels > MAX_VOXELS:
        raise InputError(path, f"header claims {size} = {n_voxels:.3g} voxels, more than {MAX_VOXELS:.3g}")


def read_array(path: str | Path) -> np.ndarray:
    """Read all pixels as a numpy array (axis order is the reader's; use it for values, not geometry).

    NIfTI is read with nibabel, which keeps NaN/Inf voxels that ITK's NIfTI reader zeroes.
    """
    path = Path(path)
    if _is_nifti(path):
        try:
            return np.asanyarray(nib.load(str(path)).dataobj)
        except Exception as e:  # truncated gzip, bad header, short data...
            raise InputError(path, f"pixel data cannot be read ({type(e).__name__}: {e})") from e
    try:
        if path.is_dir():
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(_dicom_series_files(path))
            image = reader.Execute()
        else:
            image = sitk.ReadImage(str(path))
    except RuntimeError as e:
        raise InputError(path, f"pixel data cannot be read ({_first_line(e)})") from e
    return sitk.GetArrayFromImage(image)


def _check_grid(image: Header, label: Header, label_path: str, image_path: str, opt: CheckOptions) -> list:
    problems = []
    if image.size != label.size:
        problems.append(f"shape {label.size} differs from its image's {image.size}")
    elif not np.allclose(image.spacing, label.spacing, rtol=opt.spacing_rtol, atol=0):
        problems.append(f"spacing {_fmt(label.spacing)} differs from its image's {_fmt(image.spacing)}")
    elif not np.allclose(image.origin, label.origin, rtol=0, atol=opt.origin_atol):
        problems.append(f"origin {_fmt(label.origin)} differs from its image's {_fmt(image.origin)}")
    elif not np.allclose(image.direction, label.direction, rtol=0, atol=opt.direction_atol):
        problems.append("direction (orientation) differs from its image's")
    return [
        InputError(
            label_path,
            f"label is not on the image's grid: {p} ({Path(image_path).name}); "
            "resample the label onto the image",
        )
        for p in problems
    ]


def _fmt(values: Iterable[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def _check_image(path: str, opt: CheckOptions) -> tuple[Header | None, list[InputError]]:
    try:
        header = read_header(path)
    except InputError as e:
        return None, [e]
    problems = []
    if header.dimension != opt.spatial_dims:
        problems.append(
            InputError(
                path, f"is {header.dimension}D {header.size} but this bundle needs {opt.spatial_dims}D images"
            )
        )
    spacing = _nifti_spacing(Path(path)) if _is_nifti(Path(path)) else header.spacing
    if any(s <= 0 for s in spacing):
        problems.append(InputError(path, f"spacing {_fmt(spacing)} has zero or negative values"))
    if problems:
        return header, problems
    try:
        array = read_array(path)
    except InputError as e:
        return header, [e]
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        n_bad = int((~np.isfinite(array)).sum())
        problems.append(InputError(path, f"has {n_bad} NaN/Inf voxels; fix or mask them before training"))
    elif array.min() == array.max():
        problems.append(InputError(path, f"image is blank (every voxel is {array.flat[0]})"))
    return header, problems


def _check_label(path: str, opt: CheckOptions) -> tuple[Header | None, list[InputError]]:
    try:
        header = read_header(path)
    except InputError as e:
        return None, [e]
    if header.components != 1:
        return header, [InputError(path, f"label has {header.components} colour channels; expected one")]
    try:
        array = read_array(path)
    except InputError as e:
        return header, [e]
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        return header, [InputError(path, "label has NaN/Inf values")]
    values = np.unique(array)
    problems = []
    if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
        problems.append(InputError(path, "label has non-integer values; labels must be class indices"))
    elif opt.label_values is not None and not set(values.astype(int).tolist()) <= opt.label_values:
        found = sorted(set(values.astype(int).tolist()))
        problems.append(
            InputError(path, f"label has values {found} but the bundle declares {sorted(opt.label_values)}")
        )
    if not opt.allow_empty_label and len(values) == 1:
        problems.append(InputError(path, f"label is empty (every voxel is {values[0]})"))
    return header, problems


def check_entry(entry: dict, opt: CheckOptions) -> list[InputError]:
    """All problems of one datalist entry (image or channel list, optional label)."""
    images = [entry["image"]] if isinstance(entry["image"], str) else list(entry["image"])
    problems: list[InputError] = []
    headers = []
    for path in images:
        header, found = _check_image(path, opt)
        problems += found
        headers.append(header)
    ref = headers[0]
    for path, header in zip(images[1:], headers[1:], strict=True):
        if ref is not None and header is not None and header.dimension == ref.dimension:
            for e in _check_grid(ref, header, path, images[0], opt):
                problems.append(InputError(path, e.problem.replace("label", "channel", 1)))
    if "label" in entry:
        label_header, found = _check_label(entry["label"], opt)
        problems += found
        if ref is not None and label_header is not None and label_header.dimension == ref.dimension:
            problems += _check_grid(ref, label_header, entry["label"], images[0], opt)
    return problems


def check_datalist(entries: Sequence[dict], opt: CheckOptions) -> list[InputError]:
    """Problems of every entry, in order; an empty list means the data is fit for training."""
    problems: list[InputError] = []
    for entry in entries:
        problems += check_entry(entry, opt)
    logger.info("checked %d cases: %d problem(s)", len(entries), len(problems))
    return problems


def dataset_defaults(folder: str | Path) -> CheckOptions:
    """Expectations read from a dataset folder: 2D {0, 255} for ISBI, 3D with dataset.json labels for MSD."""
    folder = Path(folder)
    if detect_layout(folder) == "isbi":
        return CheckOptions(spatial_dims=2, label_values=frozenset({0, 255}))
    meta = folder / "dataset.json"
    labels = None
    if meta.is_file():
        try:
            labels = frozenset(int(k) for k in json.loads(meta.read_text()).get("labels", {}))
        except (json.JSONDecodeError, ValueError) as e:
            raise InputError(meta, f"invalid 'labels' in dataset.json ({e})") from e
    return CheckOptions(spatial_dims=3, label_values=labels or None)


def check_dataset(folder: str | Path, opt: CheckOptions | None = None) -> list[InputError]:
    """Build the datalist of ``folder`` and check every entry (see :func:`check_datalist`)."""
    try:
        entries = datalist_from_folder(folder)
        opt = opt or dataset_defaults(folder)
    except InputError as e:
        return [e]
    return check_datalist(entries, opt)


def valid_inputs(entries: Sequence[dict], spatial_dims: int) -> list[dict]:
    """``entries`` (images to predict, no labels) after checking every one, so inference writes no
    output at all when one input is bad.

    Raises:
        InputErrors: listing every unreadable, wrongly shaped, zero-spaced, NaN/Inf or blank image.
    """
    assert_valid(entries, CheckOptions(spatial_dims=spatial_dims))
    return list(entries)


def assert_valid(entries: Sequence[dict], opt: CheckOptions) -> None:
    """Raise :class:`InputErrors` listing every problem, so training never starts on bad data."""
    problems = check_datalist(entries, opt)
    if problems:
        raise InputErrors(problems)
