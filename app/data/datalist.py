"""Datalists (MSD ``dataset.json`` style) from dataset folders, with seeded, saved splits.

A datalist entry is ``{"image": path | [paths], "label": path}`` with absolute paths; several
image paths are co-registered channels. A split datalist is ``{"training": [...], "validation": [...]}``
plus the ``split`` it was made with, so a run can be reproduced from its saved copy.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Sequence
from pathlib import Path

from app.errors import InputError

__all__ = [
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "detect_layout",
    "datalist_from_msd",
    "datalist_from_isbi",
    "datalist_from_lists",
    "datalist_from_folder",
    "datalist_for_inference",
    "split_datalist",
    "kfold_datalist",
    "write_datalist",
    "load_datalist",
]

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd", ".png", ".tif", ".tiff")
LAYOUTS = ("msd", "isbi")
_CHANNEL_RE = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _image_files(folder: Path) -> list[Path]:
    """Image files (or DICOM series sub-folders) of ``folder``, sorted, hidden/macOS junk skipped."""
    files = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if p.is_dir() or p.name.lower().endswith(IMAGE_SUFFIXES):
            files.append(p)
    return files


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", _stem(path)))


def detect_layout(folder: str | Path) -> str:
    """Return ``"msd"`` (``imagesTr``/``labelsTr``) or ``"isbi"`` (``train/image``, ``train/label``).

    Raises:
        InputError: the folder is missing or has neither layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "dataset folder does not exist")
    if (folder / "imagesTr").is_dir():
        return "msd"
    if (folder / "train" / "image").is_dir() or (folder / "image").is_dir():
        return "isbi"
    raise InputError(
        folder,
        "unknown dataset layout: expected MSD (imagesTr/ + labelsTr/ [+ dataset.json]) "
        "or ISBI (train/image/ + train/label/)",
    )


