"""The deploy pipeline as plain functions: DICOM series in, DICOM SEG / .seg.nrrd / NIfTI / STL out.

The MONAI Deploy operators in :mod:`app.deploy.operators` are thin wrappers around these functions, and
:func:`run_pipeline` chains them without Holoscan (``python -m app.deploy --engine plain``), so both
paths compute exactly the same thing.

Steps:

1. :func:`load_bundle`: the exported TorchScript bundle (``monai.bundle ckpt_export`` or
   ``torch.jit.save(..., _extra_files={"metadata.json": ...})``) and its embedded ``metadata.json``:
   ``preprocessing`` (``pixdim``, ``intensity_window``, ``axcodes``), ``segments`` (names, colours,
   SNOMED codes), ``network_data_format`` (input modality, patch size, number of output channels),
   ``name`` and ``version``. The embedded ``inference.json`` is not used (ours is a delta over
   ``train.json`` and cannot be parsed alone), so the preprocessing is rebuilt here from the metadata,
   the one source of truth it shares with ``train.json``.
2. :func:`load_series`: :func:`app.io.read_dicom_series` with the model's modality and the series
   rules (handles anonymised series with empty Study/Series/SOP UIDs, JPEG 2000, missing slices).
3. :func:`segment`: MONAI ``Orientationd`` -> ``Spacingd`` (bilinear) -> ``ScaleIntensityRanged``
   (clip to ``[0, 1]``), Gaussian sliding-window inference (overlap 0.5), softmax, ``Invertd`` back to
   the source grid (bilinear on probabilities), argmax. The label image gets the source image's
   geometry exactly (size checked, origin/spacing/direction copied).
4. :func:`write_outputs`: every file is first written to a staging folder beside the output folder,
   then moved in: a failure leaves nothing in the output folder.

Nothing here logs patient data: series are named by description, modality and size only.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import SimpleITK as sitk
import torch

from app.deploy.staging import publish, staging_folder
from app.errors import InputError
from app.io import (
    SegmentInfo,
    SeriesRules,
    read_dicom_series,
    safe_filename,
    segments_from_metadata,
    write_dicom_seg,
    write_label_nifti,
    write_seg_nrrd,
    write_stl,
)
from app.io.slicer import ijk_to_lps

__all__ = [
    "CPU_MAX_ROI",
    "MODEL_SUFFIXES",
    "BundleModel",
    "DeployOptions",
    "default_device",
    "resolve_model_path",
    "load_bundle",
    "load_series",
    "segment",
    "output_names",
    "write_outputs",
    "run_pipeline",
]

logger = logging.getLogger(__name__)

CPU_MAX_ROI = 64  # sliding-window patch edge on CPU (the bundle's 96^3 patches are slow there)
MODEL_SUFFIXES = (".ts", ".pt", ".zip")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


@dataclass(frozen=True)
class BundleModel:
    """An exported TorchScript bundle and what its ``metadata.json`` says about it.

    Attributes:
        path: the model file.
        network: the TorchScript module, in eval mode on ``device``.
        device: where the network runs.
        name: bundle name (algorithm name in the DICOM SEG; at most 64 characters).
        version: bundle version.
        modality: the input modality the model expects (``network_data_format.inputs.image.modality``).
        pixdim: spacing the network works at (mm).
        intensity_window: ``(a_min, a_max)`` mapped to ``[0, 1]`` and clipped.
        axcodes: orientation the network works in, e.g. ``"RAS"``.
        roi_size: sliding-window patch size.
        num_classes: output channels (0 = background).
        segments: label value -> :class:`app.io.SegmentInfo`.
    """

    path: Path
    network: torch.nn.Module
    device: torch.device
    name: str
    version: str
    modality: str
    pixdim: tuple[float, float, float]
    intensity_window: tuple[float, float]
    axcodes: str
    roi_size: tuple[int, int, int]
    num_classes: int
    segments: dict[int, SegmentInfo] = field(repr=False)


@dataclass(frozen=True)
class DeployOptions:
    """What one run of the application does.

    Attributes:
        input_dir: folder of DICOM files.
        output_dir: folder to write the outputs to (created when the outputs are ready).
        model_path: TorchScript bundle file, or a folder holding exactly one.
        rules: how to choose the series when the folder holds several.
        stl: also write one STL surface per segment (in ``<output_dir>/stl``).
        roi_size: sliding-window patch size; default from the metadata (at most 64 per axis on CPU).
        sw_batch_size: windows per network call.
        device: ``"cpu"``, ``"cuda"``, ...; default CUDA when available.
    """

    input_dir: Path
    output_dir: Path
    model_path: Path
    rules: SeriesRules = SeriesRules()
    stl: bool = False
    roi_size: tuple[int, int, int] | None = None
    sw_batch_size: int = 4
    device: str | None = None


def default_device(device: str | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_model_path(path: str | Path) -> Path:
    """The model file: ``path`` itself, or the one ``*.ts``/``*.pt``/``*.zip`` file under a folder.

    A MAP mounts its models as a folder (``HOLOSCAN_MODEL_PATH``, e.g. ``/opt/holoscan/models``, with
    one sub-folder per model), so a folder holding exactly one model file is accepted.
    """
    path = Path(path)
    if path.is_file():
        return path
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MODEL_SUFFIXES)
        if len(found) == 1:
            return found[0]
        if not found:
            raise InputError(path, f"no model file ({', '.join(MODEL_SUFFIXES)}) found in this folder")
        names = ", ".join(str(p.relative_to(path)) for p in found[:5])
        raise InputError(path, f"{len(found)} model files found ({names}): give the model file itself")
    raise InputError(path, "model file not found")


def _require(meta: Mapping[str, Any], keys: Sequence[str], path: Path) -> Any:
    value: Any = meta
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            raise InputError(path, f"embedded metadata.json has no {'#'.join(keys)}")
        value = value[key]
    return value


def _numbers(value: Any, n: int, what: str, path: Path) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        numbers = ()
    if len(numbers) != n:
        raise InputError(path, f"embedded metadata.json: {what} must be {n} numbers, got {value!r}")
    return numbers


def load_bundle(
    model_path: str | Path,
    device: str | torch.device | None = None,
    roi_size: Sequence[int] | None = None,
) -> BundleModel:
    """Load an exported TorchScript bundle and read its embedded ``metadata.json``.

    Args:
        model_path: the ``.ts`` file (or a folder holding exactly one model file).
        device: where to run; default CUDA when available, else CPU.
        roi_size: sliding-window patch size; default the metadata's input ``spatial_shape``, capped at
            :data:`CPU_MAX_ROI` per axis on CPU.

    Raises:
        InputError: naming the model file, when it is not a TorchScript file, has no embedded
            ``metadata.json``, or the metadata lacks preprocessing, segments or a valid output format.
    """
    path = resolve_model_path(model_path)
    device = device if isinstance(device, torch.device) else default_device(device)
    try:
        network = torch.jit.load(
            str(path), map_location=device, _extra_files=(extra := {"metadata.json": ""})
        )
    except Exception as exc:  # not a zip, not TorchScript, truncated: all "cannot load"
        raise InputError(path, f"cannot load as a TorchScript model ({type(exc).__name__}: {exc})") from exc
    text = extra.get("metadata.json", "")
    if not text:
        raise InputError(
            path,
            "no embedded metadata.json: export with `python -m monai.bundle ckpt_export ... --meta_file "
            "bundles/ct/metadata.json`",
        )
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(path, f"embedded metadata.json is not valid JSON ({exc})") from exc
    network.eval()

    pre = _require(meta, ["preprocessing"], path)
    pixdim = _numbers(_require(meta, ["preprocessing", "pixdim"], path), 3, "preprocessing#pixdim", path)
    window = _numbers(
        _require(meta, ["preprocessing", "intensity_window"], path), 2, "preprocessing#intensity_window", path
    )
    if not window[0] < window[1] or min(pixdim) <= 0:
        raise InputError(path, f"embedded metadata.json: bad pixdim {pixdim} or intensity window {window}")
    axcodes = str(pre.get("axcodes", "RAS"))
    image_format = _require(meta, ["network_data_format", "inputs", "image"], path)
    modality = str(image_format.get("modality", "CT")).upper()
    num_classes = int(_require(meta, ["network_data_format", "outputs", "pred", "num_channels"], path))
    _require(meta, ["segments"], path)
    segments = segments_from_metadata(meta, source=f"{path} (embedded metadata.json)")
    undeclared = sorted(set(range(1, num_classes)) - set(segments))
    if num_classes < 2 or undeclared:
        raise InputError(
            path, f"embedded metadata.json: {num_classes} output channels but no segments for {undeclared}"
        )
    if roi_size is None:
        shape = _numbers(image_format.get("spatial_shape", [96, 96, 96]), 3, "spatial_shape", path)
        roi_size = [int(s) if device.type == "cuda" else min(int(s), CPU_MAX_ROI) for s in shape]
    model = BundleModel(
        path=path,
        network=network,
        device=device,
        name=str(meta.get("name") or path.stem)[:64],
        version=str(meta.get("version") or "0")[:64],
        modality=modality,
        pixdim=pixdim,  # type: ignore[arg-type]
        intensity_window=window,  # type: ignore[arg-type]
        axcodes=axcodes,
        roi_size=tuple(int(s) for s in roi_size),  # type: ignore[arg-type]
        num_classes=num_classes,
        segments=segments,
    )
    logger.info(
        "model %s v%s (%s): %s input, pixdim %s, window %s, %s, %d classes, patch %s on %s",
        model.name,
        model.version,
        path.name,
        model.modality,
        model.pixdim,
        model.intensity_window,
        model.axcodes,
        model.num_classes,
        model.roi_size,
        device,
    )
    return model


def load_series(
    input_dir: str | Path, modality: str, rules: SeriesRules | None = None
) -> tuple[sitk.Image, list[pydicom.Dataset]]:
    """The one series of ``input_dir`` the rules select, of ``modality`` (see :func:`read_dicom_series`)."""
    return read_dicom_series(input_dir, modality=modality, series_rules=rules)


def _to_metatensor(image: sitk.Image):
    """``image`` as a channel-first MONAI ``MetaTensor`` ``(1, x, y, z)`` with its RAS affine."""
    from monai.data import MetaTensor

    array = sitk.GetArrayViewFromImage(image).transpose(2, 1, 0)[None].astype(np.float32)
    affine = torch.as_tensor(LPS_TO_RAS @ ijk_to_lps(image), dtype=torch.float64)
    meta = {
        "affine": affine,
        "original_affine": affine.clone(),
        "spatial_shape": np.array(image.GetSize()),
        "space": "RAS",
        "original_channel_dim": "no_channel",
    }
    return MetaTensor(torch.from_numpy(np.ascontiguousarray(array)), meta=meta)


def _preprocessing(model: BundleModel):
    from monai.transforms import Compose, EnsureTyped, Orientationd, ScaleIntensityRanged, Spacingd

    a_min, a_max = model.intensity_window
    return Compose(
        [
            Orientationd(keys="image", axcodes=model.axcodes, labels=None),  # labels from meta "space"
            Spacingd(keys="image", pixdim=model.pixdim, mode="bilinear"),
            ScaleIntensityRanged(keys="image", a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True),
            EnsureTyped(keys="image", dtype=torch.float32),
        ]
    )


def segment(image: sitk.Image, model: BundleModel, sw_batch_size: int = 4) -> sitk.Image:
    """Label map of ``image`` (modality units, e.g. HU) on exactly ``image``'s grid.

    Returns:
        uint8 (uint16 for more than 255 classes) label image with ``image``'s size, origin, spacing
        and direction; values ``0 .. num_classes - 1``.
    """
    from monai.data import MetaTensor
    from monai.transforms import Invertd

    from app.inferers import FallbackSlidingWindowInferer

    start = time.perf_counter()
    preprocessing = _preprocessing(model)
    data = preprocessing({"image": _to_metatensor(image)})
    inferer = (
        FallbackSlidingWindowInferer(  # a GPU out of memory halves the window batch, then stitches on CPU
            roi_size=model.roi_size, sw_batch_size=sw_batch_size, overlap=0.5, mode="gaussian", progress=False
        )
    )
    batch = data["image"].as_tensor()[None].to(model.device)
    logger.info("preprocessed to %s in %.1f s", tuple(batch.shape[2:]), time.perf_counter() - start)
    start = time.perf_counter()
    with torch.no_grad():
        logits = inferer(batch, model.network)
    if logits.shape[1] != model.num_classes:
        raise InputError(
            model.path, f"network gives {logits.shape[1]} channels, its metadata says {model.num_classes}"
        )
    probabilities = torch.softmax(logits[0].float(), dim=0).cpu()
    logger.info("sliding-window inference in %.1f s", time.perf_counter() - start)
    start = time.perf_counter()
    data["pred"] = MetaTensor(probabilities)  # Invertd gives it the image's transform trace and meta
    data = Invertd(keys="pred", transform=preprocessing, orig_keys="image", nearest_interp=False)(data)
    labels = torch.argmax(torch.as_tensor(data["pred"]), dim=0).numpy()
    if labels.shape != image.GetSize():
        raise RuntimeError(f"inverted prediction has shape {labels.shape}, source image {image.GetSize()}")
    dtype = np.uint8 if model.num_classes <= 256 else np.uint16
    label = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose(2, 1, 0)).astype(dtype))
    label.CopyInformation(image)
    logger.info("inverted to the source grid %s in %.1f s", image.GetSize(), time.perf_counter() - start)
    return label


def output_names(datasets: Sequence[pydicom.Dataset]) -> str:
    """Base name of the outputs: the safe SeriesDescription, or ``segmentation``."""
    description = str(datasets[0].get("SeriesDescription", "") or "") if datasets else ""
    return safe_filename(description, default="segmentation")


def write_outputs(
    label: sitk.Image,
    datasets: Sequence[pydicom.Dataset],
    model: BundleModel,
    output_dir: str | Path,
    stl: bool = False,
) -> list[Path]:
    """Write the DICOM SEG, ``.seg.nrrd``, NIfTI label map (and STL surfaces) of ``label``.

    Names: ``<base>_seg.dcm``, ``<base>.seg.nrrd``, ``<base>_seg.nii.gz`` and
    ``stl/<value>_<segment>.stl``, where ``<base>`` is :func:`output_names`. All files are written to a
    staging folder first and moved into ``output_dir`` only when every one is complete.

    Returns:
        the written files, in ``output_dir``.
    """
    output_dir = Path(output_dir)
    base = output_names(datasets)
    start = time.perf_counter()
    with staging_folder(output_dir) as staging:
        write_dicom_seg(
            label, datasets, model.segments, staging / f"{base}_seg.dcm", model.name, model.version
        )
        write_seg_nrrd(label, model.segments, staging / f"{base}.seg.nrrd")
        write_label_nifti(label, staging / f"{base}_seg.nii.gz")
        if stl:
            write_stl(label, model.segments, staging / "stl")
        written = publish(staging, output_dir)
    logger.info(
        "wrote %d file(s) to %s in %.1f s: %s",
        len(written),
        output_dir,
        time.perf_counter() - start,
        ", ".join(str(p.relative_to(output_dir)) for p in written),
    )
    return written


def run_pipeline(options: DeployOptions, model: BundleModel | None = None) -> list[Path]:
    """Load the model and the series, segment, write the outputs (no Holoscan); returns the files."""
    start = time.perf_counter()
    if model is None:
        model = load_bundle(options.model_path, options.device, options.roi_size)
    image, datasets = load_series(options.input_dir, model.modality, options.rules)
    label = segment(image, model, options.sw_batch_size)
    written = write_outputs(label, datasets, model, options.output_dir, stl=options.stl)
    logger.info("done in %.1f s", time.perf_counter() - start)
    return written
