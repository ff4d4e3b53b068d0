"""An open weighted layer of a QONNX graph: its weights, the float32 steps qonnx applies to
its accumulator, and the IR layer it becomes when a quantizer (or the graph's end) closes it.
"""

import numpy as np

from ..ir import Dense, TensorFormat
from ..ir.formats import Format, signed_bits_for
from ..ir.stages import accumulator_range
from .qonnx_arith import matmul_value
from .threshold_search import search_thresholds

__all__ = ["OpenLayer"]


class OpenLayer:
    """An open weighted layer: its weights (output channels first, channels-last taps), the
    IR kind that will hold it (``make``, taking the common members as keywords), and the
    float32 steps qonnx applies after its accumulator, in order: ``(op, function,
    constant)``, each ``function`` monotone per channel (``descending`` says where the chain
    so far falls as the accumulator rises)."""

    def __init__(self, make, weights, weight_spec, weight_scale, in_spec):
        self.make, self.weights = make, weights
        self.weight_spec, self.weight_scale, self.in_spec = weight_spec, weight_scale, in_spec
        self.steps = []
        self.descending = np.zeros(len(weights), dtype=bool)

    @property
    def channels(self) -> int:
        return len(self.weights)

    def add_step(self, op, function, constant=None, flips=None):
        """Append a step; ``flips`` marks the channels where it reverses the direction."""
        self.steps.append((op, function, constant))
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

    def build(self, index, where, **members):
        """The IR layer, the ``index``-th of the network; a ValueError names ``where``."""
        name = f"{'dense' if self.make is Dense else 'conv'}{index}"
        try:
            return self.make(name=name, weights=self.weights,
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

    def with_accumulator(self, index):
        """The IR layer that outputs its raw accumulator (the graph's last layer, without a
        quantizer): only a bias may follow the product."""
        ops = [op for op, _, _ in self.steps]
        if ops not in ([], ["add"]):
            raise ValueError(f"The last layer applies {', '.join(ops)} to its accumulator "
                             f"without a Quant after it: hwnn outputs the last layer's raw "
                             f"accumulator plus a bias")
        bias = self.zero_point_bias()
        if ops:
            constant = self.steps[0][2]
            bias = bias + np.round(constant.astype(np.float64) / self.acc_scale).astype(
                np.int64)
        lo, hi = self.acc_range(bias)
        output = TensorFormat(Format.int(signed_bits_for(lo.min(), hi.max())), self.acc_scale)
        return self.build(index, "The last layer", bias=bias, stage=None, output=output)
