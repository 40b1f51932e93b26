"""Losses of the application."""

from app.losses.bce import SigmoidBCELoss, as_one_hot
from app.losses.dice_bce import DiceBCELoss
from app.losses.label_target import LabelTargetLoss
from app.losses.weighted_ce import REDUCTIONS, WeightedCrossEntropyLoss, center_crop_to

__all__ = [
    "REDUCTIONS",
    "DiceBCELoss",
    "LabelTargetLoss",
    "SigmoidBCELoss",
    "WeightedCrossEntropyLoss",
    "as_one_hot",
    "center_crop_to",
]
