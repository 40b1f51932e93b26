"""Training figures and the best/worst validation cases behind overlays.png.

The PNGs are written, sized by their panel grid and not blank; per-case Dice, 2D and 3D views, the
evaluator handler and its npz round trip give the expected values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.networks.utils import one_hot
from PIL import Image

from app.engine.overlays import BestWorstCases, CaseView, OverlayCase, case_dice, case_views, load_cases
from app.engine.plots import plot_curves, plot_overlays


def assert_not_blank(path) -> np.ndarray:
    """The PNG loads, varies, and has more than one colour; returns it as an RGB array."""
    pixels = np.asarray(Image.open(path).convert("RGB"))
    assert pixels.std() > 0
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 1
    return pixels


def test_curves_have_one_panel_per_quantity(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.0 / e, "lr": 0.01 * 0.9**e} for e in range(1, 7)]
    for row in rows[1::2]:
        row.update(val_mean_dice=row["epoch"] / 10, val_hd95=10.0 - row["epoch"])
    pixels = assert_not_blank(plot_curves(rows, tmp_path / "curves.png"))
    # loss, 2 metrics, lr: 4 panels on a 3-column grid of 4 x 3 inch panels at 100 dpi
    assert pixels.shape == (600, 1200, 3)


def test_curves_of_a_single_epoch_without_validation(tmp_path):
    pixels = assert_not_blank(plot_curves([{"epoch": 1, "train_loss": 0.5, "lr": 1e-3}], tmp_path / "c.png"))
    assert pixels.shape == (300, 800, 3)  # loss and lr side by side


def test_overlays_have_a_row_per_view(tmp_path):
    rng = np.random.default_rng(0)
    label = np.zeros((16, 16), np.uint8)
    label[4:12, 4:12] = 1
    views = [
        CaseView(f"plane {i}", rng.random((16, 16), dtype=np.float32), label, np.roll(label, i, 0))
        for i in (1, 2)
    ]
    cases = [OverlayCase("best", "a.png", 0.9, views[:1]), OverlayCase("worst", "b.png", 0.1, views)]
    pixels = assert_not_blank(plot_overlays(cases, tmp_path / "overlays.png"))
    assert pixels.shape == (900, 900, 3)  # 3 views x 3 columns of 3 inch panels
    assert (pixels[..., 0] != pixels[..., 2]).any()  # the class colour over the grey image
    assert not list(tmp_path.glob(".*tmp*"))


def _square(shape: tuple[int, ...], lo: int, hi: int) -> torch.Tensor:
    """A ``(1, *shape)`` class map with class 1 in ``[lo, hi)`` along every axis."""
    label = torch.zeros(1, *shape)
    label[(0, *[slice(lo, hi)] * len(shape))] = 1
    return label


def _case(name: str, label: torch.Tensor, pred: torch.Tensor) -> dict:
    """An evaluator output item after ``AsDiscreted(to_onehot=2)``: one-hot pred/label, image with meta."""
    image = MetaTensor(torch.rand(label.shape), meta={"filename_or_obj": f"/data/{name}"})
    return {"image": image, "label": one_hot(label[None], 2)[0], "pred": one_hot(pred[None], 2)[0]}


def _validate(handler: BestWorstCases, cases: list[dict]) -> None:
    evaluator = Engine(lambda engine, case: [case])  # one decollated case per iteration
    handler.attach(evaluator)
    evaluator.run(cases)


def test_case_dice_of_one_hot_and_class_maps():
    label = _square((8, 8), 2, 6)  # 16 pixels
    pred = _square((8, 8), 2, 4)  # 4 pixels, all inside
    expected = 2 * 4 / (16 + 4)
    assert case_dice(pred, label) == pytest.approx(expected)
    assert case_dice(one_hot(pred[None], 2)[0], one_hot(label[None], 2)[0]) == pytest.approx(expected)
    empty = torch.zeros(1, 8, 8)
    assert case_dice(empty, empty) == 1.0 and case_dice(pred, empty) == 0.0


def test_2d_handler_keeps_the_best_and_worst_case(tmp_path):
    label = _square((20, 24), 5, 15)
    cases = [
        _case("half.png", label, _square((20, 24), 5, 10)),
        _case("perfect.png", label, label),
        _case("missed.png", label, torch.zeros_like(label)),
    ]
    handler = BestWorstCases(tmp_path)
    _validate(handler, cases)

    best, worst = load_cases(tmp_path / "overlays.npz")
    assert (best.role, best.name, best.dice) == ("best", "perfect.png", 1.0)
    assert (worst.role, worst.name, worst.dice) == ("worst", "missed.png", 0.0)
    assert [v.plane for v in best.views] == ["2D"]
    view = best.views[0]
    assert view.image.shape == view.label.shape == view.pred.shape == (20, 24)
    np.testing.assert_array_equal(view.label, label[0].numpy())
    np.testing.assert_array_equal(view.image, cases[1]["image"][0].numpy())
    assert worst.views[0].pred.max() == 0
    assert_not_blank(tmp_path / "overlays.png")


def test_3d_views_are_the_planes_through_the_foreground_centre_of_mass():
    label = torch.zeros(1, 10, 12, 14)
    label[0, 6:9, 2:5, 9:12] = 1  # centre of mass (7, 3, 10)
    views = case_views(torch.rand(2, 10, 12, 14), label, label)
    assert [v.plane for v in views] == ["sagittal 7", "coronal 3", "axial 10"]
    # each plane turned so its second in-plane axis points up: (rows, cols) = (last axis, first axis)
    assert [v.image.shape for v in views] == [(14, 12), (14, 10), (12, 10)]
    assert all(v.label.sum() == 9 for v in views)  # the 3 x 3 square of the cube in every plane
    assert views[2].label[12 - 1 - 3, 7] == 1  # axial plane: row counts axis 1 from the top down


def test_3d_without_foreground_uses_the_volume_centre(tmp_path):
    empty = torch.zeros(1, 9, 11, 13)
    assert [v.plane for v in case_views(torch.rand(1, 9, 11, 13), empty, empty)] == [
        "sagittal 4",
        "coronal 5",
        "axial 6",
    ]
    handler = BestWorstCases(tmp_path)
    _validate(
        handler, [_case("a.nii.gz", empty, empty), _case("b.nii.gz", _square((9, 11, 13), 2, 6), empty)]
    )
    best, worst = load_cases(tmp_path / "overlays.npz")
    assert (best.name, worst.name) == ("a.nii.gz", "b.nii.gz")
    assert len(best.views) == len(worst.views) == 3
    assert_not_blank(tmp_path / "overlays.png")
