"""Post-training quantization of float networks into the IR (hwnn.quant.convert).

The quantized network is run by the golden model and compared with the float network: end to
end within a tolerance, and layer by layer exactly for threshold stages (which must reproduce
the float stage on the integer accumulators they receive).
"""

import numpy as np
import pytest

from hwnn.ir import Network, Requant, Thresholds
from hwnn.ir.formats import Format
from hwnn.quant.convert import QuantOptions, quantize_network
from hwnn.quant.floatnet import BatchNorm, FloatDense, FloatNetwork
from hwnn.sim.golden import run_network

#: The activations, written independently of hwnn.quant.floatnet.
ACTIVATIONS = {
    "identity": lambda z: z,
    "relu":     lambda z: np.maximum(z, 0.0),
    "tanh":     np.tanh,
    "logistic": lambda z: 1.0 / (1.0 + np.exp(-z)),
    "hardtanh": lambda z: np.minimum(np.maximum(z, -1.0), 1.0),
    "sign":     lambda z: np.where(z >= 0, 1.0, -1.0),
}
WIDTHS = (6, 5, 4, 3)


def _weights(rng, scheme, out_features, in_features):
    """Random weights; for the narrow schemes, exactly representable ones (per output row), so
    that the comparison measures activation quantization and the integer pipeline."""
    if scheme in ("int8", None):
        return rng.normal(0.0, 1.0 / np.sqrt(in_features), (out_features, in_features))
    row_scale = rng.uniform(0.2, 0.6, out_features)[:, None]
    if scheme.startswith("int"):
        top = (1 << (int(scheme[3:]) - 1)) - 1
        codes = rng.integers(-top, top + 1, (out_features, in_features))
        codes[np.arange(out_features), rng.integers(0, in_features, out_features)] = top
        return codes * row_scale / top
    if scheme == "ternary":
        codes = rng.integers(-1, 2, (out_features, in_features))
        codes[:, 0] = 1
        return codes * row_scale
    return rng.choice([-1.0, 1.0], (out_features, in_features)) * row_scale


def float_network(seed, activations, scheme=None, *, zero_gamma=True, batchnorm=True):
    """A float network 6 -> 5 -> 4 -> 3 with BatchNorm on every layer (gamma of channel 0
    negative; with ``zero_gamma`` gamma of channel 1 of the second layer zero)."""
    rng = np.random.default_rng(seed)
    layers = []
    for index, activation in enumerate(activations):
        n_in, n_out = WIDTHS[index], WIDTHS[index + 1]
        gamma = rng.uniform(0.6, 1.4, n_out)
        gamma[0] = -gamma[0]
        if zero_gamma and index == 1:
            gamma[1] = 0.0
        norm = BatchNorm(gamma, rng.normal(0.0, 0.3, n_out), rng.normal(0.0, 0.3, n_out),
                         rng.uniform(0.5, 2.0, n_out))
        layers.append(FloatDense(_weights(rng, scheme, n_out, n_in), rng.normal(0.0, 0.3, n_out),
                                 activation, norm if batchnorm else None))
    return FloatNetwork(tuple(layers), {"frontend": "test", "seed": seed})


def _float_stage(acc, layer, float_layer, activation):
    """Output codes of a threshold layer, computed in float from its integer accumulators."""
    z = acc * (layer.weight_scale * layer.input.scale) + float_layer.bias
    norm = float_layer.batchnorm
    if norm is not None:
        z = (z - norm.mean) * norm.gamma / np.sqrt(norm.var + norm.eps) + norm.beta
    y = ACTIVATIONS[activation](z)
    fmt = layer.output.format
    if fmt.kind == "bipolar":
        return np.where(y >= 0, 1, -1)
    codes = np.round(y / layer.output.scale) + layer.output.zero_point
    return np.clip(codes, fmt.min_value, fmt.max_value).astype(np.int64)


