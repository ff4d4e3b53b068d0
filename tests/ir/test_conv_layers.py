"""Convolution and pooling layer kinds (hwnn.ir.conv, hwnn.ir.pool): shapes, exact accumulator
bounds with padding, errors, the file, chaining to dense layers and PyTorch's flatten order."""

import io
import json
import re
import zipfile
from dataclasses import fields, replace

import numpy as np
import pytest

from hwnn.ir import (LAYER_KINDS, Conv2d, Dense, MaxPool2d, Network, Requant, TensorFormat,
                     Thresholds, accumulator_range, chw_to_hwc_columns, hwc_to_chw_columns)
from hwnn.ir.formats import Format
from hwnn.ir.conv import Im2col
from hwnn.quant.synthetic import random_conv2d, random_dense
from hwnn.sim.golden import run_network

BINARY, TERNARY = Format.binary(), Format.ternary()
INT3, INT4, UINT3, UINT8 = Format.int(3), Format.int(4), Format.uint(3), Format.uint(8)
INT24 = Format.int(24)


def _tensor(fmt, zero_point=0):
    return TensorFormat(fmt, 1.0, zero_point)


def _conv(weights, in_size=(5, 5), *, in_format=UINT8, zero_point=0, out_format=INT24,
          stage=None, name="c", **options):
    weights = np.asarray(weights)
    channels = weights.shape[0]
    return Conv2d(name, in_size, weights, INT4, np.ones(channels),
                  options.pop("bias", np.zeros(channels, int)), _tensor(in_format, zero_point),
                  _tensor(out_format), stage, **options)


def _values(fmt):
    return fmt.level_value(np.arange(fmt.levels))


# Shapes and the im2col matrix -----------------------------------------------------------------

def test_conv2d_shapes_and_im2col_matrix():
    rng = np.random.default_rng(0)
    weights = rng.integers(-8, 8, (4, 3, 2, 5))
    layer = _conv(weights, (9, 7), stride=(2, 3), padding=(1, 0, 2, 1))
    assert LAYER_KINDS["conv2d"] is Conv2d and layer.kind == "conv2d"
    assert (layer.kernel, layer.in_channels, layer.out_channels) == ((3, 2), 5, 4)
    # OH = (9 + 1 + 0 - 3) // 2 + 1 = 4, OW = (7 + 2 + 1 - 2) // 3 + 1 = 3
    assert (layer.input_shape, layer.output_shape, layer.out_size) == ((9, 7, 5), (4, 3, 4),
                                                                      (4, 3))
    assert (layer.channels, layer.depthwise, layer.weight_bits) == (4, False, weights.size * 4)
    matrix = layer.weights_matrix
    assert matrix.shape == (4, 3 * 2 * 5)
    for o, ky, kx, c in np.ndindex(weights.shape):
        assert matrix[o, (ky * 2 + kx) * 5 + c] == weights[o, ky, kx, c]
    # Integers stand for both axes (or all four sides).
    square = _conv(weights, 9, stride=2, padding=1)
    assert (square.in_size, square.stride, square.padding) == ((9, 9), (2, 2), (1, 1, 1, 1))


def test_depthwise_conv2d_has_one_input_channel_per_output_channel():
    layer = _conv(np.ones((6, 3, 3, 1), int), (4, 4), groups=6, padding=1)
    assert (layer.in_channels, layer.out_channels, layer.depthwise) == (6, 6, True)
    assert (layer.input_shape, layer.output_shape, layer.weights_matrix.shape) == \
        ((4, 4, 6), (4, 4, 6), (6, 9))
    # A single input channel is depthwise and dense alike.
    assert _conv(np.ones((1, 3, 3, 1), int), groups=1).input_shape == (5, 5, 1)


