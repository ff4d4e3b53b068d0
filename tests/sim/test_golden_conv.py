"""The golden model on convolutions and pools (hwnn.sim.golden), against direct nested loops
written here: padding with the zero point, strides, depthwise layers, every weight format,
the flatten order before a dense layer, traces and layer inputs of image networks."""

import numpy as np
import pytest

from hwnn.ir import Dense, MaxPool2d, Network, TensorFormat
from hwnn.ir.formats import Format
from hwnn.quant.synthetic import random_conv2d, random_dense
from hwnn.sim.golden import layer_inputs, output_stage, run_network, windows

WEIGHT_FORMATS = ["binary", "ternary", "int4", "int8"]
#: (input format, zero point, output format of the stage) of the random layers.
INPUTS = [("uint8", 17, "uint4"), ("int4", -3, "int8"), ("binary", 0, "binary"),
          ("ternary", 1, "uint2"), ("uint2", 3, "int4")]
STAGES = ["thresholds", "requant", "accumulator"]


def reference_conv(layer, images):
    """Accumulators of ``layer`` on a batch of images ``(N, H, W, C)``, by direct loops over
    output pixels, channels and taps: a tap outside the image reads the zero point."""
    (height, width), (kh, kw) = layer.in_size, layer.weights.shape[1:3]
    (sh, sw), (top, bottom, left, right) = layer.stride, layer.padding
    out_h, out_w = (height + top + bottom - kh) // sh + 1, (width + left + right - kw) // sw + 1
    acc = np.zeros((len(images), out_h, out_w, layer.weights.shape[0]), dtype=np.int64)
    for oy, ox, o in np.ndindex(acc.shape[1:]):
        total = np.full(len(images), layer.bias[o])
        for ky, kx, k in np.ndindex(layer.weights.shape[1:]):
            y, x = oy * sh + ky - top, ox * sw + kx - left
            channel = o if layer.groups > 1 else k
            inside = 0 <= y < height and 0 <= x < width
            total += layer.weights[o, ky, kx, k] * (images[:, y, x, channel] if inside
                                                    else layer.input.zero_point)
        acc[:, oy, ox, o] = total
    return acc


def reference_maxpool(pool, images):
    """Largest code per window and channel, by direct loops."""
    (kh, kw), (sh, sw) = pool.kernel, pool.stride
    out_h = (pool.in_size[0] - kh) // sh + 1
    out_w = (pool.in_size[1] - kw) // sw + 1
    out = np.zeros((len(images), out_h, out_w, pool.in_channels), dtype=np.int64)
    for oy, ox, c in np.ndindex(out.shape[1:]):
        out[:, oy, ox, c] = images[:, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw, c] \
            .reshape(len(images), -1).max(axis=1)
    return out


def _random_codes(rng, fmt, shape):
    return fmt.level_value(rng.integers(0, fmt.levels, shape))


