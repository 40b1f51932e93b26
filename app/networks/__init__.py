"""Segmentation networks: the original U-Net (2015), its size helpers, and the U-Net family.

The family (:class:`FlexUNet`, :class:`UNetPlusPlus`, :class:`CascadedUNet`) is composed from shared parts:
blocks (:mod:`app.networks.blocks`), skip fusions (:mod:`app.networks.skips`), heads
(:mod:`app.networks.heads`), the encoder (:mod:`app.networks.encoder`) and the decoder level
(:mod:`app.networks.decoder`). See ``docs/variants.md``.
"""

from app.networks.blocks import BLOCK_TYPES, DenseBlock, DoubleConvBlock, MobileBlock, ResidualBlock
from app.networks.cascade import CascadedUNet
from app.networks.decoder import DecoderBlock
from app.networks.dynunet import DeepSupervisionDynUNet
from app.networks.encoder import UNetEncoder, unet_channels
from app.networks.ensemble import MeanEnsemble, ensemble_network
from app.networks.heads import DeepSupervisionHeads, MultiHead, SegmentationHead
from app.networks.skips import SKIP_TYPES, AttentionGate, AttentionSkip, ConcatSkip
from app.networks.unet import FlexUNet
from app.networks.unet2015 import (
    PADDING_MODES,
    UNet2015,
    nearest_valid_input_sizes,
    unet2015_input_size,
    unet2015_margin,
    unet2015_output_size,
    valid_input_sizes,
)
from app.networks.unetpp import UNetPlusPlus

__all__ = [
    "BLOCK_TYPES",
    "PADDING_MODES",
    "SKIP_TYPES",
    "AttentionGate",
    "AttentionSkip",
    "CascadedUNet",
    "ConcatSkip",
    "DecoderBlock",
    "DeepSupervisionDynUNet",
    "DeepSupervisionHeads",
    "DenseBlock",
    "DoubleConvBlock",
    "FlexUNet",
    "MeanEnsemble",
    "ensemble_network",
    "MobileBlock",
    "MultiHead",
    "ResidualBlock",
    "SegmentationHead",
    "UNet2015",
    "UNetEncoder",
    "UNetPlusPlus",
    "nearest_valid_input_sizes",
    "unet2015_input_size",
    "unet2015_margin",
    "unet2015_output_size",
    "unet_channels",
    "valid_input_sizes",
]
