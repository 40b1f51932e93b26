"""EMMetricsHandler: per-image metrics in one pass, and the same means when two ranks share the images."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from ignite.engine import Engine

from app.metrics import EMMetricsHandler

# four 8x8 images: the prediction misses 0, 4, 8 and 12 foreground pixels of a 6x6 square
CASES = []
for k in range(4):
    label = torch.zeros(1, 8, 8)
    label[0, 1:7, 1:7] = 1
    pred = label.clone()
    pred[0, 1, 1 : 1 + 4 * k // 2] = 0
    pred[0, 6, 1 : 1 + 4 * k - 4 * k // 2] = 0
    CASES.append({"pred": pred, "label": label})


def run(cases: list[dict], output_dir=None) -> dict:
    engine = Engine(lambda e, batch: batch)
    EMMetricsHandler(output_dir=output_dir).attach(engine)
    engine.run([[case] for case in cases])
    return {k: v for k, v in engine.state.metrics.items()}


def test_pixel_error_is_the_mean_over_images(tmp_path):
    metrics = run(CASES, tmp_path)
    missed = np.array([0, 4, 8, 12]) / 64
    assert metrics["val_pixel_error"] == np.mean(missed)
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + 4


def test_probabilities_add_the_isbi_pixel_error_per_image_and_of_the_stack(tmp_path):
    cases = [case | {"prob": torch.cat([1 - case["pred"], case["pred"]])} for case in CASES]
    metrics = run(cases, tmp_path)
    # a binary probability scores as its mask at every threshold below 1: 1 - Dice of 36 label cells
    tp = 36 - np.array([0, 4, 8, 12])
    assert metrics["val_isbi_pixel_error"] == pytest.approx(np.mean(1 - 2 * tp / (2 * tp + (36 - tp))))
    assert metrics["val_isbi_pixel_error_stack"] == pytest.approx(1 - 2 * tp.sum() / (2 * tp.sum() + 24))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stack"] == {"isbi_pixel_error": metrics["val_isbi_pixel_error_stack"], "threshold": 0.0}
    assert "isbi_pixel_error" in (tmp_path / "metrics.csv").read_text().splitlines()[0]
    assert "val_isbi_pixel_error" not in run(CASES)


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    metrics = run(CASES[rank::2], out if rank == 0 else None)
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump(metrics, f)
    dist.destroy_process_group()


def test_two_ranks_report_the_metrics_of_all_images(tmp_path):
    mp.spawn(_rank, args=(f"file://{tmp_path}/rendezvous", str(tmp_path)), nprocs=2, join=True)
    single = run(CASES)
    for rank in (0, 1):
        metrics = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert metrics == single
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 1 + 4  # rank 0 writes every image
