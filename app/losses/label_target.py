"""Give any ``loss(logits, label)`` the targets that every bundle's trainer passes.

The EM bundle's trainer (:class:`app.engine.PrepareBatchWithWeight`) passes the pair ``(label, weight)``,
and its valid-padding network predicts only the centre of its input tile, so its label is larger than the
logits. :class:`app.losses.WeightedCrossEntropyLoss` handles both; this wrapper does the same for MONAI's
losses, so one loss overlay serves the EM, CT and MRI bundles unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.modules.loss import _Loss

from app.losses.weighted_ce import center_crop_to

__all__ = ["LabelTargetLoss"]


class LabelTargetLoss(_Loss):
    """Apply ``loss`` to the label of the target, centre-cropped to the logits' spatial size.

    - a ``(label, weight)`` pair (the EM trainer's target) is reduced to its label: the weight map is
      :class:`app.losses.WeightedCrossEntropyLoss`'s, which the wrapped loss does not use;
    - a label spatially larger than the logits is centre-cropped to them (:func:`app.losses.center_crop_to`,
      the region a valid-padding U-Net predicts); a label of the logits' size passes unchanged, so on
      same-padding bundles (CT, MRI) the wrapper is a no-op.

    Args:
        loss: the loss to apply, called as ``loss(logits, label)``.

    Example::

        loss = LabelTargetLoss(monai.losses.DiceLoss(to_onehot_y=True, softmax=True))
        loss(torch.randn(1, 2, 388, 388), (torch.randint(0, 2, (1, 1, 572, 572)), torch.ones(1, 1, 572, 572)))
    """

    def __init__(self, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.loss = loss

    def forward(
        self, input: torch.Tensor, target: torch.Tensor | tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, K, H, W[, D])``.
            target: label ``(B, C, H', W'[, D'])``, or a ``(label, weight)`` pair, spatially at least as large
                as ``input``.

        Returns:
            what ``loss`` returns.

        Raises:
            ValueError: when the label has other spatial dims than ``input`` or is smaller.
        """
        if isinstance(target, (tuple, list)):
            target = target[0]
        if target.shape[2:] != input.shape[2:]:
            target = center_crop_to(target, tuple(input.shape[2:]), "label")
        return self.loss(input, target)
