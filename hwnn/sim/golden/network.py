"""Golden execution of a quantized network, layer by layer, on integer codes.

Every function takes and returns int64 arrays with the batch on the leading axes, then the
layer's input or output shape (channels last), and computes exactly what the hardware
computes: no floats anywhere.
"""

from dataclasses import dataclass
from functools import singledispatch

import numpy as np

from hwnn.ir import Conv2d, Dense, Layer, MaxPool2d, Network, Requant, Thresholds

from .window import windows

__all__ = ["LayerTrace", "accumulate", "conv2d_accumulate", "dense_accumulate", "layer_inputs",
           "maxpool2d_accumulate", "output_stage", "requantize", "run_network", "threshold"]


@singledispatch
def accumulate(layer: Layer, codes) -> np.ndarray:
    """Accumulators of ``layer`` on input ``codes`` (batch axes first, then the layer's input
    shape): the golden function of the layer's kind, registered with
    ``@accumulate.register`` on its class. Its output stage then applies
    (:func:`output_stage`)."""
    raise TypeError(f"The golden model has no function for layer kind "
                    f"{getattr(layer, 'kind', None)!r} ({type(layer).__qualname__}): register "
                    f"one with @hwnn.sim.golden.accumulate.register")


@accumulate.register
def dense_accumulate(layer: Dense, codes) -> np.ndarray:
    """Accumulators ``codes @ weights.T + bias`` of a dense layer."""
    return np.asarray(codes, dtype=np.int64) @ layer.weights.T + layer.bias


@accumulate.register
def conv2d_accumulate(layer: Conv2d, codes) -> np.ndarray:
    """Accumulators of a convolution by im2col: each window of the input padded with its zero
    point (:func:`~hwnn.sim.golden.window.windows`) times :attr:`Conv2d.weights_matrix`, plus
    the bias; a depthwise layer's channel ``o`` takes the taps of input channel ``o`` only."""
    window = windows(codes, layer.kernel, layer.stride, layer.padding, layer.input.zero_point)
    if layer.depthwise:
        taps = window.reshape(*window.shape[:-1], -1, layer.in_channels)   # (..., kh * kw, C)
        return np.einsum("...tc,ct->...c", taps, layer.weights_matrix) + layer.bias
    return window @ layer.weights_matrix.T + layer.bias


@accumulate.register
def maxpool2d_accumulate(layer: MaxPool2d, codes) -> np.ndarray:
    """The largest code of each window, per channel."""
    window = windows(codes, layer.kernel, layer.stride)
    return window.reshape(*window.shape[:-1], -1, layer.in_channels).max(axis=-2)


def threshold(acc, stage: Thresholds, out_format) -> np.ndarray:
    """Output values of a threshold stage: ``level = #(t <= acc)`` per channel (``#(acc <= t)``
    on descending channels), mapped to ``out_format`` values."""
    acc = np.asarray(acc, dtype=np.int64)[..., None]
    rising = (acc >= stage.values).sum(axis=-1)
    falling = (acc <= stage.values).sum(axis=-1)
    return out_format.level_value(np.where(stage.descending, falling, rising))


def requantize(acc, stage: Requant) -> np.ndarray:
    """``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)`` per channel (round half up;
    the rounding term is 0 when ``s`` is 0)."""
    acc = np.asarray(acc, dtype=np.int64)
    rounding = (np.int64(1) << stage.shift) >> 1
    scaled = (acc * stage.multiplier + rounding) >> stage.shift
    return np.clip(scaled + stage.zero_point, stage.lo, stage.hi)


def output_stage(layer: Layer, acc) -> np.ndarray:
    """Output codes of a layer from its accumulators."""
    if isinstance(layer.stage, Thresholds):
        return threshold(acc, layer.stage, layer.output.format)
    if isinstance(layer.stage, Requant):
        return requantize(acc, layer.stage)
    return np.asarray(acc, dtype=np.int64)


@dataclass(frozen=True, eq=False)
class LayerTrace:
    """One layer's accumulators and output codes for a batch."""
    name:    str
    acc:     np.ndarray
    outputs: np.ndarray


def _check_codes(network: Network, codes) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.dtype.kind not in "iu":
        raise TypeError(f"Input codes must be integers, not {codes.dtype} values; quantize real "
                        f"inputs with Network.quantize_input()")
    shape = network.input_shape
    flat = ((*codes.shape[:1], network.in_features),) if len(shape) > 1 else ()
    if codes.shape not in (shape, codes.shape[:1] + shape, *flat):
        raise ValueError(f"Input codes must have shape {shape} or "
                         f"(N, {', '.join(map(str, shape))})"
                         + (f" or (N, {network.in_features})" if flat else "")
                         + f", not {codes.shape}")
    codes = codes.astype(np.int64)
    fmt = network.input.format
    if not fmt.contains(codes):
        flat = codes.reshape(-1, network.in_features)
        valid = np.array([fmt.contains(row) for row in flat])
        row = int(np.nonzero(~valid)[0][0])
        bad = next(int(v) for v in flat[row] if not fmt.contains(v))
        raise ValueError(f"Input {row} holds code {bad}, which is outside the input format "
                         f"{fmt} ({fmt.min_value}..{fmt.max_value})")
    return codes


def run_network(network: Network, codes, *, trace=False):
    """Run ``network`` on input codes (one input of the network's input shape, or a batch
    ``(N, ...)`` of them, or a batch of them flattened, ``(N, in_features)``, as streams and
    design folders carry them), each layer with its kind's golden function. A layer that
    takes a vector gets the tensor before it flattened (row-major, channels fastest).

    Returns the output codes (of the batch's shape and the output shape; flattened,
    ``(N, out_features)``, for flattened inputs), or with ``trace`` a pair ``(outputs,
    [LayerTrace, ...])``, each trace's arrays of the batch's shape and the layer's output
    shape.
    """
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    x = _check_codes(network, codes)
    shape = network.input_shape
    flat = len(shape) > 1 and x.shape not in (shape, x.shape[:1] + shape)
    if flat:
        x = x.reshape(len(x), *network.input_shape)
    batch = x.shape[:x.ndim - len(network.input_shape)]
    traces = []
    for layer in network.layers:
        acc = accumulate(layer, x.reshape(batch + layer.input_shape))
        x = output_stage(layer, acc)
        if trace:
            traces.append(LayerTrace(layer.name, acc, x))
    if flat:
        x = x.reshape(len(x), -1)
    return (x, traces) if trace else x


def layer_inputs(network: Network, codes) -> list[np.ndarray]:
    """Every layer's input codes, in the layer's input shape, for a batch ``(N, ...)`` of
    network inputs (or one input, a batch of one): the inputs, then each layer's outputs but
    the last's."""
    codes = _check_codes(network, codes)
    if codes.shape == network.input_shape:
        codes = codes[None]
    codes = codes.reshape(len(codes), *network.input_shape)
    _, traces = run_network(network, codes, trace=True)
    return [codes] + [trace.outputs.reshape(len(codes), *layer.input_shape)
                      for trace, layer in zip(traces[:-1], network.layers[1:], strict=True)]
