"""Benchmark data: generated CT volumes (``app.data.demo``), cached under ``<demo root>/benchmarks``.

- :func:`ct_volume`: one CT image of a given size and spacing (default 0.8 x 0.8 x 2 mm, an abdominal
  CT series), for inference. The phantom is generated at up to 512 x 512 x 160 voxels and mirrored
  along an axis to reach larger sizes, then given the requested spacing (same orientation).
- :func:`ct_training_set`: an MSD-layout CT set of larger volumes than the default demo set, so the
  96^3 training patches of the reference recipe fit after resampling to 1.5 x 1.5 x 2 mm.

Generation happens once, in a temporary folder renamed into place, so a killed run leaves no half set.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from app.data.demo import make_ct_demo
from app.paths import demo_root

__all__ = ["GENERATED_MAX", "cache_root", "ct_training_set", "ct_volume"]

logger = logging.getLogger(__name__)

GENERATED_MAX = (512, 512, 160)
"""Largest phantom generated directly (about 25 s and 4 GB); larger volumes mirror it."""


def cache_root() -> Path:
    """``<demo root>/benchmarks`` (``$APP_DEMO_DIR``, default ``<repo>/demo_data``; git-ignored)."""
    return demo_root() / "benchmarks"


def _atomic_dir(target: Path, build) -> Path:
    """Create ``target`` with ``build(tmp_dir)`` in a sibling temp folder, then rename it into place."""
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():  # not another process finishing first
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def ct_volume(shape: Sequence[int], spacing: Sequence[float] = (0.8, 0.8, 2.0), seed: int = 0) -> Path:
    """A generated CT image (int16 HU, NIfTI) of ``shape`` voxels of ``spacing`` mm; cached.

    Args:
        shape: voxels per axis; axes beyond :data:`GENERATED_MAX` are mirrored copies of the phantom.
        spacing: voxel size in mm. The phantom keeps its oblique in-plane orientation and LPS-like axis
            flips (as converted from DICOM), so inference exercises real re-orientation.
        seed: phantom seed.

    Returns:
        path of the ``.nii.gz`` file.
    """
    shape = tuple(int(s) for s in shape)
    name = "ct_{}_{}mm_seed{}".format("x".join(map(str, shape)), "x".join(f"{s:g}" for s in spacing), seed)

    def build(tmp: Path) -> None:
        generated = tuple(min(s, m) for s, m in zip(shape, GENERATED_MAX, strict=True))
        logger.info("generating a %s CT phantom for %s", generated, name)
        make_ct_demo(tmp / "phantom", n_cases=1, seed=seed, shape=generated)
        phantom = nib.load(tmp / "phantom" / "imagesTr" / "ct_000.nii.gz")
        data = np.asanyarray(phantom.dataobj)
        pad = [(0, s - g) for s, g in zip(shape, generated, strict=True)]
        data = np.pad(data, pad, mode="symmetric")
        affine = phantom.affine.copy()
        directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
        affine[:3, :3] = directions * np.asarray(spacing, float)
        affine[:3, 3] = -affine[:3, :3] @ ((np.asarray(shape) - 1) / 2)  # centred on the world origin
        image = nib.Nifti1Image(data, affine)
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, tmp / "image.nii.gz")
        shutil.rmtree(tmp / "phantom")

    return _atomic_dir(cache_root() / name, build) / "image.nii.gz"


def ct_training_set(n_cases: int = 10, shape: Sequence[int] = (256, 256, 64), seed: int = 0) -> Path:
    """An MSD-layout generated CT set (``imagesTr``, ``labelsTr``, ``dataset.json``) of ``n_cases``; cached.

    The default 256 x 256 x 64 volumes (about 1.2 x 1.2 x 4 mm) become about 205 x 205 x 128 voxels at
    1.5 x 1.5 x 2 mm, so 96^3 patches fit without padding.
    """
    shape = tuple(int(s) for s in shape)
    name = "ct_train_{}cases_{}_seed{}".format(n_cases, "x".join(map(str, shape)), seed)
    return _atomic_dir(
        cache_root() / name, lambda tmp: make_ct_demo(tmp, n_cases=n_cases, seed=seed, shape=shape)
    )
