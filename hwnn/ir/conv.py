"""The two-dimensional convolution layer kind, on channels-last images."""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .checks import check_name, int_array, int_tuple, plain_int
from .dense import Dense
from .formats import Format
from .layer import Layer, layer_kind
from .stages import Requant, Thresholds, partial_sum_range
from .tensors import TensorFormat, shape_text
from .weighted import check_weighted, weighted_fields, weighted_file

__all__ = ["Conv2d", "Im2col", "conv_acc_range"]


@layer_kind("conv2d")
@dataclass(frozen=True, eq=False)
class Conv2d(Layer):
    """Two-dimensional convolution followed by its output stage; it maps an image of shape
    ``(H, W, C_in)`` (``in_size`` is ``(H, W)``) to ``(OH, OW, C_out)``, channels last.

    ``weights`` are codes of ``weight_format`` of shape ``(C_out, kh, kw, C_in / groups)``:
    the kernel is ``(kh, kw)``. The window of output pixel ``(oy, ox)`` starts at input row
    ``oy * sh - top`` and column ``ox * sw - left`` (``stride`` is ``(sh, sw)``, ``padding``
    ``(top, bottom, left, right)``), so ``OH = (H + top + bottom - kh) // sh + 1`` and
    likewise ``OW`` (rows or columns left over at the bottom or right are not used, as in
    PyTorch and ONNX). A window read in the order a sliding-window unit emits it, row by row,
    left to right, channels fastest, is the vector of ``K = kh * kw * C_in / groups`` codes
    whose index is ``(ky * kw + kx) * C_in / groups + c``; :attr:`weights_matrix` is the
    weights flattened in the same order, so ``acc[o] = weights_matrix[o] @ window + bias[o]``
    (im2col).

    ``groups`` is 1, or ``C_in`` for a depthwise convolution: then ``C_out == C_in`` (a
    depthwise multiplier of 1), the weights have shape ``(C, kh, kw, 1)``, and channel ``o``'s
    window holds input channel ``o`` only.

    Padding inserts the code of real zero, the input's zero point (which must be a code of the
    input format). Binary (bipolar) codes have no zero, so a convolution of a binary input
    cannot be padded (a ValueError); pad the layer before it in real terms instead.

    ``weight_scale``, ``bias``, ``input``, ``output``, ``stage`` and ``activation`` mean what
    they mean for :class:`~hwnn.ir.Dense` (:mod:`hwnn.ir.weighted`): the same weight formats
    (binary, ternary, int-k) with per-channel scales, and the same output stages.
    """
    name:          str
    in_size:       tuple[int, int]
    weights:       np.ndarray
    weight_format: Format
    weight_scale:  np.ndarray
    bias:          np.ndarray
    input:         TensorFormat
    output:        TensorFormat
    stage:         Thresholds | Requant | None
    stride:        tuple[int, int] = (1, 1)
    padding:       tuple[int, int, int, int] = (0, 0, 0, 0)
    groups:        int = 1
    activation:    str = "identity"

    def __post_init__(self):
        check_name(self.name, "Layer name")
        where = f"Layer {self.name!r}"
        object.__setattr__(self, "in_size", int_tuple(self.in_size, 2, f"{where} in_size", 1))
        object.__setattr__(self, "stride", int_tuple(self.stride, 2, f"{where} stride", 1))
        object.__setattr__(self, "padding", int_tuple(self.padding, 4, f"{where} padding", 0))
        object.__setattr__(self, "groups", plain_int(self.groups, f"{where} groups"))
        weights = int_array(self.weights, f"{where} weights", 4)
        if 0 in weights.shape:
            raise ValueError(f"{where} has an empty weight array of shape {weights.shape}")
        check_weighted(self, where, weights)
        channels = weights.shape[0]
        if self.groups != 1 and (self.groups != channels or weights.shape[3] != 1):
            raise ValueError(f"{where} groups must be 1, or its {channels} channels for a "
                             f"depthwise convolution with weights of shape ({channels}, kh, kw, "
                             f"1), not {self.groups} with weights of shape {weights.shape}")
        (height, width), (top, bottom, left, right) = self.in_size, self.padding
        padded = (height + top + bottom, width + left + right)
        if self.kernel[0] > padded[0] or self.kernel[1] > padded[1]:
            raise ValueError(f"{where} kernel {shape_text(self.kernel)} is larger than its "
                             f"padded input {shape_text(padded)}")
        if any(self.padding):
            if self.input.format.kind == "bipolar":
                raise ValueError(f"{where} cannot pad its binary input (padding "
                                 f"{self.padding}): binary codes have no zero")
            if not self.input.format.contains(self.input.zero_point):
                raise ValueError(f"{where} pads with its input's zero point "
                                 f"{self.input.zero_point}, which is not a code of "
                                 f"{self.input.format}")
        self._check_stage(where)

    @property
    def kernel(self) -> tuple[int, int]:
        """``(kh, kw)``."""
        return self.weights.shape[1:3]

    @property
    def in_channels(self) -> int:
        return self.weights.shape[3] * self.groups

    @property
    def out_channels(self) -> int:
        return self.weights.shape[0]

    @property
    def depthwise(self) -> bool:
        """Whether each output channel sees its own input channel only (``groups > 1``)."""
        return self.groups > 1

    @property
    def out_size(self) -> tuple[int, int]:
        """``(OH, OW)``."""
        (height, width), (top, bottom, left, right) = self.in_size, self.padding
        return ((height + top + bottom - self.kernel[0]) // self.stride[0] + 1,
                (width + left + right - self.kernel[1]) // self.stride[1] + 1)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.in_size, self.in_channels)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (*self.out_size, self.out_channels)

    @property
    def weights_matrix(self) -> np.ndarray:
        """The weights as the ``(C_out, K)`` matrix of im2col, ``K = kh * kw * C_in / groups``
        in window order (kernel row, kernel column, channel; channels fastest)."""
        return self.weights.reshape(self.out_channels, -1)

    def im2col(self) -> "Im2col":
        """The dense layer this convolution computes at each output pixel, on the pixel's
        window (``K = kh * kw * C_in`` codes in window order): :class:`Im2col`, whose weights
        are :attr:`weights_matrix`, expanded block-diagonally for a depthwise convolution
        (column ``(ky * kw + kx) * C + c`` of row ``o`` is zero unless ``c == o``), with this
        layer's name, bias, formats and stage, and this layer's (exact) accumulator bounds."""
        matrix = self.weights_matrix
        if self.depthwise:
            channels = self.in_channels
            expanded = np.zeros((channels, matrix.shape[1], channels), dtype=np.int64)
            expanded[np.arange(channels), :, np.arange(channels)] = matrix
            matrix = expanded.reshape(channels, -1)
        return Im2col(self.name, matrix, self.weight_format, self.weight_scale, self.bias,
                      self.input, self.output, self.stage, self.activation, convolution=self)

    def depthwise_im2col(self) -> "Im2col":
        """For a depthwise convolution, the per-channel dense layer a vector-vector unit
        computes at each output pixel: :class:`Im2col` of the unexpanded :attr:`weights_matrix`
        (``C x kh * kw``), whose row ``o`` applies to channel ``o``'s own window (``kh * kw``
        codes in window order), not to one shared input vector; a ValueError otherwise."""
        if not self.depthwise:
            raise ValueError(f"Layer {self.name!r} is not a depthwise convolution")
        return Im2col(self.name, self.weights_matrix, self.weight_format, self.weight_scale,
                      self.bias, self.input, self.output, self.stage, self.activation,
                      convolution=self)

    @cached_property
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel bounds of every partial sum of the accumulator over every window
        (:func:`~hwnn.ir.stages.partial_sum_range`: each tap's product and the bias with 0
        included, so a partial sum reaches each bound), exact with padding: a tap in the
        padding adds its fixed weight x zero point. The bounds are the extremes over the
        distinct sets of taps that fall inside the image: the interior windows' and each
        border case's. Computed once (the layer is immutable)."""
        return conv_acc_range(self.weights, self.bias, self.input, self.in_size, self.stride,
                              self.padding)

    @property
    def weight_bits(self) -> int:
        """Bits of weight memory (codes only)."""
        return self.weights.size * self.weight_format.width

    # Files ------------------------------------------------------------------------------------

    def header_and_arrays(self):
        header, arrays = weighted_file(self)
        return header | {"in_size": list(self.in_size), "stride": list(self.stride),
                         "padding": list(self.padding), "groups": self.groups}, arrays

    @classmethod
    def from_header_and_arrays(cls, header, arrays):
        fields = weighted_fields(header, arrays, {"in_size", "stride", "padding", "groups"})
        return cls(**fields, in_size=header["in_size"], stride=header["stride"],
                   padding=header["padding"], groups=header["groups"])


@dataclass(frozen=True, eq=False)
class Im2col(Dense):
    """A convolution seen as the dense layer it computes at every output pixel
    (:meth:`Conv2d.im2col`): its input vector is one window, its output one pixel's channels.
    It is no layer kind of its own (it never goes into a network or a file); a generator that
    computes a convolution window by window uses it as a :class:`~hwnn.ir.Dense`.

    :attr:`acc_range` is the ``convolution``'s, exact over the windows the convolution has
    (padded taps hold the zero point), which can be narrower than a dense layer's over every
    input vector: every partial sum over a window, in any order, stays inside it (the zero
    weights of a depthwise expansion add nothing), so accumulators of :attr:`acc_bits` never
    overflow and the stage's checks are the convolution's.
    """
    convolution: Conv2d | None = None

    def __post_init__(self):
        if not isinstance(self.convolution, Conv2d):
            raise TypeError(f"Im2col convolution must be a Conv2d, not {self.convolution!r}")
        super().__post_init__()

    @property
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The convolution's bounds (see the class)."""
        return self.convolution.acc_range


def conv_acc_range(weights, bias, in_tensor: TensorFormat, in_size, stride, padding):
    """:attr:`Conv2d.acc_range` of a convolution with ``weights`` (codes of shape ``(C_out, kh,
    kw, C_in / groups)``), ``bias``, input format ``in_tensor``, ``in_size``, ``stride`` and
    ``padding`` (normalized tuples), for a frontend that needs the bounds before it has the
    layer's output stage."""
    fmt, zero_point = in_tensor.format, in_tensor.zero_point
    matrix, per_tap = weights.reshape(weights.shape[0], -1), weights.shape[3]
    rows, cols = (_taps_inside(size, kernel, step, before, after)
                  for size, kernel, step, before, after in
                  zip(in_size, weights.shape[1:3], stride, padding[::2], padding[1::2],
                      strict=True))
    bounds = []
    for row in rows:
        for col in cols:
            inside = np.repeat(np.outer(row, col).ravel(), per_tap)
            bounds.append(partial_sum_range(matrix, bias,
                                            np.where(inside, fmt.min_value, zero_point),
                                            np.where(inside, fmt.max_value, zero_point)))
    lows, highs = zip(*bounds, strict=True)
    return np.min(lows, axis=0), np.max(highs, axis=0)


def _taps_inside(size, kernel, stride, before, after) -> np.ndarray:
    """Along one axis of an image of ``size`` pixels, padded with ``before`` and ``after``
    pixels: the distinct masks of which of a window's ``kernel`` taps fall inside the image
    (True) rather than in the padding, over every window position of ``stride``; one mask per
    row, sorted."""
    count = (size + before + after - kernel) // stride + 1
    taps = np.arange(count)[:, None] * stride - before + np.arange(kernel)
    return np.unique((taps >= 0) & (taps < size), axis=0)
