"""torchrun, 2 gloo processes on CPU: one writer, one log, resumable, equal to 1 process at double batch."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from app.engine import read_history, safe_load

TRAIN = ["bundles/ct/train.json", "bundles/ct/multi_gpu_train.json"]
SMALL = {"patch_size": "[32,32,32]", "batch_size": 1, "num_samples": 1, "val_interval": 1, "sw_batch_size": 8}
# Deterministic steps so two processes at batch 1 see exactly the samples one process sees at batch 2:
# centre crops, no shuffling, per-sample norm and loss (the averaged gradients are then the same).
EQUIVALENT = {
    "train#preprocessing#transforms": "$@load + @train#cache + "
    "[monai.transforms.CenterSpatialCropd(keys=['image', 'label'], roi_size=@patch_size), "
    "monai.transforms.SelectItemsd(keys=['image', 'label'])]",
    "train#dataloader#shuffle": False,
    "network_def#norm": "instance",
    "loss#batch": False,
}


def run_lines(log: str) -> list[str]:
    """The log lines of the run itself, without the timestamp (monai.bundle echoes its arguments in
    every process before the config runs; those are not the run's)."""
    return [
        line.split(" - ", 1)[1]
        for line in log.splitlines()
        if re.match(r"\d{4}-\d\d-\d\d .* - (app|ignite)\.", line)
    ]


def test_two_processes_log_once_save_once_and_resume(run_bundle, tmp_path):
    run_dir = tmp_path / "ddp"
    logs = []
    for epochs in (1, 2):
        proc = run_bundle("training", TRAIN, nproc=2, run_dir=run_dir, epochs=epochs, **SMALL)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs.append(proc.stdout + proc.stderr)
    for log in logs:
        repeated = [line for line, n in Counter(run_lines(log)).items() if n > 1]
        assert not repeated, repeated
    assert sum("epoch 1/1 |" in line for line in run_lines(logs[0])) == 1
    assert sum("resumed from" in line for line in run_lines(logs[1])) == 1  # rank 1 resumed silently
    assert sum("epoch 2/2 |" in line for line in run_lines(logs[1])) == 1
    assert sorted(p.name for p in run_dir.glob("*.pt")) == [
        "checkpoint.prev.pt",
        "checkpoint.pt",
        "model.pt",
        "model_final.pt",
    ]
    state = safe_load(run_dir / "checkpoint.pt")
    assert state["trainer"]["epoch"] == 2
    assert not any(k.startswith("module.") for k in state["network"])  # portable to single-process runs


def test_two_processes_at_batch_1_equal_one_process_at_batch_2(run_bundle, tmp_path):
    """The epoch losses (mean over all ranks) of 2 x 4 steps agree within 1e-4, and so does the Dice of
    the validation that follows (float32 all-reduce order is the only difference)."""
    runs = {
        "ddp": run_bundle(
            "training",
            TRAIN,
            nproc=2,
            run_dir=tmp_path / "ddp",
            epochs=2,
            **SMALL,
            **EQUIVALENT,
            **{"train#sampler#shuffle": False},
        ),
        "one": run_bundle(
            "training",
            TRAIN[:1],
            run_dir=tmp_path / "one",
            epochs=2,
            **{**SMALL, "batch_size": 2},
            **EQUIVALENT,
        ),
    }
    for proc in runs.values():
        assert proc.returncode == 0, proc.stderr[-3000:]
    ddp, one = (read_history(tmp_path / name / "history.csv") for name in runs)
    assert [r["epoch"] for r in ddp] == [r["epoch"] for r in one] == [1, 2]
    for a, b in zip(ddp, one, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["val_mean_dice"] == pytest.approx(b["val_mean_dice"], abs=1e-4)
    assert ddp[1]["train_loss"] < ddp[0]["train_loss"]  # it did train
    state = safe_load(tmp_path / "ddp" / "checkpoint.pt")
    assert state["trainer"]["iteration"] == 8  # 8 cases / (2 ranks x 1) per epoch, 2 epochs
