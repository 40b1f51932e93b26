"""Out-of-memory fallback of sliding-window inference, simulated on the CPU."""

import logging

import pytest
import torch
from monai.inferers import SlidingWindowInferer

from app.inferers import FallbackSlidingWindowInferer


class OOMNetwork(torch.nn.Module):
    """A 1x1 convolution that raises ``torch.OutOfMemoryError`` while ``fails(batch_size)`` is true."""

    def __init__(self, fails) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(1, 2, 1)
        self.fails = fails
        self.batch_sizes: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.batch_sizes.append(x.shape[0])
        if self.fails(x.shape[0]):
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.conv(x)


ARGS = {"roi_size": (8, 8, 8), "overlap": 0.5, "mode": "gaussian"}


@pytest.fixture
def image():
    return torch.rand(1, 1, 20, 18, 12, generator=torch.Generator().manual_seed(1))


def test_halves_the_window_batch_until_it_fits(image, caplog):
    net = OOMNetwork(lambda batch: batch > 2)
    inferer = FallbackSlidingWindowInferer(sw_batch_size=8, **ARGS)
    with caplog.at_level(logging.WARNING):
        out = inferer(image, net)
    expected = SlidingWindowInferer(sw_batch_size=2, **ARGS)(image, net.conv)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    assert inferer.sw_batch_size == 2  # kept for the next call
    assert [r.getMessage().split("retrying with ")[1] for r in caplog.records] == [
        "sw_batch_size 4",
        "sw_batch_size 2",
    ]


def test_stitches_on_the_cpu_when_one_window_does_not_fit(image, caplog):
    """The output buffer is what does not fit: the network fails until stitching moves to the CPU."""
    inferer = FallbackSlidingWindowInferer(sw_batch_size=2, device="meta", **ARGS)
    net = OOMNetwork(lambda batch: torch.device(inferer.device).type != "cpu")
    with caplog.at_level(logging.WARNING):
        out = inferer(image, net)
    assert out.device.type == "cpu" and out.shape == (1, 2, 20, 18, 12)
    torch.testing.assert_close(
        out, SlidingWindowInferer(sw_batch_size=1, **ARGS)(image, net.conv), rtol=1e-6, atol=1e-6
    )
    assert "stitched on the CPU" in caplog.records[-1].getMessage()


def test_raises_when_nothing_is_left_to_try(image):
    net = OOMNetwork(lambda batch: True)
    with pytest.raises(torch.OutOfMemoryError):
        FallbackSlidingWindowInferer(sw_batch_size=4, **ARGS)(image, net)
    assert net.batch_sizes == [4, 2, 1]  # input on the CPU already: no stitching step to take


def test_other_errors_are_not_swallowed(image):
    def broken(x):
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        FallbackSlidingWindowInferer(sw_batch_size=4, **ARGS)(image, broken)
