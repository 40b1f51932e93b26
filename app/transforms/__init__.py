"""MONAI-style transforms of the application."""

from app.transforms.augment import AUGMENTATION_PRESETS, augmentation_preset
from app.transforms.cells import CellSegmentationd
from app.transforms.channels import (
    CheckChannels,
    CheckChannelsd,
    check_channels,
    count_channels,
    group_channel_files,
)
from app.transforms.elastic import Rand3DElasticd, gaussian_smooth
from app.transforms.weight_map import (
    BORDER_REGIONS,
    UNetWeightMap,
    UNetWeightMapd,
    border_cutoff,
    class_balance_weights,
    unet_weight_map,
)

__all__ = [
    "AUGMENTATION_PRESETS",
    "augmentation_preset",
    "CellSegmentationd",
    "CheckChannels",
    "CheckChannelsd",
    "check_channels",
    "count_channels",
    "group_channel_files",
    "Rand3DElasticd",
    "gaussian_smooth",
    "BORDER_REGIONS",
    "UNetWeightMap",
    "UNetWeightMapd",
    "border_cutoff",
    "class_balance_weights",
    "unet_weight_map",
]
