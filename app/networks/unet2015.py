"""The original U-Net of Ronneberger, Fischer and Brox (2015), in 2D and 3D.

Reference:
    O. Ronneberger, P. Fischer, T. Brox. "U-Net: Convolutional Networks for Biomedical Image
    Segmentation". MICCAI 2015, LNCS 9351, pp. 234-241. https://arxiv.org/abs/1505.04597

With ``padding="valid"`` (the paper's setting) every 3x3 convolution is unpadded, so the output is
smaller than the input by ``2 * margin`` per spatial dimension and only some input sizes are usable
(every map before a max-pool must have an even size). The size helpers in this module say which
sizes work; :class:`app.inferers.OverlapTileInferer` uses :attr:`UNet2015.margin` to predict
images of any size (the paper's overlap-tile strategy).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Act, Conv, Norm, Pool
from monai.networks.layers.utils import get_norm_layer
from torch import nn

__all__ = [
    "PADDING_MODES",
    "UNet2015",
    "nearest_valid_input_sizes",
    "unet2015_input_size",
    "unet2015_margin",
    "unet2015_output_size",
    "valid_input_sizes",
]

PADDING_MODES = ("valid", "same")
"""Supported convolution paddings: ``"valid"`` (unpadded, the paper) and ``"same"`` (zero-padded)."""

_SPATIAL_DIMS = (2, 3)


# ---------------------------------------------------------------------------------------------------------
# Size arithmetic. The ``_``-prefixed functions take plain ints so that ``UNet2015.forward`` can call them
# under TorchScript; the public wrappers check their arguments and give friendlier types.
# ---------------------------------------------------------------------------------------------------------


def _trace_output_size(size: int, depth: int, valid: bool) -> int:
    """Output size along one dimension, or -1 when ``size`` is not usable (scriptable)."""
    if size < 1:
        return -1
    shrink = 4 if valid else 0  # two 3x3 convolutions per level
    for _ in range(depth):  # contracting path: two convolutions, then a 2x2 max-pool
        size = size - shrink
        if size < 2 or size % 2 != 0:
            return -1
        size = size // 2
    size = size - shrink  # bottleneck
    if size < 1:
        return -1
    for _ in range(depth):  # expansive path: 2x2 up-convolution, then two convolutions
        size = 2 * size - shrink
        if size < 1:
            return -1
    return size


def _smallest_valid_input(depth: int, valid: bool) -> int:
    """Smallest usable input size along one dimension (scriptable)."""
    step = 1 << depth
    offset = 4 * (step - 1) if valid else 0
    size = offset + step
    while _trace_output_size(size, depth, valid) < 1:
        size += step
    return size


def _nearest_valid(size: int, depth: int, valid: bool) -> tuple[int, int]:
    """``(lower, upper)``: the nearest usable sizes ``<= size`` and ``>= size``; ``lower`` is -1 if none.

    Usable sizes form the progression ``smallest + k * 2**depth`` (k >= 0), because each of the ``depth``
    max-pools halves the size and the convolutions remove a fixed amount.
    """
    step = 1 << depth
    smallest = _smallest_valid_input(depth, valid)
    if size <= smallest:
        return (smallest if size == smallest else -1), smallest
    lower = smallest + ((size - smallest) // step) * step
    upper = lower if lower == size else lower + step
    return lower, upper


def _check_padding(padding: str) -> bool:
    """Return True for valid padding; raise for an unknown padding name."""
    if padding not in PADDING_MODES:
        raise ValueError(f"padding must be one of {PADDING_MODES}, got {padding!r}")
    return padding == "valid"


def _check_depth(depth: int) -> None:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")


def _check_size(name: str, size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {size!r}")


def _invalid_size_message(size: int, depth: int, padding: str) -> str:
    """Error text for an unusable input size, naming the nearest usable sizes (scriptable)."""
    lower, upper = _nearest_valid(size, depth, padding == "valid")
    advice = f"use {lower} or {upper}" if lower > 0 else f"use {upper} (the smallest valid size) or larger"
    return f"input size {size} is not valid for this U-Net (depth {depth}, {padding} padding): {advice}"


def unet2015_margin(depth: int = 4, padding: str = "valid") -> int:
    """Context lost per side of each spatial dimension: ``(input - output) / 2``.

    For valid padding this is ``6 * 2**depth - 4`` (92 at depth 4: 572 -> 388); for same padding it is 0.

    Raises:
        ValueError: when ``depth < 1`` or ``padding`` is not one of :data:`PADDING_MODES`.
    """
    _check_depth(depth)
    return 6 * 2**depth - 4 if _check_padding(padding) else 0


def unet2015_output_size(input_size: int, depth: int = 4, padding: str = "valid") -> int:
    """Output size along one spatial dimension for an input of ``input_size``.

    Example: ``unet2015_output_size(572) == 388`` (the paper's Fig. 1).

    Raises:
        ValueError: when the size is not usable (a map before a max-pool would be odd, or a map would
            vanish); the message names the nearest usable sizes. Also for a bad ``depth`` or ``padding``.
    """
    valid = _check_padding(padding)
    _check_depth(depth)
    _check_size("input_size", input_size)
    out = _trace_output_size(input_size, depth, valid)
    if out < 1:
        raise ValueError(_invalid_size_message(input_size, depth, padding))
    return out


def unet2015_input_size(output_size: int, depth: int = 4, padding: str = "valid") -> int:
    """Smallest usable input size whose output is at least ``output_size`` (one spatial dimension).

    Example: ``unet2015_input_size(388) == 572``; ``unet2015_input_size(389) == 588``.

    Raises:
        ValueError: when ``output_size < 1`` or for a bad ``depth`` or ``padding``.
    """
    valid = _check_padding(padding)
    _check_depth(depth)
    _check_size("output_size", output_size)
    margin = unet2015_margin(depth, padding)
    return _nearest_valid(output_size + 2 * margin, depth, valid)[1]


def valid_input_sizes(min_size: int, max_size: int, depth: int = 4, padding: str = "valid") -> list[int]:
    """All usable input sizes in ``[min_size, max_size]``, ascending (one spatial dimension).

    Example: ``valid_input_sizes(540, 572) == [540, 556, 572]``.

    Raises:
        ValueError: when ``min_size < 1`` or ``max_size < min_size``, or for a bad ``depth`` or ``padding``.
    """
    valid = _check_padding(padding)
    _check_depth(depth)
    _check_size("min_size", min_size)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < min_size:
        raise ValueError(f"max_size must be an integer >= min_size ({min_size}), got {max_size!r}")
    start = _nearest_valid(min_size, depth, valid)[1]
    return list(range(start, max_size + 1, 2**depth))


def nearest_valid_input_sizes(size: int, depth: int = 4, padding: str = "valid") -> tuple[int | None, int]:
    """The nearest usable input sizes ``(lower, upper)`` with ``lower <= size <= upper``.

    Both are ``size`` when it is usable; ``lower`` is None when no usable size is ``<= size``.
    Example: ``nearest_valid_input_sizes(570) == (556, 572)``.

    Raises:
        ValueError: when ``size < 1``, or for a bad ``depth`` or ``padding``.
    """
    valid = _check_padding(padding)
    _check_depth(depth)
    _check_size("size", size)
    lower, upper = _nearest_valid(size, depth, valid)
    return (lower if lower > 0 else None), upper


def _center_crop(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Crop the spatial dimensions of ``x`` (B, C, *spatial) around their centre to ``size``."""
    for dim in range(len(size)):
        offset = (x.shape[dim + 2] - size[dim]) // 2
        x = x.narrow(dim + 2, offset, size[dim])
    return x


class _DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by (optional normalisation and) a ReLU."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: int,
        norm: str | tuple | None,
    ) -> None:
        conv_type = Conv[Conv.CONV, spatial_dims]
        layers: list[nn.Module] = []
        for c_in in (in_channels, out_channels):
            # a bias before a normalisation layer is redundant, so it is only kept without one
            layers.append(conv_type(c_in, out_channels, kernel_size=3, padding=padding, bias=norm is None))
            if norm is not None:
                layers.append(get_norm_layer(norm, spatial_dims=spatial_dims, channels=out_channels))
            layers.append(Act[Act.RELU](inplace=True))
        super().__init__(*layers)


