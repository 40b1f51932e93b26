"""Bad-input matrix: every kind of broken input through the entry points users have.

Each case builds a small MSD-layout (or ISBI) dataset with one bad file among good ones. Every entry point
must stop with one line per problem naming the file, a non-zero exit, and nothing half-written:
``python -m app data check`` (in-process, every case), the CT bundle's training, inference and
evaluation (subprocess, ``monai.bundle`` exactly as users run it, on a representative subset). The
DICOM cases (non-DICOM files, mixed series, missing slices) run through the deploy app in
tests/deploy/test_deploy_app.py and tests/io/test_dicom_series.py.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.paths import REPO_ROOT

SHAPE = (24, 24, 12)
AFFINE = np.diag([1.5, 1.5, 3.0, 1.0])


def _save(path: Path, array: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    nib.save(nib.Nifti1Image(array, affine), str(path))


def msd_dataset(root: Path, n: int = 3) -> Path:
    """``n`` good cases (float32 image, labels {0, 1}) in MSD layout with a dataset.json."""
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    rng = np.random.default_rng(0)
    training = []
    for i in range(n):
        label = np.zeros(SHAPE, np.uint8)
        label[8:16, 8:16, 4:8] = 1
        image = (rng.normal(0, 20, SHAPE) + 100 * label).astype(np.float32)
        _save(root / "imagesTr" / f"case_{i}.nii.gz", image)
        _save(root / "labelsTr" / f"case_{i}.nii.gz", label)
        training.append({"image": f"./imagesTr/case_{i}.nii.gz", "label": f"./labelsTr/case_{i}.nii.gz"})
    meta = {"name": "bad", "labels": {"0": "background", "1": "spleen"}, "training": training}
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def _image(root: Path) -> Path:
    return root / "imagesTr" / "case_1.nii.gz"


def _label(root: Path) -> Path:
    return root / "labelsTr" / "case_1.nii.gz"


def _with_header(
    path: Path, edit: Callable[[nib.Nifti1Header], None], data: np.ndarray | None = None
) -> None:
    img = nib.load(str(path))
    array = np.asarray(img.dataobj) if data is None else data
    out = nib.Nifti1Image(array, img.affine)
    edit(out.header)
    out.update_header = lambda: None  # keep the edited fields as written
    nib.save(out, str(path))


def truncated(root: Path) -> Path:
    data = _image(root).read_bytes()
    _image(root).write_bytes(data[: len(data) // 3])
    return _image(root)


def random_bytes(root: Path) -> Path:
    _image(root).write_bytes(np.random.default_rng(1).bytes(5000))
    return _image(root)


def _raw_header(path: Path, header_class: type = nib.Nifti1Header, **fields) -> None:
    """Rewrite header fields of a .nii.gz directly (nibabel would normalise them on save)."""
    raw = bytearray(gzip.decompress(path.read_bytes()))
    size = header_class.sizeof_hdr
    header = header_class.from_fileobj(io.BytesIO(bytes(raw[:size])))
    for key, value in fields.items():
        header[key] = value
    raw[:size] = header.binaryblock
    path.write_bytes(gzip.compress(bytes(raw)))


def zero_spacing(root: Path) -> Path:
    _raw_header(_image(root), pixdim=[1.0, 1.5, 0.0, 3.0, 1, 1, 1, 1])
    return _image(root)


def negative_spacing(root: Path) -> Path:
    _raw_header(_image(root), pixdim=[1.0, 1.5, 1.5, -3.0, 1, 1, 1, 1])
    return _image(root)


def absurd_dimensions(root: Path) -> Path:
    """A NIfTI-2 header (64-bit sizes; NIfTI-1 stops at 32767) claiming 100000^3 voxels, 1 kB of data."""
    nib.save(nib.Nifti2Image(np.ones(SHAPE, np.float32), AFFINE), str(_image(root)))
    _raw_header(_image(root), nib.Nifti2Header, dim=[3, 100000, 100000, 100000, 1, 1, 1, 1])
    return _image(root)


def nan_voxels(root: Path) -> Path:
    data = np.asarray(nib.load(str(_image(root))).dataobj).copy()
    data[3, 3, 3] = np.nan
    _save(_image(root), data)
    return _image(root)


def inf_voxels(root: Path) -> Path:
    data = np.asarray(nib.load(str(_image(root))).dataobj).copy()
    data[3, 3, 3] = np.inf
    _save(_image(root), data)
    return _image(root)


def image_2d(root: Path) -> Path:
    _save(_image(root), np.ones(SHAPE[:2], np.float32))
    return _image(root)


def image_4d(root: Path) -> Path:
    _save(_image(root), np.ones((*SHAPE, 2), np.float32))
    return _image(root)


def empty_label(root: Path) -> Path:
    _save(_label(root), np.zeros(SHAPE, np.uint8))
    return _label(root)


def undeclared_label_value(root: Path) -> Path:
    label = np.asarray(nib.load(str(_label(root))).dataobj).copy()
    label[0, 0, 0] = 7
    _save(_label(root), label)
    return _label(root)


def grid_shape_mismatch(root: Path) -> Path:
    label = np.zeros((20, 24, 12), np.uint8)
    label[8:16, 8:16, 4:8] = 1
    _save(_label(root), label)
    return _label(root)


def grid_origin_mismatch(root: Path) -> Path:
    label = np.asarray(nib.load(str(_label(root))).dataobj)
    moved = AFFINE.copy()
    moved[:3, 3] = [30.0, 0.0, 0.0]
    _save(_label(root), label, moved)
    return _label(root)


def missing_file(root: Path) -> Path:
    _image(root).unlink()
    return _image(root)


# case -> (make the dataset bad and return the file that is bad, words the error must contain)
CASES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "truncated .nii.gz": (truncated, ""),
    "random bytes .nii.gz": (random_bytes, ""),
    "zero spacing": (zero_spacing, "spacing"),
    "negative spacing": (negative_spacing, "spacing"),
    "100000^3 header": (absurd_dimensions, "voxels"),
    "NaN voxels": (nan_voxels, "NaN"),
    "Inf voxels": (inf_voxels, "Inf"),
    "2D given to 3D": (image_2d, "3D"),
    "4D given to 3D": (image_4d, "3D"),
    "empty label": (empty_label, "empty"),
    "undeclared label value": (undeclared_label_value, "7"),
    "grid shape mismatch": (grid_shape_mismatch, "shape"),
    "grid origin mismatch": (grid_origin_mismatch, "origin"),
    "missing file": (missing_file, "missing"),
}

ODD_NAME = "dossier à espaces/données ü"  # spaces and non-ASCII characters in every path


@pytest.mark.parametrize("case", list(CASES))
def test_data_check_names_the_file_and_the_problem(case, tmp_path, caplog):
    root = msd_dataset(tmp_path / ODD_NAME)
    make, words = CASES[case]
    bad = make(root)
    with caplog.at_level(logging.INFO):
        assert main(["data", "check", str(root)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors, caplog.text
    assert any(str(bad) in e and words in e for e in errors), errors
    assert not any("Traceback" in e for e in errors)


def test_unreadable_png_in_an_isbi_folder(tmp_path, caplog):
    root = tmp_path / ODD_NAME
    for sub in ("image", "label"):
        (root / "train" / sub).mkdir(parents=True)
        for i in range(2):
            array = np.zeros((32, 32), np.uint8)
            array[8:24, 8:24] = 255
            Image.fromarray(array).save(root / "train" / sub / f"slice_{i}.png")
    bad = root / "train" / "image" / "slice_1.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with caplog.at_level(logging.INFO):
        assert main(["data", "check", str(root)]) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(str(bad) in e for e in errors), errors


def test_a_good_dataset_under_an_odd_path_passes(tmp_path):
    assert main(["data", "check", str(msd_dataset(tmp_path / ODD_NAME))]) == 0


def run_ct(run_id: str, config_files: list[str], **overrides) -> subprocess.CompletedProcess:
    files = "[" + ",".join(f"'{c}'" for c in config_files) + "]"
    cmd = [sys.executable, "-m", "monai.bundle", "run", run_id, "--config_file", files]
    for key, value in {"patch_size": "[16,16,16]", "epochs": 1, "num_samples": 1, **overrides}.items():
        cmd += [f"--{key}", str(value)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("ERROR ")]


TRAINING_CASES = ["100000^3 header", "NaN voxels", "4D given to 3D", "grid origin mismatch"]


@pytest.mark.parametrize("case", TRAINING_CASES)
def test_training_stops_before_it_starts(case, tmp_path):
    root = msd_dataset(tmp_path / ODD_NAME)
    bad = CASES[case][0](root)
    run_dir = tmp_path / "run"
    proc = run_ct("training", ["bundles/ct/train.json"], dataset_dir=root, run_dir=run_dir)
    assert proc.returncode == 1
    assert any(str(bad) in line for line in error_lines(proc)), proc.stderr[-2000:]
    assert not list(run_dir.glob("*.pt"))  # nothing trained, nothing saved


@pytest.mark.parametrize("case", ["random bytes .nii.gz", "4D given to 3D"])
def test_inference_writes_nothing_for_a_bad_input(case, tmp_path):
    root = msd_dataset(tmp_path / ODD_NAME)
    bad = CASES[case][0](root)
    out = tmp_path / "predictions"
    proc = run_ct(
        "inference",
        ["bundles/ct/train.json", "bundles/ct/inference.json"],
        input_dir=root / "imagesTr",
        output_dir=out,
        run_dir=tmp_path / "run",
        model_path=tmp_path / "no_model.pt",  # never read: the inputs are checked first
    )
    assert proc.returncode == 1
    assert any(str(bad) in line for line in error_lines(proc)), proc.stderr[-2000:]
    assert not out.exists() or not any(out.rglob("*"))
