"""MONAI-style transforms of the application."""

from app.transforms.weight_map import (
    BORDER_REGIONS,
    UNetWeightMap,
    UNetWeightMapd,
    border_cutoff,
    class_balance_weights,
    unet_weight_map,
)

__all__ = [
    "BORDER_REGIONS",
    "UNetWeightMap",
    "UNetWeightMapd",
    "border_cutoff",
    "class_balance_weights",
    "unet_weight_map",
]
