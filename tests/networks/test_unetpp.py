"""U-Net++ specifics: nested nodes, pruned outputs equal the deep-supervision heads, pruning errors."""

from __future__ import annotations

import pytest
import torch

from app.networks import UNetPlusPlus
from app.networks.unet2015 import _center_crop


def test_nested_nodes():
    net = UNetPlusPlus(2, 1, 2, features=(2, 4, 8, 16))
    assert len(net.nodes) == 3 + 2 + 1
    for node, i, j in zip(net.nodes, net.node_levels, net.node_columns, strict=True):
        assert node.block[0].conv.in_channels == (j + 1) * net.channels[i]  # j skips + the up-convolved node


@pytest.mark.parametrize("padding, size", [("same", 16), ("valid", 44)])
def test_pruned_output_equals_deep_supervision_head(padding, size):
    # instance norm without running statistics and no dropout: training and eval compute the same function
    net = UNetPlusPlus(2, 1, 3, features=(2, 4, 8), padding=padding, deep_supervision=True)
    x = torch.rand(2, 1, size, size)
    with torch.no_grad():
        supervised = net.train()(x)  # heads of X[0][2] (the full network), then X[0][1]
        net.eval()
        assert len(supervised) == 2
        torch.testing.assert_close(net(x), supervised[0])
        for level in (1, 2):
            net.set_prune_level(level)
            pruned = net(x)
            assert pruned.shape[-1] == size - 2 * net.margin
            torch.testing.assert_close(_center_crop(pruned, supervised[0].shape[2:]), supervised[2 - level])


def test_pruning_computes_only_the_needed_nodes():
    net = UNetPlusPlus(2, 1, 2, features=(2, 4, 8, 16), deep_supervision=True, prune_level=1).eval()
    calls = []
    for node in net.nodes:
        node.register_forward_hook(lambda module, args, out: calls.append(module))
    for block in net.encoder.blocks:
        block.register_forward_hook(lambda module, args, out: calls.append(module))
    net(torch.rand(1, 1, 16, 16))
    assert calls == [net.encoder.blocks[0], net.encoder.blocks[1], net.nodes[0]]


def test_pruning_arguments():
    with pytest.raises(ValueError, match="needs deep_supervision=True"):
        UNetPlusPlus(2, features=(2, 4, 8), prune_level=1)
    with pytest.raises(ValueError, match=r"in 1..2"):
        UNetPlusPlus(2, features=(2, 4, 8), deep_supervision=True, prune_level=3)
    net = UNetPlusPlus(2, features=(2, 4, 8), padding="valid", deep_supervision=True, prune_level=1)
    assert net.margin == 8 and net.output_size(44) == 28
    net.set_prune_level(None)
    assert net.margin == 20 and net.output_size(44) == 4