def _random_conv(seed):
    """A random convolution; the seed picks the weight format, the input and the stage."""
    rng = np.random.default_rng(seed)
    in_name, zero_point, out_name = INPUTS[seed // len(WEIGHT_FORMATS) % len(INPUTS)]
    height, width, channels = (int(size) for size in rng.integers(1, 8, 3))
    padding = tuple(int(pad) for pad in rng.integers(0, 3, 4)) if in_name != "binary" else 0
    top, bottom, left, right = (padding,) * 4 if padding == 0 else padding
    kernel = (int(rng.integers(1, min(5, height + top + bottom) + 1)),
              int(rng.integers(1, min(5, width + left + right) + 1)))
    depthwise = bool(rng.integers(0, 2))
    stage = STAGES[seed % len(STAGES)]
    if stage == "requant" and out_name == "binary":
        out_name = "int4"                                   # requantization gives int codes
    layer = random_conv2d(rng, (height, width, channels),
                          channels if depthwise else int(rng.integers(1, 5)), kernel,
                          in_format=in_name, in_zero_point=zero_point,
                          weight_format=WEIGHT_FORMATS[seed % len(WEIGHT_FORMATS)],
                          out_format=out_name, stage=stage,
                          stride=tuple(int(step) for step in rng.integers(1, 4, 2)),
                          padding=padding, depthwise=depthwise)
    return layer, rng


@pytest.mark.parametrize("seed", range(20))
def test_conv_golden_equals_direct_loops(seed):
    layer, rng = _random_conv(seed)
    images = _random_codes(rng, layer.input.format, (3, *layer.input_shape))
    outputs, (trace,) = run_network(Network("n", (layer,)), images, trace=True)
    expected = reference_conv(layer, images)
    assert trace.acc.dtype == np.int64 and trace.acc.shape == (3, *layer.output_shape)
    assert np.array_equal(trace.acc, expected)
    assert np.array_equal(outputs, output_stage(layer, expected))
    # One image alone gives the same as in a batch.
    assert np.array_equal(run_network(Network("n", (layer,)), images[1]), outputs[1])


def test_random_convolutions_cover_every_case():
    layers = [_random_conv(seed)[0] for seed in range(20)]
    assert {str(layer.weight_format) for layer in layers} == set(WEIGHT_FORMATS)
    assert {str(layer.input.format) for layer in layers} == {name for name, _, _ in INPUTS}
    assert {layer.stage_name for layer in layers} == set(STAGES)
    assert {layer.depthwise for layer in layers} == {False, True}
    assert any(layer.input.zero_point and any(layer.padding) for layer in layers)
    assert any(max(layer.stride) > 1 for layer in layers)


@pytest.mark.parametrize("fmt, zero_point", [(Format.uint(4), 0), (Format.int(3), -1),
                                              (Format.binary(), 0)])
def test_maxpool_golden_equals_direct_loops(fmt, zero_point):
    rng = np.random.default_rng(5)
    pool = MaxPool2d("p", (7, 6), 3, (3, 2), TensorFormat(fmt, 1.0, zero_point), stride=(2, 1))
    images = _random_codes(rng, fmt, (4, 7, 6, 3))
    outputs, (trace,) = run_network(Network("n", (pool,)), images, trace=True)
    assert outputs.shape == (4, 3, 5, 3)
    assert np.array_equal(outputs, reference_maxpool(pool, images))
    assert np.array_equal(trace.acc, outputs)
    if fmt.kind == "bipolar":
        # On the bits (1 meaning +1), the largest code is the OR of the window.
        bits = fmt.encode(images)
        ored = np.zeros_like(outputs)
        for oy, ox in np.ndindex(3, 5):
            ored[:, oy, ox] = np.bitwise_or.reduce(
                bits[:, 2 * oy:2 * oy + 3, ox:ox + 2].reshape(4, 6, 3), axis=1)
        assert np.array_equal(fmt.encode(outputs), ored)


def test_windows_are_in_sliding_window_order():
    image = np.arange(2 * 3 * 2).reshape(1, 2, 3, 2)         # code = (y * 3 + x) * 2 + c
    view = windows(image, (2, 2), (1, 2), (1, 0, 0, 1), fill=-1)
    # Padded rows -1..1, columns 0..3; windows at rows -1 and 0, columns 0 and 2.
    assert view.shape == (1, 2, 2, 8)
    assert view[0, 0, 0].tolist() == [-1, -1, -1, -1, 0, 1, 2, 3]
    assert view[0, 0, 1].tolist() == [-1, -1, -1, -1, 4, 5, -1, -1]
    assert view[0, 1, 1].tolist() == [4, 5, -1, -1, 10, 11, -1, -1]


def test_a_dense_layer_after_convolutions_takes_the_image_flattened():
    """A conv -> pool -> dense network equals the convolution and pool run alone, flattened by
    hand in (row, column, channel) order, then the dense layer."""
    rng = np.random.default_rng(11)
    conv = random_conv2d(rng, (5, 6, 2), 3, 3, in_format="uint8", in_zero_point=9,
                         weight_format="int4", out_format="uint3", padding=(1, 1, 0, 2),
                         stride=(1, 2))
    height, width, channels = conv.output_shape
    pool = MaxPool2d("pool", (height, width), channels, (2, 1), conv.output)
    dense = random_dense(rng, int(np.prod(pool.output_shape)), 4, in_format="uint3",
                         weight_format="int8", stage="accumulator")
    images = _random_codes(rng, conv.input.format, (6, 5, 6, 2))
    outputs, traces = run_network(Network("n", (conv, pool, dense)), images, trace=True)
    pooled = run_network(Network("cp", (conv, pool)), images)
    rows, cols, chans = pool.output_shape
    flat = np.zeros((6, rows * cols * chans), dtype=np.int64)
    for y, x, c in np.ndindex(rows, cols, chans):
        flat[:, (y * cols + x) * chans + c] = pooled[:, y, x, c]
    assert np.array_equal(outputs, flat @ dense.weights.T + dense.bias)
    assert [trace.acc.shape for trace in traces] == \
        [(6, *conv.output_shape), (6, *pool.output_shape), (6, 4)]
    inputs = layer_inputs(Network("n", (conv, pool, dense)), images)
    assert [array.shape for array in inputs] == \
        [(6, 5, 6, 2), (6, *conv.output_shape), (6, rows * cols * chans)]
    assert np.array_equal(inputs[2], flat)
    assert [array.shape for array in layer_inputs(Network("n", (conv, pool, dense)),
                                                  images[0])] == \
        [(1, 5, 6, 2), (1, *conv.output_shape), (1, rows * cols * chans)]
    # Flattened inputs, as streams carry them: flattened outputs, the same codes.
    flat_images = np.zeros((6, 5 * 6 * 2), dtype=np.int64)
    for y, x, c in np.ndindex(5, 6, 2):
        flat_images[:, (y * 6 + x) * 2 + c] = images[:, y, x, c]
    assert np.array_equal(run_network(Network("cp", (conv, pool)), flat_images),
                          pooled.reshape(6, -1))
    assert np.array_equal(layer_inputs(Network("n", (conv, pool, dense)), flat_images)[1],
                          inputs[1])


def test_image_inputs_are_checked():
    layer, _ = _random_conv(0)
    network = Network("n", (layer,))
    shape = layer.input_shape
    text = ", ".join(map(str, shape))
    with pytest.raises(ValueError, match=rf"^Input codes must have shape \({text}\) or "
                                         rf"\(N, {text}\) or \(N, {np.prod(shape)}\), not "
                                         rf"\({np.prod(shape)},\)$"):
        run_network(network, np.zeros(np.prod(shape), dtype=np.int64))
    codes = np.zeros((2, *shape), dtype=np.int64)
    codes[1, 0, 0, 0] = 999
    with pytest.raises(ValueError, match=r"^Input 1 holds code 999, which is outside the input "
                                         r"format uint8 \(0\.\.255\)$"):
        run_network(network, codes)


def test_dense_networks_are_unchanged():
    """A dense-only network: vectors in, vectors out, as before."""
    rng = np.random.default_rng(0)
    dense = random_dense(rng, 5, 3, in_format="int4", weight_format="int4",
                         stage="accumulator")
    codes = _random_codes(rng, Format.int(4), (4, 5))
    network = Network("n", (dense,))
    assert np.array_equal(run_network(network, codes), codes @ dense.weights.T + dense.bias)
    assert [array.shape for array in layer_inputs(network, codes[0])] == [(1, 5)]
    assert isinstance(network.layers[0], Dense)
