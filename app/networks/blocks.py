"""Convolution blocks of the U-Net family: plain, residual, dense and depthwise-separable ("mobile").

Every block has the same signature ``(spatial_dims, in_channels, out_channels, padding, norm, act, dropout)``
and maps ``(B, in_channels, *spatial)`` to ``(B, out_channels, *spatial')``. Each block has exactly two
3x3 convolutions on its longest path, so with ``padding="valid"`` it removes 2 voxels per side (``spatial'
= spatial - 4``) and with ``padding="same"`` it keeps the size: the size arithmetic and the ``margin`` of a
network are those of the 2015 U-Net whichever block it uses (:func:`app.networks.unet2015_margin`).

References:
    - plain: O. Ronneberger et al., "U-Net", MICCAI 2015. https://arxiv.org/abs/1505.04597
    - residual: K. He et al., "Deep Residual Learning for Image Recognition", CVPR 2016.
    - dense: G. Huang et al., "Densely Connected Convolutional Networks", CVPR 2017.
    - mobile: A. Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
      Applications", 2017. https://arxiv.org/abs/1704.04861
"""

from __future__ import annotations

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Norm
from monai.networks.layers.utils import get_act_layer
from torch import nn

from app.networks.unet2015 import _center_crop, _check_padding

__all__ = [
    "BLOCK_TYPES",
    "DenseBlock",
    "DoubleConvBlock",
    "MobileBlock",
    "ResidualBlock",
    "check_norm",
    "conv_pad",
    "get_block",
]

NormType = str | tuple | None
ActType = str | tuple | None


def conv_pad(padding: str) -> int:
    """Zero padding of a 3x3 convolution for a padding mode: 0 for ``"valid"``, 1 for ``"same"``.

    Raises:
        ValueError: when ``padding`` is not ``"valid"`` or ``"same"``.
    """
    return 0 if _check_padding(padding) else 1


def check_norm(norm: NormType) -> None:
    """Raise ValueError (listing MONAI's ``Norm`` names) unless ``norm`` is None, a name or ``(name, kw)``."""
    if norm is None:
        return
    name = norm[0] if isinstance(norm, (tuple, list)) else norm
    if not isinstance(name, str) or name.upper() not in Norm.names:
        options = ", ".join(repr(n.lower()) for n in Norm.names)
        raise ValueError(f"norm must be None or one of {options} (or a (name, kwargs) tuple), got {norm!r}")


def _conv(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    padding: int,
    norm: NormType,
    act: ActType,
    dropout: float,
    groups: int = 1,
) -> Convolution:
    """Convolution -> normalisation -> dropout -> activation (MONAI ``Convolution``, "NDA" ordering)."""
    return Convolution(
        spatial_dims,
        in_channels,
        out_channels,
        kernel_size=kernel_size,
        padding=padding,
        groups=groups,
        norm=norm,
        act=act,
        dropout=dropout or None,
        adn_ordering="NDA",
        bias=norm is None,  # a bias before a normalisation layer is redundant
    )


class DoubleConvBlock(nn.Sequential):
    """Two 3x3 convolutions, each followed by normalisation, dropout and activation (Ronneberger 2015).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S')``, ``S' = S - 4`` (valid) or ``S`` (same).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: NormType = "instance",
        act: ActType = "relu",
        dropout: float = 0.0,
    ) -> None:
        pad = conv_pad(padding)
        super().__init__(
            _conv(spatial_dims, in_channels, out_channels, 3, pad, norm, act, dropout),
            _conv(spatial_dims, out_channels, out_channels, 3, pad, norm, act, dropout),
        )


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or 1x1 convolution) shortcut, as in ResNet (He et al. 2016).

    ``y = act(norm(conv(act(norm(conv(x))))) + shortcut(x))``; with valid padding the shortcut is
    centre-cropped to the convolutions' output.

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S')``, ``S' = S - 4`` (valid) or ``S`` (same).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: NormType = "instance",
        act: ActType = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        pad = conv_pad(padding)
        self.conv1 = _conv(spatial_dims, in_channels, out_channels, 3, pad, norm, act, dropout)
        self.conv2 = _conv(spatial_dims, out_channels, out_channels, 3, pad, norm, None, dropout)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_channels == out_channels
            else _conv(spatial_dims, in_channels, out_channels, 1, 0, norm, None, 0.0)
        )
        self.act = get_act_layer(act) if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return self.act(y + _center_crop(self.shortcut(x), y.shape[2:]))


class DenseBlock(nn.Module):
    """A two-layer densely connected block (Huang et al. 2017) with a 1x1 transition to ``out_channels``.

    Each 3x3 layer adds ``growth = max(out_channels // 2, 1)`` feature maps and sees the block input and all
    earlier layers' maps (centre-cropped with valid padding); the 1x1 transition convolution maps the
    concatenation ``in_channels + 2 * growth`` to ``out_channels``.

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S')``, ``S' = S - 4`` (valid) or ``S`` (same).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: NormType = "instance",
        act: ActType = "relu",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        pad = conv_pad(padding)
        self.growth = max(out_channels // 2, 1)
        self.layer1 = _conv(spatial_dims, in_channels, self.growth, 3, pad, norm, act, dropout)
        self.layer2 = _conv(spatial_dims, in_channels + self.growth, self.growth, 3, pad, norm, act, dropout)
        self.transition = _conv(
            spatial_dims, in_channels + 2 * self.growth, out_channels, 1, 0, norm, act, 0.0
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.layer1(x)
        x = _center_crop(x, y1.shape[2:])
        y2 = self.layer2(torch.cat([x, y1], dim=1))
        size = y2.shape[2:]
        return self.transition(torch.cat([_center_crop(x, size), _center_crop(y1, size), y2], dim=1))


class MobileBlock(nn.Sequential):
    """Two depthwise-separable 3x3 convolutions (MobileNet, Howard et al. 2017).

    Each is a depthwise 3x3 convolution (one filter per channel) followed by a pointwise 1x1 convolution,
    both with normalisation and activation: ``9 * C + C * C'`` weights instead of ``9 * C * C'`` in 2D
    (``27 * C + C * C'`` instead of ``27 * C * C'`` in 3D).

    Shapes: ``(B, in_channels, *S) -> (B, out_channels, *S')``, ``S' = S - 4`` (valid) or ``S`` (same).
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: str = "same",
        norm: NormType = "instance",
        act: ActType = "relu",
        dropout: float = 0.0,
    ) -> None:
        pad = conv_pad(padding)
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            layers.append(_conv(spatial_dims, c_in, c_in, 3, pad, norm, act, 0.0, groups=c_in))
            layers.append(_conv(spatial_dims, c_in, out_channels, 1, 0, norm, act, dropout))
        super().__init__(*layers)


BLOCK_TYPES: dict[str, type[nn.Module]] = {
    "plain": DoubleConvBlock,
    "residual": ResidualBlock,
    "dense": DenseBlock,
    "mobile": MobileBlock,
}
"""Block names accepted by the networks' ``block`` argument."""


def get_block(name: str) -> type[nn.Module]:
    """The block class for ``name`` (one of :data:`BLOCK_TYPES`).

    Raises:
        ValueError: for an unknown name; the message lists the valid names.
    """
    if name not in BLOCK_TYPES:
        raise ValueError(f"block must be one of {tuple(BLOCK_TYPES)}, got {name!r}")
    return BLOCK_TYPES[name]
