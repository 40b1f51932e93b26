"""Read one CT/MR DICOM series from a folder into a SimpleITK image (pydicom + pylibjpeg).

Every file of the folder (not its sub-folders) is opened header-only; files that are not DICOM, and
DICOM objects that are not single-frame image slices (DICOMDIR, SR, SEG, multi-frame), are skipped
with a debug log. The slices are grouped by SeriesInstanceUID and one series is chosen by
:func:`select_series`. Its slices are sorted by position along the slice normal
(``ImagePositionPatient . (row x column cosines)``), checked (same orientation, pixel size and matrix;
no duplicate or missing slice; even spacing; stacked along the normal, i.e. no gantry tilt), decoded
(JPEG 2000 and other compressed syntaxes through pydicom's plugins, e.g. pylibjpeg-openjpeg) and
rescaled to modality units (RescaleSlope/Intercept: Hounsfield units for CT).

The image has ITK's LPS geometry: origin = position of the first sorted slice, spacing = (column
spacing, row spacing, mean distance between slice positions; never SliceThickness unless there is one
slice), direction columns = (row cosines, column cosines, normal). Its array
``sitk.GetArrayFromImage(image)`` is ``(z, y, x)`` with ``array[k]`` the pixels of ``datasets[k]``.

Problems raise :class:`app.errors.InputError` naming the folder or file. Patient data (name, ID,
birth date) is never logged or put in messages: series are described by SeriesInstanceUID,
SeriesDescription, Modality and number of slices only.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pydicom.pixels
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.uid import generate_uid

from app.errors import InputError

__all__ = ["SeriesRules", "read_dicom_series", "select_series", "group_by_series", "describe_series"]

logger = logging.getLogger(__name__)

# Attributes a file needs to be used as one slice of a volume.
_SLICE_KEYWORDS = ("Rows", "Columns", "PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient")
ORIENTATION_TOL = 1e-4  # direction cosines
PIXEL_SPACING_TOL = 1e-4  # mm
POSITION_TOL = 1e-2  # mm: duplicate slices, drift across the slice plane
SPACING_RTOL = 1e-2  # relative deviation of one slice gap from the median gap
MISSING_SLICE_FACTOR = 1.5  # a gap this many times the median gap is a missing slice


@dataclass(frozen=True)
class SeriesRules:
    """How to choose one series when a folder holds several.

    Args:
        description: regular expression searched (case-insensitive) in SeriesDescription.
        most_slices: among the series left by the other rules take the one with the most slices
            (a tie is still an error).
    """

    description: str | None = None
    most_slices: bool = False


def _is_slice(ds: pydicom.Dataset) -> bool:
    frames = ds.get("NumberOfFrames")
    return all(ds.get(k) for k in _SLICE_KEYWORDS) and (frames is None or int(frames) == 1)


def _read_headers(folder: Path) -> list[pydicom.Dataset]:
    """Headers (no pixel data) of the single-frame DICOM image slices directly in ``folder``."""
    if not folder.is_dir():
        raise InputError(folder, "not a folder (expected a folder of DICOM files of one series)")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise InputError(folder, "no files found (expected DICOM files of one series)")
    slices, n_dicom = [], 0
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except InvalidDicomError:
            logger.debug("skipping %s: not a DICOM file", path)
            continue
        except Exception as exc:  # truncated or malformed DICOM: a real file of the series that is broken
            raise InputError(path, f"cannot read DICOM file ({type(exc).__name__}: {exc})") from exc
        n_dicom += 1
        if not _is_slice(ds):
            logger.debug(
                "skipping %s: not a single-frame image slice (SOP class %s)", path, ds.get("SOPClassUID")
            )
            continue
        slices.append(ds)
    if n_dicom == 0:
        raise InputError(folder, f"no DICOM files found ({len(files)} file(s) skipped as not DICOM)")
    if not slices:
        raise InputError(
            folder,
            f"no DICOM image slices found among {n_dicom} DICOM file(s) (need single-frame images with "
            "ImagePositionPatient and ImageOrientationPatient; multi-frame and non-image objects are "
            "skipped)",
        )
    return slices


def group_by_series(datasets: Sequence[pydicom.Dataset]) -> dict[str, list[pydicom.Dataset]]:
    """Datasets grouped by SeriesInstanceUID (``""`` for datasets without one), in input order."""
    groups: dict[str, list[pydicom.Dataset]] = {}
    for ds in datasets:
        groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append(ds)
    return groups


def describe_series(uid: str, datasets: Sequence[pydicom.Dataset]) -> str:
    """One line naming a series without patient data: UID, modality, description, number of slices."""
    first = datasets[0]
    return (
        f"{uid or '(no SeriesInstanceUID)'} {first.get('Modality', '?')} "
        f"'{first.get('SeriesDescription', '')}' ({len(datasets)} slices)"
    )


def _listing(groups: Mapping[str, Sequence[pydicom.Dataset]]) -> str:
    return "; ".join(describe_series(uid, dss) for uid, dss in groups.items())


def select_series(
    datasets_by_uid: Mapping[str, Sequence[pydicom.Dataset]],
    *,
    modality: str | None = None,
    description: str | None = None,
    most_slices: bool = False,
    source: str | Path = "DICOM input",
) -> list[pydicom.Dataset]:
    """Choose exactly one series.

    Rules, in order: keep the series whose Modality is ``modality``; keep those whose
    SeriesDescription matches the regular expression ``description`` (``re.search``, ignoring case);
    if ``most_slices``, keep the one with the most slices. One series left is returned.

    Args:
        datasets_by_uid: SeriesInstanceUID -> datasets of that series (see :func:`group_by_series`).
        modality: required modality (e.g. ``"CT"``); a series of another modality is never chosen.
        description: regular expression for SeriesDescription.
        most_slices: break remaining ambiguity by the number of slices.
        source: the folder or file named in errors.

    Returns:
        the datasets of the chosen series.

    Raises:
        InputError: no series, no series of the required modality, or not exactly one left; the
            message lists the series by UID, modality, description and number of slices.
    """
    groups = {uid: list(dss) for uid, dss in datasets_by_uid.items() if dss}
    if not groups:
        raise InputError(source, "no DICOM series found")
    if modality is not None:
        kept = {
            uid: dss
            for uid, dss in groups.items()
            if str(dss[0].get("Modality", "")).upper() == modality.upper()
        }
        if not kept:
            found = sorted({str(dss[0].get("Modality", "") or "unknown") for dss in groups.values()})
            if len(groups) == 1:
                raise InputError(source, f"series modality is {found[0]} but the model expects {modality}")
            raise InputError(
                source, f"no {modality} series found, the model expects {modality}: {_listing(groups)}"
            )
        groups = kept
    if description is not None:
        pattern = re.compile(description, re.IGNORECASE)
        kept = {
            uid: dss
            for uid, dss in groups.items()
            if pattern.search(str(dss[0].get("SeriesDescription", "")))
        }
        if not kept:
            raise InputError(source, f"no series description matches {description!r}: {_listing(groups)}")
        groups = kept
    if most_slices and len(groups) > 1:
        most = max(len(dss) for dss in groups.values())
        groups = {uid: dss for uid, dss in groups.items() if len(dss) == most}
    if len(groups) > 1:
        raise InputError(
            source,
            f"{len(groups)} series found and no rule selects exactly one: {_listing(groups)} "
            "(choose by modality, a SeriesDescription pattern or most slices, or give a folder of one "
            "series)",
        )
    ((uid, chosen),) = groups.items()
    logger.info("selected series %s", describe_series(uid, chosen))
    return chosen


def _floats(ds: pydicom.Dataset, keyword: str) -> np.ndarray:
    return np.array([float(v) for v in ds.get(keyword)], dtype=np.float64)


def _file(ds: pydicom.Dataset) -> str:
    return str(ds.filename)


def _check_same_plane(datasets: Sequence[pydicom.Dataset]) -> None:
    """Same orientation, pixel spacing and matrix size on every slice as on the first."""
    first = datasets[0]
    iop0, ps0 = _floats(first, "ImageOrientationPatient"), _floats(first, "PixelSpacing")
    for ds in datasets[1:]:
        if not np.allclose(_floats(ds, "ImageOrientationPatient"), iop0, atol=ORIENTATION_TOL):
            raise InputError(
                _file(ds),
                f"ImageOrientationPatient {list(ds.ImageOrientationPatient)} differs from "
                f"{list(first.ImageOrientationPatient)} of {Path(_file(first)).name}: "
                "inconsistent orientation",
            )
        if not np.allclose(_floats(ds, "PixelSpacing"), ps0, atol=PIXEL_SPACING_TOL):
            raise InputError(
                _file(ds),
                f"PixelSpacing {list(ds.PixelSpacing)} differs from {list(first.PixelSpacing)} of "
                f"{Path(_file(first)).name}: inconsistent pixel size",
            )
        if (ds.Rows, ds.Columns) != (first.Rows, first.Columns):
            raise InputError(
                _file(ds),
                f"matrix {ds.Rows}x{ds.Columns} differs from {first.Rows}x{first.Columns} of "
                f"{Path(_file(first)).name}",
            )


def _slice_spacing(datasets: Sequence[pydicom.Dataset], positions: np.ndarray, folder: Path) -> float:
    """Distance between consecutive sorted slices, after checking it is regular (no gap, no duplicate)."""
    if len(datasets) == 1:
        spacing = float(datasets[0].get("SpacingBetweenSlices") or datasets[0].get("SliceThickness") or 1.0)
        logger.debug("single slice: slice spacing %.4g mm from the header", spacing)
        return spacing
    gaps = np.diff(positions)
    names = [Path(_file(ds)).name for ds in datasets]
    if (bad := np.flatnonzero(gaps < POSITION_TOL)).size:
        i = int(bad[0])
        raise InputError(
            folder,
            f"slices {names[i]} and {names[i + 1]} are at the same position {positions[i]:.4g} mm along the "
            "slice normal (several acquisitions or time points in one series?)",
        )
    median = float(np.median(gaps))
    if (bad := np.flatnonzero(gaps > MISSING_SLICE_FACTOR * median)).size:
        i = int(bad[0])
        raise InputError(
            folder,
            f"missing slice: gap of {gaps[i]:.4g} mm between {names[i]} and {names[i + 1]} "
            f"(median slice spacing {median:.4g} mm)",
        )
    if (bad := np.flatnonzero(np.abs(gaps - median) > max(SPACING_RTOL * median, 1e-3))).size:
        i = int(bad[0])
        raise InputError(
            folder,
            f"inconsistent slice spacing: {gaps[i]:.4g} mm between {names[i]} and {names[i + 1]}, "
            f"median {median:.4g} mm",
        )
    return float((positions[-1] - positions[0]) / (len(positions) - 1))


def _check_stacked_along_normal(
    datasets: Sequence[pydicom.Dataset], normal: np.ndarray, folder: Path
) -> None:
    """Slice positions differ only along the normal (a gantry tilt would shear the volume)."""
    p0 = _floats(datasets[0], "ImagePositionPatient")
    for ds in datasets[1:]:
        d = _floats(ds, "ImagePositionPatient") - p0
        drift = float(np.linalg.norm(d - d.dot(normal) * normal))
        if drift > POSITION_TOL + 1e-3 * abs(float(d.dot(normal))):
            raise InputError(
                folder,
                f"slice {Path(_file(ds)).name} is shifted {drift:.3g} mm across the slice plane: slices "
                "are not stacked along the slice normal (gantry tilt?), which a regular volume cannot "
                "represent",
            )


def _decode(ds: pydicom.Dataset) -> np.ndarray:
    """Pixels of one slice in modality units (float64, ``(rows, columns)``)."""
    path = _file(ds)
    syntax = ds.file_meta.get("TransferSyntaxUID")
    syntax_text = f"{syntax.name} {syntax}" if syntax is not None else "unknown"
    try:
        pixels = pydicom.pixels.pixel_array(path)
    except Exception as exc:  # missing decoder plugin, corrupt or truncated frame: all mean "unreadable"
        raise InputError(
            path,
            f"cannot decode pixel data (transfer syntax {syntax_text}): {' '.join(str(exc).split())} "
            "(the frame is corrupt, or its decoder is missing: JPEG 2000 needs e.g. pylibjpeg-openjpeg)",
        ) from exc
    if pixels.shape != (ds.Rows, ds.Columns):
        raise InputError(
            path,
            f"pixel data has shape {pixels.shape}, expected one {ds.Rows}x{ds.Columns} frame "
            f"(SamplesPerPixel {ds.get('SamplesPerPixel', 1)}; only single-channel images are supported)",
        )
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    return pixels.astype(np.float64) * slope + intercept


def _integer_rescale(datasets: Sequence[pydicom.Dataset]) -> bool:
    values = [
        float(ds.get(k, d) or d)
        for ds in datasets
        for k, d in (("RescaleSlope", 1.0), ("RescaleIntercept", 0.0))
    ]
    return all(v.is_integer() for v in values)


def _fill_missing_uids(datasets: Sequence[pydicom.Dataset]) -> None:
    """Give anonymised slices the UIDs a derived object (e.g. DICOM SEG) must reference.

    SOPClassUID/SOPInstanceUID come from the file meta (which must hold the same values).
    Missing Study/SeriesInstanceUIDs are derived deterministically from the series content (the
    same folder always gets the same UIDs), with a warning, since they exist in no archive.
    """
    for ds in datasets:
        for keyword, meta in (
            ("SOPClassUID", "MediaStorageSOPClassUID"),
            ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
        ):
            if not ds.get(keyword) and ds.file_meta.get(meta):
                setattr(ds, keyword, ds.file_meta.get(meta))
    first = datasets[0]
    content = [str(first.get(k, "")) for k in ("FrameOfReferenceUID", "StudyDate", "StudyTime", "Modality")]
    content += [str(ds.get("SOPInstanceUID", "")) + str(list(ds.ImagePositionPatient)) for ds in datasets]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        if not all(ds.get(keyword) for ds in datasets):
            uid = generate_uid(entropy_srcs=[keyword, *content])
            logger.warning("series has no %s (anonymised?): using the derived UID %s", keyword, uid)
            for ds in datasets:
                setattr(ds, keyword, uid)
    for i, ds in enumerate(datasets):
        if not ds.get("SOPInstanceUID"):
            ds.SOPInstanceUID = generate_uid(entropy_srcs=["SOPInstanceUID", str(i), *content])


def read_dicom_series(
    folder: str | Path, modality: str | None = None, series_rules: SeriesRules | None = None
) -> tuple[sitk.Image, list[pydicom.Dataset]]:
    """Read one series from ``folder`` as a 3D image in modality units with LPS geometry.

    Args:
        folder: a folder of DICOM files (sub-folders are not searched).
        modality: required modality, e.g. ``"CT"``; other series are ignored and a folder with
            none raises ``InputError`` ("series modality is MR but the model expects CT").
        series_rules: how to choose when the folder holds several series (see :class:`SeriesRules`).

    Returns:
        ``(image, datasets)``: ``image`` is int16 when the rescale is integral and fits, float32
        otherwise, size ``(columns, rows, slices)``; ``datasets`` are the slice headers (without pixel
        data) in the image's slice order, missing SOP/Study/Series UIDs filled in (see below).

    Raises:
        InputError: naming the folder or file, for no DICOM files, several series and no rule
            choosing one, wrong modality, inconsistent orientation/pixel size, duplicate or missing
            slices, uneven spacing, slices not stacked along the normal, undecodable pixel data.
    """
    folder = Path(folder)
    rules = series_rules or SeriesRules()
    datasets = select_series(
        group_by_series(_read_headers(folder)),
        modality=modality,
        description=rules.description,
        most_slices=rules.most_slices,
        source=folder,
    )
    _check_same_plane(datasets)
    iop = _floats(datasets[0], "ImageOrientationPatient")
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    positions = np.array([_floats(ds, "ImagePositionPatient").dot(normal) for ds in datasets])
    order = np.argsort(positions, kind="stable")
    datasets = [datasets[i] for i in order]
    positions = positions[order]
    dz = _slice_spacing(datasets, positions, folder)
    _check_stacked_along_normal(datasets, normal, folder)

    volume = np.empty((len(datasets), datasets[0].Rows, datasets[0].Columns), dtype=np.float32)
    for k, ds in enumerate(datasets):
        volume[k] = _decode(ds)
    if _integer_rescale(datasets) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)

    image = sitk.GetImageFromArray(volume)
    row_spacing, col_spacing = (float(v) for v in datasets[0].PixelSpacing)
    image.SetSpacing((col_spacing, row_spacing, dz))
    image.SetOrigin(tuple(_floats(datasets[0], "ImagePositionPatient")))
    image.SetDirection(tuple(np.column_stack([row, col, normal]).ravel()))
    _fill_missing_uids(datasets)
    logger.info(
        "read %s series from %s: %d slices of %dx%d, spacing %s mm",
        datasets[0].get("Modality", "?"),
        folder,
        len(datasets),
        datasets[0].Columns,
        datasets[0].Rows,
        tuple(round(s, 4) for s in image.GetSpacing()),
    )
    return image, datasets
