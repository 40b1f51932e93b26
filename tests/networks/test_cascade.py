"""Cascaded U-Net specifics: stage-1 probabilities feed stage 2, deep supervision, sliding windows."""

from __future__ import annotations

import pytest
import torch
from monai.inferers import SlidingWindowInferer
from torch.nn import functional as F

from app.networks import CascadedUNet


def test_stage1_probabilities_are_in_the_stage2_input():
    net = CascadedUNet(3, 2, 3, features=(2, 4)).eval()
    captured = {}
    net.stage1.register_forward_hook(lambda module, args, out: captured.update(coarse=out))
    net.stage2.register_forward_pre_hook(lambda module, args: captured.update(stage2_input=args[0]))
    x = torch.rand(1, 2, 8, 8, 8)
    net(x)
    assert captured["coarse"].shape == (1, 3, 4, 4, 4)
    stage2_input = captured["stage2_input"]
    assert stage2_input.shape == (1, 2 + 3, 8, 8, 8)
    torch.testing.assert_close(stage2_input[:, :2], x)
    expected = F.interpolate(torch.softmax(captured["coarse"], 1), size=(8, 8, 8), mode="trilinear")
    torch.testing.assert_close(stage2_input[:, 2:], expected)
    torch.testing.assert_close(stage2_input[:, 2:].sum(1), torch.ones(1, 8, 8, 8))


def test_deep_supervision_returns_both_stages_in_training():
    net = CascadedUNet(2, 1, 2, deep_supervision=True, features=(2, 4))
    fine, coarse = net(torch.rand(2, 1, 16, 16))
    assert fine.shape == (2, 2, 16, 16) and coarse.shape == (2, 2, 8, 8)


def test_sliding_window_inference():
    net = CascadedUNet(2, 1, 2, features=(2, 4)).eval()
    with torch.no_grad():
        y = SlidingWindowInferer(roi_size=(16, 16), overlap=0.25)(torch.rand(1, 1, 20, 27), net)
    assert y.shape == (1, 2, 20, 27)


def test_arguments():
    with pytest.raises(ValueError, match="padding='same' only"):
        CascadedUNet(2, features=(2, 4), padding="valid")
    with pytest.raises(ValueError, match="'heads' is not a stage argument"):
        CascadedUNet(2, features=(2, 4), heads={"a": 2})
    with pytest.raises(ValueError, match=r"use 12 or 16 \(stage 1 of the cascade runs at half resolution\)"):
        CascadedUNet(2, features=(2, 4))(torch.rand(1, 1, 14, 16))
