"""Every ``configs/losses/*.json`` overlay parses over every bundle and gives the trainer a working loss.

Parse and instantiate only: no training. The targets are shaped like each bundle's: the EM trainer passes a
``(label, weight)`` pair with the label larger than the valid-padding logits; CT (2 classes) and MRI
(3 classes) pass a ``(B, 1, H, W, D)`` label of the logits' size.
"""

from __future__ import annotations

import math

import pytest
import torch
from monai.bundle import ConfigParser
from monai.losses import DeepSupervisionLoss

from app.paths import REPO_ROOT

LOSSES_DIR = REPO_ROOT / "configs" / "losses"
OVERLAYS = ("bce", "weighted_bce", "dice", "bce_dice", "dicece", "weighted_ce")
BUNDLES = ("em", "ct", "mri")
LN2, LN3, LN43, LN32 = math.log(2.0), math.log(3.0), math.log(4.0 / 3.0), math.log(1.5)

# 2D binary (EM): logits channel 0 = (0, ln 3), channel 1 = (ln 3, 0); softmax (1/4, 3/4) and (3/4, 1/4),
# sigmoid 1/2 or 3/4. The label, class 1 then class 0, sits in the centre of a 3 x 4 tile whose border (9)
# the loss must crop away; the weight map is 2 and 1 there.
EM_LOGITS = torch.tensor([[[[0.0, LN3]], [[LN3, 0.0]]]])
EM_LABEL = torch.full((1, 1, 3, 4), 9.0)
EM_LABEL[0, 0, 1, 1:3] = torch.tensor([1.0, 0.0])
EM_WEIGHT = torch.ones(1, 1, 3, 4)
EM_WEIGHT[0, 0, 1, 1] = 2.0
EM_EXPECTED = {
    "bce": (2 * LN2 + 2 * LN43) / 4,
    "weighted_bce": (2 * LN2 + (3 + 1) * LN43) / 4,  # EM's pos_weight [3, 1]: the membrane (class 0) x 3
    "dice": 1 - 1.5 / 2,  # softmax Dice per class: I = 3/4, |P| = |G| = 1
    "bce_dice": (1 - 1.5 / 2.25) + (2 * LN2 + 2 * LN43) / 4,  # sigmoid Dice: I = 3/4, |P| = 5/4, |G| = 1
    "dicece": (1 - 1.5 / 2) + LN43,
    "weighted_ce": (2 * LN43 + 1 * LN43) / 2,  # the weight map 2, 1 times -log(3/4) per pixel
}

# 3D, 3 classes (MRI): voxel 0 has logits (ln 2, 0, 0) and class 0, voxel 1 (0, 0, ln 2) and class 2;
# softmax (1/2, 1/4, 1/4), sigmoid 2/3 or 1/2.
MRI_LOGITS = torch.tensor([[LN2, 0.0], [0.0, 0.0], [0.0, LN2]]).view(1, 3, 1, 1, 2)
MRI_LABEL = torch.tensor([0.0, 2.0]).view(1, 1, 1, 1, 2)
MRI_BCE = (4 * LN2 + 2 * LN32) / 6  # 4 negatives at logit 0, 2 positives at logit ln 2
MRI_EXPECTED = {
    "bce": MRI_BCE,
    "weighted_bce": (4 * LN2 + (1 + 10) * LN32) / 6,
    "dice": (2 * (1 - 1 / 1.75) + 1) / 3,  # classes 0, 2: I = 1/2, |P| = 3/4, |G| = 1; class 1 absent: 1
    "bce_dice": (2 * (1 - (4 / 3) / (13 / 6)) + 1) / 3 + MRI_BCE,  # sigmoid: I = 2/3, |P| = 7/6, |G| = 1
    "dicece": (2 * (1 - 1 / 1.75) + 1) / 3 + LN2,
}


def _parser(bundle: str, *overlays) -> ConfigParser:
    parser = ConfigParser()
    parser.read_meta(REPO_ROOT / "bundles" / bundle / "metadata.json")
    parser.read_config([str(REPO_ROOT / "bundles" / bundle / "train.json"), *map(str, overlays)])
    return parser