def datalist_from_msd(folder: str | Path) -> list[dict]:
    """Entries of an MSD task folder, from ``dataset.json`` when present, else by file names.

    Without ``dataset.json``, images ``case_0000``, ``case_0001``... (nnU-Net naming) are grouped
    as channels of ``case``; labels are matched by case name.

    Raises:
        InputError: a listed file is missing, a label has no image or an image no label.
    """
    folder = Path(folder).resolve()
    meta = folder / "dataset.json"
    if meta.is_file():
        try:
            training = json.loads(meta.read_text())["training"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise InputError(meta, f"not a valid MSD dataset.json ({e})") from e
        entries = []
        for item in training:
            image = item["image"]
            images = [image] if isinstance(image, str) else list(image)
            paths = [str((folder / p).resolve()) for p in images]
            entry = {"image": paths[0] if len(paths) == 1 else paths}
            if "label" in item:
                entry["label"] = str((folder / item["label"]).resolve())
            entries.append(entry)
        for entry in entries:
            for p in _as_list(entry["image"]) + ([entry["label"]] if "label" in entry else []):
                if not os.path.exists(p):
                    raise InputError(p, f"listed in {meta} but missing")
        return entries
    images_dir, labels_dir = folder / "imagesTr", folder / "labelsTr"
    if not labels_dir.is_dir():
        raise InputError(folder, "MSD folder has imagesTr/ but no labelsTr/ and no dataset.json")
    cases: dict[str, list[Path]] = {}
    for p in _image_files(images_dir):
        m = _CHANNEL_RE.match(_stem(p))
        cases.setdefault(m["case"] if m else _stem(p), []).append(p)
    labels = {_stem(p): p for p in _image_files(labels_dir)}
    missing_labels = sorted(set(cases) - set(labels))
    if missing_labels:
        raise InputError(images_dir / missing_labels[0], f"no label in {labels_dir} for this image")
    orphans = sorted(set(labels) - set(cases))
    if orphans:
        raise InputError(labels[orphans[0]], f"label has no image in {images_dir}")
    entries = []
    for case in sorted(cases, key=lambda c: _natural_key(Path(c))):
        paths = [str(p) for p in sorted(cases[case])]
        entries.append({"image": paths[0] if len(paths) == 1 else paths, "label": str(labels[case])})
    return entries


def datalist_from_isbi(folder: str | Path) -> list[dict]:
    """Entries of an EM folder in the ISBI layout: ``train/image/N.png`` with ``train/label/N.png``.

    PNG or TIFF files are matched by name; a folder with ``image/`` and ``label/`` directly works too.

    Raises:
        InputError: an image without label or a label without image.
    """
    folder = Path(folder).resolve()
    root = folder / "train" if (folder / "train" / "image").is_dir() else folder
    images = {_stem(p): p for p in _image_files(root / "image") if p.is_file()}
    labels_dir = root / "label"
    if not labels_dir.is_dir():
        raise InputError(root, "EM folder has image/ but no label/ folder")
    labels = {_stem(p): p for p in _image_files(labels_dir) if p.is_file()}
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        raise InputError(images[unlabelled[0]], f"no label with the same name in {labels_dir}")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise InputError(labels[orphans[0]], f"label has no image in {root / 'image'}")
    return [
        {"image": str(images[n]), "label": str(labels[n])}
        for n in sorted(images, key=lambda n: _natural_key(Path(n)))
    ]


def datalist_from_lists(
    images: Sequence[str | Path], labels: Sequence[str | Path] | None = None
) -> list[dict]:
    """Entries from explicit image (and label) lists of equal length."""
    if labels is not None and len(labels) != len(images):
        raise ValueError(f"{len(images)} images but {len(labels)} labels: the lists must pair up")
    entries = [{"image": str(Path(i).resolve())} for i in images]
    for entry, label in zip(entries, labels or [], strict=False):
        entry["label"] = str(Path(label).resolve())
    return entries


def datalist_from_folder(folder: str | Path) -> list[dict]:
    """Entries of a dataset folder of either layout (see :func:`detect_layout`)."""
    layout = detect_layout(folder)
    entries = datalist_from_msd(folder) if layout == "msd" else datalist_from_isbi(folder)
    if not entries:
        raise InputError(folder, f"no image/label pairs found ({layout} layout)")
    return entries


def datalist_for_inference(path: str | Path) -> list[dict]:
    """Inputs to predict: one image file, a folder of image files, or DICOM series folders.

    A folder that holds image files gives one entry per file; a folder holding ``*.dcm`` files (or
    sub-folders that do) gives one entry per series folder, which the ITK reader loads as a volume.

    Raises:
        InputError: the path does not exist or holds nothing readable.
    """
    path = Path(path).resolve()
    if path.is_file():
        return [{"image": str(path)}]
    if not path.is_dir():
        raise InputError(path, "input path does not exist")
    if _is_dicom_folder(path):
        return [{"image": str(path)}]
    entries = [{"image": str(p)} for p in _image_files(path) if p.is_file() or _is_dicom_folder(p)]
    if not entries:
        raise InputError(
            path, f"no images found (looked for {', '.join(IMAGE_SUFFIXES)} files or DICOM folders)"
        )
    return entries


def _is_dicom_folder(path: Path) -> bool:
    if not path.is_dir():
        return False
    for p in path.iterdir():
        if p.is_file():
            if p.suffix.lower() == ".dcm":
                return True
            with open(p, "rb") as f:
                if f.read(132)[128:] == b"DICM":
                    return True
    return False


def _as_list(x: str | list[str]) -> list[str]:
    return [x] if isinstance(x, str) else list(x)


def split_datalist(entries: Sequence[dict], val_fraction: float = 0.2, seed: int = 0) -> dict:
    """Seeded random train/validation split; at least one case on each side when there are two or more.

    Returns:
        ``{"training": [...], "validation": [...], "split": {"seed", "val_fraction"}}``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    n_val = round(len(entries) * val_fraction)
    if val_fraction > 0 and len(entries) >= 2:
        n_val = min(max(n_val, 1), len(entries) - 1)
    val_idx = set(order[:n_val])
    return {
        "training": [dict(e) for i, e in enumerate(entries) if i not in val_idx],
        "validation": [dict(e) for i, e in enumerate(entries) if i in val_idx],
        "split": {"seed": seed, "val_fraction": val_fraction},
    }


def kfold_datalist(entries: Sequence[dict], n_folds: int = 5, fold: int = 0, seed: int = 0) -> dict:
    """Fold ``fold`` of a seeded k-fold split: that fold validates, the others train.

    Every case is in exactly one validation fold across ``fold = 0 .. n_folds - 1``.
    """
    if n_folds < 2 or not 0 <= fold < n_folds:
        raise ValueError(f"need n_folds >= 2 and 0 <= fold < n_folds, got n_folds={n_folds}, fold={fold}")
    if len(entries) < n_folds:
        raise ValueError(f"{len(entries)} cases cannot make {n_folds} folds")
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    val_idx = set(order[fold::n_folds])
    return {
        "training": [dict(e) for i, e in enumerate(entries) if i not in val_idx],
        "validation": [dict(e) for i, e in enumerate(entries) if i in val_idx],
        "split": {"seed": seed, "n_folds": n_folds, "fold": fold},
    }


def write_datalist(datalist: dict, path: str | Path) -> Path:
    """Write a datalist JSON atomically (temp file + rename); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(datalist, indent=2))
    os.replace(tmp, path)
    logger.info("datalist written to %s", path)
    return path


def load_datalist(path: str | Path) -> dict:
    """Read a datalist JSON written by :func:`write_datalist` (or an MSD-style one)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise InputError(path, "datalist file does not exist") from e
    except json.JSONDecodeError as e:
        raise InputError(path, f"datalist is not valid JSON ({e})") from e
    if "training" not in data:
        raise InputError(path, "datalist has no 'training' list")
    return data
