"""Tests of the per-channel sigmoid BCE and the sigmoid Dice + BCE, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from app.losses import DiceBCELoss, SigmoidBCELoss, as_one_hot

LN2, LN3 = math.log(2.0), math.log(3.0)

# 2D binary, two pixels: logits channel 0 = (0, ln 3), channel 1 = (ln 3, 0), so sigmoid = 1/2 or 3/4;
# pixel 0 is class 1, pixel 1 class 0. The one-hot label equals sigmoid > 1/2 where the logit is ln 3, so
# each element loses -log(1 - 1/2) = ln 2 (logit 0, label 0) or -log(3/4) = ln(4/3) (logit ln 3, label 1).
LOGITS_2D = torch.tensor([[[[0.0, LN3]], [[LN3, 0.0]]]])  # (1, 2, 1, 2)
LABEL_2D = torch.tensor([[[[1.0, 0.0]]]])  # (1, 1, 1, 2)
LN43 = math.log(4.0 / 3.0)

# 3D, 3 classes, two voxels: logits (0, 0, 0) everywhere, so every element loses ln 2 and only pos_weight
# makes the label matter; voxel 0 is class 0, voxel 1 class 2.
LOGITS_3D = torch.zeros(1, 3, 1, 1, 2)
LABEL_3D = torch.tensor([0.0, 2.0]).view(1, 1, 1, 1, 2)


@pytest.mark.parametrize(
    ("pos_weight", "expected"),
    [
        (None, (2 * LN2 + 2 * LN43) / 4),
        (10.0, (2 * LN2 + (1 + 10) * LN43) / 4),  # a scalar weighs channel 1 only (channel 0 = background)
        ([2.0, 3.0], (2 * LN2 + (2 + 3) * LN43) / 4),
    ],
)
def test_bce_2d_binary(pos_weight, expected):
    loss = SigmoidBCELoss(pos_weight=pos_weight)(LOGITS_2D, LABEL_2D)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    ("pos_weight", "expected"),
    [
        (None, LN2),
        (4.0, (4 + 1 + 4) * LN2 / 6),  # 4 negatives, positive of class 0 (weight 1) and of class 2 (weight 4)
        ([1.0, 2.0, 3.0], (4 + 1 + 3) * LN2 / 6),
    ],
)
def test_bce_3d_three_classes(pos_weight, expected):
    assert SigmoidBCELoss(pos_weight)(LOGITS_3D, LABEL_3D).item() == pytest.approx(expected, rel=1e-6)


def test_bce_reductions_and_one_hot_target():
    none = SigmoidBCELoss([2.0, 3.0], reduction="none")(LOGITS_2D, LABEL_2D)
    expected = torch.tensor([[[[LN2, 2 * LN43]], [[3 * LN43, LN2]]]])
    torch.testing.assert_close(none, expected)
    total = SigmoidBCELoss(reduction="sum")(LOGITS_2D, LABEL_2D)
    assert total.item() == pytest.approx(2 * LN2 + 2 * LN43, rel=1e-6)
    one_hot = torch.tensor([[[[0.0, 1.0]], [[1.0, 0.0]]]])
    assert SigmoidBCELoss()(LOGITS_2D, one_hot).item() == pytest.approx((2 * LN2 + 2 * LN43) / 4, rel=1e-6)


def test_bce_single_channel_output():
    # a 1-channel sigmoid head: the (B, 1) label is the binary target itself and a scalar weighs it
    logits, label = torch.tensor([[[[LN3, 0.0]]]]), torch.tensor([[[[1.0, 0.0]]]])
    assert SigmoidBCELoss(5.0)(logits, label).item() == pytest.approx((5 * LN43 + LN2) / 2, rel=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        # sigmoid Dice per channel: I = 3/4, |P| = 5/4, |G| = 1 -> 1 - 1.5 / 2.25 = 1/3 for both channels
        ({}, 1 / 3 + (2 * LN2 + 2 * LN43) / 4),
        (
            {"include_background": False, "lambda_dice": 2.0, "lambda_bce": 0.5},
            2 / 3 + (2 * LN2 + 2 * LN43) / 8,
        ),
        ({"pos_weight": 10.0}, 1 / 3 + (2 * LN2 + 11 * LN43) / 4),
    ],
)
def test_dice_bce_2d_binary(kwargs, expected):
    assert DiceBCELoss(**kwargs)(LOGITS_2D, LABEL_2D).item() == pytest.approx(expected, rel=1e-4)


def test_dice_bce_3d_three_classes():
    # sigmoid 1/2 everywhere: Dice of classes 0 and 2 = 1 - 1 / 2, of the absent class 1 = 1 - 0 / 1 = 1
    loss = DiceBCELoss(batch=True)(LOGITS_3D, LABEL_3D)
    assert loss.item() == pytest.approx((0.5 + 1.0 + 0.5) / 3 + LN2, rel=1e-4)


@pytest.mark.parametrize("loss", [SigmoidBCELoss(10.0), DiceBCELoss(batch=True, pos_weight=[1.0, 5.0, 20.0])])
@pytest.mark.parametrize("spatial", [(5, 7), (3, 5, 4)])
def test_empty_label_gradients_are_finite(loss, spatial):
    n_classes = 3 if isinstance(loss, DiceBCELoss) else 2
    logits = torch.randn(2, n_classes, *spatial, requires_grad=True)
    value = loss(logits, torch.zeros(2, 1, *spatial))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match="non-negative"):
        SigmoidBCELoss(-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        SigmoidBCELoss([[1.0, 2.0]])
    with pytest.raises(ValueError, match="3 values, the input has 2 channels"):
        SigmoidBCELoss([1.0, 2.0, 3.0])(LOGITS_2D, LABEL_2D)
    with pytest.raises(ValueError, match="1 or 2 channels"):
        as_one_hot(torch.zeros(1, 3, 1, 2), LOGITS_2D)
    with pytest.raises(ValueError, match="matching input"):
        SigmoidBCELoss()(LOGITS_2D, torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match=">= 0"):
        DiceBCELoss(lambda_bce=-1.0)
    with pytest.raises(ValueError, match="sum"):
        DiceBCELoss(reduction="none")
