"""FlexUNet specifics: channel plan, argument checks, the 2015 size arithmetic, overlap-tile inference."""

from __future__ import annotations

import pytest
import torch

from app.inferers import OverlapTileInferer
from app.networks import FlexUNet, UNet2015, unet_channels


def test_channel_plan():
    assert unet_channels() == [32, 64, 128, 256, 512]
    assert unet_channels(16, depth=3) == [16, 32, 64, 128]
    assert unet_channels((32, 64, 128), width_multiplier=0.5) == [16, 32, 64]
    assert unet_channels((3, 5), width_multiplier=0.1) == [1, 1]
    assert FlexUNet(2, features=(16, 32, 64), width_multiplier=0.5).channels == [8, 16, 32]
    with pytest.raises(ValueError, match="does not match"):
        unet_channels((4, 8, 16), depth=3)
    with pytest.raises(ValueError, match="at least two levels"):
        unet_channels((4,))
    with pytest.raises(ValueError, match="width_multiplier"):
        unet_channels(4, width_multiplier=0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spatial_dims": 1}, r"spatial_dims must be one of \(2, 3\)"),
        ({"block": "vgg"}, "block must be one of"),
        ({"skip": "sum"}, "skip must be one of"),
        ({"padding": "full"}, "'valid', 'same'"),
        ({"norm": "bacth"}, "'batch'"),
        ({"dropout_decoder": 1.0}, r"dropout_decoder must be in \[0, 1\)"),
        ({"out_channels": 0}, "out_channels must be an integer >= 1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FlexUNet(**{"spatial_dims": 2, "features": (2, 4), **kwargs})


def test_valid_padding_matches_unet2015_sizes():
    net = FlexUNet(2, 1, 2, features=2, depth=2, padding="valid", block="dense")
    reference = UNet2015(2, 1, 2, features=2, depth=2)
    assert net.margin == reference.margin == 20
    assert net.output_size((60, 64)) == reference.output_size((60, 64)) == (20, 24)
    with pytest.raises(ValueError, match="use 60 or 64"):
        net(torch.rand(1, 1, 62, 60))


def test_valid_padding_with_overlap_tile_inference():
    net = FlexUNet(2, 1, 2, features=(2, 4, 8), padding="valid", skip="attention").eval()
    with torch.no_grad():
        y = OverlapTileInferer(roi_size=48)(torch.rand(1, 1, 30, 37), net)
    assert y.shape == (1, 2, 30, 37)
