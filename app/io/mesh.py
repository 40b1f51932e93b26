"""Surface meshes of label maps as binary STL files (marching cubes, physical LPS millimetres).

Vertices are in the label image's physical space, LPS (what ITK/DICOM use, and what 3D Slicer assumes
for an STL whose header says ``SPACE=LPS``); faces are wound so their normals point out of the
segment. The STL writer is a few lines of NumPy, so no mesh package is needed.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from skimage.measure import marching_cubes

from app.io.atomic import atomic_output
from app.io.names import safe_filename
from app.io.segments import SegmentInfo, label_values

__all__ = ["STL_HEADER", "label_surface", "write_binary_stl", "write_stl"]

logger = logging.getLogger(__name__)

STL_HEADER = b"SPACE=LPS; written by unet-monai-app"
_STL_FACET = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def label_surface(mask: np.ndarray, image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Closed surface of a ``(z, y, x)`` boolean ``mask`` on ``image``'s grid.

    Returns:
        ``(vertices (V, 3) float64 LPS mm, faces (F, 3) int)``, faces counter-clockwise seen from
        outside (right-hand normals point outwards); empty arrays for an empty mask.
    """
    if not mask.any():
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    padded = np.pad(mask.astype(np.uint8), 1)  # closes surfaces touching the image border
    vertices_zyx, faces, _, _ = marching_cubes(padded, level=0.5, allow_degenerate=False)
    index_xyz = vertices_zyx[:, ::-1] - 1.0
    linear = np.array(image.GetDirection()).reshape(3, 3) @ np.diag(image.GetSpacing())
    vertices = index_xyz @ linear.T + np.array(image.GetOrigin())
    # In (z, y, x) index space marching_cubes winds faces inward (for a mask with level 0.5). The map
    # to LPS (axis reversal, determinant -1, then ``linear``) turns them outward only if its
    # determinant -det(linear) is negative; otherwise reverse the winding.
    if np.linalg.det(linear) < 0:
        faces = faces[:, ::-1]
    return vertices, faces


def write_binary_stl(vertices: np.ndarray, faces: np.ndarray, out_path: str | Path) -> Path:
    """Write a triangle mesh as binary STL (float32 coordinates, per-facet unit normals); atomic."""
    triangles = vertices[faces]
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    records = np.zeros(len(faces), dtype=_STL_FACET)
    records["normal"] = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    records["vertices"] = triangles
    out = Path(out_path)
    with atomic_output(out) as tmp, open(tmp, "wb") as f:
        f.write(STL_HEADER.ljust(80, b" "))
        f.write(np.uint32(len(faces)).tobytes())
        f.write(records.tobytes())
    return out


def write_stl(label: sitk.Image, segments: Mapping[int, SegmentInfo], out_dir: str | Path) -> dict[int, Path]:
    """One STL surface per non-empty segment of ``label``, named ``<label value>_<safe name>.stl``.

    Args:
        label: 3D integer label map.
        segments: label value -> :class:`SegmentInfo`; every non-zero value of ``label`` must be here.
        out_dir: folder for the meshes (created if needed).

    Returns:
        label value -> written file, for the segments present in ``label`` (empty ones are skipped).
    """
    array = sitk.GetArrayViewFromImage(label)
    written = {}
    for value in label_values(array, segments):
        vertices, faces = label_surface(array == value, label)
        if not len(faces):
            logger.debug("segment %d (%s) is empty: no mesh written", value, segments[value].name)
            continue
        name = f"{value}_{safe_filename(segments[value].name, default='segment')}.stl"
        written[value] = write_binary_stl(vertices, faces, Path(out_dir) / name)
        logger.info("wrote %d triangles of segment %d to %s", len(faces), value, written[value])
    return written
