"""Cell label images from cell/membrane class maps (EM), as a MONAI dictionary transform."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_dst_type

from app.metrics.em import cell_segmentation

__all__ = ["CellSegmentationd"]


class CellSegmentationd(MapTransform):
    """Replace a binary class map ``(1, H, W)`` (cell = 1 or 255, membrane = 0) by its cells ``(1, H, W)``:
    ``int32`` labels 1, 2, ... that partition the image (:func:`app.metrics.cell_segmentation`: connected
    components of the cells, membrane pixels given to the nearest cell). Tensor type, device and
    ``MetaTensor`` metadata are kept.

    Args:
        keys: keys of the class maps.
        connectivity: 1 = 4-connected cells, 2 = 8-connected.
        allow_missing_keys: skip absent keys instead of raising.
    """

    def __init__(self, keys: KeysCollection, connectivity: int = 1, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.connectivity = connectivity

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            cells = cell_segmentation(d[key], self.connectivity)[None]
            d[key] = convert_to_dst_type(cells, d[key], dtype=np.int32)[0]
        return d
