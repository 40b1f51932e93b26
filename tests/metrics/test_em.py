"""Tests of the EM (ISBI 2012) segmentation metrics and reports."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from app.metrics import (
    EM_METRICS,
    ISBI_THRESHOLDS,
    cell_segmentation,
    em_metrics,
    em_metrics_table,
    isbi_pixel_error,
    pixel_f_counts,
    to_binary_mask,
    write_em_report,
)

# Two 2 x 3 cells separated by a one-pixel membrane column.
TWO_CELLS = np.array([[1, 1, 0, 1, 1], [1, 1, 0, 1, 1]], dtype=np.uint8)


def test_pixel_metrics_hand_computed():
    label = np.array([[1, 1, 0, 0], [1, 1, 0, 0]])
    pred = np.array([[1, 0, 0, 0], [1, 1, 1, 0]])
    scores = em_metrics(pred, label)
    # 2 of 8 pixels wrong; intersection 3, union 5, |pred| = |label| = 4.
    assert scores["pixel_error"] == pytest.approx(0.25)
    assert scores["iou"] == pytest.approx(3 / 5)
    assert scores["dice"] == pytest.approx(2 * 3 / 8)
    assert tuple(scores) == EM_METRICS


def test_identical_segmentations():
    scores = em_metrics(TWO_CELLS, TWO_CELLS)
    assert scores == {
        "pixel_error": 0.0,
        "iou": 1.0,
        "dice": 1.0,
        "rand_error": 0.0,
        "vi_split": 0.0,
        "vi_merge": 0.0,
        "vi": 0.0,
        "cell_rand_error": 0.0,
        "cell_vi": 0.0,
    }


def test_merge_of_two_cells():
    pred = np.ones_like(TWO_CELLS)  # the membrane is missed: one merged cell
    scores = em_metrics(pred, TWO_CELLS)
    assert scores["pixel_error"] == pytest.approx(2 / 10)
    # Over the 8 label-foreground pixels: same-cell pairs 2 * 4^2 - 8 = 24 in the label, 8^2 - 8 = 56 in
    # the prediction, 24 in both: Rand F-score 24 / ((24 + 56) / 2) = 0.6.
    # VI: merging two equal cells costs 1 bit.
    assert scores["rand_error"] == pytest.approx(0.4)
    assert scores["vi_split"] == pytest.approx(0.0)
    assert scores["vi_merge"] == pytest.approx(1.0)
    assert scores["vi"] == pytest.approx(1.0)


def test_split_of_a_cell():
    label = np.ones((2, 4), dtype=np.uint8)
    pred = np.array([[1, 0, 1, 1], [1, 0, 1, 1]])  # a false membrane splits the cell
    scores = em_metrics(pred, label)
    assert scores["rand_error"] > 0
    assert scores["vi_split"] > 0 and scores["vi_merge"] == pytest.approx(0.0)


def test_thick_membrane_merges_the_strict_cells_but_not_the_cell_segmentation():
    pred = np.array([[1, 0, 0, 0, 1], [1, 0, 0, 0, 1]])  # membrane drawn 3 px wide: cells half covered
    scores = em_metrics(pred, TWO_CELLS)
    # Strict: the predicted membrane is one segment holding half of each label cell. Over the 8 label-
    # foreground pixels, contingency (A, p1) = (A, 0) = (B, 0) = (B, p2) = 2. Same-cell pairs: label
    # 2 * 4^2 - 8 = 24, prediction 2^2 + 4^2 + 2^2 - 8 = 16, both 4 * 2^2 - 8 = 8: precision 8 / 16,
    # recall 8 / 24, Rand F-score 0.4.
    assert scores["rand_error"] == pytest.approx(0.6)
    # Grown to the nearest cell, columns 0-1 join the left cell and 3-4 the right one: a perfect split.
    assert scores["cell_rand_error"] == pytest.approx(0.0) and scores["cell_vi"] == pytest.approx(0.0)
    cells = cell_segmentation(pred)
    assert (
        cells.dtype == np.int32
        and set(np.unique(cells[:, [0, 1]])) == {1}
        and set(np.unique(cells[:, [3, 4]])) == {2}
    )


def test_cell_segmentation_partitions_the_plane():
    mask = np.zeros((6, 6), dtype=np.uint8)
    mask[0, 0] = mask[5, 5] = 1
    cells = cell_segmentation(mask * 255)
    assert set(np.unique(cells)) == {1, 2}  # every pixel in a cell
    assert cells[0, 1] == cells[1, 0] == 1 and cells[4, 5] == cells[5, 4] == 2
    assert cell_segmentation(np.zeros((3, 3))).tolist() == [[0] * 3] * 3
    assert cell_segmentation(np.ones((2, 2))).tolist() == [[1, 1], [1, 1]]
    with pytest.raises(ValueError, match="connectivity"):
        cell_segmentation(mask, connectivity=4)


def test_connectivity():
    label = np.array([[1, 0], [0, 1]])
    four = em_metrics(np.ones((2, 2)), label, connectivity=1)
    eight = em_metrics(np.ones((2, 2)), label, connectivity=2)
    assert four["vi_merge"] == pytest.approx(1.0)  # two diagonal cells merged by the prediction
    assert eight["vi_merge"] == pytest.approx(0.0)  # one cell in both


def test_value_ranges_and_types_agree():
    pred = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 1]], dtype=np.uint8)
    reference = em_metrics(pred, TWO_CELLS)
    assert em_metrics(pred * 255, TWO_CELLS * 255) == reference
    assert em_metrics(pred.astype(bool), TWO_CELLS * 255) == reference
    assert em_metrics(torch.from_numpy(pred)[None].float(), torch.from_numpy(TWO_CELLS)[None]) == reference


def test_empty_label():
    scores = em_metrics(np.zeros((3, 3)), np.zeros((3, 3)))
    assert scores["pixel_error"] == 0.0 and scores["iou"] == 1.0 and scores["dice"] == 1.0
    assert all(
        math.isnan(scores[k])
        for k in ("rand_error", "vi_split", "vi_merge", "vi", "cell_rand_error", "cell_vi")
    )


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"\{0, 1\} or \{0, 255\}"):
        em_metrics(np.full((2, 2), 0.7), TWO_CELLS[:2, :2])
    with pytest.raises(ValueError, match="shapes differ"):
        em_metrics(TWO_CELLS[:, :4], TWO_CELLS)
    with pytest.raises(ValueError, match=r"\(1, H, W\)"):
        to_binary_mask(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="connectivity"):
        em_metrics(TWO_CELLS, TWO_CELLS, connectivity=3)
    with pytest.raises(ValueError, match="same length"):
        em_metrics_table([TWO_CELLS], [TWO_CELLS, TWO_CELLS])


def test_table_and_report(tmp_path):
    preds = [TWO_CELLS, np.ones_like(TWO_CELLS), np.zeros((2, 2))]
    labels = [TWO_CELLS, TWO_CELLS, np.zeros((2, 2))]
    rows = em_metrics_table(preds, labels, names=["a.png", "b.png", "empty.png"])
    assert [row["name"] for row in rows] == ["a.png", "b.png", "empty.png"]
    assert em_metrics_table(preds[:1], labels[:1])[0]["name"] == "0"

    csv_path, json_path = write_em_report(rows, tmp_path / "report")
    assert csv_path == tmp_path / "report" / "metrics.csv" and json_path.name == "summary.json"
    with csv_path.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["name", *EM_METRICS]
    assert [r["name"] for r in table] == ["a.png", "b.png", "empty.png"]
    assert float(table[1]["pixel_error"]) == pytest.approx(0.2)
    assert math.isnan(float(table[2]["rand_error"]))

    summary = json.loads(json_path.read_text())
    assert summary["num_images"] == 3 and set(summary["metrics"]) == set(EM_METRICS)
    # pixel_error over (0, 0.2, 0): mean 0.2 / 3, population std, median 0.
    pixel_error = summary["metrics"]["pixel_error"]
    assert pixel_error["mean"] == pytest.approx(0.2 / 3)
    assert pixel_error["std"] == pytest.approx(np.std([0.0, 0.2, 0.0]))
    assert pixel_error["median"] == 0.0 and pixel_error["count"] == 3
    # rand_error skips the NaN of the empty label: (0, 0.4).
    assert summary["metrics"]["rand_error"] == pytest.approx(
        {"mean": 0.2, "std": 0.2, "median": 0.2, "count": 2}
    )


def test_report_errors(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        write_em_report([], tmp_path)
    with pytest.raises(ValueError, match="row 1"):
        write_em_report([{"name": "a", "iou": 1.0}, {"name": "b"}], tmp_path)


def test_isbi_pixel_error_hand_computed():
    label = np.array([[1, 1, 0, 0]])
    prob = np.array([[0.9, 0.3, 0.2, 0.6]])
    counts = pixel_f_counts(prob, label)
    # TP, FP, FN of prob > t for t = 0, 0.1, ..., 1 (strictly greater: 0.3 is not cell at t = 0.3).
    expected = [[2, 2, 0]] * 2 + [[2, 1, 0]] + [[1, 1, 1]] * 3 + [[1, 0, 1]] * 3 + [[0, 0, 2]] * 2
    np.testing.assert_array_equal(counts, expected)
    # F = 2TP / (2TP + FP + FN): 4/6, 4/6, 4/5, 1/2 x3, 2/3 x3, 0, 0; the best is 0.8 at t = 0.2.
    error, best = isbi_pixel_error(counts)
    assert error == pytest.approx(0.2) and ISBI_THRESHOLDS[best] == 0.2
    # the fraction of misclassified pixels at t = 0.5 is another number: 2 of 4.
    assert em_metrics(prob > 0.5, label)["pixel_error"] == 0.5


def test_isbi_pixel_error_pools_a_stack():
    label = np.array([[1, 1, 0, 0]])
    first = pixel_f_counts(np.array([[0.9, 0.3, 0.2, 0.6]]), label)
    second = pixel_f_counts(np.array([[0.0, 0.0, 0.0, 0.0]]), label)  # misses both cells at every t
    stack = first + second
    # pooled at t = 0.2: TP 2, FP 1, FN 2 -> F 4/7; at t = 0 and 0.1: TP 2, FP 2, FN 2 -> 4/8.
    assert isbi_pixel_error(stack)[0] == pytest.approx(1 - 4 / 7)
    assert isbi_pixel_error(second)[0] == 1.0


def test_isbi_pixel_error_edge_cases():
    empty = np.zeros((2, 2))
    assert isbi_pixel_error(pixel_f_counts(empty, empty)) == (0.0, 0)  # no cell anywhere: nothing missed
    assert isbi_pixel_error(pixel_f_counts(np.full((2, 2), 0.5), empty))[0] == 0.0  # cell nowhere above t=0.5
    assert isbi_pixel_error(pixel_f_counts(np.ones((1, 2, 2)), TWO_CELLS[:, :2]))[0] == 0.0
    with pytest.raises(ValueError, match=r"prob must be a probability in \[0, 1\]"):
        pixel_f_counts(np.full((2, 2), 1.5), empty)
    with pytest.raises(ValueError, match="shapes differ"):
        pixel_f_counts(np.zeros((2, 3)), empty)
    with pytest.raises(ValueError, match="label must be binary"):
        pixel_f_counts(empty, np.full((2, 2), 0.5))


def test_report_with_stack(tmp_path):
    rows = [{"name": "a.png", "pixel_error": 0.1}]
    _, json_path = write_em_report(rows, tmp_path, stack={"isbi_pixel_error": 0.05, "threshold": 0.4})
    summary = json.loads(json_path.read_text())
    assert summary["stack"] == {"isbi_pixel_error": 0.05, "threshold": 0.4}
    _, json_path = write_em_report(rows, tmp_path / "plain")
    assert "stack" not in json.loads(json_path.read_text())