def test_maxpool2d_shapes_and_protocol():
    pool = MaxPool2d("p", (7, 6), 3, 2, _tensor(UINT8, 5))
    assert LAYER_KINDS["maxpool2d"] is MaxPool2d and pool.kind == "maxpool2d"
    assert (pool.kernel, pool.stride, pool.input_shape, pool.output_shape) == \
        ((2, 2), (2, 2), (7, 6, 3), (3, 3, 3))
    assert pool.output is pool.input and pool.stage is None
    assert (pool.stage_name, pool.weight_bits, pool.channels) == ("accumulator", 0, 3)
    # Its accumulator is an input code: uint8 out of a stage-less layer (no int9 needed).
    assert [bound.tolist() for bound in pool.acc_range] == [[0] * 3, [255] * 3]
    assert pool.acc_bits == 9
    overlapping = MaxPool2d("q", (5, 5), 1, (3, 2), _tensor(BINARY), stride=(2, 1))
    assert (overlapping.output_shape, overlapping.stride) == ((2, 4, 1), (2, 1))
    assert [bound.tolist() for bound in overlapping.acc_range] == [[-1], [1]]


# Exact accumulator bounds ---------------------------------------------------------------------

def _reference_acc_range(layer):
    """Per channel, over every output pixel, the lowest and highest partial sums: the bias and
    each tap's product at its most negative (positive) or 0, a tap in the padding holding the
    zero point. Direct loops over pixels and taps, every input value tried."""
    (height, width), (kh, kw) = layer.in_size, layer.weights.shape[1:3]
    (sh, sw), (top, bottom, left, right) = layer.stride, layer.padding
    values, zero_point = _values(layer.input.format), layer.input.zero_point
    lows, highs = [], []
    for oy in range((height + top + bottom - kh) // sh + 1):
        for ox in range((width + left + right - kw) // sw + 1):
            low, high = np.minimum(layer.bias, 0), np.maximum(layer.bias, 0)
            for ky in range(kh):
                for kx in range(kw):
                    y, x = oy * sh + ky - top, ox * sw + kx - left
                    seen = values if 0 <= y < height and 0 <= x < width else [zero_point]
                    products = layer.weights[:, ky, kx, :, None] * np.asarray(seen)
                    low = low + np.minimum(products.min(axis=-1), 0).sum(axis=-1)
                    high = high + np.maximum(products.max(axis=-1), 0).sum(axis=-1)
            lows.append(low)
            highs.append(high)
    return np.min(lows, axis=0), np.max(highs, axis=0)


WEIGHT_FORMATS = ["binary", "ternary", "int4", "int8"]
INPUT_FORMATS = ["uint8", "int4", "uint2", "ternary", "binary"]


def _random_layer(seed):
    """A random small convolution: any kernel, stride, padding, grouping, zero point and bias;
    the seed picks the formats (all 20 pairs over seeds 0..19)."""
    rng = np.random.default_rng(seed)
    height, width, channels = rng.integers(1, 7, 3)
    top, bottom, left, right = rng.integers(0, 3, 4)
    kh = int(rng.integers(1, min(4, height + top + bottom) + 1))
    kw = int(rng.integers(1, min(4, width + left + right) + 1))
    in_format = Format.parse(INPUT_FORMATS[seed // len(WEIGHT_FORMATS) % len(INPUT_FORMATS)])
    padding = (top, bottom, left, right) if in_format != BINARY else 0
    if in_format == BINARY:
        kh, kw = min(kh, height), min(kw, width)
    zero_point = int(rng.choice(_values(in_format))) if in_format != BINARY else 0
    depthwise = bool(rng.integers(0, 2))
    layer = random_conv2d(rng, (height, width, channels), channels if depthwise else 3,
                          (kh, kw), in_format=in_format,
                          weight_format=WEIGHT_FORMATS[seed % len(WEIGHT_FORMATS)],
                          stage="accumulator", stride=tuple(rng.integers(1, 4, 2)),
                          padding=padding, depthwise=depthwise, in_zero_point=zero_point)
    return layer, rng


@pytest.mark.parametrize("seed", range(20))
def test_acc_range_is_the_extreme_partial_sum_over_every_window(seed):
    layer, rng = _random_layer(seed)
    lo, hi = layer.acc_range
    ref_lo, ref_hi = _reference_acc_range(layer)
    assert (lo.tolist(), hi.tolist()) == (ref_lo.tolist(), ref_hi.tolist())
    # No accumulator of random inputs leaves the bounds.
    fmt = layer.input.format
    codes = fmt.level_value(rng.integers(0, fmt.levels, (32, *layer.input_shape)))
    _, (trace,) = run_network(Network("n", (layer,)), codes, trace=True)
    assert np.all((trace.acc >= lo) & (trace.acc <= hi))


@pytest.mark.parametrize("in_size, kernel, padding, zero_point", [
    ((3, 3), (2, 2), (1, 1, 1, 1), 1),      # interior and border windows
    ((2, 2), (3, 3), (1, 1, 1, 1), -1),     # every window has padding
    ((3, 2), (2, 3), (0, 1, 2, 0), 1),      # uneven padding, wider kernel than the image
])
def test_acc_range_is_reached_by_some_input_and_partial_sum(in_size, kernel, padding,
                                                            zero_point):
    """Brute force over every ternary image: the lowest and highest partial sums (the bias and
    the products of one window, in any order) reach the bounds and never pass them."""
    weights = np.array([[[2, -3, 1], [-1, 4, 0], [3, 3, -2]],
                        [[-4, 1, 1], [2, -2, 3], [0, 1, -1]]])[:, :kernel[0], :kernel[1], None]
    layer = _conv(weights, in_size, in_format=TERNARY, zero_point=zero_point, padding=padding,
                  bias=[3, -2])
    (height, width), (top, _, left, _) = in_size, padding
    images = np.array(np.meshgrid(*[[-1, 0, 1]] * (height * width), indexing="ij"))
    images = images.reshape(height * width, -1).T.reshape(-1, height, width)
    lowest, highest = np.full(2, np.inf), np.full(2, -np.inf)
    for oy, ox in np.ndindex(layer.out_size):
        low, high = np.minimum(layer.bias, 0), np.maximum(layer.bias, 0)
        for ky, kx in np.ndindex(kernel):
            y, x = oy + ky - top, ox + kx - left
            pixel = images[:, y, x] if 0 <= y < height and 0 <= x < width else zero_point
            term = np.multiply.outer(np.broadcast_to(pixel, len(images)), weights[:, ky, kx, 0])
            low, high = low + np.minimum(term, 0), high + np.maximum(term, 0)
        lowest, highest = np.minimum(lowest, low.min(axis=0)), np.maximum(highest, high.max(axis=0))
    assert [bound.tolist() for bound in layer.acc_range] == [lowest.tolist(), highest.tolist()]


def test_acc_range_of_an_interior_window_is_reached_by_a_final_sum():
    """With no bias and signed inputs, the final accumulator of an interior window reaches
    each channel's bounds for the input at the extreme of each weight's sign."""
    rng = np.random.default_rng(7)
    weights = rng.integers(-8, 8, (3, 3, 2, 4))
    layer = _conv(weights, (6, 5), in_format=INT3, zero_point=2, padding=(2, 0, 1, 1),
                  stride=(1, 2))
    lo, hi = layer.acc_range
    oy, ox = 3, 1                                   # rows 1..3, columns 1..2: no padding
    for o in range(3):
        for sign, bound in ((1, lo[o]), (-1, hi[o])):
            image = np.zeros(layer.input_shape, int)
            image[1:4, 1:3] = np.where(sign * weights[o] > 0, INT3.min_value, INT3.max_value)
            acc = run_network(Network("n", (layer,)), image)
            assert acc[oy, ox, o] == bound


def test_padding_changes_the_bounds_only_through_the_zero_point():
    weights = np.full((1, 3, 3, 1), 2)
    unpadded = _conv(weights, (3, 3))
    # One window, all inside: 9 taps of 2 x [0, 255].
    assert [bound.tolist() for bound in unpadded.acc_range] == [[0], [9 * 510]]
    # Every window is padded; the best one has 4 taps inside, 5 padded taps of 2 x 200.
    padded = _conv(weights, (2, 2), zero_point=200, padding=1)
    assert [bound.tolist() for bound in padded.acc_range] == [[0], [4 * 510 + 5 * 400]]


# Errors ---------------------------------------------------------------------------------------

W33 = np.ones((4, 3, 3, 2), int)


@pytest.mark.parametrize("make, error, message", [
    (lambda: _conv(np.ones((4, 3, 3), int)), ValueError,
     r"Layer 'c' weights must be 4-dimensional, not shape \(4, 3, 3\)"),
    (lambda: _conv(np.ones((0, 3, 3, 2), int)), ValueError,
     r"Layer 'c' has an empty weight array of shape \(0, 3, 3, 2\)"),
    (lambda: _conv(W33 * 9), ValueError, r"Layer 'c' weights are outside their format int4"),
    (lambda: _conv(W33, groups=2), ValueError,
     (r"Layer 'c' groups must be 1, or its 4 channels for a depthwise convolution with weights "
      r"of shape \(4, kh, kw, 1\), not 2 with weights of shape \(4, 3, 3, 2\)")),
    (lambda: _conv(W33, groups=4), ValueError,
     (r"Layer 'c' groups must be 1, or its 4 channels for a depthwise convolution with weights "
      r"of shape \(4, kh, kw, 1\), not 4 with weights of shape \(4, 3, 3, 2\)")),
    (lambda: _conv(W33, groups=True), TypeError, r"Layer 'c' groups must be an integer, not True"),
    (lambda: _conv(W33, (2, 3)), ValueError,
     r"Layer 'c' kernel 3x3 is larger than its padded input 2x3"),
    (lambda: _conv(W33, (2, 3), padding=(0, 0, 1, 1)), ValueError,
     r"Layer 'c' kernel 3x3 is larger than its padded input 2x5"),
    (lambda: _conv(W33, in_format=BINARY, padding=(0, 0, 0, 1)), ValueError,
     (r"Layer 'c' cannot pad its binary input \(padding \(0, 0, 0, 1\)\): binary codes have no "
      r"zero")),
    (lambda: _conv(W33, zero_point=300, padding=1), ValueError,
     r"Layer 'c' pads with its input's zero point 300, which is not a code of uint8"),
    (lambda: _conv(W33, stride=0), ValueError,
     r"Layer 'c' stride must be an integer or 2 integers of at least 1, not 0"),
    (lambda: _conv(W33, stride=(1, 2, 1)), ValueError,
     r"Layer 'c' stride must be an integer or 2 integers, not \(1, 2, 1\)"),
    (lambda: _conv(W33, stride=1.5), TypeError,
     r"Layer 'c' stride must be an integer or 2 integers, not 1\.5"),
    (lambda: _conv(W33, padding=(1, 1)), ValueError,
     r"Layer 'c' padding must be an integer or 4 integers, not \(1, 1\)"),
    (lambda: _conv(W33, padding=(0, 0, -1, 0)), ValueError,
     r"Layer 'c' padding must be an integer or 4 integers of at least 0, not \(0, 0, -1, 0\)"),
    (lambda: _conv(W33, "5x5"), TypeError,
     r"Layer 'c' in_size must be an integer or 2 integers, not '5x5'"),
    (lambda: _conv(W33, (5, 0)), ValueError,
     r"Layer 'c' in_size must be an integer or 2 integers of at least 1, not \(5, 0\)"),
    (lambda: _conv(W33, bias=[1, 2, 3]), ValueError,
     r"Layer 'c' bias must have 4 entries, not shape \(3,\)"),
    # 18 taps of 1 x [0, 255]: up to 4590 < 2 ** 13, 14 bits signed.
    (lambda: _conv(W33, out_format=Format.int(8)), ValueError,
     (r"Layer 'c' outputs its accumulator, so its output format must be int14 or wider, not "
      r"int8")),
    (lambda: _conv(W33, out_format=UINT3, stage=Thresholds([[0]] * 4, [False] * 4)),
     ValueError, r"Layer 'c' needs 4 x 7 thresholds for uint3 outputs, not 4 x 1"),
    (lambda: _conv(W33, out_format=UINT8,
                   stage=Requant([1] * 3, [0] * 3, 8, 0, 0, 255)), ValueError,
     r"Layer 'c' needs 4 requantization multipliers"),
    (lambda: MaxPool2d("p", (4, 4), 2, 2, _tensor(UINT8), stride=3), ValueError,
     r"Layer 'p' stride 3x3 skips pixels: it must not exceed the kernel 2x2"),
    (lambda: MaxPool2d("p", (4, 4), 2, (2, 1), _tensor(UINT8), stride=(1, 2)), ValueError,
     r"Layer 'p' stride 1x2 skips pixels: it must not exceed the kernel 2x1"),
    (lambda: MaxPool2d("p", (4, 2), 2, 3, _tensor(UINT8)), ValueError,
     r"Layer 'p' kernel 3x3 is larger than its input 4x2"),
    (lambda: MaxPool2d("p", (4, 4), 0, 2, _tensor(UINT8)), ValueError,
     r"Layer 'p' in_channels must be at least 1, not 0"),
    (lambda: MaxPool2d("p", (4, 4), 2, 0, _tensor(UINT8)), ValueError,
     r"Layer 'p' kernel must be an integer or 2 integers of at least 1, not 0"),
    (lambda: MaxPool2d("p", (4, 4), 2, 2, UINT8), TypeError,
     r"Layer 'p' input must be a TensorFormat, not Format\("),
    (lambda: MaxPool2d("p p", (4, 4), 2, 2, _tensor(UINT8)), ValueError,
     r"Layer name must be an identifier"),
])
def test_bad_layers_are_refused_with_a_clear_message(make, error, message):
    with pytest.raises(error, match=f"^{message}"):
        make()


# Chaining -------------------------------------------------------------------------------------

def _pool_after(layer, name="p", kernel=2):
    height, width, channels = layer.output_shape
    return MaxPool2d(name, (height, width), channels, kernel, layer.output)


def test_conv_pool_dense_chain_by_shape_flattened():
    rng = np.random.default_rng(1)
    conv = random_conv2d(rng, (6, 6, 2), 3, 3, in_format="uint8", weight_format="int4",
                         out_format="uint4", padding=1)
    pool = _pool_after(conv)
    dense = random_dense(rng, 27, 5, in_format="uint4", weight_format="int4",
                         stage="accumulator")
    network = Network("n", (conv, pool, dense))
    assert (network.input_shape, network.output_shape, network.in_features) == \
        ((6, 6, 2), (5,), 72)
    with pytest.raises(ValueError, match=r"^Layer 'dense' takes 26 inputs but layer 'p' gives "
                                         r"3x3x3$"):
        Network("n", (conv, pool, random_dense(rng, 26, 5, in_format="uint4",
                                               weight_format="int4", stage="accumulator")))
    # A convolution takes an image of its input shape only, never a flattened one.
    other = random_conv2d(rng, (9, 3, 1), 2, 1, in_format="uint4", weight_format="int4",
                          stage="accumulator")
    with pytest.raises(ValueError, match=r"^Layer 'q' takes 9x3x1 inputs but layer 'p' gives "
                                         r"3x3x3$"):
        Network("n", (conv, pool, replace(other, name="q")))
    with pytest.raises(ValueError, match=r"^Layer 'p' expects inputs uint8 x 1 but layer 'conv' "
                                         r"gives uint4 x 1$"):
        Network("n", (conv, replace(pool, input=_tensor(UINT8))))


def test_quantize_input_takes_images():
    rng = np.random.default_rng(2)
    conv = random_conv2d(rng, (4, 3, 2), 2, 2, in_format="uint8", weight_format="int4",
                         stage="accumulator")
    network = Network("n", (replace(conv, input=TensorFormat(UINT8, 0.5, 10)),))
    x = rng.uniform(-10, 100, (5, 4, 3, 2))
    expected = np.clip(np.round(x / 0.5) + 10, 0, 255)
    assert np.array_equal(network.quantize_input(x), expected)
    assert np.array_equal(network.quantize_input(x[0]), expected[0])
    with pytest.raises(ValueError, match=r"^Inputs must have shape 4x3x2 on the last axes, not "
                                         r"shape \(5, 24\)$"):
        network.quantize_input(x.reshape(5, 24))


# The file -------------------------------------------------------------------------------------

def conv_network(seed=0):
    """Every layer kind and stage: a padded convolution with an input zero point, pools on
    uint3 and binary codes, a depthwise strided convolution with uneven padding, a binary
    convolution with a non-square kernel, then a dense layer on the flattened image."""
    rng = np.random.default_rng(seed)
    c0 = random_conv2d(rng, (7, 6, 2), 4, 3, in_format="uint8", in_zero_point=3,
                       weight_format="int4", out_format="uint3", padding=1, name="c0")
    p0 = _pool_after(c0, "p0")
    c1 = random_conv2d(rng, p0.output_shape, 4, 3, in_format="uint3", weight_format="ternary",
                       stage="requant", out_format="uint4", stride=(1, 2),
                       padding=(1, 1, 0, 2), depthwise=True, name="c1")
    c2 = random_conv2d(rng, c1.output_shape, 3, (2, 1), in_format="uint4",
                       in_zero_point=c1.output.zero_point, weight_format="binary",
                       out_format="binary", name="c2")
    p1 = replace(_pool_after(c2, "p1", (1, 2)), stride=1)
    d0 = random_dense(rng, int(np.prod(p1.output_shape)), 3, in_format="binary",
                      weight_format="int8", stage="accumulator", name="d0")
    return Network("cnn", (c0, p0, c1, c2, p1, d0), {"source": "test"})


def _same_layer(a, b):
    assert type(a) is type(b)
    for key in (field.name for field in fields(a)):
        value, other = getattr(a, key), getattr(b, key)
        if isinstance(value, np.ndarray):
            assert value.dtype == other.dtype and np.array_equal(value, other), key
        elif isinstance(value, Thresholds | Requant):
            for field, array in vars(value).items():
                assert np.array_equal(array, getattr(other, field)), (key, field)
        else:
            assert value == other, key


def test_networks_of_every_kind_round_trip_through_the_file(tmp_path):
    network = conv_network()
    assert [layer.kind for layer in network.layers] == \
        ["conv2d", "maxpool2d", "conv2d", "conv2d", "maxpool2d", "dense"]
    assert [layer.stage_name for layer in network.layers] == \
        ["thresholds", "accumulator", "requant", "thresholds", "accumulator", "accumulator"]
    path = network.save(tmp_path / "cnn.hwnn.npz")
    loaded = Network.load(path)
    assert (loaded.name, loaded.info) == ("cnn", {"source": "test"})
    for before, after in zip(network.layers, loaded.layers, strict=True):
        _same_layer(before, after)
    assert loaded.save(tmp_path / "again.hwnn.npz").read_bytes() == path.read_bytes()
    with zipfile.ZipFile(path) as archive:
        header = json.loads(archive.read("header.json"))
        names = archive.namelist()
    assert {key: header["layers"][2][key] for key in ("in_size", "stride", "padding", "groups")} \
        == {"in_size": [3, 3], "stride": [1, 2], "padding": [1, 1, 0, 2], "groups": 4}
    assert header["layers"][1] == {"kind": "maxpool2d", "name": "p0", "in_size": [7, 6],
                                   "in_channels": 4, "kernel": [2, 2], "stride": [2, 2],
                                   "input": {"format": "uint3", "zero_point": 0}}
    assert sorted(name for name in names if name.startswith("layer1/")) == \
        ["layer1/input_scale.npy"]
    codes = network.quantize_input(np.random.default_rng(0).uniform(0, 255, (4, 7, 6, 2)))
    assert np.array_equal(run_network(loaded, codes), run_network(network, codes))


def _rewrite(path, edit_header=None, arrays=None):
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = json.loads(members["header.json"])
    if edit_header:
        edit_header(header)
    members["header.json"] = json.dumps(header).encode()
    for name, array in (arrays or {}).items():
        buffer = io.BytesIO()
        np.save(buffer, array)
        members[name] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("edit_header, arrays, message", [
    (lambda h: h["layers"][0].pop("groups"), None, r"layer header is inconsistent: missing groups"),
    (lambda h: h["layers"][1].update(padding=[0, 0, 0, 0]), None,
     r"layer header is inconsistent: unexpected padding"),
    (None, {"layer1/weights.npy": np.ones(2)}, r"layer arrays is inconsistent: unexpected weights"),
    (lambda h: h["layers"][0].update(padding=[1, 1, 1]), None,
     r"Layer 'c0' padding must be an integer or 4 integers, not \[1, 1, 1\]"),
    (lambda h: h["layers"][1].update(stride=[3, 2]), None,
     r"Layer 'p0' stride 3x2 skips pixels: it must not exceed the kernel 2x2"),
    (lambda h: h["layers"][0].update(in_size=[7, 5]), None,
     r"Layer 'p0' takes 7x6x4 inputs but layer 'c0' gives 7x5x4"),
    (None, {"layer2/weights.npy": np.ones((4, 3, 3, 2), np.int64)},
     r"Layer 'c1' groups must be 1, or its 4 channels"),
])
def test_load_refuses_inconsistent_conv_and_pool_entries(tmp_path, edit_header, arrays, message):
    path = conv_network().save(tmp_path / "cnn.hwnn.npz")
    _rewrite(path, edit_header, arrays)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}' is not a valid hwnn "
                                         rf"network: {message}"):
        Network.load(path)


# PyTorch's flatten order ----------------------------------------------------------------------

def test_chw_columns_permuted_to_hwc_give_the_same_dense_layer():
    rng = np.random.default_rng(3)
    height, width, channels = 3, 4, 5
    weights = rng.integers(-50, 50, (6, height * width * channels))
    permuted = chw_to_hwc_columns(weights, (height, width, channels))
    back = hwc_to_chw_columns(weights, (height, width, channels))
    for _ in range(3):
        image = rng.integers(-9, 10, (height, width, channels))      # channels last
        chw = np.zeros(height * width * channels, int)                # PyTorch's flatten
        hwc = np.zeros(height * width * channels, int)                # hwnn's flatten
        for y, x, c in np.ndindex(image.shape):
            chw[(c * height + y) * width + x] = image[y, x, c]
            hwc[(y * width + x) * channels + c] = image[y, x, c]
        assert np.array_equal(permuted @ hwc, weights @ chw)
        assert np.array_equal(back @ chw, weights @ hwc)
    # Real weights too, as an importer has them before quantization.
    assert chw_to_hwc_columns(weights * 0.5, (height, width, channels)).dtype == np.float64
    with pytest.raises(ValueError, match=r"^chw_to_hwc_columns needs a weight matrix of H \* W "
                                         r"\* C columns and a shape \(H, W, C\), not weights of "
                                         r"shape \(6, 60\) and shape \(3, 4\)$"):
        chw_to_hwc_columns(weights, (3, 4))
    with pytest.raises(ValueError, match=r"^hwc_to_chw_columns needs a weight matrix"):
        hwc_to_chw_columns(weights[:, :-1], (height, width, channels))


def test_the_dense_layer_after_a_convolution_reads_the_flattened_image():
    """A dense layer's column ``(y * W + x) * C + c`` meets code ``(y, x, c)``."""
    conv = _conv(np.ones((2, 1, 1, 1), int), (2, 3), in_format=INT4, out_format=INT4)
    weights = np.zeros((12, 12), int)
    weights[np.arange(12), np.arange(12)] = 1                              # identity
    dense = Dense("d", weights, INT4, np.ones(12), np.zeros(12, int), _tensor(INT4),
                  _tensor(Format.int(8)), None)
    image = np.arange(-6, 0).reshape(2, 3, 1)
    out = run_network(Network("n", (conv, dense)), image)
    assert out.tolist() == [-6, -6, -5, -5, -4, -4, -3, -3, -2, -2, -1, -1]


def test_im2col_is_the_dense_layer_of_a_window_with_the_convolutions_bounds():
    rng = np.random.default_rng(8)
    # Every window of a 3x3 kernel padded by 2 on a 2x2 image touches the padding, so the
    # convolution's bounds are narrower than a dense layer's over any input vector.
    conv = random_conv2d(rng, (2, 2, 3), 3, 3, in_format="uint8", weight_format="int8",
                         stage="accumulator", padding=2, depthwise=True)
    view = conv.im2col()
    assert isinstance(view, Dense) and view.weights.shape == (3, 27)
    for o, ky, kx, c in np.ndindex(3, 3, 3, 3):
        assert view.weights[o, (ky * 3 + kx) * 3 + c] == (conv.weights[o, ky, kx, 0]
                                                           if c == o else 0)
    assert [np.array_equal(a, b) for a, b in zip(view.acc_range, conv.acc_range,
                                                  strict=True)] == [True, True]
    _, dense_hi = accumulator_range(view.weights, view.bias, view.input.format)
    assert dense_hi.max() > conv.acc_range[1].max()
    assert (view.name, view.output, view.stage) == (conv.name, conv.output, conv.stage)
    with pytest.raises(TypeError, match=r"^Im2col convolution must be a Conv2d, not None$"):
        Im2col(view.name, view.weights, view.weight_format, view.weight_scale, view.bias,
               view.input, view.output, view.stage)
