"""Tests of the pixel-wise weighted cross-entropy (U-Net energy, Ronneberger et al. 2015, eq. 1)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from app.losses import WeightedCrossEntropyLoss, center_crop_to

# Two pixels with logits (0, ln 3): softmax (1/4, 3/4). Pixel 0 is class 1 with weight 2, pixel 1 is class 0
# with weight 0.5, so the weighted losses are 2 * ln(4/3) = 0.5753641449035617 and 0.5 * ln(4) = ln(2).
LOGITS = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), math.log(3.0)]]]])  # (1, 2, 1, 2)
TARGET = torch.tensor([[[[1, 0]]]])  # (1, 1, 1, 2)
WEIGHT = torch.tensor([[[[2.0, 0.5]]]])
PIXEL_LOSS = [0.5753641449035617, 0.6931471805599453]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"reduction": "sum"}, 1.268511325463507),
        ({"reduction": "mean"}, 0.6342556627317535),  # sum / 2 pixels
        ({"reduction": "mean", "normalize_by_weight": True}, 0.5074045301854028),  # sum / 2.5
    ],
)
def test_hand_computed(kwargs, expected):
    loss = WeightedCrossEntropyLoss(**kwargs)(LOGITS, TARGET, WEIGHT)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_hand_computed_none_and_unweighted():
    loss = WeightedCrossEntropyLoss(reduction="none")(LOGITS, TARGET, WEIGHT)
    assert loss.shape == (1, 1, 1, 2)
    torch.testing.assert_close(loss.flatten(), torch.tensor(PIXEL_LOSS))
    # Without weights: (ln(4/3) + ln(4)) / 2.
    plain = WeightedCrossEntropyLoss()(LOGITS, TARGET)
    assert plain.item() == pytest.approx((math.log(4 / 3) + math.log(4)) / 2, rel=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (1, 4, 3, 4, 5)])
def test_ones_weight_equals_torch_cross_entropy(shape):
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(shape, generator=generator)
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=generator)
    ones = torch.ones_like(target, dtype=torch.float32)
    for reduction in ("mean", "sum"):
        expected = F.cross_entropy(logits, target[:, 0], reduction=reduction)
        torch.testing.assert_close(WeightedCrossEntropyLoss(reduction)(logits, target, ones), expected)
        torch.testing.assert_close(WeightedCrossEntropyLoss(reduction)(logits, target.float()), expected)
    expected = F.cross_entropy(logits, target[:, 0], reduction="none")[:, None]
    torch.testing.assert_close(WeightedCrossEntropyLoss("none")(logits, target, ones), expected)


def test_one_hot_target_matches_indices():
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=generator)
    target = torch.randint(0, 3, (2, 1, 4, 4), generator=generator)
    weight = torch.rand(2, 1, 4, 4, generator=generator)
    one_hot = F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()
    loss = WeightedCrossEntropyLoss()
    torch.testing.assert_close(loss(logits, one_hot, weight), loss(logits, target, weight))


def test_crop_to_input():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(1, 2, 2, 3, generator=generator)
    target = torch.randint(0, 2, (1, 1, 6, 6), generator=generator)
    weight = torch.rand(1, 1, 7, 5, generator=generator)  # odd surplus: extra pixel at the end
    expected = WeightedCrossEntropyLoss("none")(logits, target[:, :, 2:4, 1:4], weight[:, :, 2:4, 1:4])
    torch.testing.assert_close(WeightedCrossEntropyLoss("none")(logits, target, weight), expected)
    with pytest.raises(ValueError, match="crop_to_input"):
        WeightedCrossEntropyLoss(crop_to_input=False)(logits, target)
    with pytest.raises(ValueError, match="smaller"):
        WeightedCrossEntropyLoss()(torch.randn(1, 2, 8, 8), target)


def test_center_crop_to():
    x = torch.arange(2 * 25).reshape(1, 2, 5, 5)
    torch.testing.assert_close(center_crop_to(x, (3, 2)), x[:, :, 1:4, 1:3])
    torch.testing.assert_close(center_crop_to(x, (5, 5)), x)
    with pytest.raises(ValueError, match="spatial dims"):
        center_crop_to(x, (3,))


def test_gradients_finite_with_empty_labels():
    logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    target = torch.zeros(2, 1, 8, 8)
    for loss_fn, weight in [
        (WeightedCrossEntropyLoss(), torch.ones(2, 1, 8, 8)),
        (WeightedCrossEntropyLoss(normalize_by_weight=True), torch.zeros(2, 1, 8, 8)),
        (WeightedCrossEntropyLoss("sum"), None),
    ]:
        logits.grad = None
        loss = loss_fn(logits, target, weight)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert WeightedCrossEntropyLoss(normalize_by_weight=True)(logits, target, torch.zeros(2, 1, 8, 8)) == 0


def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match=r"\('mean', 'sum', 'none'\)"):
        WeightedCrossEntropyLoss("avg")
    with pytest.raises(ValueError, match="normalize_by_weight"):
        WeightedCrossEntropyLoss("sum", normalize_by_weight=True)
    loss = WeightedCrossEntropyLoss()
    with pytest.raises(ValueError, match="K >= 2"):
        loss(torch.randn(1, 1, 4, 4), torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match="target"):
        loss(LOGITS, torch.zeros(1, 3, 1, 2))
    with pytest.raises(ValueError, match="weight"):
        loss(LOGITS, TARGET, torch.ones(1, 2, 1, 2))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        loss(LOGITS, TARGET * 255)


def test_require_weight():
    loss = WeightedCrossEntropyLoss(require_weight=True)
    with pytest.raises(ValueError, match="got no weight map"):
        loss(LOGITS, TARGET)
    assert loss(LOGITS, (TARGET, WEIGHT)).item() == pytest.approx(0.6342556627317535, rel=1e-6)
