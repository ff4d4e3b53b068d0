"""Tensors crossing a layer boundary: the format of their codes and how to write their shape."""

from dataclasses import dataclass

import numpy as np

from .checks import expect_keys, float_array, plain_int
from .formats import Format

__all__ = ["TensorFormat", "shape_text"]


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
