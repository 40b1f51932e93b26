"""A folder a radiologist opens in one step in 3D Slicer: image, segmentation, colours, loader script.

``python -m app slicer-scene IMAGE SEG --out DIR [--metadata bundles/ct/metadata.json]`` writes

- ``image.nrrd``: the image (NIfTI / NRRD / MHA file, or a DICOM series folder) with its geometry;
- ``segmentation.seg.nrrd``: the label map as a Slicer segmentation, one segment per label value, with
  names, colours and SNOMED codes from the bundle metadata (else from the SEG itself, else generic);
- ``colors.ctbl``: the same names and colours as a Slicer colour table (``value name R G B A``);
- ``load_in_slicer.py``: loads both into Slicer (Python console: ``exec(open(r".../load_in_slicer.py")
  .read())``, or ``Slicer --python-script .../load_in_slicer.py``), sets the segmentation's reference
  geometry to the image and shows it in 3D.

SEG may be a label map (NIfTI / NRRD / MHA), a ``.seg.nrrd`` (one or several layers), a DICOM SEG file
(or a folder holding one; read onto the image grid with :func:`app.io.read_dicom_seg`) or a DICOM
series folder of label values. IMAGE and SEG must share one voxel grid (same size; origin, spacing and
direction equal within :data:`GRID_TOL`), else an :class:`app.errors.InputError` names both files.
Everything is checked before anything is written, and the files are written to a staging folder and
moved into ``--out`` together: a failure leaves ``--out`` as it was.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from app.errors import InputError

__all__ = [
    "GRID_TOL",
    "IMAGE_NAME",
    "SEGMENTATION_NAME",
    "COLOR_TABLE_NAME",
    "LOADER_NAME",
    "generic_color",
    "read_image",
    "read_label",
    "write_color_table",
    "write_slicer_scene",
    "add_parser",
]

logger = logging.getLogger(__name__)

IMAGE_NAME = "image.nrrd"
SEGMENTATION_NAME = "segmentation.seg.nrrd"
COLOR_TABLE_NAME = "colors.ctbl"
LOADER_NAME = "load_in_slicer.py"
GRID_TOL = 1e-3  # mm for origins; relative for spacings; absolute for direction cosines
SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
TISSUE = ("85756007", "SCT", "Tissue")


def generic_color(index: int) -> tuple[int, int, int]:
    """A display colour for the ``index``-th segment without one: hues spread by the golden ratio."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((0.1 + index * 0.618033988749895) % 1.0, 0.55, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


# --------------------------------------------------------------------------------------------- reading
def read_image(path: str | Path) -> sitk.Image:
    """A 3D scalar image from a NIfTI / NRRD / MHA file or a DICOM series folder.

    Raises:
        InputError: naming ``path``: missing, unreadable, not 3D, or more than one component.
    """
    from app.io import read_dicom_series

    path = Path(path)
    if path.is_dir():
        return read_dicom_series(path)[0]
    if not path.is_file():
        raise InputError(path, "not found")
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise InputError(path, f"cannot read as an image ({' '.join(str(exc).split())[:200]})") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(
            path,
            f"expected a 3D single-channel image, got {image.GetDimension()}D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s)",
        )
    return image


def _dicom_seg_file(path: Path) -> Path | None:
    """``path`` if it is a DICOM SEG file, the one SEG file in it if it is a folder, else ``None``."""
    import pydicom

    def is_seg(file: Path) -> bool:
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True, specific_tags=["SOPClassUID", "Modality"])
        except Exception:  # not DICOM (or unreadable): not a SEG
            return False
        sop_class = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        return sop_class == SEGMENTATION_STORAGE or ds.get("Modality") == "SEG"

    if path.is_file():
        return (
            path
            if not path.name.endswith((".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")) and is_seg(path)
            else None
        )
    if path.is_dir():
        segs = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and is_seg(p))
        if len(segs) > 1:
            raise InputError(path, f"{len(segs)} DICOM SEG files in this folder: give one of them")
        return segs[0] if segs else None
    return None


