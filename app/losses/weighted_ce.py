"""Pixel-wise weighted softmax cross-entropy: the U-Net energy function (Ronneberger et al. 2015, eq. 1).

Reference:
    O. Ronneberger, P. Fischer, T. Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation",
    MICCAI 2015, https://arxiv.org/abs/1505.04597 (section 3, eq. 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["REDUCTIONS", "WeightedCrossEntropyLoss", "center_crop_to"]

REDUCTIONS = ("mean", "sum", "none")


def center_crop_to(x: torch.Tensor, spatial_size: tuple[int, ...], name: str = "tensor") -> torch.Tensor:
    """Centre-crop the spatial dims of ``x`` ``(B, C, *spatial)`` to ``spatial_size``.

    The crop starts at ``(size - target) // 2`` in each dim, so an odd surplus leaves the extra pixel at the
    end. This is the region a valid-padding network (e.g. the original U-Net: 572 x 572 in, 388 x 388 out)
    predicts when it is fed the whole tile.

    Args:
        x: tensor ``(B, C, *spatial)``.
        spatial_size: target spatial size, each dim at most that of ``x``.
        name: how errors refer to ``x``.

    Raises:
        ValueError: when the number of spatial dims differs or a dim of ``x`` is smaller than the target.
    """
    size = tuple(x.shape[2:])
    if len(size) != len(spatial_size):
        raise ValueError(f"{name} has spatial shape {size}, expected {len(spatial_size)} spatial dims.")
    if any(s < t for s, t in zip(size, spatial_size, strict=True)):
        raise ValueError(f"{name} spatial shape {size} is smaller than the logits' {tuple(spatial_size)}.")
    window = tuple(slice((s - t) // 2, (s - t) // 2 + t) for s, t in zip(size, spatial_size, strict=True))
    return x[(slice(None), slice(None), *window)]


class WeightedCrossEntropyLoss(nn.Module):
    """Softmax cross-entropy weighted per pixel by a weight map: ``E = sum_x w(x) * -log p_{l(x)}(x)``.

    This is the U-Net energy function (Ronneberger et al. 2015, eq. 1), with ``w`` typically the weight map of
    eq. 2 (see :class:`app.transforms.UNetWeightMap`). Without a weight map it is the plain softmax
    cross-entropy.

    Reductions, with ``N`` the number of pixels ``B * prod(spatial)`` (after any crop):

    - ``"mean"``: ``sum(w * ce) / N`` (the default; equals :func:`torch.nn.functional.cross_entropy`
      when ``w == 1``), or ``sum(w * ce) / sum(w)`` with ``normalize_by_weight=True`` (a weighted mean;
      0 when all weights are 0);
    - ``"sum"``: ``sum(w * ce)``, the paper's energy;
    - ``"none"``: the weighted per-pixel loss ``w * ce`` of shape ``(B, 1, *spatial)``.

    Args:
        reduction: one of ``REDUCTIONS``.
        normalize_by_weight: with ``reduction="mean"``, divide by the sum of the weights instead of ``N``.
        crop_to_input: centre-crop a target and weight map larger than the logits to the logits' spatial size
            (valid-padding networks predict only the centre of their input); see :func:`center_crop_to`.
            When False, their spatial sizes must equal the logits'.
        require_weight: raise instead of falling back to the plain cross-entropy when no weight map comes.
            Only the EM bundle computes one (``app.transforms.UNetWeightMapd`` in ``train#cache``, passed on
            by ``app.engine.PrepareBatchWithWeight``); ``configs/losses/weighted_ce.json`` sets this, so on
            another bundle it fails on the first batch instead of silently training an unweighted loss.

    Raises:
        ValueError: when ``reduction`` is not one of ``REDUCTIONS``, or ``normalize_by_weight`` is set with a
            reduction other than ``"mean"``.
    """

    def __init__(
        self,
        reduction: str = "mean",
        normalize_by_weight: bool = False,
        crop_to_input: bool = True,
        require_weight: bool = False,
    ) -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        if normalize_by_weight and reduction != "mean":
            raise ValueError(f"normalize_by_weight needs reduction='mean', got reduction={reduction!r}.")
        self.reduction = reduction
        self.normalize_by_weight = normalize_by_weight
        self.crop_to_input = crop_to_input
        self.require_weight = require_weight

    def forward(
        self,
        input: torch.Tensor,
        target: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
        weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """
        Args:
            input: logits ``(B, K, H, W[, D])``, ``K >= 2`` classes (softmax is applied here).
            target: class indices ``(B, 1, H, W[, D])`` (any numeric dtype, values in ``[0, K)``) or one-hot /
                soft labels ``(B, K, H, W[, D])``; spatially at least as large as ``input``. A
                ``(target, weight)`` pair is accepted too: that is how a trainer whose loss takes two
                arguments passes the weight map (see :class:`app.engine.PrepareBatchWithWeight`).
            weight: per-pixel weights ``(B, 1, H, W[, D])``, spatially at least as large as ``input``;
                None = ones.

        Returns:
            scalar loss, or ``(B, 1, H, W[, D])`` for ``reduction="none"``.

        Raises:
            ValueError: on inconsistent shapes or class indices outside ``[0, K)``, or without a weight map
                when ``require_weight`` is set.
        """
        if isinstance(target, (tuple, list)):
            target, weight = target
        if weight is None and self.require_weight:
            raise ValueError(
                "WeightedCrossEntropyLoss(require_weight=True) got no weight map: the trainer must pass "
                "(label, weight). Only the EM bundle computes the U-Net weight map "
                "(app.transforms.UNetWeightMapd in train#cache, app.engine.PrepareBatchWithWeight as "
                "train#trainer#prepare_batch); on other bundles use another loss overlay, e.g. "
                "configs/losses/weighted_bce.json."
            )
        if input.ndim < 3 or input.shape[1] < 2:
            raise ValueError(f"input must be logits (B, K, *spatial) with K >= 2, got {tuple(input.shape)}.")
        n_classes = input.shape[1]
        target = self._match(target, input, "target", channels=(1, n_classes))
        if weight is not None:
            weight = self._match(weight, input, "weight", channels=(1,))

        log_prob = F.log_softmax(input, dim=1)
        if target.shape[1] == 1:
            indices = target.long()
            if indices.min() < 0 or indices.max() >= n_classes:
                raise ValueError(
                    f"target class indices must be in [0, {n_classes}), got range "
                    f"[{indices.min().item()}, {indices.max().item()}]."
                )
            loss = -log_prob.gather(1, indices)
        else:
            loss = -(target.to(log_prob.dtype) * log_prob).sum(dim=1, keepdim=True)
        if weight is not None:
            loss = loss * weight.to(loss.dtype)

        if self.reduction == "none":
            return loss
        total = loss.sum()
        if self.reduction == "sum":
            return total
        if self.normalize_by_weight and weight is not None:
            # all-zero weights give 0, not 0 / 0
            return total / weight.sum().to(total.dtype).clamp_min(torch.finfo(total.dtype).tiny)
        return total / loss.numel()

    def _match(
        self, x: torch.Tensor, input: torch.Tensor, name: str, channels: tuple[int, ...]
    ) -> torch.Tensor:
        """Check the batch and channel size of ``x`` and bring it to the logits' spatial size."""
        if x.ndim != input.ndim or x.shape[0] != input.shape[0] or x.shape[1] not in channels:
            allowed = " or ".join(f"(B, {c}, *spatial)" for c in channels)
            raise ValueError(
                f"{name} must be {allowed} matching input {tuple(input.shape)}, got {tuple(x.shape)}."
            )
        spatial = tuple(input.shape[2:])
        if tuple(x.shape[2:]) == spatial:
            return x
        if not self.crop_to_input:
            raise ValueError(
                f"{name} spatial shape {tuple(x.shape[2:])} differs from the logits' {spatial} "
                "(set crop_to_input=True to centre-crop it)."
            )
        return center_crop_to(x, spatial, name)
