"""Tests of the U-Net weight map transforms (Ronneberger et al. 2015, eq. 2)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from scipy import ndimage

from app.transforms import (
    UNetWeightMap,
    UNetWeightMapd,
    border_cutoff,
    class_balance_weights,
    unet_weight_map,
)

# 1 x 9 ISBI-style row: cell A = columns 0-2, membrane = columns 3-5, cell B = columns 6-8.
ROW = np.array([[[255, 255, 255, 0, 0, 0, 255, 255, 255]]], dtype=np.uint8)


def _brute_force(foreground: np.ndarray, w0: float, sigma: float, everywhere: bool) -> np.ndarray:
    """Reference border term: one full-image EDT per cell, no cutoff."""
    cells, n = ndimage.label(foreground)
    dist = np.sort(np.stack([ndimage.distance_transform_edt(cells != i) for i in range(1, n + 1)]), axis=0)
    border = w0 * np.exp(-((dist[0] + dist[1]) ** 2) / (2 * sigma**2))
    return border if everywhere else np.where(foreground, 0.0, border)


def _blobs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.standard_normal(shape), 2.0) > 0.1


def test_hand_computed_row():
    weight = UNetWeightMap()(ROW)
    # 6 foreground / 3 background pixels: w_c = 1 (cells), 6 / 3 = 2 (membrane).
    # Columns 3, 4, 5: (d1, d2) = (1, 3), (2, 2), (3, 1), so d1 + d2 = 4 and the border term is
    # 10 * exp(-16 / 50) = 7.261490370736908.
    expected = np.array([[[1, 1, 1, 9.261490370736908, 9.261490370736908, 9.261490370736908, 1, 1, 1]]])
    assert weight.dtype == np.float32 and weight.shape == (1, 1, 9)
    np.testing.assert_allclose(weight, expected, rtol=1e-6)


def test_hand_computed_one_pixel_membrane():
    # 5 x 9: cells at columns 0-3 and 5-8, a 1-px membrane at column 4 with d1 = d2 = 1.
    label = np.full((1, 5, 9), 255, dtype=np.uint8)
    label[:, :, 4] = 0
    weight = UNetWeightMap()(label)
    # w_c(membrane) = 40 / 5 = 8; border = 10 * exp(-4 / 50) = 9.231163463866358.
    np.testing.assert_allclose(weight[0, :, 4], 17.231163463866358, rtol=1e-6)
    np.testing.assert_allclose(np.delete(weight[0], 4, axis=1), 1.0)


def test_custom_w0_sigma_no_class_balance():
    weight = UNetWeightMap(w0=5.0, sigma=2.0, class_balance=False)(ROW)
    # 1 + 5 * exp(-16 / 8) = 1.6766764161830635 on the membrane, 1 on the cells.
    expected = np.array([[[1, 1, 1, 1.6766764161830635, 1.6766764161830635, 1.6766764161830635, 1, 1, 1]]])
    np.testing.assert_allclose(weight, expected, rtol=1e-6)


def test_border_everywhere():
    weight = UNetWeightMap(border_region="all")(ROW)
    # Column 0: d1 = 0 (own cell), d2 = 6 -> 1 + 10 * exp(-36 / 50) = 5.867522559599717;
    # column 1: d2 = 5 -> 1 + 10 * exp(-25 / 50) = 7.065306597126334; column 2: d2 = 4 -> 8.261490370736908.
    left = [5.867522559599717, 7.065306597126334, 8.261490370736908]
    expected = np.array([[left + [9.261490370736908] * 3 + left[::-1]]])
    np.testing.assert_allclose(weight, expected, rtol=1e-6)


def test_single_cell_has_no_border_term():
    label = np.zeros((1, 8, 8), dtype=np.uint8)
    label[0, 2:5, 2:6] = 255  # 12 foreground, 52 background pixels: the cell is the rarer class
    weight = UNetWeightMap()(label)
    np.testing.assert_allclose(weight[0][label[0] > 0], 52 / 12, rtol=1e-6)
    np.testing.assert_allclose(weight[0][label[0] == 0], 1.0)


def test_empty_and_full_labels():
    np.testing.assert_array_equal(UNetWeightMap()(np.zeros((1, 4, 4))), np.ones((1, 4, 4), dtype=np.float32))
    np.testing.assert_array_equal(UNetWeightMap()(np.ones((1, 4, 4))), np.ones((1, 4, 4), dtype=np.float32))


def test_class_balance_weights():
    foreground = np.array([1, 1, 1, 1, 1, 1, 0, 0], dtype=bool)  # f_fg = 3/4, f_bg = 1/4
    assert class_balance_weights(foreground) == pytest.approx((3.0, 1.0))
    assert class_balance_weights(~foreground) == pytest.approx((1.0, 3.0))
    assert class_balance_weights(np.zeros(5, dtype=bool)) == (1.0, 1.0)


def test_foreground_value_and_threshold():
    label = np.array([[[2, 2, 1, 2, 2]]])
    by_value = UNetWeightMap(foreground_value=2, class_balance=False)(label)
    # Column 2 is membrane with d1 = d2 = 1: 1 + 10 * exp(-4 / 50).
    np.testing.assert_allclose(by_value[0, 0], [1, 1, 10.231163463866358, 1, 1], rtol=1e-6)
    np.testing.assert_allclose(UNetWeightMap(foreground_threshold=1, class_balance=False)(label), by_value)
    # Default threshold 0: everything is one cell, no border term.
    np.testing.assert_array_equal(UNetWeightMap(class_balance=False)(label), np.ones((1, 1, 5)))


def test_3d_hand_computed():
    label = np.full((1, 9, 4, 4), 255, dtype=np.uint8)
    label[0, 4] = 0  # membrane plane between two slabs: d1 = d2 = 1
    weight = UNetWeightMap()(label)
    # w_c(membrane) = 128 / 16 = 8.
    np.testing.assert_allclose(weight[0, 4], 17.231163463866358, rtol=1e-6)
    np.testing.assert_allclose(np.delete(weight[0], 4, axis=0), 1.0)


@pytest.mark.parametrize("shape", [(64, 64), (20, 24, 24)])
@pytest.mark.parametrize("border_region", ["background", "all"])
def test_cutoff_matches_brute_force(shape, border_region):
    foreground = _blobs(shape, seed=len(shape))
    assert ndimage.label(foreground)[1] >= 3
    weight = unet_weight_map(foreground, class_balance=False, border_region=border_region, tolerance=1e-3)
    expected = 1.0 + _brute_force(foreground, 10.0, 5.0, everywhere=border_region == "all")
    np.testing.assert_allclose(weight, expected, atol=1e-3)


def test_border_cutoff():
    cutoff = border_cutoff(10.0, 5.0, 1e-3)
    assert 10.0 * np.exp(-(cutoff**2) / (2 * 5.0**2)) == pytest.approx(1e-3)
    assert border_cutoff(1e-4, 5.0, 1e-3) == 0.0
    # A tolerance above w0 drops the border term altogether.
    np.testing.assert_allclose(UNetWeightMap(tolerance=20.0, class_balance=False)(ROW), 1.0)


def test_tensor_and_metatensor_types():
    expected = UNetWeightMap()(ROW)
    out = UNetWeightMap()(torch.as_tensor(ROW))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), expected)

    affine = torch.diag(torch.tensor([2.0, 3.0, 1.0, 1.0]))
    meta = MetaTensor(torch.as_tensor(ROW).float(), affine=affine, meta={"filename_or_obj": "0.png"})
    out = UNetWeightMap()(meta)
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32
    assert torch.equal(out.affine, affine) and out.meta["filename_or_obj"] == "0.png"
    np.testing.assert_allclose(out.numpy(), expected)


def test_dict_transform():
    data = {"image": np.zeros((1, 1, 9), dtype=np.float32), "label": ROW}
    out = UNetWeightMapd(keys="label")(data)
    assert set(out) == {"image", "label", "weight"} and "weight" not in data
    np.testing.assert_allclose(out["weight"], UNetWeightMap()(ROW))

    out = UNetWeightMapd(keys=["label", "other"], weight_key=["w1", "w2"], allow_missing_keys=True)(data)
    assert "w1" in out and "w2" not in out
    with pytest.raises(KeyError):
        UNetWeightMapd(keys=["label", "other"], weight_key=["w1", "w2"])(data)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"border_region": "foreground"}, r"\('background', 'all'\)"),
        ({"sigma": 0.0}, "sigma"),
        ({"w0": -1.0}, "w0"),
        ({"tolerance": 0.0}, "tolerance"),
        ({"connectivity": 0}, "connectivity"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        UNetWeightMap(**kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="one channel"):
        UNetWeightMap()(np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match="one channel"):
        UNetWeightMap()(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="connectivity"):
        UNetWeightMap(connectivity=3)(np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="one weight_key per key"):
        UNetWeightMapd(keys=["a", "b"])
    with pytest.raises(ValueError, match="must differ"):
        UNetWeightMapd(keys="label", weight_key="label")