def check_layer_by_layer(network: Network, float_net: FloatNetwork, codes):
    """Each layer, fed the golden codes of the previous one, does what its float layer says."""
    outputs, traces = run_network(network, codes, trace=True)
    x = np.asarray(codes, dtype=np.int64)
    stages = []
    for layer, float_layer, trace in zip(network.layers, float_net.layers, traces, strict=True):
        acc = x @ layer.weights.T + layer.bias
        assert np.array_equal(trace.acc, acc)
        lo, hi = layer.acc_range
        assert np.all((acc >= lo) & (acc <= hi))
        if isinstance(layer.stage, Thresholds):
            activation = ("sign" if layer.output.format.kind == "bipolar"
                          else float_layer.activation)
            assert np.array_equal(trace.outputs, _float_stage(acc, layer, float_layer,
                                                              activation)), layer.name
        elif isinstance(layer.stage, Requant):
            # BatchNorm and float bias are folded into weights and integer bias.
            stage = layer.stage
            ratio = layer.weight_scale * layer.input.scale / layer.output.scale
            ideal = np.clip(np.floor(acc * ratio + 0.5) + stage.zero_point, stage.lo, stage.hi)
            assert np.all(np.abs(trace.outputs - ideal) <= 1), layer.name
            assert np.mean(trace.outputs == ideal) > 0.95
            assert stage.hi == layer.output.format.max_value
            if float_layer.activation == "relu":
                assert stage.lo == max(layer.output.zero_point, layer.output.format.min_value)
        else:
            assert np.array_equal(trace.outputs, acc)
        assert layer.output.format.contains(trace.outputs)
        stages.append(layer.stage_name)
        x = trace.outputs
    assert np.array_equal(x, outputs)
    return stages


def _relative_error(network, float_net, x):
    got = network.dequantize_output(run_network(network, network.quantize_input(x)))
    want = float_net.forward(x)
    return np.abs(got - want).max() / np.abs(want).max()


def _inputs(seed, count=200, signed=False):
    rng = np.random.default_rng(seed + 100)
    return rng.normal(0.0, 1.0, (count, 6)) if signed else rng.uniform(0.0, 1.0, (count, 6))


# End to end ------------------------------------------------------------------------------------

@pytest.mark.parametrize("scheme, per_channel", [
    ("int8", False), ("int8", True), ("int4", True), ("int16", True), ("ternary", False),
    ("binary", False)])
@pytest.mark.parametrize("hidden, stage", [
    (("relu", "relu"), "auto"), (("relu", "relu"), "thresholds"), (("relu", "relu"), "requant"),
    (("relu", "logistic"), "auto"), (("logistic", "logistic"), "thresholds")])
@pytest.mark.parametrize("seed", [0, 1])
def test_uint8_network_matches_float(scheme, per_channel, hidden, stage, seed):
    # All-zero rows of binary weights cannot stay zero: no zero gamma in folded binary layers.
    float_net = float_network(seed, (*hidden, "identity"),
                              None if scheme == "int8" else scheme,
                              zero_gamma=scheme != "binary")
    x = _inputs(seed)
    options = QuantOptions(weights=scheme, per_channel=per_channel, stage=stage)
    network = quantize_network(float_net, x, options, name="q")
    assert network.name == "q" and len(network.layers) == 3
    assert network.input.format == Format.uint(8)
    assert [str(layer.weight_format) for layer in network.layers] == \
        [{"int8": "int8n", "int4": "int4n", "int16": "int16n"}.get(scheme, scheme)] * 3
    assert [str(layer.output.format) for layer in network.layers[:2]] == ["uint8", "uint8"]
    stages = check_layer_by_layer(network, float_net, network.quantize_input(x))
    expected = {"thresholds": ["thresholds"] * 2, "requant": ["requant"] * 2,
                "auto": ["requant" if act == "relu" else "thresholds" for act in hidden]}[stage]
    assert stages == [*expected, "accumulator"]
    assert _relative_error(network, float_net, x) < 0.03
    # Inputs not seen in calibration (inside its range) work as well.
    assert _relative_error(network, float_net, _inputs(seed + 7, 50) * 0.9) < 0.03


def test_last_layer_batchnorm_is_applied():
    rng = np.random.default_rng(3)
    norm = BatchNorm([2.0, -1.5], [0.5, 1.0], [0.1, -0.2], [0.5, 2.0])
    float_net = FloatNetwork((FloatDense(rng.normal(size=(4, 3)), rng.normal(size=4), "relu"),
                              FloatDense(rng.normal(size=(2, 4)), rng.normal(size=2), "identity",
                                         norm)))
    x = rng.uniform(0.0, 1.0, (100, 3))
    network = quantize_network(float_net, x)
    assert _relative_error(network, float_net, x) < 0.03


