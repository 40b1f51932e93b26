"""Inferers: overlap-tile for valid-padding networks; sliding windows that survive out-of-memory; mirror and
shift test-time augmentation around any of them."""

from app.inferers.fallback import FallbackSlidingWindowInferer
from app.inferers.overlap_tile import BLEND_MODES, PADDING_MODES, OverlapTileInferer, mirror_pad
from app.inferers.tta import MirrorTTAInferer, ShiftTTAInferer

__all__ = [
    "BLEND_MODES",
    "FallbackSlidingWindowInferer",
    "MirrorTTAInferer",
    "PADDING_MODES",
    "OverlapTileInferer",
    "ShiftTTAInferer",
    "mirror_pad",
]
