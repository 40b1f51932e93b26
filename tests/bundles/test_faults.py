"""Kill anywhere, lose nothing; same seed, same losses (CT bundle on demo volumes, CPU)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import torch

from app.engine import safe_load
from app.paths import REPO_ROOT

SMALL = {"patch_size": "[32,32,32]", "batch_size": 1, "num_samples": 1, "val_interval": 1, "sw_batch_size": 8}
DRIVER = Path(__file__).with_name("fault_driver.py")
ITERATIONS_PER_EPOCH = 8  # 8 demo training cases, one patch per step
EPOCHS = 4


def bundle_args(run_dir: Path, **overrides) -> list[str]:
    args = ["run", "training", "--config_file", "bundles/ct/train.json", "--run_dir", str(run_dir)]
    for key, value in {**SMALL, "epochs": EPOCHS, **overrides}.items():
        args += [f"--{key}", str(value)]
    return args


def run_until(point: str, run_dir: Path, demo_root: Path, **overrides) -> subprocess.CompletedProcess:
    """Run the CT training command under the fault driver, stopping at ``point``."""
    env = dict(os.environ, APP_DEMO_DIR=str(demo_root), PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(DRIVER), point, *bundle_args(run_dir, **overrides)]
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)


def resumed_epoch(log: str) -> int:
    """The epoch a run resumed from (0 when it started from scratch)."""
    found = re.search(r"resumed from \S+ at epoch (\d+)/", log)
    return int(found.group(1)) if found else 0


def test_killed_anywhere_the_same_command_resumes_and_finishes(demo_root, tmp_path):
    run_dir = tmp_path / "run"
    rng = random.Random(0)
    # (kill point, epoch the run must resume from): each killed run started from the previous checkpoint.
    plan = [
        (f"iteration:{ITERATIONS_PER_EPOCH + 3}", 0),  # mid epoch 2, after checkpoint 1
        ("validation", 1),  # during the validation of epoch 2
        ("checkpoint", 1),  # while writing checkpoint 2: a torn temporary file is left behind
        (
            f"iteration:{rng.randint(ITERATIONS_PER_EPOCH + 1, 2 * ITERATIONS_PER_EPOCH)}",
            1,
        ),  # random, epoch 3
        (f"iteration:{rng.randint(2, ITERATIONS_PER_EPOCH)}", 2),  # random, in epoch 4
    ]
    for point, expected in plan:
        proc = run_until(point, run_dir, demo_root)
        assert proc.returncode == -signal.SIGKILL, f"{point}: {proc.stderr[-2000:]}"
        log = proc.stdout + proc.stderr
        assert resumed_epoch(log) == expected, f"{point}: {log[-2000:]}"
        state = safe_load(run_dir / "checkpoint.pt")  # never torn, whatever the kill point
        assert state["trainer"]["epoch"] >= max(expected, 1)
        if point == "checkpoint":
            assert list(run_dir.glob(".*checkpoint.pt*.tmp")), "the kill did not tear a checkpoint write"
        elif expected and plan.index((point, expected)) == 3:
            assert "removing" in log and "cut short" in log  # the torn file of the previous run
    done = run_until("none", run_dir, demo_root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert resumed_epoch(done.stdout + done.stderr) >= 2
    state = safe_load(run_dir / "checkpoint.pt")
    assert state["trainer"]["epoch"] == EPOCHS
    assert not list(run_dir.glob(".*.tmp")), "a torn checkpoint was left behind"
    assert all(torch.isfinite(v).all() for v in state["network"].values() if v.is_floating_point())
    steps = {float(s["step"]) for s in state["optimizer"]["state"].values()}
    assert steps == {EPOCHS * ITERATIONS_PER_EPOCH}  # the optimiser state went through every resume


def first_losses(run_dir: Path, demo_root: Path, seed: int, n: int) -> list[float]:
    """Losses of the first ``n`` training iterations of a fresh CT run with ``seed`` (own process)."""
    proc = run_until(f"losses:{n}", run_dir, demo_root, seed=seed)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("LOSSES "))
    return json.loads(line[len("LOSSES ") :])


def test_same_seed_gives_identical_losses(demo_root, tmp_path):
    n = 6
    a = first_losses(tmp_path / "a", demo_root, seed=0, n=n)
    b = first_losses(tmp_path / "b", demo_root, seed=0, n=n)
    c = first_losses(tmp_path / "c", demo_root, seed=1, n=n)
    assert len(a) == n
    assert a == b  # bitwise: same seed, same CPU, same thread count
    assert a != c  # the seed does reach the augmentation and the initialisation
