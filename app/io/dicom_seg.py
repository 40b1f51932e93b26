"""DICOM Segmentation (SEG) objects written and read with highdicom.

Written SEGs are BINARY, one segment per label value (present in the mask or declared), each with
its label, SNOMED-CT category/type codes, recommended display colour (CIELab from RGB) and algorithm
identification (AUTOMATIC, family "Artificial Intelligence"). They reference every slice of the source
series and copy patient and study identity from it; frames with no foreground are omitted.
Segment numbers are 1..n in increasing label value order (DICOM requires consecutive numbers; label
values such as 5, 20 become segments 1, 2 with their names and codes).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from app import __version__
from app.errors import InputError
from app.io.atomic import atomic_output
from app.io.segments import SegmentInfo, label_values

__all__ = ["DEFAULT_SERIES_DESCRIPTION", "SEG_SERIES_NUMBER", "write_dicom_seg", "read_dicom_seg"]

logger = logging.getLogger(__name__)

DEFAULT_SERIES_DESCRIPTION = "Segmentation (research use only, not for clinical use)"
SEG_SERIES_NUMBER = 300
MANUFACTURER = "unet-monai-app"
GEOMETRY_TOL = 1e-3  # mm: image origin vs. first slice position; fraction of a voxel when matching grids


def _label_array(mask: np.ndarray | sitk.Image, source_datasets: Sequence[pydicom.Dataset]) -> np.ndarray:
    """``mask`` as a ``(z, y, x)`` array, checked against the source slices' number, size and positions."""
    first, last = source_datasets[0], source_datasets[-1]
    if isinstance(mask, sitk.Image):
        if mask.GetDimension() != 3:
            raise ValueError(f"mask image must be 3D, got {mask.GetDimension()}D")
        for ds, k in ((first, 0), (last, mask.GetSize()[2] - 1)):
            corner = np.array(mask.TransformIndexToPhysicalPoint((0, 0, k)))
            if np.abs(corner - np.array([float(v) for v in ds.ImagePositionPatient])).max() > GEOMETRY_TOL:
                raise ValueError(
                    "mask image is not on the source series grid (the corners of its first and last slices "
                    "must be the ImagePositionPatient of the first and last source datasets): resample it "
                    "onto the series image first"
                )
        mask = sitk.GetArrayFromImage(mask)
    array = np.asarray(mask)
    expected = (len(source_datasets), int(first.Rows), int(first.Columns))
    if array.shape != expected:
        raise ValueError(
            f"mask shape {array.shape} does not match the source series (slices, rows, columns) {expected}"
        )
    return array.view(np.uint8) if array.dtype == bool else array


def _source_header(ds: pydicom.Dataset) -> pydicom.Dataset:
    """Shallow copy of a source header without an empty SpecificCharacterSet.

    Empty means the default repertoire, the same as absent, but highdicom rejects the empty value.
    """
    if "SpecificCharacterSet" not in ds or ds.SpecificCharacterSet:
        return ds
    header = copy.copy(ds)
    del header.SpecificCharacterSet
    return header


def _segment_description(number: int, info: SegmentInfo, algorithm: hd.AlgorithmIdentificationSequence):
    return hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=info.name,
        segmented_property_category=Code(*info.category),
        segmented_property_type=Code(*info.type),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        display_color=hd.color.CIELabColor.from_rgb(*info.rgb),
    )


