"""CellSegmentationd: class map to cell labels, keeping type and metadata."""

import numpy as np
import torch
from monai.data import MetaTensor

from app.transforms import CellSegmentationd


def test_class_map_becomes_numbered_cells_with_metadata_kept():
    mask = torch.tensor([[[1, 1, 0, 0, 1], [1, 1, 0, 0, 1]]])  # two cells, a 2 px membrane between
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64))
    out = CellSegmentationd("cells")({"cells": MetaTensor(mask, affine=affine), "image": 7})
    cells = out["cells"]
    assert isinstance(cells, MetaTensor) and cells.dtype == torch.int32 and torch.equal(cells.affine, affine)
    assert cells.tolist() == [[[1, 1, 1, 2, 2], [1, 1, 1, 2, 2]]] or cells.tolist() == [[[1, 1, 2, 2, 2]] * 2]
    assert out["image"] == 7


def test_numpy_in_numpy_out_and_eight_connectivity():
    diagonal = np.array([[[255, 0], [0, 255]]], dtype=np.uint8)
    four = CellSegmentationd("m")({"m": diagonal})["m"]
    eight = CellSegmentationd("m", connectivity=2)({"m": diagonal})["m"]
    assert isinstance(four, np.ndarray) and four[0, 0, 0] != four[0, 1, 1]
    assert eight.tolist() == [[[1, 1], [1, 1]]]
