"""Inferers: overlap-tile prediction of images of any size with valid-padding networks."""

from app.inferers.overlap_tile import BLEND_MODES, PADDING_MODES, OverlapTileInferer, mirror_pad

__all__ = ["BLEND_MODES", "PADDING_MODES", "OverlapTileInferer", "mirror_pad"]
