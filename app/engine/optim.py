"""Optimisers by name, so a bundle config (or a study arm) switches optimiser with one string."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from monai.optimizers import Novograd

__all__ = ["OPTIMIZERS", "make_optimizer"]

OPTIMIZERS = ("sgd", "adam", "adamw", "novograd")


def make_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    lr: float,
    momentum: float = 0.99,
    weight_decay: float = 0.0,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """Build an optimiser.

    Args:
        name: one of ``OPTIMIZERS``: ``"sgd"`` (the U-Net paper: momentum 0.99), ``"adam"``, ``"adamw"``,
            ``"novograd"`` (the MONAI model-zoo spleen recipe).
        params: the network's parameters.
        lr: learning rate.
        momentum: SGD momentum (ignored by the adaptive optimisers).
        weight_decay: L2 penalty (decoupled for AdamW).
        nesterov: Nesterov momentum for SGD (nnU-Net uses it with momentum 0.99).

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    key = name.lower()
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "novograd":
        return Novograd(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
