"""Float networks as trained: the frontends' common form and the quantizer's reference.

A :class:`FloatNetwork` is a chain of layers: :class:`FloatDense` and :class:`FloatConv2d`
(weighted layers, each ``activation(batchnorm(affine(x)))``) and :class:`FloatMaxPool2d`.
Activations are named (:data:`ACTIVATIONS`); all are monotone non-decreasing, which is what
lets a threshold stage replace them exactly, and lets a max pool after an activation move
across it.

Tensors are channels last, as in the IR (:mod:`hwnn.ir`): an image is ``(H, W, C)``, and a
dense layer after an image takes it flattened row-major, channels fastest. A network whose
source is channels first (PyTorch) says so with ``input_layout="chw"``: its inputs are then
given as ``(N, C, H, W)`` and transposed once on the way in (the frontends permute the weights
themselves at import).
"""

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

from ..ir.checks import int_tuple, plain_int
from ..ir.network import takes
from ..ir.tensors import shape_text

__all__ = ["ACTIVATIONS", "INPUT_LAYOUTS", "BatchNorm", "FloatConv2d", "FloatDense",
           "FloatMaxPool2d", "FloatNetwork", "FloatWeighted"]


def _sign(z):
    return np.where(z >= 0, 1.0, -1.0)


#: Monotone non-decreasing activations, by name.
ACTIVATIONS = {
    "identity": lambda z: z,
    "relu":     lambda z: np.maximum(z, 0.0),
    "tanh":     np.tanh,
    "logistic": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),   # monotone and overflow-free
    "hardtanh": lambda z: np.clip(z, -1.0, 1.0),
    "sign":     _sign,
}

#: Layouts of a network's input images: channels last (hwnn's) or first (PyTorch's).
INPUT_LAYOUTS = ("hwc", "chw")