def test_signed_inputs_pick_int8():
    float_net = float_network(4, ("tanh", "hardtanh", "identity"))
    x = _inputs(4, signed=True)
    network = quantize_network(float_net, x, QuantOptions(acts="int8"))
    assert network.input.format == Format.int(8) and network.input.zero_point == 0
    assert check_layer_by_layer(network, float_net, network.quantize_input(x)) == \
        ["thresholds", "thresholds", "accumulator"]
    assert _relative_error(network, float_net, x) < 0.05


@pytest.mark.parametrize("acts, hidden, stages", [
    ("uint4", ("relu", "logistic"), ["thresholds", "thresholds"]),
    ("uint4", ("relu", "relu"), ["thresholds", "thresholds"]),
    ("int4", ("tanh", "hardtanh"), ["thresholds", "thresholds"]),
    ("int4", ("identity", "relu"), ["thresholds", "thresholds"]),
    ("int2", ("tanh", "identity"), ["thresholds", "thresholds"]),
    ("uint1", ("relu", "logistic"), ["thresholds", "thresholds"]),
    ("binary", ("relu", "tanh"), ["thresholds", "thresholds"]),
    ("binary", ("sign", "identity"), ["thresholds", "thresholds"]),
    ("uint6", ("relu", "relu"), ["requant", "requant"]),
    ("int8", ("identity", "tanh"), ["requant", "thresholds"]),
    ("int12", ("relu", "identity"), ["requant", "requant"]),
])
@pytest.mark.parametrize("scheme", ["int8", "int3", "ternary", "binary"])
@pytest.mark.parametrize("seed", [0, 1])
def test_hidden_layers_reproduce_their_float_stage(acts, hidden, stages, scheme, seed):
    float_net = float_network(seed, (*hidden, "identity"), zero_gamma=scheme != "binary")
    x = _inputs(seed, 100, signed=seed == 1)
    network = quantize_network(float_net, x, QuantOptions(weights=scheme, acts=acts))
    assert [str(layer.output.format) for layer in network.layers[:2]] == [acts, acts]
    assert check_layer_by_layer(network, float_net, network.quantize_input(x)) == \
        [*stages, "accumulator"]
    # Random codes over the whole input format exercise every accumulator region.
    fmt = network.input.format
    codes = np.random.default_rng(seed).integers(fmt.min_value, fmt.max_value + 1, (300, 6))
    check_layer_by_layer(network, float_net, codes)


def test_uint4_network_is_close_to_float():
    float_net = float_network(2, ("relu", "logistic", "identity"))
    x = _inputs(2)
    network = quantize_network(float_net, x, QuantOptions(acts="uint4"))
    assert _relative_error(network, float_net, x) < 0.2


@pytest.mark.parametrize("input_format, expected", [
    ("int4", Format.int(4)), ("uint6", Format.uint(6)), ("binary", Format.binary())])
def test_input_format_option(input_format, expected):
    float_net = float_network(5, ("relu", "tanh", "identity"))
    x = _inputs(5, 50, signed=True)
    network = quantize_network(float_net, x, QuantOptions(input_format=input_format,
                                                          acts="int4"))
    assert network.input.format == expected
    codes = network.quantize_input(x)
    assert expected.contains(codes)
    check_layer_by_layer(network, float_net, codes)
    if expected.kind == "bipolar":
        assert np.array_equal(codes, np.where(x >= 0, 1, -1))


def test_max_threshold_bits_and_percentile_options():
    float_net = float_network(6, ("relu", "relu", "identity"))
    x = _inputs(6)
    wide = quantize_network(float_net, x, QuantOptions(acts="uint6", max_threshold_bits=6))
    assert [layer.stage_name for layer in wide.layers] == ["thresholds", "thresholds",
                                                           "accumulator"]
    narrow = quantize_network(float_net, x, QuantOptions(acts="uint6", max_threshold_bits=5))
    assert [layer.stage_name for layer in narrow.layers] == ["requant", "requant", "accumulator"]
    clipped = quantize_network(float_net, x, QuantOptions(calibration="percentile",
                                                          percentile=90.0))
    minmax = quantize_network(float_net, x)
    assert float(clipped.layers[0].output.scale) < float(minmax.layers[0].output.scale)
    check_layer_by_layer(clipped, float_net, clipped.quantize_input(x))


