"""MONAI's ``DynUNet`` (the nnU-Net architecture) with its deep-supervision outputs as a list.

In training with ``deep_supervision`` MONAI's ``DynUNet`` stacks the main output and the heads' outputs
(each up-sampled to the full size) along a new dimension 1: ``(B, 1 + deep_supr_num, C, *S)``. MONAI's
``DeepSupervisionLoss``, the bundles' autocast wrapper and every other network of this project with
deep supervision (:class:`app.networks.FlexUNet`) use a list of ``(B, C, *S_k)`` tensors instead; this
subclass returns that list. Parameters and state-dict keys are ``DynUNet``'s, so its weights load into a
plain ``DynUNet`` and back.

TorchScript: ``DynUNet`` with deep supervision cannot be scripted (its skip layers assign into an optional
list), so export traces the eval-mode network: ``monai.bundle ckpt_export ... --use_trace True
--input_shape "[1, C, *patch]"``. The eval-mode graph has no size-dependent branch, so the traced
module takes other sizes too (divisible by the product of the strides).
"""

from __future__ import annotations

import torch
from monai.networks.nets import DynUNet

__all__ = ["DeepSupervisionDynUNet"]


class DeepSupervisionDynUNet(DynUNet):
    """``DynUNet`` whose training output with deep supervision is ``[main, head 1, ..., head n]``.

    Takes ``DynUNet``'s arguments unchanged.

    Shapes:
        input: ``(B, in_channels, *S)``, each size divisible by the product of ``strides`` along it.
        output: ``(B, out_channels, *S)`` logits in eval mode, or in training without deep supervision;
        in training with ``deep_supervision`` a list of ``1 + deep_supr_num`` such tensors, the main
        output first (the heads' outputs up-sampled to ``S`` by ``DynUNet``).

    Example::

        net = DeepSupervisionDynUNet(3, 1, 3, [3] * 4, [1, 2, 2, 1], [2, 2, 1], filters=[8, 16, 32, 64],
                                     deep_supervision=True, deep_supr_num=1)
        outs = net.train()(torch.rand(2, 1, 16, 16, 16))  # two (2, 3, 16, 16, 16) tensors
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Segment ``x``; see the class doc for the output."""
        out = super().forward(x)
        if self.training and self.deep_supervision:
            return list(torch.unbind(out, dim=1))
        return out
