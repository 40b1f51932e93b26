"""Segmentation networks: the original U-Net (2015) and its size helpers."""

from app.networks.unet2015 import (
    PADDING_MODES,
    UNet2015,
    nearest_valid_input_sizes,
    unet2015_input_size,
    unet2015_margin,
    unet2015_output_size,
    valid_input_sizes,
)

__all__ = [
    "PADDING_MODES",
    "UNet2015",
    "nearest_valid_input_sizes",
    "unet2015_input_size",
    "unet2015_margin",
    "unet2015_output_size",
    "valid_input_sizes",
]