def test_quantized_network_saves_and_runs_identically(tmp_path):
    float_net = float_network(7, ("relu", "tanh", "identity"))
    x = _inputs(7, 60, signed=True)
    options = QuantOptions(weights="ternary", acts="int4", per_channel=True)
    network = quantize_network(float_net, x, options)
    assert network.info["source"] == {"frontend": "test", "seed": 7}
    assert network.info["options"] == {
        "weights": "ternary", "acts": "int4", "input_format": None, "per_channel": True,
        "calibration": "minmax", "percentile": 99.99, "stage": "auto", "max_threshold_bits": 4,
        "mult_bits": 16, "prune": 0.0, "prune_scope": "layer", "share": None}
    loaded = Network.load(network.save(tmp_path / "q.hwnn.npz"))
    assert loaded.info == network.info
    codes = network.quantize_input(x)
    assert np.array_equal(run_network(loaded, codes), run_network(network, codes))


# Errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"weights": "int1"}, ValueError,
     r"^Weights must be int2\.\.int16, ternary or binary, not 'int1'$"),
    ({"weights": "int17"}, ValueError, r"^Weights must be .*, not 'int17'$"),
    ({"weights": "float"}, ValueError, r"^Weights must be .*, not 'float'$"),
    ({"weights": "uint8"}, ValueError, r"^Weights must be .*, not 'uint8'$"),
    # Names that are no format at all get the same message.
    ({"acts": "int33"}, ValueError, r"^Activations must be .*, not 'int33'$"),
    ({"acts": "uint0"}, ValueError, r"^Activations must be .*, not 'uint0'$"),
    ({"acts": "float"}, ValueError, r"^Activations must be .*, not 'float'$"),
    ({"acts": "int1"}, ValueError,
     r"^Activations must be uint1\.\.uint16, int2\.\.int16 or binary, not 'int1'$"),
    ({"acts": "int17"}, ValueError, r"^Activations must be .*, not 'int17'$"),
    ({"acts": "uint17"}, ValueError, r"^Activations must be .*, not 'uint17'$"),
    ({"acts": "ternary"}, ValueError, r"^Activations must be .*, not 'ternary'$"),
    ({"acts": "int8n"}, ValueError, r"^Activations must be .*, not 'int8n'$"),
    ({"acts": 8}, TypeError, r"^Format name must be a string, not 8$"),
    ({"input_format": "int20"}, ValueError,
     r"^The input format must be uint1\.\.uint16, int2\.\.int16 or binary, not 'int20'$"),
    ({"input_format": "ternary"}, ValueError, r"^The input format must be .*, not 'ternary'$"),
    ({"per_channel": 1}, TypeError, r"^per_channel must be a bool, not 1$"),
    ({"per_channel": "yes"}, TypeError, r"^per_channel must be a bool, not 'yes'$"),
    ({"calibration": "mse"}, ValueError,
     r"^Calibration must be 'minmax' or 'percentile', not 'mse'$"),
    ({"percentile": 0}, ValueError, r"^percentile must be in \(0, 100\], not 0$"),
    ({"percentile": 100.5}, ValueError, r"^percentile must be in \(0, 100\], not 100\.5$"),
    ({"percentile": True}, ValueError, r"^percentile must be in \(0, 100\], not True$"),
    ({"stage": "bad"}, ValueError,
     r"^Output stage must be one of auto, thresholds, requant, not 'bad'$"),
    ({"stage": "accumulator"}, ValueError, r"^Output stage must be one of .*, not 'accumulator'$"),
    ({"max_threshold_bits": 0}, ValueError, r"^max_threshold_bits must be 1\.\.16, not 0$"),
    ({"max_threshold_bits": True}, TypeError, r"^max_threshold_bits must be an integer, not True$"),
    ({"mult_bits": 33}, ValueError, r"^mult_bits must be 2\.\.32, not 33$"),
    ({"mult_bits": 8.0}, TypeError, r"^mult_bits must be an integer, not 8\.0$"),
])
def test_options_reject(kwargs, error, message):
    with pytest.raises(error, match=message):
        QuantOptions(**kwargs)


def test_options_formats():
    options = QuantOptions(weights="int6", acts="binary")
    assert options.weight_format == Format.int(6) and options.act_format == Format.binary()
    assert QuantOptions(weights="ternary").weight_format == Format.ternary()


