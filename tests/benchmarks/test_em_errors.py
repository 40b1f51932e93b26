"""EM error anatomy: hand-made membranes whose predicted errors sit at known distances from the boundary."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from app.networks import UNet2015
from benchmarks.em_errors import boundary_distance, error_profile, main, threshold_sweep


def _label() -> np.ndarray:
    """16 x 16 cells (True) with a 3-px membrane (False) in columns 6-8."""
    label = np.ones((16, 16), dtype=bool)
    label[:, 6:9] = False
    return label


def test_boundary_distance_counts_pixels_to_the_other_class():
    row = boundary_distance(_label())[0]
    np.testing.assert_allclose(row[:10], [6, 5, 4, 3, 2, 1, 1, 2, 1, 1])
    with pytest.raises(ValueError, match="one class only"):
        boundary_distance(np.ones((4, 4), dtype=bool))


def test_a_membrane_one_pixel_off_errs_only_next_to_the_boundary():
    label = _label()
    pred = np.roll(label, 1, axis=1)  # membrane in columns 7-9: column 6 turns cell, column 9 membrane
    profile = error_profile(pred, label)
    assert profile["errors"] == 32 and profile["pixels"] == 256
    assert profile["cell_where_membrane"] == 16 and profile["membrane_where_cell"] == 16
    assert profile["by_distance"] == [32, 0, 0, 0, 0, 0, 0, 0]


def test_an_invented_membrane_far_from_any_edge_lands_in_the_far_bins():
    label = _label()
    pred = label.copy()
    pred[8, 15] = False  # 7 px right of the membrane's edge at column 8
    pred[8, 2] = False  # 4 px left of its edge at column 6
    profile = error_profile(pred, label, max_distance=5)
    assert profile["membrane_where_cell"] == 2 and profile["cell_where_membrane"] == 0
    assert profile["by_distance"] == [0, 0, 0, 1, 1]  # 4 px in bin (3, 4], 7 px in the last bin
    with pytest.raises(ValueError, match="differ in shape"):
        error_profile(pred[:-1], label)


def test_threshold_sweep_counts_errors_at_each_threshold():
    prob = np.array([0.1, 0.4, 0.6, 0.9])
    label = np.array([False, True, True, True])
    assert threshold_sweep(prob, label, [0.05, 0.5, 0.95]) == [1, 1, 3]


def _membrane_png(path, label: np.ndarray) -> None:
    Image.fromarray((label * 255).astype(np.uint8)).save(path)


def test_main_reports_both_splits_of_a_run_folder(tmp_path):
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    items = []
    for k in range(3):
        label = np.roll(np.tile(_label(), (4, 4)), 5 * k, axis=0)  # 64 x 64 slices
        _membrane_png(run / "data" / f"{k}.png", label)
        _membrane_png(run / "data" / f"{k}_label.png", label)
        items.append({"image": str(run / "data" / f"{k}.png"), "label": str(run / "data" / f"{k}_label.png")})
    (run / "datalist.json").write_text(json.dumps({"training": items[:2], "validation": items[2:]}))
    (run / "config.json").write_text(json.dumps({"features": 2}))
    torch.manual_seed(0)
    net = UNet2015(
        spatial_dims=2, in_channels=1, out_channels=2, features=2, depth=4, padding="valid", norm="instance"
    )
    torch.save(net.state_dict(), run / "model_final.pt")

    assert main(["--run_dir", str(run), "--out", str(tmp_path / "out")]) == 0
    record = json.loads((tmp_path / "out" / "em_errors.json").read_text())
    val, train = record["splits"]["validation"], record["splits"]["training"]
    assert (val["slices"], train["slices"]) == (1, 2)
    for split in (val, train):
        assert split["pixel_error"] == pytest.approx(sum(split["error_by_distance"]))
        assert split["pixel_error"] == pytest.approx(
            split["cell_where_membrane"] + split["membrane_where_cell"]
        )
        assert split["pixel_error_by_threshold"]["0.5"] == pytest.approx(split["pixel_error"])
    assert "**validation** (1 slice)" in (tmp_path / "out" / "em_errors.md").read_text()


def test_main_refuses_a_folder_without_weights(tmp_path, caplog):
    (tmp_path / "datalist.json").write_text("{}")
    assert main(["--run_dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    assert "model_final.pt: not found" in caplog.text
    assert not (tmp_path / "out").exists()
