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


def test_a_loader_that_does_not_shuffle_leaves_the_global_random_stream_alone():
    """Validation between epochs must not change what the training's shuffling draws next."""
    data = Dataset([{"x": torch.tensor([i])} for i in range(4)])
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for _ in range(3):  # three validation runs
        assert len(list(ThreadDataLoader(data, batch_size=2, shuffle=False))) == 2
    torch.testing.assert_close(torch.rand(3), expected)
    torch.manual_seed(0)
    list(ThreadDataLoader(data, batch_size=2, shuffle=True))  # a training epoch draws from it, as it should
    assert not torch.equal(torch.rand(3), expected)