class _UpBlock(nn.Module):
    """2x2 up-convolution halving the channels, crop-and-copy of the skip map, then :class:`_DoubleConv`."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        padding: int,
        norm: str | tuple | None,
    ) -> None:
        super().__init__()
        self.upconv = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        self.convs = _DoubleConv(spatial_dims, 2 * out_channels, out_channels, padding, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.upconv(x)
        return self.convs(torch.cat([_center_crop(skip, x.shape[2:]), x], dim=1))


class UNet2015(nn.Module):
    """The original U-Net (Ronneberger et al., MICCAI 2015), for 2D or 3D images.

    Architecture (paper Fig. 1, defaults reproduce it exactly: 572x572 -> 388x388, 23 convolutional layers,
    31,030,658 parameters for 1 input channel and 2 classes):

    - contracting path: ``depth`` levels of two 3x3 convolutions + ReLU, then 2x2 max-pooling (stride 2);
      the channels start at ``features`` and double at every level;
    - bottleneck: two 3x3 convolutions + ReLU with ``features * 2**depth`` channels;
    - dropout (``dropout``, element-wise like Caffe's ``Dropout`` layer) on the outputs of the last
      contracting level and of the bottleneck: the paper's "drop-out layers at the end of the contracting
      path";
    - expansive path: ``depth`` levels of a 2x2 up-convolution (transposed convolution, stride 2) halving
      the channels, concatenation with the centre-cropped map of the same contracting level
      ("crop and copy"), and two 3x3 convolutions + ReLU;
    - a final 1x1 convolution to ``out_channels`` class scores (logits, no softmax).

    Weights use the paper's He initialisation: normal with standard deviation ``sqrt(2 / N)``, ``N`` the
    number of inputs of one neuron (``k**d * in_channels`` for a ``k``-sized convolution; for the 2x2
    stride-2 up-convolutions each output sees a single tap, so ``N = in_channels``); biases are zero.

    ``padding="valid"`` (default) uses unpadded convolutions as in the paper: the output is smaller than
    the input by :attr:`margin` on every side, and only some input sizes are usable (see
    :func:`valid_input_sizes`); predict larger images with the overlap-tile strategy
    (:class:`app.inferers.OverlapTileInferer`). ``padding="same"`` zero-pads the convolutions instead, so
    no cropping is needed and any size divisible by ``2**depth`` gives an output of the same size.

    Args:
        spatial_dims: number of spatial dimensions, 2 or 3.
        in_channels: number of input channels.
        out_channels: number of output channels (classes).
        features: channels of the first level (64 in the paper); level ``i`` has ``features * 2**i``.
        depth: number of max-pooling steps (4 in the paper).
        padding: ``"valid"`` (unpadded convolutions, the paper) or ``"same"`` (zero-padded).
        dropout: dropout probability at the end of the contracting path (0.5 in the paper); 0 disables it.
        norm: optional normalisation after each 3x3 convolution, by MONAI ``Norm`` name, e.g. ``"batch"``,
            ``"instance"`` or ``("group", {"num_groups": 8})``. None (default) as in the paper; a
            normalisation makes training from scratch faster but changes the parameter count.

    Shapes:
        input: ``(B, in_channels, H, W[, D])``; with valid padding each spatial size must be usable
        (:func:`valid_input_sizes`), with same padding divisible by ``2**depth``.
        output: ``(B, out_channels, H', W'[, D'])`` with ``H' = H - 2 * margin`` (valid) or ``H' = H`` (same).

    Raises:
        ValueError: for an unsupported ``spatial_dims``, ``padding`` or ``norm``, a non-positive channel
            count, ``features`` or ``depth``, or ``dropout`` outside ``[0, 1)``.

    Example::

        net = UNet2015(spatial_dims=2, in_channels=1, out_channels=2)
        y = net(torch.rand(1, 1, 572, 572))  # (1, 2, 388, 388)
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 2,
        features: int = 64,
        depth: int = 4,
        padding: str = "valid",
        dropout: float = 0.5,
        norm: str | tuple | None = None,
    ) -> None:
        super().__init__()
        if spatial_dims not in _SPATIAL_DIMS:
            raise ValueError(f"spatial_dims must be one of {_SPATIAL_DIMS}, got {spatial_dims!r}")
        valid = _check_padding(padding)
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("features", features),
        ):
            _check_size(name, value)
        _check_depth(depth)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if norm is not None:
            norm_name = norm[0] if isinstance(norm, tuple) else norm
            if not isinstance(norm_name, str) or norm_name.upper() not in Norm.names:
                options = ", ".join(repr(n.lower()) for n in Norm.names)
                raise ValueError(
                    f"norm must be None or one of {options} (or a (name, kwargs) tuple), got {norm!r}"
                )

        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.features = features
        self.depth = depth
        self.padding = padding
        # context lost per side of each spatial dimension, (input - output) / 2: 92 at the defaults
        self.margin = unet2015_margin(depth, padding)

        conv_pad = 0 if valid else 1
        channels = [features * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList()
        c_in = in_channels
        for c in channels[:-1]:
            self.encoder.append(_DoubleConv(spatial_dims, c_in, c, conv_pad, norm))
            c_in = c
        self.pool = Pool[Pool.MAX, spatial_dims](kernel_size=2, stride=2)
        self.bottleneck = _DoubleConv(spatial_dims, channels[-2], channels[-1], conv_pad, norm)
        self.dropout = nn.Dropout(p=dropout)
        self.decoder = nn.ModuleList(
            _UpBlock(spatial_dims, c_low, c, conv_pad, norm)
            for c_low, c in zip(channels[:0:-1], channels[-2::-1], strict=True)
        )
        self.head = Conv[Conv.CONV, spatial_dims](features, out_channels, kernel_size=1)
        self._init_weights()

    def _init_weights(self) -> None:
        """He initialisation (paper Sec. 3): normal weights with std ``sqrt(2 / N)``, zero biases."""
        for module in self.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                fan_in = module.in_channels * math.prod(module.kernel_size)
                if module.transposed:  # each output receives kernel/stride taps per input channel
                    fan_in = fan_in // math.prod(module.stride)
                nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(2.0 / fan_in))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def output_size(self, input_size: int | Sequence[int]) -> int | tuple[int, ...]:
        """Output spatial size for ``input_size`` (an int for one dimension, or one int per dimension).

        Raises:
            ValueError: when a size is not usable; the message names the nearest usable sizes.
        """
        if isinstance(input_size, int):
            return unet2015_output_size(input_size, self.depth, self.padding)
        return tuple(unet2015_output_size(s, self.depth, self.padding) for s in input_size)

    def check_input_size(self, spatial_size: list[int]) -> None:
        """Raise ValueError naming the nearest usable sizes if a spatial size is not usable."""
        for size in spatial_size:
            if _trace_output_size(size, self.depth, self.padding == "valid") < 1:
                raise ValueError(_invalid_size_message(size, self.depth, self.padding))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment ``x`` of shape ``(B, in_channels, *spatial)``; return ``(B, out_channels, *spatial_out)``.

        Raises:
            ValueError: when a spatial size is not usable for this network.
        """
        self.check_input_size(x.shape[2:])
        skips: list[torch.Tensor] = []
        last = self.depth - 1
        for level, block in enumerate(self.encoder):
            x = block(x)
            if level == last:
                x = self.dropout(x)
            skips.append(x)
            x = self.pool(x)
        x = self.dropout(self.bottleneck(x))
        for level, block in enumerate(self.decoder):
            x = block(x, skips[last - level])
        return self.head(x)
