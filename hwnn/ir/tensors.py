"""Tensors crossing a layer boundary: the format of their codes, how to write their shape, and
the order of their codes once flattened.

Tensors are channels last: an image is ``(H, W, C)``. Flattened (as a dense layer after a
convolution takes it, and as streams carry it), a tensor is in row-major order: rows top to
bottom, pixels left to right, channels fastest, so code ``(y, x, c)`` of an ``(H, W, C)``
image is element ``(y * W + x) * C + c``. PyTorch flattens ``(C, H, W)`` tensors instead; an
importer permutes the columns of the dense layer that follows, once
(:func:`chw_to_hwc_columns`), and an exporter permutes them back (:func:`hwc_to_chw_columns`).
"""

import math
from dataclasses import dataclass

import numpy as np

from .checks import expect_keys, float_array, plain_int
from .formats import Format

__all__ = ["TensorFormat", "chw_to_hwc_columns", "hwc_to_chw_columns", "shape_text"]


@dataclass(frozen=True, eq=False)
class TensorFormat:
    """Format of a tensor crossing a layer boundary: codes plus how to dequantize them.

    ``real = (code - zero_point) * scale``; ``scale`` is a scalar (per tensor) or a vector with
    one entry per channel (only a network's final accumulator output is per channel).
    """
    format:     Format
    scale:      np.ndarray
    zero_point: int = 0

    def __post_init__(self):
        if not isinstance(self.format, Format):
            raise TypeError(f"format must be a Format, not {self.format!r}")
        scale = float_array(self.scale, "scale")
        if scale.ndim > 1:
            raise ValueError(f"scale must be a scalar or a vector, not shape {scale.shape}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", plain_int(self.zero_point, "zero_point"))

    def __eq__(self, other):
        return (isinstance(other, TensorFormat) and self.format == other.format
                and self.zero_point == other.zero_point and self.scale.shape == other.scale.shape
                and bool(np.all(self.scale == other.scale)))

    __hash__ = None

    def dequantize(self, codes) -> np.ndarray:
        """Real values of codes (channels on the last axis)."""
        return (np.asarray(codes, dtype=np.int64) - self.zero_point) * self.scale

    def __str__(self):
        scale = (f"{float(self.scale):.6g}" if self.scale.ndim == 0
                 else f"per-channel[{self.scale.size}]")
        return f"{self.format} x {scale}" + (f" zp {self.zero_point}" if self.zero_point else "")

    # Files ------------------------------------------------------------------------------------

    def to_header(self) -> dict:
        """The JSON part of this format in a network file (the scale goes in an array)."""
        return {"format": str(self.format), "zero_point": self.zero_point}

    @classmethod
    def from_header(cls, header, scale, what) -> "TensorFormat":
        """Inverse of :meth:`to_header`, given the scale array; ``what`` names the tensor in
        the message of a ValueError."""
        expect_keys(header, {"format", "zero_point"}, f"{what} header")
        return cls(Format.parse(header["format"]), scale, header["zero_point"])


def shape_text(shape) -> str:
    """A tensor shape as people write it: ``"64"`` for ``(64,)``, ``"8x8x3"`` for
    ``(8, 8, 3)``."""
    return "x".join(str(size) for size in shape)


def _columns_and_shape(function, weights, shape):
    weights = np.asarray(weights)
    shape = tuple(shape)
    if len(shape) != 3 or weights.ndim != 2 or weights.shape[1] != math.prod(shape):
        raise ValueError(f"{function} needs a weight matrix of H * W * C columns and a shape "
                         f"(H, W, C), not weights of shape {weights.shape} and shape {shape}")
    return weights, shape


def chw_to_hwc_columns(weights, shape) -> np.ndarray:
    """The columns of a dense layer's ``weights`` (outputs x inputs, of any dtype) that take a
    tensor of channels-last ``shape`` ``(H, W, C)`` flattened in PyTorch's ``(C, H, W)``
    order, permuted to take it flattened in hwnn's ``(H, W, C)`` order: for every image
    ``x`` of ``shape``, ``result @ x.ravel() == weights @ x.transpose(2, 0, 1).ravel()``."""
    weights, (height, width, channels) = _columns_and_shape("chw_to_hwc_columns", weights,
                                                            shape)
    return (weights.reshape(-1, channels, height, width).transpose(0, 2, 3, 1)
            .reshape(weights.shape))


def hwc_to_chw_columns(weights, shape) -> np.ndarray:
    """The inverse of :func:`chw_to_hwc_columns`: the columns of a dense layer's ``weights``
    that take a tensor of channels-last ``shape`` ``(H, W, C)`` flattened in hwnn's order,
    permuted to take it flattened in PyTorch's ``(C, H, W)`` order: for every image ``x`` of
    ``shape``, ``result @ x.transpose(2, 0, 1).ravel() == weights @ x.ravel()``."""
    weights, (height, width, channels) = _columns_and_shape("hwc_to_chw_columns", weights,
                                                            shape)
    return (weights.reshape(-1, height, width, channels).transpose(0, 3, 1, 2)
            .reshape(weights.shape))
