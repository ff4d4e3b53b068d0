"""An open weighted layer of a QONNX graph: its weights, the float32 steps qonnx applies to
its accumulator, and the IR layer it becomes when a quantizer (or the graph's end) closes it.
"""

import numpy as np

from ..ir import Dense, TensorFormat
from ..ir.formats import Format, signed_bits_for
from ..ir.stages import Requant, accumulator_range
from .qonnx_arith import matmul_value
from .threshold_search import search_thresholds

__all__ = ["OpenLayer"]


class OpenLayer:
    """An open weighted layer: its weights (output channels first, channels-last taps), the
    IR kind that will hold it (``make``, taking the common members as keywords), and the
    float32 steps qonnx applies after its accumulator, in order: ``(op, function,
    affine)``, each ``function`` monotone per channel (``descending`` says where the chain
    so far falls as the accumulator rises) and, but for ``relu``, the real affine map
    ``y -> a * y + b`` it rounds (``affine = (a, b)``, per channel or scalars)."""

    def __init__(self, make, weights, weight_spec, weight_scale, in_spec):
        self.make, self.weights = make, weights
        self.weight_spec, self.weight_scale, self.in_spec = weight_spec, weight_scale, in_spec
        self.steps = []
        self.descending = np.zeros(len(weights), dtype=bool)
        #: The IR layer's name is this and its index in the network.
        self.prefix = "dense" if make is Dense else "conv"

    @property
    def channels(self) -> int:
        return len(self.weights)

    def add_step(self, op, function, affine=None, flips=None):
        """Append a step; ``flips`` marks the channels where it reverses the direction."""
        self.steps.append((op, function, affine))
        if flips is not None:
            self.descending = self.descending ^ flips

    @property
    def acc_scale(self) -> np.ndarray:
        """Per channel ``s_x * s_w`` (float64 of the float32 scales, exact)."""
        return np.float64(self.in_spec.scale) * self.weight_scale

    def real_values(self, acc) -> np.ndarray:
        """The float32 values qonnx computes from accumulators ``acc`` (k, channels) up to
        the quantizer: the matrix product, then every step."""
        y = matmul_value(acc, self.acc_scale)
        for _, function, _ in self.steps:
            y = function(y).astype(np.float32)
        return y

    @property
    def in_format(self) -> TensorFormat:
        spec = self.in_spec
        return TensorFormat(spec.format, float(spec.scale), int(spec.zero_point))

    def zero_point_bias(self) -> np.ndarray:
        """The accumulator bias that folds the input zero point: ``-zp * sum(row)``."""
        return -int(self.in_spec.zero_point) * self.weights.reshape(self.channels, -1).sum(
            axis=1)

    def acc_range(self, bias):
        """Per-channel accumulator bounds (padding inserts a code of the input format, so the
        bounds of the weights as a matrix hold for a convolution too)."""
        return accumulator_range(self.weights.reshape(self.channels, -1), bias,
                                 self.in_format.format)

    def code_range(self, codes_of):
        """The smallest and largest of ``codes_of`` (float32 values to codes, monotone) over
        the layer's accumulator range."""
        lo, hi = self.acc_range(self.zero_point_bias())
        codes = codes_of(self.real_values(np.stack([lo, hi])))
        return int(codes.min()), int(codes.max())

    def build(self, index, where, **members):
        """The IR layer, the ``index``-th of the network; a ValueError names ``where``."""
        try:
            return self.make(name=f"{self.prefix}{index}", weights=self.weights,
                             weight_format=self.weight_spec.format,
                             weight_scale=self.weight_scale, input=self.in_format, **members)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    def with_thresholds(self, index, where, spec):
        """The IR layer closed by the activation quantizer ``spec`` (a per-tensor
        :class:`~hwnn.quant.qonnx_arith.QuantSpec`): a threshold stage whose codes equal
        qonnx's for every accumulator value."""
        out_format = spec.format
        bias = self.zero_point_bias()
        lo, hi = self.acc_range(bias)

        def level_of(acc):
            codes = spec.codes(self.real_values(acc)).astype(np.int64)
            return out_format.value_level(codes)

        stage = search_thresholds(level_of, lo, hi, out_format.levels, self.descending)
        return self.build(index, where, bias=bias, stage=stage,
                          output=TensorFormat(out_format, float(spec.scale),
                                              int(spec.zero_point)),
                          activation="relu" if any(op == "relu" for op, _, _ in self.steps)
                          else "identity")

    def with_accumulator(self, index, where):
        """The IR layer that outputs its accumulator (the graph's last layer, without a
        quantizer). The steps after the product compose into one affine map per channel,
        ``y = A * acc + B`` (real arithmetic): the output scale is ``|A|`` (a channel with a
        negative ``A`` has its weights negated, which a symmetric weight format allows) and
        ``B / A`` is added to the accumulator rounded to whole steps, so the dequantized
        outputs are within half a step (plus qonnx's float32 rounding) of qonnx's. A final
        ``Relu`` clamps the accumulator at 0 (a requantization stage of factor 1).
        ``where`` names the graph's last node in messages."""
        ops = [op for op, _, _ in self.steps]
        relu = bool(ops) and ops[-1] == "relu"
        if "relu" in ops[:-1]:
            raise ValueError(f"{where} ends a layer that applies {', '.join(ops)} to its "
                             f"accumulator without a quantizer after it: hwnn outputs it "
                             f"affine, then at most one final Relu")
        scale = self.acc_scale.copy()
        shift = np.zeros(self.channels)
        for _, _, (a, b) in self.steps[:-1] if relu else self.steps:
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            scale, shift = scale * a, shift * a + b
        if np.any(scale == 0) or not np.all(np.isfinite(scale)):
            raise ValueError(f"{where} ends a layer whose {', '.join(ops)} scale some "
                             f"outputs by 0 or a non-finite factor")
        negative = scale < 0
        weights = self.weights
        if negative.any():
            weight_format = self.weight_spec.format
            if not weight_format.contains(-weights[negative]):
                raise ValueError(f"{where} ends a layer whose {', '.join(ops)} reverse some "
                                 f"outputs, and its {weight_format} weights cannot be negated "
                                 f"to output them without a quantizer")
            sign = np.where(negative, -1, 1).reshape((-1,) + (1,) * (weights.ndim - 1))
            self.weights = weights * sign
        scale = np.abs(scale)
        bias = self.zero_point_bias() + np.round(shift / scale).astype(np.int64)
        lo, hi = self.acc_range(bias)
        stage = None
        if relu:
            hi = np.maximum(hi, 0)
            stage = Requant(np.ones(self.channels, np.int64), np.zeros(self.channels, np.int64),
                            1, 0, 0, int(hi.max()))
            output_format = Format.uint(max(int(hi.max()).bit_length(), 1))
        else:
            output_format = Format.int(signed_bits_for(lo.min(), hi.max()))
        return self.build(index, where, bias=bias, stage=stage,
                          output=TensorFormat(output_format, scale),
                          activation="relu" if relu else "identity")
