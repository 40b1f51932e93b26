"""Label maps for 3D Slicer (``.seg.nrrd`` with segment names, colours, codes) and for NIfTI tools.

Both keep the SimpleITK image's geometry: a ``.seg.nrrd`` stores it in LPS (``space:
left-posterior-superior``, ``space origin`` = image origin, ``space directions`` columns = direction
columns times spacing), NIfTI stores it in RAS as ITK converts it (a reader such as SimpleITK or
nibabel + LPS<->RAS sign flip gets the same grid back).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import slicerio

from app.io.atomic import atomic_output
from app.io.segments import SegmentInfo, label_values

__all__ = ["SLICER_TERMINOLOGY_CONTEXT", "ijk_to_lps", "write_seg_nrrd", "write_label_nifti"]

logger = logging.getLogger(__name__)

SLICER_TERMINOLOGY_CONTEXT = "Segmentation category and type - DICOM master list"


def _label_array(label: sitk.Image) -> np.ndarray:
    """The ``(z, y, x)`` array view of a 3D scalar label image."""
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(
            f"label must be a 3D scalar image, got {label.GetDimension()}D with "
            f"{label.GetNumberOfComponentsPerPixel()} components"
        )
    return sitk.GetArrayViewFromImage(label)


def ijk_to_lps(image: sitk.Image) -> np.ndarray:
    """4x4 matrix from voxel index ``(i, j, k)`` = SimpleITK ``(x, y, z)`` index to LPS millimetres."""
    matrix = np.eye(4)
    direction = np.array(image.GetDirection()).reshape(3, 3)
    matrix[:3, :3] = direction @ np.diag(image.GetSpacing())
    matrix[:3, 3] = image.GetOrigin()
    return matrix


def write_seg_nrrd(label: sitk.Image, segments: Mapping[int, SegmentInfo], out_path: str | Path) -> Path:
    """Write a 3D Slicer segmentation (``.seg.nrrd``, one shared label layer) of ``label``.

    Args:
        label: integer label map on the source image grid (0 = background).
        segments: label value -> :class:`SegmentInfo` (name, RGB colour written as 0-1 floats,
            category/type codes written as Slicer terminology); every non-zero value of ``label``
            must be declared, declared values absent from ``label`` become empty segments.
        out_path: file to write (should end with ``.seg.nrrd``); written atomically.

    Returns:
        ``out_path`` as a ``Path``; ``slicerio.read_segmentation`` reads back the same segments,
        voxels (``(x, y, z)`` order) and ``ijkToLPS``.
    """
    array = _label_array(label)
    values = label_values(array, segments)
    dtype = np.uint8 if not values or values[-1] < 256 else np.uint16
    segmentation = {
        "voxels": np.ascontiguousarray(array.transpose(2, 1, 0)).astype(dtype),
        "ijkToLPS": ijk_to_lps(label),
        "containedRepresentationNames": ["Binary labelmap"],
        "masterRepresentation": "Binary labelmap",
        "segments": [
            {
                "id": f"Segment_{value}",
                "labelValue": value,
                "layer": 0,
                "name": segments[value].name,
                "color": [round(c / 255.0, 6) for c in segments[value].rgb],
                "terminology": {
                    "contextName": SLICER_TERMINOLOGY_CONTEXT,
                    # Slicer orders a code (scheme, value, meaning); ours is (value, scheme, meaning).
                    "category": [segments[value].category[i] for i in (1, 0, 2)],
                    "type": [segments[value].type[i] for i in (1, 0, 2)],
                },
            }
            for value in values
        ],
    }
    out = Path(out_path)
    with atomic_output(out) as tmp:
        slicerio.write_segmentation(str(tmp), segmentation)
    logger.info("wrote 3D Slicer segmentation with %d segment(s) to %s", len(values), out)
    return out


def write_label_nifti(label: sitk.Image, out_path: str | Path) -> Path:
    """Write ``label`` as NIfTI (``.nii`` or ``.nii.gz``) with its geometry; written atomically.

    Returns:
        ``out_path`` as a ``Path``.
    """
    out = Path(out_path)
    if not out.name.endswith((".nii", ".nii.gz")):
        raise ValueError(f"{out}: a NIfTI file name must end with .nii or .nii.gz")
    array = _label_array(label)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"label must have an integer pixel type, got {label.GetPixelIDTypeAsString()}")
    with atomic_output(out) as tmp:
        sitk.WriteImage(label, str(tmp), useCompression=out.name.endswith(".gz"))
    logger.info("wrote label map to %s", out)
    return out
