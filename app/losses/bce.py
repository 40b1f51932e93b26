"""Per-channel sigmoid binary cross-entropy of multi-class logits against a class-index or one-hot label.

MONAI has no such loss: its ``DiceCELoss(sigmoid=True)`` computes the *softmax* cross-entropy whenever the
input has more than one channel, and ``FocalLoss(gamma=0)`` (which is BCE) weighs positives through ``alpha``,
documented as a balance in ``[0, 1]``. The bundles' networks output ``K >= 2`` logit channels, background
included, so a BCE-type loss treats each channel as its own binary problem against the one-hot label.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks import one_hot
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

__all__ = ["SigmoidBCELoss", "as_one_hot"]


def as_one_hot(target: torch.Tensor, input: torch.Tensor) -> torch.Tensor:
    """``target`` as a float tensor with the channels of the logits ``input`` ``(B, K, *spatial)``.

    A class-index map ``(B, 1, *spatial)`` is one-hot encoded to ``K`` channels when ``K > 1``; a target that
    already has ``K`` channels (one-hot, soft labels, or the binary label of a single-channel output) is
    returned as is.

    Raises:
        ValueError: when the shapes do not match as described.
    """
    n_classes = input.shape[1]
    if target.ndim != input.ndim or target.shape[0] != input.shape[0] or target.shape[2:] != input.shape[2:]:
        raise ValueError(
            f"target must be (B, 1 or {n_classes}, *spatial) matching input {tuple(input.shape)}, "
            f"got {tuple(target.shape)}."
        )
    if target.shape[1] == n_classes:
        return target.to(input.dtype)
    if target.shape[1] != 1:
        raise ValueError(f"target must have 1 or {n_classes} channels, got {tuple(target.shape)}.")
    return one_hot(target, num_classes=n_classes, dtype=input.dtype)


class SigmoidBCELoss(_Loss):
    """Binary cross-entropy of every logit channel with a sigmoid, optionally weighting the positives.

    For logits ``x`` ``(B, K, *spatial)`` and the one-hot label ``y``, each element contributes
    ``-(p_k * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x)))``, as
    :class:`torch.nn.BCEWithLogitsLoss` with a per-channel ``pos_weight`` ``p_k``. Raising ``p_k`` above 1
    counts the pixels of class ``k`` more than the rest: class balance for small structures (for a class
    that covers a fraction ``f`` of the pixels, ``p_k = (1 - f) / f`` balances it).

    Args:
        pos_weight: None (all 1, plain BCE); a scalar, the weight of the positives of every foreground
            channel ``1 .. K-1`` with the background channel 0 at 1 (with ``K = 1`` the single channel is
            foreground); or one weight per channel, ``K`` values, background included. Non-negative.
        reduction: ``"mean"`` (over all ``B * K * prod(spatial)`` elements), ``"sum"`` or ``"none"``
            (the element-wise loss ``(B, K, *spatial)``).

    Raises:
        ValueError: on a negative or multi-dimensional ``pos_weight``, or an unknown ``reduction``.

    Example::

        loss = SigmoidBCELoss(pos_weight=10.0)
        loss(torch.randn(2, 2, 64, 64), torch.randint(0, 2, (2, 1, 64, 64)))  # 2D, binary
        loss = SigmoidBCELoss(pos_weight=[1.0, 5.0, 20.0])
        loss(torch.randn(1, 3, 32, 32, 32), torch.randint(0, 3, (1, 1, 32, 32, 32)))  # 3D, 3 classes
    """

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        pos_weight: float | Sequence[float] | None = None,
        reduction: LossReduction | str = LossReduction.MEAN,
    ) -> None:
        super().__init__(reduction=LossReduction(reduction).value)
        weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        if weight is not None and (weight.ndim > 1 or (weight < 0).any()):
            raise ValueError(f"pos_weight must be a non-negative scalar or 1D sequence, got {pos_weight}.")
        self.register_buffer("pos_weight", weight)

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, K, H, W[, D])``.
            target: class indices ``(B, 1, H, W[, D])`` or one-hot / soft labels ``(B, K, H, W[, D])``.

        Returns:
            a scalar, or ``(B, K, H, W[, D])`` with ``reduction="none"``.

        Raises:
            ValueError: on inconsistent shapes, or a ``pos_weight`` list whose length is not ``K``.
        """
        target = as_one_hot(target, input)
        return F.binary_cross_entropy_with_logits(
            input, target, pos_weight=self._channel_weights(input), reduction=self.reduction
        )

    def _channel_weights(self, input: torch.Tensor) -> torch.Tensor | None:
        """``pos_weight`` as ``(K, 1, ..., 1)``, broadcastable over ``(B, K, *spatial)``."""
        if self.pos_weight is None:
            return None
        n_classes = input.shape[1]
        weight = self.pos_weight.to(device=input.device, dtype=input.dtype)
        if weight.ndim == 0:
            weight = weight.expand(n_classes).clone()
            if n_classes > 1:
                weight[0] = 1.0
        elif weight.numel() != n_classes:
            raise ValueError(f"pos_weight has {weight.numel()} values, the input has {n_classes} channels.")
        return weight.view(n_classes, *([1] * (input.ndim - 2)))
