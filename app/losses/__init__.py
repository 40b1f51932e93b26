"""Losses of the application."""

from app.losses.weighted_ce import REDUCTIONS, WeightedCrossEntropyLoss, center_crop_to

__all__ = ["REDUCTIONS", "WeightedCrossEntropyLoss", "center_crop_to"]