def write_dicom_seg(
    mask: np.ndarray | sitk.Image,
    source_datasets: Sequence[pydicom.Dataset],
    segments: Mapping[int, SegmentInfo],
    out_path: str | Path,
    algorithm_name: str,
    algorithm_version: str,
    series_description: str = DEFAULT_SERIES_DESCRIPTION,
) -> Path:
    """Write ``mask`` as a BINARY DICOM SEG referencing ``source_datasets``.

    Args:
        mask: ``(z, y, x)`` boolean mask (label 1) or integer label array whose slice ``k`` belongs to
            ``source_datasets[k]`` (the order :func:`app.io.dicom_series.read_dicom_series` returns), or
            the label image on that series' grid (checked against the first/last slice positions).
        source_datasets: headers of the source slices (pixel data not needed), with SOP/Study/Series UIDs.
        segments: label value -> :class:`SegmentInfo`; every non-zero label in ``mask`` must be here, and
            declared labels absent from ``mask`` are written as empty segments.
        out_path: the ``.dcm`` file to write; written to a temporary file beside it, then renamed.
        algorithm_name: algorithm name (also the SEG's manufacturer model name), e.g. the bundle name.
        algorithm_version: algorithm version, e.g. the bundle version.
        series_description: SeriesDescription and ContentDescription (at most 64 characters).

    Returns:
        ``out_path`` as a ``Path``.

    Raises:
        ValueError: mask not aligned with the source slices, labels without a segment, bad description.
    """
    if not source_datasets:
        raise ValueError("no source datasets")
    if not 0 < len(series_description) <= 64:
        raise ValueError(f"series_description must have 1 to 64 characters, got {len(series_description)}")
    labels = _label_array(mask, source_datasets)
    values = label_values(labels, segments)
    if not values:
        raise ValueError("nothing to write: the mask is empty and no segment is declared")
    lut = np.zeros(max(values) + 1, dtype=np.uint8 if len(values) < 256 else np.uint16)
    lut[values] = np.arange(1, len(values) + 1)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=algorithm_version
    )
    with warnings.catch_warnings():
        # highdicom warns about single-component PatientNames, quoting the name: keep it out of logs.
        warnings.filterwarnings(
            "ignore", message=".*represent the intended person name", category=UserWarning
        )
        seg = hd.seg.Segmentation(
            source_images=[_source_header(ds) for ds in source_datasets],
            pixel_array=lut[labels],
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[
                _segment_description(n, segments[v], algorithm) for n, v in enumerate(values, 1)
            ],
            series_instance_uid=hd.UID(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=algorithm_name,
            software_versions=__version__,
            device_serial_number="0",
            series_description=series_description,
            content_description=series_description,
        )
    out = Path(out_path)
    with atomic_output(out) as tmp:
        seg.save_as(tmp)
    logger.info("wrote DICOM SEG with %d segment(s) (%d frames) to %s", len(values), seg.NumberOfFrames, out)
    return out


def read_dicom_seg(
    path: str | Path, reference: sitk.Image | None = None
) -> tuple[dict[int, sitk.Image], dict[int, str]]:
    """Per-segment masks of a DICOM SEG (BINARY, FRACTIONAL thresholded at 0.5, or LABELMAP).

    Frames are placed by their ImagePositionPatient: with ``reference`` (e.g. the image of the
    referenced series from :func:`app.io.dicom_series.read_dicom_series`) each mask is on exactly that
    grid (same size, origin, spacing, direction; slices the SEG omits are empty); without it, on the
    SEG's own regular grid spanning its frames.

    Returns:
        ``(masks, names)``: segment number -> uint8 0/1 ``sitk.Image``, and segment number -> label.

    Raises:
        InputError: naming ``path``, if it cannot be read as a SEG, its frames do not form a regular
            volume, or they do not lie on the reference grid.
    """
    path = Path(path)
    try:
        seg = hd.seg.segread(path)
    except Exception as exc:  # missing file, not DICOM, not a SEG: all unreadable as a segmentation
        raise InputError(path, f"cannot read as a DICOM Segmentation ({type(exc).__name__}: {exc})") from exc
    numbers = [int(n) for n in seg.segment_numbers]
    names = {n: str(seg.get_segment_description(n).segment_label) for n in numbers}
    try:
        volume = seg.get_volume(combine_segments=False, segment_numbers=numbers, allow_missing_positions=True)
        if reference is not None:
            volume = volume.match_geometry(hd.Volume.from_simpleitk(reference), tol=GEOMETRY_TOL)
        else:  # SimpleITK's (x, y, z) = (columns, rows, slices), slices ascending along the normal
            volume = volume.permute_spatial_axes([2, 1, 0]).ensure_handedness("RIGHT_HANDED", flip_axis=2)
    except (RuntimeError, ValueError) as exc:
        where = "on the reference image grid" if reference is not None else "as a regular volume"
        raise InputError(path, f"segmentation frames cannot be placed {where}: {exc}") from exc
    fractional = seg.segmentation_type == hd.seg.SegmentationTypeValues.FRACTIONAL
    masks = {}
    for i, number in enumerate(numbers):
        channel = volume.array[..., i]
        channel = (channel >= 0.5) if fractional else (channel > 0)
        mask = hd.Volume(channel.astype(np.uint8), volume.affine, "PATIENT").to_simpleitk()
        if reference is not None:
            mask.CopyInformation(reference)  # equal within GEOMETRY_TOL; make it exact
        masks[number] = mask
    logger.info("read DICOM SEG %s: %d segment(s)", path, len(numbers))
    return masks, names