def _segment_info(name: str, rgb, category=None, type_=None, index: int = 0):
    from app.io import SegmentInfo
    from app.io.segments import ANATOMICAL_STRUCTURE

    if not type_:  # no code known: generic "Tissue"
        category, type_ = category or TISSUE, TISSUE
    return SegmentInfo(
        name=" ".join(str(name).split()) or f"segment {index}",
        rgb=tuple(int(v) for v in rgb) if rgb is not None else generic_color(index),
        category=tuple(category) if category else ANATOMICAL_STRUCTURE,
        type=tuple(type_),
    )


def _code_from_slicer(code) -> tuple[str, str, str] | None:
    """Slicer terminology code ``[scheme, value, meaning]`` -> ``(value, scheme, meaning)``."""
    if isinstance(code, list | tuple) and len(code) == 3 and all(code):
        return (str(code[1]), str(code[0]), str(code[2]))
    return None


def _read_seg_nrrd(path: Path) -> tuple[sitk.Image, dict[int, Any]] | None:
    """A Slicer ``.seg.nrrd`` (with segment fields) as one label image and its segments, else ``None``."""
    import slicerio

    try:
        if not slicerio.read_segmentation(str(path), skip_voxels=True).get("segments"):
            return None  # a plain label NRRD: read it with SimpleITK
        segmentation = slicerio.read_segmentation(str(path))
    except Exception as exc:  # slicerio raises IOError/ValueError/KeyError on odd headers
        if path.name.endswith(".seg.nrrd"):
            raise InputError(path, f"cannot read as a 3D Slicer segmentation ({exc})") from exc
        return None
    voxels = np.asarray(segmentation["voxels"])
    segments: dict[int, Any] = {}
    if voxels.ndim == 3:
        labels = voxels
        for seg in segmentation["segments"]:
            segments[int(seg["labelValue"])] = seg
    else:  # several layers (overlapping segments): one new label value per segment, later ones on top
        labels = np.zeros(voxels.shape[1:], dtype=np.uint16)
        for i, seg in enumerate(segmentation["segments"], 1):
            mask = slicerio.segment_mask(segmentation, seg)
            if (labels[mask] > 0).any():
                logger.warning(
                    "%s: segment %r overlaps earlier segments; it is drawn on top", path, seg["name"]
                )
            labels[mask] = i
            segments[i] = seg
    ijk_to_lps = np.asarray(segmentation["ijkToLPS"], dtype=float)
    spacing = np.linalg.norm(ijk_to_lps[:3, :3], axis=0)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(labels).transpose(2, 1, 0)))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple((ijk_to_lps[:3, :3] / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in ijk_to_lps[:3, 3]))
    infos = {}
    for i, (value, seg) in enumerate(sorted(segments.items())):
        terminology = seg.get("terminology") or {}
        color = seg.get("color")
        infos[value] = _segment_info(
            seg.get("name") or f"segment {value}",
            [round(float(c) * 255) for c in color] if color is not None else None,
            _code_from_slicer(terminology.get("category")),
            _code_from_slicer(terminology.get("type")),
            index=i,
        )
    return image, infos


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ")"


def _grid_problems(image: sitk.Image, label: sitk.Image) -> list[str]:
    """How ``label``'s voxel grid differs from ``image``'s (empty: the same grid)."""
    problems = []
    if image.GetSize() != label.GetSize():
        problems.append(f"size {label.GetSize()} vs {image.GetSize()}")
    if not np.allclose(label.GetSpacing(), image.GetSpacing(), rtol=GRID_TOL, atol=0):
        problems.append(f"spacing {_fmt(label.GetSpacing())} vs {_fmt(image.GetSpacing())}")
    if not np.allclose(label.GetOrigin(), image.GetOrigin(), rtol=0, atol=GRID_TOL):
        problems.append(f"origin {_fmt(label.GetOrigin())} vs {_fmt(image.GetOrigin())}")
    if not np.allclose(label.GetDirection(), image.GetDirection(), rtol=0, atol=GRID_TOL):
        problems.append(f"direction {_fmt(label.GetDirection())} vs {_fmt(image.GetDirection())}")
    return problems


