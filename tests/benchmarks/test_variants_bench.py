"""Smoke test of the U-Net family comparison (``benchmarks/variants.py``): the micro part on tiny sizes for
an app variant and its MONAI counterpart, the JSON and markdown it writes, and the training budget."""

from __future__ import annotations

import json

import pytest
import torch
from ignite.engine import Engine, Events

from benchmarks import variants
from benchmarks.variants_quality import BUDGET_RECORD, TrainingBudget

ROWS = ["attention", "MONAI AttentionUnet"]
COST_KEYS = {"params", "flops_per_voxel", "step_s", "step_cpu_s", "step_mem_mib", "infer_voxels_per_s"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("variants")
    docs_before = variants.DOCS_PAGE.read_text() if variants.DOCS_PAGE.is_file() else None
    argv = [
        "--quick",
        "--parts",
        "micro",
        "--datasets",
        "mri,em",
        "--variants",
        ",".join(ROWS),
        "--out",
        str(out),
    ]
    variants.main(argv)
    docs_after = variants.DOCS_PAGE.read_text() if variants.DOCS_PAGE.is_file() else None
    assert docs_after == docs_before  # only a run into benchmarks/results regenerates the docs page
    return out, json.loads((out / "variants.json").read_text())


def test_micro_measures_every_column_of_the_app_and_monai_rows(quick_run):
    _, results = quick_run
    mri, em = results["micro"]["mri"], results["micro"]["em"]
    assert list(mri) == ROWS and list(em) == ["attention"]  # MONAI rows do not apply to the EM bundle
    assert (mri["attention"]["network"], mri["attention"]["source"]) == ("FlexUNet", "app")
    assert (mri["MONAI AttentionUnet"]["network"], mri["MONAI AttentionUnet"]["source"]) == (
        "AttentionUnet",
        "MONAI",
    )
    for row in [*mri.values(), *em.values()]:
        assert all(row[key] > 0 for key in COST_KEYS), row
        assert len(row["step_s_all"]) == variants.QUICK["repeats"]
        assert row["gpu_step_s"] is None and row["gpu_step_mem_mib"] is None
    assert mri["attention"]["output_patch"] == mri["attention"]["patch"] == [16, 16, 16]
    assert em["attention"]["patch"] == [188, 188] and em["attention"]["output_patch"] == [
        4,
        4,
    ]  # valid padding


def test_results_record_the_command_and_the_hardware(quick_run):
    _, results = quick_run
    (run,) = results["runs"]["micro"]["mri"]
    assert run["rows"] == ROWS
    assert run["command"].startswith("python -m benchmarks.variants --quick")
    assert {"cpu", "cpu_cores", "torch", "monai", "date"} <= run["hardware"].keys()
    assert run["settings"]["batch"] == 2


def test_markdown_has_the_table_the_monai_comparison_and_the_quality_columns(quick_run):
    out, results = quick_run
    page = (out / "variants.md").read_text()
    assert (
        "| `attention` | FlexUNet (app) |" in page
        and "| MONAI AttentionUnet | AttentionUnet (MONAI) |" in page
    )
    assert "not measured" in page and "Not applicable: MONAI rows" in page
    assert "- MONAI AttentionUnet against attention:" in page
    results["quality"] = {
        "mri": {"attention": {"iterations": 7, "metrics": {"val_mean_dice": 0.5, "val_hd95": 9.0}}}
    }
    (micro_run,) = results["runs"]["micro"]["mri"]
    results["runs"]["quality"] = {
        "mri": [{**micro_run, "settings": {"budget_s": 45.0}, "rows": ["attention"]}]
    }
    page = variants.render_markdown(results)
    assert "Dice after 45 CPU s" in page and "| 0.5 | 9 | 7 |" in page
    assert "Best validation Dice after the budget: attention (0.500)" in page
    assert "- quality, MRI (attention): `python -m benchmarks.variants --quick" in page


class _Evaluator(Engine):
    """Like MONAI's evaluators, ``run()`` takes no data; it reports one metric."""

    def __init__(self) -> None:
        super().__init__(lambda engine, batch: None)
        self.add_event_handler(
            Events.COMPLETED, lambda e: e.state.metrics.update(val_mean_dice=torch.tensor(0.25))
        )

    def run(self) -> None:
        super().run([0])


def test_training_budget_stops_the_trainer_and_records_the_validation(tmp_path):
    evaluator = _Evaluator()
    trainer = Engine(lambda engine, batch: None)
    TrainingBudget(0.0, tmp_path, evaluator).attach(trainer)
    trainer.run(range(10), max_epochs=3)
    record = json.loads((tmp_path / BUDGET_RECORD).read_text())
    assert (record["iterations"], record["epochs"]) == (1, 1)
    assert record["metrics"] == {"val_mean_dice": 0.25}
