"""Inferers: overlap-tile for valid-padding networks; sliding windows that survive out-of-memory."""

from app.inferers.fallback import FallbackSlidingWindowInferer
from app.inferers.overlap_tile import BLEND_MODES, PADDING_MODES, OverlapTileInferer, mirror_pad

__all__ = ["BLEND_MODES", "FallbackSlidingWindowInferer", "PADDING_MODES", "OverlapTileInferer", "mirror_pad"]
