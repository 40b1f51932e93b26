"""Batch preparation for trainers whose loss needs more than the label (e.g. a U-Net weight map)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines import PrepareBatch
from monai.utils import CommonKeys

__all__ = ["PrepareBatchWithWeight"]


class PrepareBatchWithWeight(PrepareBatch):
    """Return ``(image, (label, weight))`` so the trainer hands the weight map to the loss.

    ``SupervisedTrainer`` calls ``loss(pred, targets)``; with this ``prepare_batch`` the targets are the
    pair ``(label (B, 1, *spatial), weight (B, 1, *spatial))`` that
    :class:`app.losses.WeightedCrossEntropyLoss` accepts. Use ``"decollate": false`` on the trainer.

    Args:
        weight_key: key of the weight map in the batch dictionary.
    """

    def __init__(self, weight_key: str = "weight") -> None:
        self.weight_key = weight_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        def move(key: str) -> torch.Tensor:
            return batchdata[key].to(device=device, non_blocking=non_blocking, **kwargs)

        return move(CommonKeys.IMAGE), (move(CommonKeys.LABEL), move(self.weight_key))