def _finite(value, name, ndim):
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, not {array.dtype} values")
    array = array.astype(np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Inference-time batch normalization ``gamma * (z - mean) / sqrt(var + eps) + beta``."""
    gamma: np.ndarray
    beta:  np.ndarray
    mean:  np.ndarray
    var:   np.ndarray
    eps:   float = 1e-5

    def __post_init__(self):
        for name in ("gamma", "beta", "mean", "var"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"BatchNorm {name}", 1))
        if len({getattr(self, name).shape for name in ("gamma", "beta", "mean", "var")}) != 1:
            raise ValueError("BatchNorm gamma, beta, mean and var must have the same length")
        if isinstance(self.eps, bool) or not isinstance(self.eps, int | float) \
                or not np.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"BatchNorm eps must be a finite number >= 0, not {self.eps!r}")
        if np.any(self.var + self.eps <= 0):
            raise ValueError("BatchNorm var + eps must be positive")

    @property
    def gain(self) -> np.ndarray:
        """Per-channel factor ``gamma / sqrt(var + eps)``."""
        return self.gamma / np.sqrt(self.var + self.eps)

    def __call__(self, z):
        return (z - self.mean) * self.gain + self.beta


@dataclass(frozen=True, eq=False)
class FloatWeighted(ABC):
    """What the weighted layers share: ``activation(batchnorm(products(x) + bias))``, with
    ``weight`` holding one row of weights per output channel on its first axis, ``bias`` one
    real per output channel, and the activation and optional batch normalization per channel
    (channels on the last axis of the output). A kind defines the weight's dimensions
    (``weight_ndim``, named in messages by ``weight_axes``), :meth:`products` and its shapes.
    """
    weight:     np.ndarray
    bias:       np.ndarray
    activation: str = "identity"
    batchnorm:  BatchNorm | None = None

    weight_ndim = 2
    weight_axes = "(out, in)"

    def __post_init__(self):
        weight = _finite(self.weight, "Weights", self.weight_ndim)
        bias = _finite(self.bias, "Biases", 1)
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"Bias of length {bias.shape[0]} does not match weights of shape "
                             f"{weight.shape} {self.weight_axes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        if self.batchnorm is not None:
            if not isinstance(self.batchnorm, BatchNorm):
                raise TypeError(f"batchnorm must be a BatchNorm, not {self.batchnorm!r}")
            if self.batchnorm.gamma.shape != bias.shape:
                raise ValueError(f"BatchNorm of {self.batchnorm.gamma.shape[0]} channels does "
                                 f"not match a layer of {bias.shape[0]} outputs")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)

    @property
    def matrix(self) -> np.ndarray:
        """The weights as a matrix, one row per output channel (for a convolution, the im2col
        matrix of :attr:`hwnn.ir.Conv2d.weights_matrix`)."""
        return self.weight.reshape(self.weight.shape[0], -1)

    @abstractmethod
    def products(self, x) -> np.ndarray:
        """The weighted sums of inputs ``x`` (a batch of :attr:`input_shape`), without bias."""

    def preactivation(self, x):
        z = self.products(x) + self.bias
        return self.batchnorm(z) if self.batchnorm is not None else z

    def __call__(self, x):
        return ACTIVATIONS[self.activation](self.preactivation(x))

    def folded(self):
        """The same layer with its batch normalization folded into weight and bias."""
        if self.batchnorm is None:
            return self
        gain = self.batchnorm.gain
        return dataclasses.replace(
            self, weight=self.weight * gain.reshape(-1, *(1,) * (self.weight.ndim - 1)),
            bias=(self.bias - self.batchnorm.mean) * gain + self.batchnorm.beta, batchnorm=None)

    def with_weight(self, weight):
        """The same layer with other weights of the same shape."""
        return dataclasses.replace(self, weight=weight)


@dataclass(frozen=True, eq=False)
class FloatDense(FloatWeighted):
    """``activation(batchnorm(weight @ x + bias))`` with ``weight`` of shape (out, in). An
    image input is flattened row-major, channels fastest."""

    @property
    def input_shape(self) -> tuple[int]:
        return (self.weight.shape[1],)

    @property
    def output_shape(self) -> tuple[int]:
        return (self.weight.shape[0],)

    def products(self, x):
        return x.reshape(len(x), -1) @ self.weight.T


@dataclass(frozen=True, eq=False, kw_only=True)
class FloatConv2d(FloatWeighted):
    """Two-dimensional convolution (cross-correlation, as in PyTorch) of channels-last images
    ``(H, W, C_in)``, ``in_size`` being ``(H, W)``, to ``(OH, OW, C_out)``, then bias, batch
    normalization and activation per output channel.

    ``weight`` has shape ``(C_out, kh, kw, C_in / groups)`` (the IR's order,
    :class:`hwnn.ir.Conv2d`); ``stride`` is ``(sh, sw)``, ``padding`` ``(top, bottom, left,
    right)`` zeros, and ``groups`` 1 or ``C_in`` (depthwise: ``C_out == C_in``, weights
    ``(C, kh, kw, 1)``). ``OH = (H + top + bottom - kh) // sh + 1``, likewise ``OW``.
    """
    in_size: tuple[int, int]
    stride:  tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] = (0, 0, 0, 0)
    groups:  int = 1

    weight_ndim = 4
    weight_axes = "(out, kh, kw, in / groups)"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "in_size", int_tuple(self.in_size, 2, "in_size", 1))
        object.__setattr__(self, "stride", int_tuple(self.stride, 2, "stride", 1))
        object.__setattr__(self, "padding", int_tuple(self.padding, 4, "padding", 0))
        object.__setattr__(self, "groups", plain_int(self.groups, "groups"))
        channels, kh, kw, per_group = self.weight.shape
        if self.groups != 1 and (self.groups != channels or per_group != 1):
            raise ValueError(f"groups must be 1, or the {channels} channels of a depthwise "
                             f"convolution with weights of shape ({channels}, kh, kw, 1), not "
                             f"{self.groups} with weights of shape {self.weight.shape}")
        (height, width), (top, bottom, left, right) = self.in_size, self.padding
        if kh > height + top + bottom or kw > width + left + right:
            raise ValueError(f"Kernel {kh}x{kw} is larger than the padded input "
                             f"{height + top + bottom}x{width + left + right}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.in_size, self.weight.shape[3] * self.groups)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        (height, width), (top, bottom, left, right) = self.in_size, self.padding
        _, kh, kw, _ = self.weight.shape
        return ((height + top + bottom - kh) // self.stride[0] + 1,
                (width + left + right - kw) // self.stride[1] + 1, self.weight.shape[0])

    def products(self, x):
        top, bottom, left, right = self.padding
        padded = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
        (sh, sw), (out_h, out_w, _) = self.stride, self.output_shape
        result = 0.0
        for ky in range(self.weight.shape[1]):
            for kx in range(self.weight.shape[2]):
                taps = padded[:, ky:ky + sh * (out_h - 1) + 1:sh, kx:kx + sw * (out_w - 1) + 1:sw]
                tap = self.weight[:, ky, kx, :]
                result = result + (taps * tap[:, 0] if self.groups > 1 else taps @ tap.T)
        return result


@dataclass(frozen=True, eq=False)
class FloatMaxPool2d:
    """Max pooling of channels-last images ``(H, W, C)`` (``in_size`` ``(H, W)``,
    ``in_channels`` ``C``) over ``kernel`` ``(kh, kw)`` windows stepped by ``stride`` (the
    kernel unless given), no padding: ``OH = (H - kh) // sh + 1``, likewise ``OW``."""
    in_size:     tuple[int, int]
    in_channels: int
    kernel:      tuple[int, int]
    stride:      tuple[int, int] | None = None

    def __post_init__(self):
        object.__setattr__(self, "in_size", int_tuple(self.in_size, 2, "in_size", 1))
        channels = plain_int(self.in_channels, "in_channels")
        if channels < 1:
            raise ValueError(f"in_channels must be at least 1, not {channels}")
        object.__setattr__(self, "kernel", int_tuple(self.kernel, 2, "Pool kernel", 1))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", int_tuple(stride, 2, "Pool stride", 1))
        if self.kernel[0] > self.in_size[0] or self.kernel[1] > self.in_size[1]:
            raise ValueError(f"Pool kernel {shape_text(self.kernel)} is larger than its input "
                             f"{shape_text(self.in_size)}")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.in_size, self.in_channels)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (*((size - kernel) // stride + 1 for size, kernel, stride
                  in zip(self.in_size, self.kernel, self.stride, strict=True)),
                self.in_channels)

    def __call__(self, x):
        (kh, kw), (sh, sw), (out_h, out_w, _) = self.kernel, self.stride, self.output_shape
        return np.max([x[:, ky:ky + sh * (out_h - 1) + 1:sh, kx:kx + sw * (out_w - 1) + 1:sw]
                       for ky in range(kh) for kx in range(kw)], axis=0)


