"""Run bundles through ``python -m monai.bundle`` exactly as users do, with small overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from app.paths import REPO_ROOT


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """A demo folder shared by the bundle tests of one session (generated on first use)."""
    return tmp_path_factory.mktemp("demo")


@pytest.fixture(scope="session")
def run_bundle(demo_root):
    """``run_bundle(run_id, [config files], key=value...)`` -> CompletedProcess, run from the repo root.

    ``nproc=N`` launches N gloo processes with ``torchrun --standalone`` (one thread each).
    """

    def run(run_id: str, config_files: list[str], nproc: int = 1, **overrides) -> subprocess.CompletedProcess:
        files = (
            config_files[0]
            if len(config_files) == 1
            else "[" + ",".join(f"'{c}'" for c in config_files) + "]"
        )
        launcher = [sys.executable]
        env = dict(os.environ, APP_DEMO_DIR=str(demo_root), PYTHONWARNINGS="ignore")
        if nproc > 1:
            launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
            env["OMP_NUM_THREADS"] = "1"
        cmd = [*launcher, "-m", "monai.bundle", "run", run_id, "--config_file", files]
        for key, value in overrides.items():
            cmd += [f"--{key}", str(value)]
        return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)

    return run


@pytest.fixture(scope="session")
def infer_demo_case(run_bundle, demo_root):
    """``infer_demo_case(bundle, run_dir, tmp_path, key=value...)`` -> the written label array.

    Copies the first demo image of ``bundle`` (``ct`` or ``mri``) into a folder, runs the bundle's inference
    on the folder as users do, and checks that it exits 0 and writes exactly ``NAME_seg.nii.gz`` on the
    image's grid (shape and affine).
    """

    def infer(bundle: str, run_dir: Path, tmp_path: Path, **overrides) -> np.ndarray:
        inputs, outputs = tmp_path / "in", tmp_path / "out"
        inputs.mkdir()
        source = sorted((demo_root / bundle / "imagesTr").iterdir())[0]
        (inputs / source.name).write_bytes(source.read_bytes())
        configs = [f"bundles/{bundle}/train.json", f"bundles/{bundle}/inference.json"]
        proc = run_bundle(
            "inference", configs, run_dir=run_dir, input_dir=inputs, output_dir=outputs, **overrides
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        (written,) = outputs.iterdir()
        assert written.name == source.name.replace(".nii.gz", "_seg.nii.gz")
        ref, out = nib.load(source), nib.load(written)
        assert out.shape == ref.shape
        np.testing.assert_allclose(out.affine, ref.affine, atol=1e-5)
        return np.asanyarray(out.dataobj)

    return infer


@pytest.fixture(scope="session")
def parse_bundle():
    """``parse_bundle([config files], key, key=value...)`` -> the parsed ``key``, in this process; a list
    of keys gives a list of their contents, parsed together (they share the objects they refer to).

    The metadata is the first file's bundle's ``metadata.json``; overrides replace config values as the
    command line's ``--key value`` would.
    """

    def parse(config_files: list[str], key: str | list[str], **overrides):
        from monai.bundle import ConfigParser

        parser = ConfigParser()
        parser.read_meta(REPO_ROOT / Path(config_files[0]).parent / "metadata.json")
        parser.read_config([str(REPO_ROOT / f) for f in config_files])
        parser.update(overrides)
        if isinstance(key, list):
            return [parser.get_parsed_content(k) for k in key]
        return parser.get_parsed_content(key)

    return parse
