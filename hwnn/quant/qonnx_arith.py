"""The float32 arithmetic qonnx's executor applies between a layer's integer accumulator and
the quantizer after it, reproduced in NumPy so that thresholds can be searched on it.

qonnx's executor (:func:`qonnx.core.onnx_exec.execute_onnx`) runs its own ops (``Quant``) in
NumPy and every standard op alone in onnxruntime, all in float32:

* ``Quant`` (:class:`QuantSpec`): ``y = x / scale + zero_point`` (float32), clamped to the
  integer range, rounded with the node's rounding mode (qonnx's own functions), then
  ``(y - zero_point) * scale``; a 1-bit signed ``Quant`` gives ``+1`` for ``y >= 0``, else -1.
* ``MatMul``/``Gemm`` of quantized inputs ``(c - zp) * s_x`` and weights ``w * s_w``: with
  power-of-two scales (and partial sums below 2**24 steps) every product and partial sum is
  exact, so the result is ``acc * s_x * s_w`` whatever the summation order; otherwise it is
  that value within float32 rounding, and :func:`matmul_value` takes the correctly rounded one.
* ``Add`` of a float bias: one float32 addition.
* ``BatchNormalization`` (:class:`BatchNormF32`), as onnxruntime's CPU kernel computes it:
  ``inv_std = 1 / sqrt(var + eps)``, ``a = inv_std * gamma``, ``b = beta - mean * a``, then
  ``x * a + b``, each step rounded to float32.
* ``Relu``: ``max(x, 0)``.
* ``AveragePool``/``GlobalAveragePool`` of quantized codes: the sum of the window's values
  (exact with a power-of-two scale) divided by the window's size in float32.
* ``Trunc`` (:class:`TruncSpec`): qonnx's own function of its version (1: ``floor(round(x /
  scale + zp) / 2**(in_bits - out_bits))``, unclamped; 2: clamped to the output bit width).
* FINN's ``MultiThreshold`` (:class:`MultiThresholdSpec`): per channel the number of
  thresholds ``t`` with ``x >= t`` (float32 comparisons), times ``out_scale`` plus
  ``out_bias``.

Each step is monotone in its input (float32 rounding is), so the chain is monotone per
channel: non-decreasing unless the batch normalization's ``a`` is negative.
"""

from dataclasses import dataclass

import numpy as np

from ..ir.formats import Format

__all__ = ["BatchNormF32", "MultiThresholdSpec", "QuantSpec", "TruncSpec", "matmul_value"]


@dataclass(frozen=True, eq=False)
class QuantSpec:
    """The parameters of one QONNX ``Quant`` node: ``scale`` and ``zero_point`` (float32, per
    tensor or broadcasting per channel), ``bits``, ``signed``, ``narrow`` and ``rounding``
    (the node's ``rounding_mode``, e.g. ``"ROUND"``, half to even)."""
    scale:      np.ndarray
    zero_point: np.ndarray
    bits:       int
    signed:     bool
    narrow:     bool
    rounding:   str

    def codes(self, x) -> np.ndarray:
        """The integer codes (float32) qonnx's ``Quant`` gives the float32 values ``x``,
        before it scales them back."""
        from qonnx.custom_op.general.intquant import max_int, min_int, resolve_rounding_mode
        y = np.asarray(x, dtype=np.float32) / self.scale
        y = y + self.zero_point
        if self.bits == 1 and self.signed:
            return np.where(y >= 0, np.float32(1), np.float32(-1))
        low = np.float32(min_int(self.signed, self.narrow, self.bits))
        high = np.float32(max_int(self.signed, self.narrow, self.bits))
        y = np.where(y > high, high, y)
        y = np.where(y < low, low, y)
        return resolve_rounding_mode(self.rounding)(y).astype(np.float32)

    def values(self, codes) -> np.ndarray:
        """The float32 values qonnx's ``Quant`` outputs for ``codes``."""
        return ((np.asarray(codes, dtype=np.float32) - self.zero_point)
                * self.scale).astype(np.float32)

    @property
    def format(self) -> Format:
        """The hwnn format holding every code: ``binary`` for 1 signed bit, ``int<k>`` (narrow
        when the node is), ``uint<k>`` (whose narrow range, up to ``2**k - 2``, fits)."""
        if self.bits == 1 and self.signed:
            return Format.binary()
        if self.signed:
            return Format.int(self.bits, narrow=self.narrow and self.bits >= 2)
        return Format.uint(self.bits)


