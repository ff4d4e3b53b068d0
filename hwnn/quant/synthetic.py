"""Random quantized layers and networks, for tests and benchmarks.

They exercise every corner of the IR (all formats, both threshold directions, requantization
with per-channel multipliers, accumulator outputs) without needing a trained model.
"""

import math
from dataclasses import replace

import numpy as np

from ..ir import (Conv2d, Dense, MaxPool2d, Network, Requant, TensorFormat, Thresholds,
                  accumulator_range)
from ..ir.checks import int_tuple
from ..ir.formats import Format, signed_bits_for
from .compress import share_weights

__all__ = ["SAMPLE_NETWORKS", "random_cnn", "random_conv2d", "random_dense", "random_network",
           "sample_cnn", "sample_network"]


def _random_values(rng, fmt: Format, shape):
    return fmt.level_value(rng.integers(0, fmt.levels, size=shape))


def random_dense(rng, in_features, out_features, *, in_format, weight_format, out_format=None,
                 stage="thresholds", name="dense", mult_bits=16, density=1.0, share=None,
                 in_zero_point=0) -> Dense:
    """A random :class:`Dense` layer whose input has zero point ``in_zero_point``.

    A ``density`` below 1 keeps each weight with that probability (the rest are zero);
    ``share`` (bits) shares the nonzero weights through a codebook (:func:`share_weights`).

    ``stage`` is ``"thresholds"`` (random sorted thresholds inside the accumulator range, about
    a quarter of the channels descending), ``"requant"`` (random multipliers and shifts that map
    the accumulator range onto ``out_format``) or ``"accumulator"`` (``out_format`` ignored).
    """
    in_format, weight_format = Format.parse(in_format), Format.parse(weight_format)
    weights = _random_values(rng, weight_format, (out_features, in_features))
    if density < 1:
        weights = np.where(rng.random(weights.shape) < density, weights, 0)
    codebook = None
    if share is not None:
        weights, codebook = share_weights(weights, share)
    bias = _random_bias(rng, stage, in_features, out_features)
    lo, hi = accumulator_range(weights, bias, in_format)
    output, stage = _random_stage(rng, stage, out_format, lo, hi, mult_bits, lambda: (
        _random_values(rng, in_format, (64, in_features)) @ weights.T + bias))
    return Dense(name, weights, weight_format, np.ones(out_features), bias,
                 TensorFormat(in_format, 1.0, in_zero_point), output, stage, codebook=codebook)


