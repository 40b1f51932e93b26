"""Every ``configs/variants/*.json`` overlay parses over the bundles and builds a network fit for them."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser
from monai.losses import DeepSupervisionLoss
from torch import nn

from app.paths import REPO_ROOT

VARIANTS_DIR = REPO_ROOT / "configs" / "variants"
OVERLAYS = sorted(VARIANTS_DIR.glob("*.json"))
EXPECTED = {
    "attention", "attention_residual", "cascade", "dense", "mobile", "plain", "plain_small", "residual",
    "skipnorm", "unetpp", "unetpp_ds",
}  # fmt: skip
# the keys the overlays read from a bundle (docs/variants.md), set here where a bundle does not define them
BUNDLE_KEYS = {
    "ct": {"spatial_dims": 3, "padding": "same", "depth": 4},
    "mri": {"spatial_dims": 3, "padding": "same", "depth": 3},
    "em": {"spatial_dims": 2, "in_channels": 1, "padding": "valid"},
}
# the EM trainer passes (label, weight) pairs, which DeepSupervisionLoss cannot resize; the cascade needs same
# padding and tiles divisible by 2**depth (572 is not): see docs/variants.md
NOT_FOR_EM = ("cascade", "unetpp_ds")


def _parser(bundle: str, overlay) -> ConfigParser:
    parser = ConfigParser()
    parser.read_meta(REPO_ROOT / "bundles" / bundle / "metadata.json")
    parser.read_config([str(REPO_ROOT / "bundles" / bundle / "train.json"), str(overlay)])
    for key, value in BUNDLE_KEYS[bundle].items():
        if key not in parser:
            parser[key] = value
    if bundle == "mri":
        parser["in_channels"] = 2  # the bundle counts them in its datalist, which needs the demo data
    return parser


def test_the_overlays_are_the_documented_ones():
    assert {p.stem for p in OVERLAYS} == EXPECTED
    docs = (REPO_ROOT / "docs" / "variants.md").read_text()
    assert all(f"`{name}`" in docs for name in EXPECTED)


@pytest.mark.parametrize("bundle", ["ct", "mri"])
@pytest.mark.parametrize("overlay", OVERLAYS, ids=[p.stem for p in OVERLAYS])
def test_overlay_over_3d_bundles(overlay, bundle):
    parser = _parser(bundle, overlay)
    net = parser.get_parsed_content("network_def")
    assert isinstance(net, nn.Module)
    expected = (3, parser.get_parsed_content("in_channels"), parser.get_parsed_content("num_classes"))
    assert (net.spatial_dims, net.in_channels, net.out_channels) == expected
    assert net.margin == 0
    net.check_input_size(list(parser.get_parsed_content("patch_size")))  # the bundle's patches fit
    if getattr(net, "deep_supervision", False):
        assert isinstance(parser.get_parsed_content("deep_supervision_loss"), DeepSupervisionLoss)
        assert parser["train#trainer#loss_function"] == "@deep_supervision_loss"


@pytest.mark.parametrize("overlay", [p for p in OVERLAYS if p.stem not in NOT_FOR_EM], ids=lambda p: p.stem)
def test_overlay_over_em_bundle(overlay):
    parser = _parser("em", overlay)
    net = parser.get_parsed_content("network_def")
    assert (net.spatial_dims, net.in_channels, net.padding) == (2, 1, "valid")
    assert net.margin == parser.get_parsed_content("margin")  # the EM bundle pads its tiles by this margin
    assert net.output_size(parser.get_parsed_content("tile_size")) == 388