_LAYER_KINDS = (FloatDense, FloatConv2d, FloatMaxPool2d)


@dataclass(frozen=True, eq=False)
class FloatNetwork:
    """A chain of float layers (:class:`FloatDense`, :class:`FloatConv2d`,
    :class:`FloatMaxPool2d`; each takes the previous layer's output shape, as it is or, for a
    dense layer, flattened), with JSON-serializable ``info`` about its origin and the
    ``input_layout`` its inputs come in (:meth:`check_inputs`)."""
    layers:       tuple
    info:         dict = field(default_factory=dict)
    input_layout: str = "hwc"

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("A network needs at least one layer")
        for layer in layers:
            if not isinstance(layer, _LAYER_KINDS):
                raise TypeError(f"Float network layers must be FloatDense, FloatConv2d or "
                                f"FloatMaxPool2d, not {layer!r}")
        for index, (before, after) in enumerate(pairwise(layers), start=1):
            if not takes(after.input_shape, before.output_shape):
                raise ValueError(f"Layer {index} takes {shape_text(after.input_shape)} inputs "
                                 f"but layer {index - 1} gives "
                                 f"{shape_text(before.output_shape)}: shapes do not chain")
        if self.input_layout not in INPUT_LAYOUTS:
            raise ValueError(f"input_layout must be 'hwc' or 'chw', not {self.input_layout!r}")
        object.__setattr__(self, "layers", layers)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, channels last: ``(in,)`` or an image ``(H, W, C)``."""
        return self.layers[0].input_shape

    @property
    def in_features(self) -> int:
        return math.prod(self.input_shape)

    @property
    def source_shape(self) -> tuple[int, ...]:
        """Shape of one input as given: :attr:`input_shape`, or ``(C, H, W)`` for an image
        with ``input_layout`` ``"chw"``."""
        shape = self.input_shape
        return (shape[2], *shape[:2]) if self._channels_first else shape

    @property
    def _channels_first(self) -> bool:
        return self.input_layout == "chw" and len(self.input_shape) == 3

    def check_inputs(self, x) -> np.ndarray:
        """Inputs ``x`` as given, ``(N, *source_shape)`` or each flattened in that order,
        ``(N, in_features)``, as float64 of shape ``(N, *input_shape)``, channels last."""
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"Inputs must be real numbers, not {x.dtype} values")
        x = x.astype(np.float64)
        given = self.source_shape
        if x.ndim < 2 or x.shape[1:] not in (given, (self.in_features,)):
            image = "" if len(given) == 1 else (
                f" ({'channels first' if self.input_layout == 'chw' else 'channels last'}) "
                f"or (N, {self.in_features})")
            raise ValueError(f"Inputs must have shape (N, {', '.join(map(str, given))}){image}, "
                             f"not {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("Inputs hold NaN or infinite values")
        x = x.reshape(len(x), *given)
        return x.transpose(0, 2, 3, 1) if self._channels_first else x

    def forward(self, x, *, trace=False):
        """Outputs of the network for inputs ``x`` (as :meth:`check_inputs` takes them); with
        ``trace`` every layer's. Outputs are channels last."""
        x = self.check_inputs(x)
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs if trace else x