@dataclass(frozen=True, eq=False)
class MultiThresholdSpec:
    """A FINN ``MultiThreshold`` node as an activation quantizer: ``thresholds`` (float32,
    (channels or 1, T)), and the hwnn ``format`` of its output type whose levels ``0 .. T``
    are the counts. Its output ``out_scale * count + out_bias`` is ``(code - zero_point) *
    scale`` for the format's code of the count: :attr:`scale` and :attr:`zero_point` give
    the same interface as :class:`QuantSpec` to the layer after it."""
    thresholds: np.ndarray
    format:     Format
    scale:      np.ndarray
    zero_point: np.ndarray

    def codes(self, x) -> np.ndarray:
        """The format's codes (float32) of the counts qonnx's ``MultiThreshold`` gives the
        float32 values ``x`` (k, channels)."""
        x = np.asarray(x, dtype=np.float32)[..., None]
        counts = np.count_nonzero(x >= self.thresholds, axis=-1)
        return self.format.level_value(counts).astype(np.float32)

    def values(self, codes) -> np.ndarray:
        """The float32 values qonnx's ``MultiThreshold`` outputs for ``codes``."""
        return ((np.asarray(codes, dtype=np.float32) - self.zero_point)
                * self.scale).astype(np.float32)


@dataclass(frozen=True, eq=False)
class TruncSpec:
    """A QONNX ``Trunc`` node as an activation quantizer: ``function`` (qonnx's ``trunc_v1``
    or ``trunc_v2`` with the node's constant parameters bound) and the output's codes, which
    ``(code - zero_point) * scale`` gives back, of ``format``."""
    function:   object
    format:     Format
    scale:      np.ndarray
    zero_point: np.ndarray

    def codes(self, x) -> np.ndarray:
        """The integer codes (float32) of qonnx's ``Trunc`` output for the float32 values
        ``x``."""
        y = self.function(np.asarray(x, dtype=np.float32))
        return np.round(y / self.scale + self.zero_point).astype(np.float32)

    def values(self, codes) -> np.ndarray:
        return ((np.asarray(codes, dtype=np.float32) - self.zero_point)
                * self.scale).astype(np.float32)


@dataclass(frozen=True, eq=False)
class BatchNormF32:
    """An inference ``BatchNormalization`` as onnxruntime computes it in float32: per
    channel ``x * a + b`` with the folded ``a`` and ``b`` (see the module docstring)."""
    a: np.ndarray
    b: np.ndarray

    @classmethod
    def from_parameters(cls, gamma, beta, mean, var, eps) -> "BatchNormF32":
        f32 = np.float32
        gamma, beta, mean, var = (np.asarray(p, dtype=f32) for p in (gamma, beta, mean, var))
        inv_std = (f32(1) / np.sqrt(var + f32(eps))).astype(f32)
        a = (inv_std * gamma).astype(f32)
        return cls(a, (beta - (mean * a).astype(f32)).astype(f32))

    def __call__(self, x) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float32) * self.a).astype(np.float32)
                + self.b).astype(np.float32)


def matmul_value(acc, acc_scale) -> np.ndarray:
    """The float32 output of a ``MatMul``/``Gemm`` whose integer accumulator is ``acc``
    (int64, channels last) and whose per-channel accumulator scale is ``acc_scale``
    (``s_x * s_w``, float64 of the float32 scales): ``acc * s_x * s_w`` rounded to float32,
    exact when the scales are powers of two."""
    return (np.asarray(acc, dtype=np.float64) * acc_scale).astype(np.float32)
