"""Tests of the wrapper that gives any ``loss(logits, label)`` the targets the bundles' trainers pass."""

from __future__ import annotations

import pytest
import torch

from app.losses import LabelTargetLoss


class _Recorder(torch.nn.Module):
    """A loss that records the target it receives and returns its sum."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self.target = target
        return target.sum()


def test_pair_is_reduced_to_its_label_and_cropped_to_the_logits():
    recorder = _Recorder()
    label = torch.arange(20.0).view(1, 1, 4, 5)  # centre 2 x 3 of 4 x 5: rows 1-2, columns 1-3
    weight = torch.full((1, 1, 4, 5), 100.0)
    loss = LabelTargetLoss(recorder)(torch.zeros(1, 2, 2, 3), (label, weight))
    torch.testing.assert_close(recorder.target, torch.tensor([[[[6.0, 7.0, 8.0], [11.0, 12.0, 13.0]]]]))
    assert loss.item() == 57.0


def test_3d_label_of_the_logits_size_passes_unchanged():
    recorder = _Recorder()
    label = torch.randint(0, 3, (2, 1, 3, 4, 5)).float()
    LabelTargetLoss(recorder)(torch.zeros(2, 3, 3, 4, 5), label)
    assert recorder.target is label


def test_smaller_label_is_an_error():
    with pytest.raises(ValueError, match="smaller than the logits"):
        LabelTargetLoss(_Recorder())(torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 2, 2))
