"""Heads: several heads stacked along the channels, deep-supervision heads and their sizes."""

from __future__ import annotations

import pytest
import torch

from app.networks import DeepSupervisionHeads, FlexUNet, MultiHead


def test_multi_head_stacks_and_splits():
    head = MultiHead(2, 4, {"liver": 2, "spleen": 3})
    x = torch.rand(1, 4, 6, 6)
    y = head(x)
    assert y.shape == (1, 5, 6, 6) and head.out_channels == 5
    assert head.slices == {"liver": (0, 2), "spleen": (2, 5)}
    parts = head.split(y)
    assert list(parts) == ["liver", "spleen"]
    torch.testing.assert_close(parts["spleen"], head.heads[1](x))


def test_multi_head_unet():
    net = FlexUNet(2, 1, 3, features=(2, 4), heads={"a": 1, "b": 2})
    assert net(torch.rand(1, 1, 8, 8)).shape == (1, 3, 8, 8)
    with pytest.raises(ValueError, match="must equal the heads' total"):
        FlexUNet(2, 1, 2, features=(2, 4), heads={"a": 1, "b": 2})
    with pytest.raises(ValueError, match="heads must map"):
        MultiHead(2, 4, {})


def test_deep_supervision_heads_crop_to_the_main_output():
    heads = DeepSupervisionHeads(2, in_channels=[4, 8], out_channels=3, scales=[2, 4])
    outputs = heads([torch.rand(1, 4, 14, 14), torch.rand(1, 8, 9, 9)], [20, 24])
    assert [o.shape for o in outputs] == [(1, 3, 10, 12), (1, 3, 5, 6)]


@pytest.mark.parametrize("padding, size, main", [("same", 32, 32), ("valid", 140, 52)])
def test_unet_deep_supervision_levels(padding, size, main):
    net = FlexUNet(2, 1, 2, features=(2, 4, 8, 16), padding=padding, deep_supervision=True)
    outputs = net(torch.rand(1, 1, size, size))
    assert [o.shape[-1] for o in outputs] == [main, main // 2, main // 4]
    assert net.eval()(torch.rand(1, 1, size, size)).shape == (1, 2, main, main)
    with pytest.raises(ValueError, match="depth >= 2"):
        FlexUNet(2, 1, 2, features=(2, 4), deep_supervision=True)
