"""Sigmoid Dice + per-channel binary cross-entropy, shaped like MONAI's ``DiceCELoss``.

``monai.losses.DiceCELoss(sigmoid=True)`` pairs the sigmoid Dice with a *softmax* cross-entropy as soon as
the input has more than one channel; this pairs it with :class:`app.losses.SigmoidBCELoss`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.losses import DiceLoss
from monai.utils import DiceCEReduction, look_up_option
from torch.nn.modules.loss import _Loss

from app.losses.bce import SigmoidBCELoss, as_one_hot

__all__ = ["DiceBCELoss"]


class DiceBCELoss(_Loss):
    """``lambda_dice * Dice(sigmoid(x), y) + lambda_bce * BCE(x, y)`` with ``y`` the one-hot label.

    The Dice term is :class:`monai.losses.DiceLoss` with ``sigmoid=True``; the BCE term is
    :class:`app.losses.SigmoidBCELoss` over every channel.

    Args:
        include_background: include channel 0 in the Dice term (the BCE term always has every channel, so
            the background logit of a softmax-head network stays trained).
        batch: sum the Dice intersection and union over the batch before dividing.
        smooth_nr: added to the Dice numerator.
        smooth_dr: added to the Dice denominator.
        pos_weight: the BCE term's positive weights, see :class:`app.losses.SigmoidBCELoss`.
        lambda_dice: weight of the Dice term, ``>= 0``.
        lambda_bce: weight of the BCE term, ``>= 0``.
        reduction: ``"mean"`` or ``"sum"``, for both terms.

    Raises:
        ValueError: on a negative ``lambda_*`` or an unknown ``reduction``.

    Example::

        loss = DiceBCELoss(batch=True)
        loss(torch.randn(2, 2, 64, 64), torch.randint(0, 2, (2, 1, 64, 64)))  # 2D, binary
        loss(torch.randn(1, 3, 32, 32, 32), torch.randint(0, 3, (1, 1, 32, 32, 32)))  # 3D, 3 classes
    """

    def __init__(
        self,
        include_background: bool = True,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        pos_weight: float | Sequence[float] | None = None,
        lambda_dice: float = 1.0,
        lambda_bce: float = 1.0,
        reduction: str = "mean",
    ) -> None:
        super().__init__()
        reduction = look_up_option(reduction, DiceCEReduction).value
        if lambda_dice < 0.0 or lambda_bce < 0.0:
            raise ValueError(f"lambda_dice and lambda_bce must be >= 0, got {lambda_dice}, {lambda_bce}.")
        self.dice = DiceLoss(
            include_background=include_background,
            sigmoid=True,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=reduction,
        )
        self.bce = SigmoidBCELoss(pos_weight=pos_weight, reduction=reduction)
        self.lambda_dice = lambda_dice
        self.lambda_bce = lambda_bce

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, K, H, W[, D])``.
            target: class indices ``(B, 1, H, W[, D])`` or one-hot labels ``(B, K, H, W[, D])``.

        Returns:
            a scalar.
        """
        target = as_one_hot(target, input)
        return self.lambda_dice * self.dice(input, target) + self.lambda_bce * self.bce(input, target)
