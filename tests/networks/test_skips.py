"""Skip fusions: attention coefficients in [0, 1], skip normalisation touches the skip path only."""

from __future__ import annotations

import pytest
import torch

from app.networks import AttentionGate, ConcatSkip, FlexUNet
from app.networks.skips import get_skip


def test_attention_gate_coefficients():
    gate = AttentionGate(3, skip_channels=4, gate_channels=8)
    x, g = torch.randn(2, 4, 8, 8, 8), torch.randn(2, 8, 4, 4, 4)
    alpha = gate.coefficients(x, g)
    assert alpha.shape == (2, 1, 8, 8, 8)
    assert alpha.min() >= 0 and alpha.max() <= 1
    torch.testing.assert_close(gate(x, g), x * alpha)
    with torch.no_grad():
        gate.psi[0].bias.fill_(-100.0)  # a closed gate passes nothing
    assert gate(x, g).abs().max() < 1e-20


@pytest.mark.parametrize("padding, size", [("same", 32), ("valid", 44)])
def test_attention_unet_coefficients_via_hooks(padding, size):
    net = FlexUNet(2, 1, 2, features=(2, 4, 8), block="residual", skip="attention", padding=padding)
    captured = []
    for level in net.decoder:
        level.fusion.gate.psi.register_forward_hook(lambda module, args, out: captured.append(out))
    net(torch.rand(1, 1, size, size))
    assert len(captured) == net.depth
    for alpha in captured:
        assert alpha.shape[:2] == (1, 1)
        assert alpha.min() >= 0 and alpha.max() <= 1


def test_concat_skip_crops_the_centre():
    fusion = ConcatSkip(2, skip_channels=2, up_channels=3, coarse_channels=6)
    skip, up = torch.randn(1, 2, 10, 10), torch.randn(1, 3, 6, 6)
    out = fusion(skip, up, torch.randn(1, 6, 3, 3))
    torch.testing.assert_close(out, torch.cat([skip[:, :, 2:8, 2:8], up], dim=1))


def test_skip_norm_changes_the_skip_path_only():
    fusion = ConcatSkip(2, skip_channels=2, up_channels=3, coarse_channels=6, skip_norm=True)
    skip, up = torch.randn(1, 2, 8, 8) * 5 + 3, torch.randn(1, 3, 8, 8)
    out = fusion(skip, up, torch.randn(1, 6, 4, 4))
    torch.testing.assert_close(out[:, 2:], up)  # the decoder path passes untouched
    assert not torch.allclose(out[:, :2], skip)
    torch.testing.assert_close(out[:, :2], fusion.skip_norm(skip))

    plain = FlexUNet(2, 1, 2, features=(2, 4, 8))
    normed = FlexUNet(2, 1, 2, features=(2, 4, 8), skip_norm=True)
    extra = set(normed.state_dict()) - set(plain.state_dict())
    assert extra and all(".fusion.skip_norm." in key for key in extra)
    missing, unexpected = normed.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == extra and not unexpected


def test_unknown_skip_lists_valid_names():
    with pytest.raises(ValueError, match=r"skip must be one of \('concat', 'attention'\)"):
        get_skip("add")