@pytest.mark.parametrize("hidden, options, message", [
    (("tanh", "relu"), QuantOptions(stage="requant"),
     r"^Layer 'dense0': requantization implements identity or relu, not 'tanh'; use thresholds$"),
    (("relu", "logistic"), QuantOptions(stage="requant"),
     r"^Layer 'dense1': requantization implements identity or relu, not 'logistic'; "),
    (("relu", "relu"), QuantOptions(stage="requant", acts="binary"),
     r"^Layer 'dense0': binary activations need thresholds, not requantization$"),
])
def test_requantization_limits(hidden, options, message):
    float_net = float_network(0, (*hidden, "identity"))
    with pytest.raises(ValueError, match=message):
        quantize_network(float_net, _inputs(0, 20), options)


def test_an_accumulator_output_wider_than_32_bits_is_refused():
    # 16-bit weights and activations over 40 inputs: up to 15 + 16 + 6 bits, and a sign.
    rng = np.random.default_rng(0)
    float_net = FloatNetwork((FloatDense(rng.normal(size=(40, 6)), np.zeros(40), "relu"),
                              FloatDense(rng.normal(size=(3, 40)), np.zeros(3))))
    with pytest.raises(ValueError, match=r"^Layer 'dense1' outputs its accumulator, which needs "
                                         r"3[3-8] bits, more than the 32 an output can have: "
                                         r"use narrower weights or activations$"):
        quantize_network(float_net, _inputs(0), QuantOptions(weights="int16", acts="uint16"))


def test_rejects_bad_networks_and_calibration():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"^Layer 1 takes 4 inputs but layer 0 gives 5: shapes "
                                         r"do not chain$"):
        FloatNetwork((FloatDense(rng.normal(size=(5, 6)), np.zeros(5)),
                      FloatDense(rng.normal(size=(3, 4)), np.zeros(3))))
    weight = rng.normal(size=(5, 6))
    weight[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^Weights holds NaN or infinite values$"):
        FloatDense(weight, np.zeros(5))
    with pytest.raises(ValueError, match=r"^Biases holds NaN or infinite values$"):
        FloatDense(rng.normal(size=(5, 6)), [0, 0, np.inf, 0, 0])
    float_net = float_network(0, ("relu", "relu", "identity"))
    with pytest.raises(TypeError, match=r"^network must be a FloatNetwork, not "):
        quantize_network(float_net.layers, _inputs(0))
    with pytest.raises(TypeError, match=r"^options must be a QuantOptions, not \{\}$"):
        quantize_network(float_net, _inputs(0), {})
    with pytest.raises(ValueError, match=r"^Inputs must have shape \(N, 6\), not \(10, 5\)$"):
        quantize_network(float_net, np.zeros((10, 5)))
    with pytest.raises(ValueError, match=r"^Calibration needs at least one input sample$"):
        quantize_network(float_net, np.zeros((0, 6)))
    calib = _inputs(0, 10)
    calib[3, 2] = np.nan
    with pytest.raises(ValueError, match=r"^Inputs hold NaN or infinite values$"):
        quantize_network(float_net, calib)
    with pytest.raises(TypeError, match=r"^Inputs must be real numbers, not <U1 values$"):
        quantize_network(float_net, np.full((2, 6), "a"))


def test_requant_layers_share_one_shift_unless_a_channel_would_lose_precision():
    rng = np.random.default_rng(4)
    calib = rng.uniform(0, 1, size=(64, 6))
    even = FloatNetwork((FloatDense(rng.normal(size=(4, 6)), np.zeros(4), "relu"),
                         FloatDense(rng.normal(size=(2, 4)), np.zeros(2))))
    options = QuantOptions(weights="int8", acts="uint8", per_channel=True, stage="requant")
    shared = quantize_network(even, calib, options).layers[0].stage
    assert len(set(shared.shift.tolist())) == 1
    assert shared.multiplier.min() >= 1 << 11
    # One channel's weights a million times smaller: a shared shift would leave it no bits.
    weight = rng.normal(size=(4, 6))
    weight[1] *= 1e-6
    skewed = FloatNetwork((FloatDense(weight, np.zeros(4), "relu"),
                           FloatDense(rng.normal(size=(2, 4)), np.zeros(2))))
    stage = quantize_network(skewed, calib, options).layers[0].stage
    assert len(set(stage.shift.tolist())) > 1
    assert stage.multiplier.min() >= 1 << 11
