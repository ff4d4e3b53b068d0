"""The max-pooling layer kind, on channels-last images of codes."""

from dataclasses import dataclass

import numpy as np

from .checks import check_name, expect_keys, int_tuple, plain_int
from .layer import Layer, layer_kind
from .tensors import TensorFormat, shape_text

__all__ = ["MaxPool2d"]


@layer_kind("maxpool2d")
@dataclass(frozen=True, eq=False)
class MaxPool2d(Layer):
    """Two-dimensional max pooling: it maps an image of shape ``(H, W, C)`` (``in_size`` is
    ``(H, W)``, ``in_channels`` is ``C``) to ``(OH, OW, C)``, each output code being the
    largest code of its channel in a ``kernel`` ``(kh, kw)`` window.

    The window of output pixel ``(oy, ox)`` starts at row ``oy * sh`` and column ``ox * sw``
    (``stride`` ``(sh, sw)``, the kernel unless given; no padding), so
    ``OH = (H - kh) // sh + 1`` and likewise ``OW`` (rows or columns left over at the bottom or
    right are not used, as in PyTorch and ONNX). A stride larger than the kernel, which would
    skip pixels, is refused.

    A pool works on codes: its output format is its ``input`` (:attr:`output` is the same
    :class:`~hwnn.ir.TensorFormat`), it has no weights and no stage (:attr:`stage` is None),
    and its accumulator is the largest code itself, so :attr:`acc_range` is the input format's
    range. It takes the codes the layer before it outputs, after that layer's stage, so it is
    exact whatever that stage is: a channel with descending thresholds needs nothing special,
    since the pool never sees its accumulator. (A frontend importing a real max pool placed
    before a rising activation moves it after the activation, which computes the same.) For
    binary codes (bit 1 meaning +1) the largest code is the OR of the bits.
    """
    name:        str
    in_size:     tuple[int, int]
    in_channels: int
    kernel:      tuple[int, int]
    input:       TensorFormat
    stride:      tuple[int, int] | None = None

    def __post_init__(self):
        check_name(self.name, "Layer name")
        where = f"Layer {self.name!r}"
        object.__setattr__(self, "in_size", int_tuple(self.in_size, 2, f"{where} in_size", 1))
        channels = plain_int(self.in_channels, f"{where} in_channels")
        if channels < 1:
            raise ValueError(f"{where} in_channels must be at least 1, not {channels}")
        object.__setattr__(self, "in_channels", channels)
        object.__setattr__(self, "kernel", int_tuple(self.kernel, 2, f"{where} kernel", 1))
        stride = self.kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", int_tuple(stride, 2, f"{where} stride", 1))
        if not isinstance(self.input, TensorFormat):
            raise TypeError(f"{where} input must be a TensorFormat, not {self.input!r}")
        if self.kernel[0] > self.in_size[0] or self.kernel[1] > self.in_size[1]:
            raise ValueError(f"{where} kernel {shape_text(self.kernel)} is larger than its "
                             f"input {shape_text(self.in_size)}")
        if self.stride[0] > self.kernel[0] or self.stride[1] > self.kernel[1]:
            raise ValueError(f"{where} stride {shape_text(self.stride)} skips pixels: it must "
                             f"not exceed the kernel {shape_text(self.kernel)}")
        self._check_stage(where)

    @property
    def output(self) -> TensorFormat:
        """The input's format: a pool outputs some of its input codes."""
        return self.input

    @property
    def stage(self) -> None:
        """None: the largest code is the output."""
        return None

    @property
    def out_size(self) -> tuple[int, int]:
        """``(OH, OW)``."""
        return tuple((size - kernel) // stride + 1 for size, kernel, stride
                     in zip(self.in_size, self.kernel, self.stride, strict=True))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (*self.in_size, self.in_channels)

    @property
    def output_shape(self) -> tuple[int, int, int]:
        return (*self.out_size, self.in_channels)

    @property
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The input format's range, for every channel."""
        fmt = self.input.format
        return (np.full(self.in_channels, fmt.min_value, dtype=np.int64),
                np.full(self.in_channels, fmt.max_value, dtype=np.int64))

    @property
    def weight_bits(self) -> int:
        """0: a pool has no weights."""
        return 0

    def _check_unstaged_output(self, where):
        """Nothing to check: the accumulator is an input code, and the output format is the
        input's."""

    # Files ------------------------------------------------------------------------------------

    def header_and_arrays(self):
        return ({"name": self.name, "in_size": list(self.in_size),
                 "in_channels": self.in_channels, "kernel": list(self.kernel),
                 "stride": list(self.stride), "input": self.input.to_header()},
                {"input_scale": self.input.scale})

    @classmethod
    def from_header_and_arrays(cls, header, arrays):
        expect_keys(header, {"name", "in_size", "in_channels", "kernel", "stride", "input"},
                    "layer header")
        expect_keys(arrays, {"input_scale"}, "layer arrays")
        return cls(header["name"], header["in_size"], header["in_channels"], header["kernel"],
                   TensorFormat.from_header(header["input"], arrays["input_scale"], "input"),
                   header["stride"])