def _same_voxels_reordered(image: sitk.Image, label: sitk.Image) -> bool:
    """Whether ``label`` has exactly ``image``'s voxel centres, stored in another axis order or
    direction (e.g. a NIfTI writer that flipped the rows): image index -> label index is then a signed
    permutation plus an integer shift that maps the image's extent onto the label's."""

    def index_to_lps(im: sitk.Image) -> np.ndarray:
        return np.array(im.GetDirection()).reshape(3, 3) @ np.diag(im.GetSpacing())

    a = np.linalg.solve(index_to_lps(label), index_to_lps(image))
    b = np.linalg.solve(index_to_lps(label), np.subtract(image.GetOrigin(), label.GetOrigin()))
    permutation = np.round(a)
    if not np.allclose(a, permutation, atol=1e-4) or not (np.abs(permutation).sum(axis=0) == 1).all():
        return False
    if not np.allclose(b, np.round(b), atol=1e-3):
        return False
    corners = np.array([[0, 0, 0], np.subtract(image.GetSize(), 1)]).T
    mapped = permutation @ corners + np.round(b)[:, None]
    low, high = mapped.min(axis=1), mapped.max(axis=1)
    return bool((low == 0).all() and (high == np.subtract(label.GetSize(), 1)).all())


def _integer_labels(label: sitk.Image, path: Path) -> np.ndarray:
    array = sitk.GetArrayFromImage(label)
    if label.GetDimension() != 3 or label.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(path, f"expected a 3D single-channel label map, got {label.GetDimension()}D")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise InputError(path, "label map has non-integer values (is this an image, not a segmentation?)")
    if array.size and array.min() < 0:
        raise InputError(path, f"label map has negative values (min {array.min()})")
    if array.size and array.max() > 65535:
        raise InputError(path, f"label values above 65535 are not supported (max {array.max()})")
    return array.astype(np.uint8 if array.size == 0 or array.max() < 256 else np.uint16)


def read_label(
    seg_path: str | Path, image: sitk.Image, image_path: str | Path
) -> tuple[sitk.Image, dict[int, Any]]:
    """The segmentation ``seg_path`` as an integer label image on exactly ``image``'s grid.

    Returns:
        ``(label, segments)``: the label map (geometry copied from ``image`` once checked), and the
        segments the file itself describes (label value -> :class:`app.io.SegmentInfo`; empty for a
        plain label map).

    Raises:
        InputError: naming ``seg_path`` (and ``image_path`` for a grid mismatch).
    """
    from app.io import read_dicom_seg, read_dicom_series

    seg_path, image_path = Path(seg_path), Path(image_path)
    if not seg_path.exists():
        raise InputError(seg_path, "not found")
    segments: dict[int, Any] = {}
    dicom_seg = _dicom_seg_file(seg_path)
    if dicom_seg is not None:
        try:
            masks, names = read_dicom_seg(dicom_seg, reference=image)
        except InputError as exc:
            raise InputError(dicom_seg, f"not on the grid of the image {image_path}: {exc.problem}") from exc
        array = np.zeros(
            sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8 if len(masks) < 256 else np.uint16
        )
        for i, (number, mask) in enumerate(sorted(masks.items())):
            voxels = sitk.GetArrayViewFromImage(mask) > 0
            if (array[voxels] > 0).any():
                logger.warning(
                    "%s: segment %r overlaps earlier segments; it is drawn on top", dicom_seg, names[number]
                )
            array[voxels] = number
            segments[number] = _segment_info(names[number], None, index=i)
    else:
        if seg_path.is_dir():
            label = read_dicom_series(seg_path)[0]
        elif seg_path.name.endswith(".nrrd") and (read := _read_seg_nrrd(seg_path)) is not None:
            label, segments = read
        else:
            label = read_image(seg_path)
        problems = _grid_problems(image, label)
        if problems and _same_voxels_reordered(image, label):
            logger.info(
                "%s: same voxels as the image in another axis order; reordered onto its grid", seg_path
            )
            label = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        elif problems:
            raise InputError(
                seg_path,
                f"segmentation is not on the grid of the image {image_path}: {'; '.join(problems)} "
                "(resample the segmentation onto the image first)",
            )
        array = _integer_labels(label, seg_path)
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out, segments


