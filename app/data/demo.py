"""Generated demo datasets in the layout of the real ones, so every bundle runs offline out of the box.

- EM (ISBI 2012 layout): 512x512 8-bit serial-section TEM-like slices of cell membranes: a Voronoi
  tessellation with membranes of varying thickness, textured cells, dark organelles, blur, noise and
  vignetting; labels 255 = cell interior, 0 = membrane.
- CT (MSD layout): int16 HU volumes with body, subcutaneous fat, muscle, spine and ribs, liver and a
  spleen-like organ (label 1), anisotropic spacing and a non-identity (LPS-from-DICOM-like) affine.
- MRI (MSD layout): small float volumes with two adjacent labelled structures (1 anterior,
  2 posterior) like the MSD hippocampus crops, with bias field, noise and a random intensity scale
  per case; optionally several co-registered channels (nnU-Net ``_0000`` naming).

Every generator is seeded and vectorised (each set in seconds on one core).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial import cKDTree

from app.paths import demo_root

__all__ = ["TASKS", "make_em_demo", "make_ct_demo", "make_mri_demo", "make_demo", "demo_dir", "ensure_demo"]

logger = logging.getLogger(__name__)

TASKS = ("em", "ct", "mri")
COMPLETE_MARKER = ".complete"


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Zero-mean, unit-std smooth random field."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field - field.mean()) / (field.std() + 1e-8)


# ---------------------------------------------------------------- EM
def _em_slice(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    n_cells = max(4, int(rng.integers(110, 170) * (size / 512) ** 2))
    seeds = rng.uniform(-20, size + 20, (n_cells, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    pixels = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float32)
    dist, idx = cKDTree(seeds).query(pixels, k=2)
    gap = (dist[:, 1] - dist[:, 0]).reshape(size, size)
    cell = idx[:, 0].reshape(size, size)
    # Membrane half-thickness varies smoothly along the membranes (1-3.5 px).
    half_width = 2.9 + 1.0 * _smooth_noise(rng, (size, size), 20)
    membrane = gap < np.clip(half_width, 1.2, 4.5)
    brightness = rng.uniform(150, 205, n_cells)[cell]
    texture = 10 * _smooth_noise(rng, (size, size), 2) + 6 * _smooth_noise(rng, (size, size), 8)
    image = brightness + texture
    # Dark organelles (mitochondria, vesicles) inside cells: dark, but cell interior in the label.
    organelles = np.zeros((size, size), bool)
    for _ in range(int(rng.integers(25, 45))):
        cy, cx = rng.uniform(0, size, 2)
        ry, rx = rng.uniform(3, 9, 2)
        theta = rng.uniform(0, np.pi)
        dy, dx = yy - cy, xx - cx
        u = (dy * np.cos(theta) + dx * np.sin(theta)) / ry
        v = (-dy * np.sin(theta) + dx * np.cos(theta)) / rx
        organelles |= u**2 + v**2 < 1
    organelles &= ~ndimage.binary_dilation(membrane, iterations=2)
    image[organelles] = rng.uniform(70, 110)
    image[membrane] = rng.uniform(35, 70) + 8 * _smooth_noise(rng, (size, size), 3)[membrane]
    image = ndimage.gaussian_filter(image, 1.0)
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (size / 2) ** 2
    image *= 1.0 - 0.12 * r2
    image += rng.normal(0, 9, (size, size))
    label = np.where(membrane, 0, 255).astype(np.uint8)
    return np.clip(image, 0, 255).astype(np.uint8), label


def make_em_demo(
    out_dir: str | Path, n_train: int = 12, n_test: int = 4, size: int = 512, seed: int = 0
) -> Path:
    """Write an ISBI-layout EM set: ``train/image/N.png``, ``train/label/N.png``, ``test/N.png``."""
    out = Path(out_dir)
    for sub in ("train/image", "train/label", "test"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        image, label = _em_slice(rng, size)
        Image.fromarray(image).save(out / "train" / "image" / f"{i}.png")
        Image.fromarray(label).save(out / "train" / "label" / f"{i}.png")
    for i in range(n_test):
        Image.fromarray(_em_slice(rng, size)[0]).save(out / "test" / f"{i}.png")
    return out


# ---------------------------------------------------------------- CT
def _ct_case(rng: np.random.Generator, shape: tuple[int, int, int]) -> tuple[np.ndarray, ...]:
    sx = sy = float(rng.uniform(1.1, 1.3))
    sz = float(rng.uniform(3.5, 4.5))
    angle = np.deg2rad(rng.uniform(-3, 3))
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-sx, -sy, sz])  # RAS affine of an LPS DICOM series, as dcm2niix writes it
    centre_vox = (np.array(shape) - 1) / 2
    affine[:3, 3] = rng.uniform(-20, 20, 3) - affine[:3, :3] @ centre_vox
    ii, jj, kk = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    world = np.einsum("ab,bxyz->axyz", affine[:3, :3].astype(np.float32), np.stack([ii, jj, kk]))
    world += affine[:3, 3, None, None, None].astype(np.float32)
    # Coordinates relative to the patient centre (RAS: +x left, +y anterior, +z superior).
    centre_world = (affine[:3, :3] @ centre_vox + affine[:3, 3]).astype(np.float32)
    x, y, z = world - centre_world[:, None, None, None]
    image = np.full(shape, -1000.0, np.float32)
    a, b = rng.uniform(84, 92), rng.uniform(62, 70)
    body = (x / a) ** 2 + (y / b) ** 2
    image[body < 1] = -100.0  # subcutaneous fat
    inner = body < 0.86
    image[inner] = 40.0  # soft tissue
    muscle = inner & (body > 0.72)
    image[muscle] = 55.0
    spine = ((x / 10) ** 2 + ((y + 0.72 * b) / 10) ** 2) < 1
    image[spine] = 700.0
    ring = np.abs(np.sqrt(body) - 0.8) < 0.025
    ribs = ring & (np.cos(8 * np.arctan2(y, x) + z / 12.0) > 0.3)
    image[ribs] = 450.0
    z0 = rng.uniform(-10, 10)
    liver = (((x + 32) / 42) ** 2 + ((y - 4) / 36) ** 2 + ((z - z0 - 10) / 50) ** 2) < 1
    image[liver & inner] = 75.0
    radii = rng.uniform([20, 15, 26], [27, 21, 36])
    centre = rng.uniform([38, -30, -12], [48, -16, 12])
    bumps = 0.15 * _smooth_noise(rng, shape, 6)
    spleen_field = (
        ((x - centre[0]) / radii[0]) ** 2
        + ((y - centre[1]) / radii[1]) ** 2
        + ((z - centre[2] - z0) / radii[2]) ** 2
    ) + bumps
    spleen = (spleen_field < 1) & inner & ~spine
    image[spleen] = float(rng.uniform(130, 150))
    image += 10 * _smooth_noise(rng, shape, 3) * (image > -500)
    image += rng.normal(0, 12, shape)
    return np.clip(image, -1024, 3071).astype(np.int16), spleen.astype(np.uint8), affine


def make_ct_demo(
    out_dir: str | Path, n_cases: int = 10, seed: int = 0, shape: tuple[int, int, int] = (160, 160, 40)
) -> Path:
    """Write an MSD-layout CT set: ``imagesTr/ct_NNN.nii.gz``, ``labelsTr/ct_NNN.nii.gz``, dataset.json."""
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n_cases):
        image, label, affine = _ct_case(rng, shape)
        name = f"ct_{i:03d}.nii.gz"
        _save_nifti(image, affine, out / "imagesTr" / name)
        _save_nifti(label, affine, out / "labelsTr" / name)
        training.append({"image": f"./imagesTr/{name}", "label": f"./labelsTr/{name}"})
    _write_dataset_json(
        out, "CT demo (spleen-like organ)", {"0": "CT"}, {"0": "background", "1": "spleen"}, training
    )
    return out


# ---------------------------------------------------------------- MRI
def _mri_case(rng: np.random.Generator, n_channels: int) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    shape = tuple(int(v) for v in rng.integers([32, 44, 32], [40, 54, 40]))
    zz, yy, xx = np.indices(shape, dtype=np.float32) - (np.array(shape)[:, None, None, None] - 1) / 2
    # An elongated structure curving along y, split across its long axis into anterior / posterior.
    bend = rng.uniform(0.01, 0.03)
    length, r1, r2 = rng.uniform(14, 19), rng.uniform(3.5, 5.0), rng.uniform(3.0, 4.5)
    cx = xx - bend * yy**2 - rng.uniform(-2, 2)
    cz = zz - rng.uniform(-2, 2)
    field = (cx / r1) ** 2 + (cz / r2) ** 2 + (yy / length) ** 2 + 0.12 * _smooth_noise(rng, shape, 3)
    structure = field < 1
    split = rng.uniform(-3, 3)
    label = np.zeros(shape, np.uint8)
    label[structure & (yy >= split)] = 1
    label[structure & (yy < split)] = 2
    tissue = 0.55 + 0.12 * _smooth_noise(rng, shape, 2)
    tissue[structure] = 0.8 + 0.05 * rng.standard_normal()
    csf = ((cx - r1 - 2) / 2.0) ** 2 + (cz / 6) ** 2 + (yy / (length + 4)) ** 2 < 1
    tissue[csf & ~structure] = 0.2
    tissue = ndimage.gaussian_filter(tissue, 0.7)
    bias = np.exp(0.15 * _smooth_noise(rng, shape, 12))
    channels = []
    for c in range(n_channels):
        contrast = tissue if c % 2 == 0 else 1.1 - 0.8 * tissue  # a second contrast inverts grey levels
        img = contrast * bias + rng.normal(0, 0.04, shape)
        scale, offset = 10 ** rng.uniform(1.7, 3.7), rng.uniform(0, 50)
        channels.append((np.clip(img, 0, None) * scale + offset).astype(np.float32))
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = rng.uniform(-50, 50, 3)
    return channels, label, affine


def make_mri_demo(out_dir: str | Path, n_cases: int = 20, seed: int = 0, n_channels: int = 1) -> Path:
    """Write an MSD-layout MRI set; with several channels, files are ``mri_NNN_CCCC.nii.gz``."""
    if n_channels < 1:
        raise ValueError(f"n_channels must be >= 1, got {n_channels}")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    training = []
    for i in range(n_cases):
        channels, label, affine = _mri_case(rng, n_channels)
        if n_channels == 1:
            names = [f"mri_{i:03d}.nii.gz"]
        else:
            names = [f"mri_{i:03d}_{c:04d}.nii.gz" for c in range(n_channels)]
        for name, channel in zip(names, channels, strict=True):
            _save_nifti(channel, affine, out / "imagesTr" / name)
        _save_nifti(label, affine, out / "labelsTr" / f"mri_{i:03d}.nii.gz")
        images = [f"./imagesTr/{n}" for n in names]
        label_path = f"./labelsTr/mri_{i:03d}.nii.gz"
        training.append({"image": images[0] if n_channels == 1 else images, "label": label_path})
    modality = {str(c): "MRI" if c == 0 else f"MRI{c}" for c in range(n_channels)}
    _write_dataset_json(
        out,
        "MRI demo (two adjacent structures)",
        modality,
        {"0": "background", "1": "anterior", "2": "posterior"},
        training,
    )
    return out


# ---------------------------------------------------------------- shared
def _save_nifti(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))


def _write_dataset_json(out: Path, name: str, modality: dict, labels: dict, training: list[dict]) -> None:
    meta = {
        "name": name,
        "description": "generated by app.data.demo (synthetic, not medical data)",
        "tensorImageSize": "3D",
        "modality": modality,
        "labels": labels,
        "numTraining": len(training),
        "numTest": 0,
        "training": training,
        "test": [],
    }
    (out / "dataset.json").write_text(json.dumps(meta, indent=2))


_MAKERS = {"em": make_em_demo, "ct": make_ct_demo, "mri": make_mri_demo}


def make_demo(task: str, out_dir: str | Path, seed: int = 0, **kwargs) -> Path:
    """Generate the demo set of ``task`` (one of ``TASKS``) into ``out_dir``."""
    if task not in _MAKERS:
        raise ValueError(f"unknown demo task {task!r}; valid: {', '.join(TASKS)}")
    return _MAKERS[task](out_dir, seed=seed, **kwargs)


def demo_dir(task: str) -> Path:
    """The default demo folder of a task: ``demo_root() / task``."""
    return demo_root() / task


def ensure_demo(task: str) -> Path:
    """Generate the default demo set of ``task`` once; later calls reuse it.

    Generation happens in a temporary sibling folder that is renamed into place when complete, so an
    interrupted run never leaves a half-written set behind.
    """
    target = demo_dir(task)
    if (target / COMPLETE_MARKER).is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{task}.", dir=target.parent))
    try:
        logger.info("generating the %s demo set in %s (first use)", task, target)
        make_demo(task, tmp)
        (tmp / COMPLETE_MARKER).write_text("generated by app.data.demo\n")
        if target.exists() and not (target / COMPLETE_MARKER).is_file():
            shutil.rmtree(target, ignore_errors=True)  # a set left incomplete by an older version
        try:
            os.replace(tmp, target)
        except OSError:
            # another process (e.g. the other rank of a distributed run) finished first: use its set
            if not (target / COMPLETE_MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