def _trainer_loss(bundle: str, overlay: str, *more):
    return _parser(bundle, LOSSES_DIR / f"{overlay}.json", *more).get_parsed_content(
        "train#trainer#loss_function"
    )


def _batch(bundle: str, empty: bool) -> tuple[torch.Tensor, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """Random logits and a target shaped like the bundle's (all background when ``empty``)."""
    generator = torch.Generator().manual_seed(0)
    n_classes = 3 if bundle == "mri" else 2
    spatial, label_spatial = ((12, 12), (20, 20)) if bundle == "em" else ((8, 8, 8), (8, 8, 8))
    logits = torch.randn(2, n_classes, *spatial, generator=generator, requires_grad=True)
    label = torch.randint(0, n_classes, (2, 1, *label_spatial), generator=generator).float()
    if empty:
        label.zero_()
    if bundle == "em":
        return logits, (label, torch.rand(2, 1, *label_spatial, generator=generator) + 0.5)
    return logits, label


def test_the_overlays_are_the_documented_ones():
    assert {p.stem for p in LOSSES_DIR.glob("*.json")} == set(OVERLAYS)
    docs = (REPO_ROOT / "docs" / "losses_and_augmentation.md").read_text()
    assert all(f"configs/losses/{name}.json" in docs for name in OVERLAYS)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_hand_computed_2d_binary_em(overlay):
    value = _trainer_loss("em", overlay)(EM_LOGITS, (EM_LABEL, EM_WEIGHT))
    assert value.ndim == 0
    assert value.item() == pytest.approx(EM_EXPECTED[overlay], rel=1e-4)


@pytest.mark.parametrize("overlay", sorted(MRI_EXPECTED))
def test_hand_computed_3d_three_classes_mri(overlay):
    value = _trainer_loss("mri", overlay)(MRI_LOGITS, MRI_LABEL)
    assert value.item() == pytest.approx(MRI_EXPECTED[overlay], rel=1e-4)


@pytest.mark.parametrize("empty", [False, True], ids=["random", "empty"])
@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "weighted_ce"])
def test_overlay_gives_a_finite_loss_and_gradient(overlay, bundle, empty):
    logits, target = _batch(bundle, empty)
    value = _trainer_loss(bundle, overlay)(logits, target)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("empty", [False, True], ids=["random", "empty"])
def test_weighted_ce_on_em(empty):
    logits, target = _batch("em", empty)
    value = _trainer_loss("em", "weighted_ce")(logits, target)
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("bundle", ["ct", "mri"])
def test_weighted_ce_without_a_weight_map_is_a_clear_error(bundle):
    logits, target = _batch(bundle, empty=False)
    with pytest.raises(ValueError, match="Only the EM bundle computes the U-Net weight map"):
        _trainer_loss(bundle, "weighted_ce")(logits, target)


@pytest.mark.parametrize("bundle", ["ct", "mri"])
@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "weighted_ce"])
def test_deep_supervision_wraps_the_overlay(overlay, bundle):
    # configs/variants/unetpp_ds.json wraps @loss in DeepSupervisionLoss: main output + a half-size one
    loss = _trainer_loss(bundle, overlay, REPO_ROOT / "configs" / "variants" / "unetpp_ds.json")
    assert isinstance(loss, DeepSupervisionLoss)
    logits, label = _batch(bundle, empty=False)
    half = torch.randn(2, logits.shape[1], 4, 4, 4, requires_grad=True)
    value = loss([logits, half], label)
    value.backward()
    # the wrapper down-samples the label with "nearest-exact": voxels 1, 3, 5, 7 of 8
    expected = loss.loss(logits, label) + 0.5 * loss.loss(half, label[:, :, 1::2, 1::2, 1::2])
    assert value.item() == pytest.approx(expected.item(), rel=1e-5)
    assert torch.isfinite(half.grad).all() and half.grad.abs().sum() > 0