def _scene_segments(
    values: list[int],
    own: Mapping[int, Any],
    metadata: Mapping[str, Any] | None,
    metadata_source: str,
) -> dict[int, Any]:
    """Segment descriptions for the label ``values``: from the metadata, else the file's own, else generic.

    A segment the file names (DICOM SEG, ``.seg.nrrd``) takes the metadata's description of the same
    name; label values the metadata does not declare keep the file's or a generic description.
    """
    from app.io import segments_from_metadata

    declared = segments_from_metadata(metadata, source=metadata_source) if metadata is not None else {}
    by_name = {info.name.casefold(): info for info in declared.values()}
    segments = {}
    for i, value in enumerate(values):
        if value in own and own[value].name.casefold() in by_name:
            segments[value] = by_name[own[value].name.casefold()]
        elif value in own:
            segments[value] = own[value]
        elif value in declared:
            segments[value] = declared[value]
        else:
            if metadata is not None:
                logger.warning(
                    "label value %d is not declared in %s: named 'label %d'", value, metadata_source, value
                )
            segments[value] = _segment_info(f"label {value}", None, index=i)
    if not own:  # a plain label map: declared segments absent from it are still listed (empty)
        for value, info in declared.items():
            segments.setdefault(value, info)
    return dict(sorted(segments.items()))


# --------------------------------------------------------------------------------------------- writing
def _color_table_name(name: str) -> str:
    """A colour-table entry name: one token (Slicer splits the line on spaces)."""
    return "_".join(name.split()) or "segment"