def random_conv2d(rng, in_shape, out_channels, kernel, *, in_format, weight_format,
                  out_format=None, stage="thresholds", stride=1, padding=0, depthwise=False,
                  name="conv", mult_bits=16, in_zero_point=0) -> Conv2d:
    """A random :class:`Conv2d` layer taking images of ``in_shape`` ``(H, W, C)`` whose input
    has zero point ``in_zero_point``: ``kernel``, ``stride`` and ``padding`` as
    :class:`Conv2d` takes them, ``depthwise`` for ``groups = C`` (then ``out_channels``
    must be ``C``); ``stage``, ``out_format`` and ``mult_bits`` as for :func:`random_dense`
    (thresholds are drawn from the accumulators of random windows)."""
    in_format, weight_format = Format.parse(in_format), Format.parse(weight_format)
    height, width, channels = in_shape
    (kh, kw), groups = int_tuple(kernel, 2, "kernel", 1), channels if depthwise else 1
    weights = _random_values(rng, weight_format, (out_channels, kh, kw, channels // groups))
    taps = weights[0].size
    bias = _random_bias(rng, stage, taps, out_channels)
    layer = Conv2d(name, (height, width), weights, weight_format, np.ones(out_channels), bias,
                   TensorFormat(in_format, 1.0, in_zero_point),
                   TensorFormat(Format.int(Format.MAX_BITS), 1.0), None, stride, padding,
                   groups)
    lo, hi = layer.acc_range
    output, stage = _random_stage(rng, stage, out_format, lo, hi, mult_bits, lambda: (
        _random_values(rng, in_format, (64, taps)) @ layer.weights_matrix.T + bias))
    return replace(layer, output=output, stage=stage)


def _random_bias(rng, stage, fan_in, channels):
    """Zero for a threshold stage, otherwise up to twice the fan-in either side."""
    if stage == "thresholds":
        return np.zeros(channels, dtype=np.int64)
    return rng.integers(-2 * fan_in, 2 * fan_in + 1, size=channels)


def _random_stage(rng, stage, out_format, lo, hi, mult_bits, samples):
    """The output format and random stage (see :func:`random_dense`) of a layer whose
    accumulators lie in ``[lo, hi]``; ``samples()`` gives accumulators of 64 random inputs,
    ``(64, channels)``, from which thresholds are drawn."""
    channels = len(lo)
    if stage == "accumulator":
        return TensorFormat(Format.int(signed_bits_for(lo.min(), hi.max())),
                            np.ones(channels)), None
    out_format = Format.parse(out_format)
    if stage == "thresholds":
        # Thresholds drawn from the accumulators of random inputs, so every level occurs.
        drawn = samples()
        picks = rng.integers(0, 64, size=(channels, out_format.levels - 1))
        values = np.sort(np.take_along_axis(drawn.T, picks, axis=1), axis=1)
        values = np.clip(values, lo[:, None] - 1, hi[:, None] + 1)
        descending = rng.random(channels) < 0.25
        values = np.where(descending[:, None], values[:, ::-1], values)
        return TensorFormat(out_format, 1.0), Thresholds(values, descending)
    if stage != "requant":
        raise ValueError(f"stage must be 'thresholds', 'requant' or 'accumulator', not {stage!r}")
    reach = np.maximum(np.maximum(np.abs(lo), np.abs(hi)), 1)
    ratio = out_format.levels / (2.0 * reach) * rng.uniform(0.5, 2.0, size=channels)
    shift = np.full(channels, 20)
    multiplier = np.clip(np.round(ratio * 2.0 ** 20), 1, (1 << mult_bits) - 1).astype(np.int64)
    zero_point = 0 if out_format.signed else out_format.levels // 4
    return (TensorFormat(out_format, 1.0, zero_point),
            Requant(multiplier, shift, mult_bits, zero_point, out_format.min_value,
                    out_format.max_value))


def random_network(rng, sizes, *, weight_formats, act_formats, input_format="uint8",
                   stages=None, name="random", density=1.0, share=None) -> Network:
    """A random network with layer widths ``sizes`` (inputs first).

    ``weight_formats`` has one entry per layer, ``act_formats`` one per hidden layer; the last
    layer outputs its accumulators. ``stages`` (one per hidden layer) default to thresholds.
    ``density`` and ``share`` apply to every layer (see :func:`random_dense`).
    """
    count = len(sizes) - 1
    stages = stages or ["thresholds"] * (count - 1)
    if len(weight_formats) != count or len(act_formats) != count - 1 \
            or len(stages) != count - 1:
        raise ValueError("weight_formats needs one entry per layer; act_formats and stages one "
                         "per hidden layer")
    layers, in_format, in_zero_point = [], input_format, 0
    for index in range(count):
        last = index == count - 1
        layer = random_dense(rng, sizes[index], sizes[index + 1], in_format=in_format,
                             weight_format=weight_formats[index],
                             out_format=None if last else act_formats[index],
                             stage="accumulator" if last else stages[index],
                             name=f"dense{index}", density=density, share=share,
                             in_zero_point=in_zero_point)
        layers.append(layer)
        in_format, in_zero_point = layer.output.format, layer.output.zero_point
    return Network(name, tuple(layers))


def random_cnn(rng, input_shape, layers, *, input_format="uint8", in_zero_point=0,
               name="cnn") -> Network:
    """A random network on images of ``input_shape`` ``(H, W, C)`` whose input codes are of
    ``input_format`` with zero point ``in_zero_point``.

    ``layers`` lists each layer as ``(kind, options)``: ``("conv2d", {...})`` with the keyword
    arguments of :func:`random_conv2d` (``out_channels`` and ``kernel`` among them),
    ``("maxpool2d", {"kernel": K, "stride": S})``, or ``("dense", {...})`` with those of
    :func:`random_dense` (``out_features`` among them); the input shape, format and zero point
    of each are the previous layer's output's. Layers are named by kind and position
    (``conv0``, ``maxpool1``, ``dense2``).
    """
    shape, tensor = tuple(input_shape), TensorFormat(Format.parse(input_format), 1.0,
                                                     in_zero_point)
    built = []
    for index, (kind, options) in enumerate(layers):
        options, layer_name = dict(options), f"{kind.removesuffix('2d')}{index}"
        inputs = {"in_format": tensor.format, "in_zero_point": tensor.zero_point,
                  "name": layer_name}
        if kind == "conv2d":
            layer = random_conv2d(rng, shape, options.pop("out_channels"),
                                  options.pop("kernel"), **inputs, **options)
        elif kind == "maxpool2d":
            layer = MaxPool2d(layer_name, shape[:2], shape[2], options["kernel"], tensor,
                              options.get("stride"))
        elif kind == "dense":
            layer = random_dense(rng, math.prod(shape), options.pop("out_features"),
                                 **inputs, **options)
        else:
            raise ValueError(f"Layer kinds must be conv2d, maxpool2d or dense, not {kind!r}")
        built.append(layer)
        shape, tensor = layer.output_shape, layer.output
    return Network(name, tuple(built))


#: Small random networks of every kind the generators must serve, by name: all-binary,
#: ternary with threshold stages, int4 and int8 with requantization, and mixed precision.
SAMPLE_NETWORKS = {
    "binary": dict(sizes=[16, 12, 8, 4], weight_formats=["binary"] * 3,
                   act_formats=["binary", "binary"], input_format="binary"),
    "ternary": dict(sizes=[12, 8, 6, 4], weight_formats=["ternary"] * 3,
                    act_formats=["uint4", "uint2"]),
    "int4": dict(sizes=[8, 8, 4], weight_formats=["int4", "int4"], act_formats=["int4"],
                 stages=["requant"], input_format="int4"),
    "int8": dict(sizes=[8, 6, 4], weight_formats=["int8", "int8"], act_formats=["uint8"],
                 stages=["requant"]),
    "mixed": dict(sizes=[12, 8, 6, 4], weight_formats=["int8", "ternary", "binary"],
                  act_formats=["uint3", "binary"]),
}


def sample_network(kind, seed=0) -> Network:
    """One of the :data:`SAMPLE_NETWORKS`, with random weights from ``seed``."""
    if kind not in SAMPLE_NETWORKS:
        raise ValueError(f"Unknown sample network {kind!r}; available: "
                         f"{', '.join(SAMPLE_NETWORKS)}")
    return random_network(np.random.default_rng(seed), name=kind, **SAMPLE_NETWORKS[kind])


def sample_cnn(seed=3) -> Network:
    """A small CNN named ``cnn`` with random weights from ``seed``: a 6x6x2 uint4 image, a
    padded 3x3 int4 convolution to 4 uint3 channels (thresholds), a 2x2 max pool and a
    ternary dense layer to 3 accumulators."""
    return random_cnn(np.random.default_rng(seed), (6, 6, 2), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=1, weight_format="int4",
                        out_format="uint3", stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("dense", dict(out_features=3, weight_format="ternary", stage="accumulator")),
    ], input_format="uint4", name="cnn")
