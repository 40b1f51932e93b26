"""The thread-buffered loader re-raises loading errors instead of ending the epoch early."""

import pytest
import torch
from monai.data import Dataset

from app.data import ThreadDataLoader


class FailsAt:
    """A transform that raises on the item whose value is ``bad``."""

    def __init__(self, bad: int) -> None:
        self.bad = bad

    def __call__(self, x: int) -> torch.Tensor:
        if x == self.bad:
            raise ValueError(f"item {x} is unreadable")
        return torch.tensor([x])


def test_yields_every_batch_like_monai():
    loader = ThreadDataLoader(Dataset(list(range(7)), transform=FailsAt(-1)), batch_size=2, repeats=2)
    batches = [b.flatten().tolist() for b in loader]
    assert batches == [[0, 1], [0, 1], [2, 3], [2, 3], [4, 5], [4, 5], [6], [6]]


def test_loading_error_reaches_the_loop_after_the_good_batches():
    loader = ThreadDataLoader(Dataset(list(range(6)), transform=FailsAt(4)), batch_size=2)
    seen = []
    with pytest.raises(RuntimeError, match="applying transform") as raised:
        for batch in loader:
            seen.append(batch.flatten().tolist())
    assert "item 4 is unreadable" in str(raised.value.__cause__)
    assert seen == [[0, 1], [2, 3]]


def test_collate_error_is_raised():
    data = [torch.zeros(3), torch.zeros(4)]
    with pytest.raises(RuntimeError, match="equal size"):
        list(ThreadDataLoader(Dataset(data), batch_size=2))