def write_color_table(segments: Mapping[int, Any], path: str | Path) -> Path:
    """Write a 3D Slicer colour table (``value name R G B A`` per line, ``0 background`` first)."""
    from app.io import atomic_output

    lines = [
        "# Color table written by unet-monai-app (3D Slicer format: value name R G B A)",
        f"# {len(segments) + 1} values",
        "0 background 0 0 0 0",
    ]
    lines += [
        f"{value} {_color_table_name(info.name)} {' '.join(str(c) for c in info.rgb)} 255"
        for value, info in segments.items()
    ]
    path = Path(path)
    with atomic_output(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


LOADER_TEMPLATE = '''"""Open this scene in 3D Slicer (research use only, not for clinical use).

In Slicer's Python console:  exec(open(r"{script}").read())
or start Slicer with:        Slicer --python-script "{script}"
"""
import os

import slicer

HERE = {here!r}
try:  # prefer the folder this script is in (the scene may have been moved)
    _own = os.path.dirname(os.path.abspath(__file__))
    if os.path.isfile(os.path.join(_own, {image!r})):
        HERE = _own
except NameError:  # exec(open(...).read()) defines no __file__
    pass

volume = slicer.util.loadVolume(os.path.join(HERE, {image!r}))
colors = slicer.util.loadColorTable(os.path.join(HERE, {colors!r}))
segmentation = slicer.util.loadSegmentation(os.path.join(HERE, {segmentation!r}))
segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volume)
segmentation.CreateClosedSurfaceRepresentation()
display = segmentation.GetDisplayNode()
display.SetVisibility(True)
display.SetVisibility3D(True)
slicer.util.setSliceViewerLayers(background=volume, fit=True)
layout = slicer.app.layoutManager()
layout.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
view = layout.threeDWidget(0).threeDView()
view.resetFocalPoint()
view.resetCamera()
print("loaded", volume.GetName(), "and", segmentation.GetSegmentation().GetNumberOfSegments(), "segment(s)")
'''


def write_slicer_scene(
    image_path: str | Path,
    seg_path: str | Path,
    out_dir: str | Path,
    metadata: Mapping[str, Any] | None = None,
    metadata_source: str = "metadata.json",
) -> list[Path]:
    """Write ``image.nrrd``, ``segmentation.seg.nrrd``, ``colors.ctbl`` and ``load_in_slicer.py``.

    Args:
        image_path: NIfTI / NRRD / MHA image, or a DICOM series folder.
        seg_path: label map, ``.seg.nrrd``, DICOM SEG file (or folder holding one), or DICOM folder.
        out_dir: folder for the scene (created; files of the same names are replaced).
        metadata: bundle ``metadata.json`` content: its ``segments`` name and colour the label values.
        metadata_source: how to name the metadata in errors (e.g. its path).

    Returns:
        the four written files.

    Raises:
        InputError: unreadable inputs, a segmentation not on the image grid (naming both files), bad
            label values or metadata; nothing is written then.
    """
    from app.deploy.staging import publish, staging_folder
    from app.io import write_seg_nrrd

    image_path, seg_path, out_dir = Path(image_path), Path(seg_path), Path(out_dir)
    image = read_image(image_path)
    label, own = read_label(seg_path, image, image_path)
    counts = np.bincount(sitk.GetArrayViewFromImage(label).ravel())
    values = [int(v) for v in np.flatnonzero(counts) if v > 0] or sorted(own)
    segments = _scene_segments(sorted(set(values) | set(own)), own, metadata, metadata_source)
    if not segments:
        logger.warning("%s: the segmentation is empty", seg_path)
    with staging_folder(out_dir) as staging:
        sitk.WriteImage(image, str(staging / IMAGE_NAME), useCompression=True)
        write_seg_nrrd(label, segments, staging / SEGMENTATION_NAME)
        write_color_table(segments, staging / COLOR_TABLE_NAME)
        script = out_dir.resolve() / LOADER_NAME
        (staging / LOADER_NAME).write_text(
            LOADER_TEMPLATE.format(
                script=script,
                here=str(out_dir.resolve()),
                image=IMAGE_NAME,
                colors=COLOR_TABLE_NAME,
                segmentation=SEGMENTATION_NAME,
            ),
            encoding="utf-8",
        )
        written = publish(staging, out_dir)
    logger.info(
        "3D Slicer scene with %d segment(s) written to %s: open it with %s",
        len(segments),
        out_dir,
        script,
    )
    return written


# ------------------------------------------------------------------------------------------------- CLI
def _load_metadata(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(path, "metadata file not found") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(path, f"cannot read as JSON ({exc})") from exc


def _cmd_slicer_scene(args: argparse.Namespace) -> int:
    metadata = _load_metadata(args.metadata) if args.metadata else None
    written = write_slicer_scene(args.image, args.seg, args.out, metadata, metadata_source=str(args.metadata))
    for path in written:
        logger.info("  %s", path)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``slicer-scene`` on the ``python -m app`` sub-command parsers (sets ``func``)."""
    parser = subparsers.add_parser(
        "slicer-scene",
        help="write an image + segmentation scene (NRRD, .seg.nrrd, colour table, loader) for 3D Slicer",
        description="Write what 3D Slicer opens in one step: image.nrrd, segmentation.seg.nrrd with segment "
        "names and colours, colors.ctbl and load_in_slicer.py.",
    )
    parser.add_argument("image", help="image: NIfTI / NRRD / MHA file or DICOM series folder")
    parser.add_argument(
        "seg", help="segmentation on the image grid: label map, .seg.nrrd, DICOM SEG (file or folder)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--metadata", help="bundle metadata.json with segment names and colours")
    parser.set_defaults(func=_cmd_slicer_scene)
    return parser
