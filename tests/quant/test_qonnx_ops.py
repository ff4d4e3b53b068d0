"""The QONNX frontend's FINN MultiThreshold, Transpose, input centering and unquantized last
layers, against qonnx's own executor (graphs built with ``onnx.helper``, see
``qonnx_graphs``)."""

import re

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("qonnx")

from qonnx_graphs import Builder, bias_bn_relu, every_input, run_qonnx, single_layer

from hwnn.quant.qonnx_check import check_qonnx
from hwnn.quant.qonnx_frontend import from_qonnx
from hwnn.sim.golden import run_network


def no_chain(b, rng, y, channels):
    return y


def agrees_with_qonnx(model, x):
    """Import ``model`` and compare it with qonnx's executor on the real inputs ``x``: every
    quantized tensor's codes equal (the last layer's within one step), every class equal
    unless golden outputs tie exactly. Returns the network."""
    network, checks, predictions = check_qonnx(model, x)
    assert [check.first for check in checks] == [None] * len(checks), checks
    assert np.all((predictions["qonnx"] == predictions["golden"]) | predictions["tied"])
    return network


# MultiThreshold -------------------------------------------------------------------------------

# Accumulator steps of single_layer(in_bits=6) with weight scale 2**-4: 2**-7.
STEP = 2.0 ** -7


@pytest.mark.parametrize("chain, thresholds, out_dtype, attributes", [
    # Per channel, after a bias, a batch normalization with negative gammas and a Relu.
    (bias_bn_relu, np.sort(np.random.default_rng(0).normal(0, 1, (6, 7)), axis=1), "UINT3",
     {}),
    # Per tensor on exact accumulator values (ties: x >= t counts), signed output.
    (no_chain, np.arange(-7, 8)[None, :] * 9 * STEP, "INT4", {"out_bias": -8.0}),
    # Bipolar, as FINN writes it: 2 * count - 1.
    (no_chain, np.arange(-3, 3)[:, None] * 50 * STEP, "BIPOLAR",
     {"out_scale": 2.0, "out_bias": -1.0}),
    # Fewer thresholds than steps, unsorted, a power-of-two output scale.
    (bias_bn_relu, np.random.default_rng(1).uniform(0, 2, (6, 5)), "UINT4",
     {"out_scale": 0.25, "data_layout": "NC"}),
])
def test_multithreshold_exhaustive_over_accumulator_range(chain, thresholds, out_dtype,
                                                          attributes):
    """Every accumulator value of the layer's range: the golden outputs equal qonnx's
    MultiThreshold outputs, as real values."""
    rng = np.random.default_rng(2)
    model, out = single_layer(rng, 6, None, w_scale=2.0 ** -4, chain=chain, quantizer=(
        lambda b, y: b.multithreshold(y, thresholds, out_dtype, **attributes)))
    network = from_qonnx(model)
    (layer,) = network.layers
    assert layer.stage_name == "thresholds"
    codes, x = every_input(6)
    context = run_qonnx(model, x)
    golden = layer.output.dequantize(run_network(network, codes))
    assert np.array_equal(golden, context[out].astype(np.float64))
    if chain is bias_bn_relu:
        assert layer.stage.descending.tolist() == [False, True] * 3


def cnn(rng, batch, *, nhwc_input):
    """A QONNX CNN on (batch, 8, 8, 2) NHWC images transposed to NCHW after their Quant
    (``nhwc_input`` ``"after"``) or before it (``"before"``), or on (batch, 2, 8, 8) NCHW
    ones (None): conv 3x3 (2 -> 4, pad 1, 4-bit weights per channel), BN
    with negative gammas, a per-channel MultiThreshold (UINT2), max pool 2, a Transpose to
    NHWC, Flatten, a MatMul to 5 outputs whose input is a uint3 MultiThreshold of a hidden
    dense layer, ending at a bias. Power-of-two scales."""
    b = Builder()
    x = b.node("Transpose", ["x"], perm=[0, 3, 1, 2]) if nhwc_input == "before" else "x"
    x = b.quant(x, 2.0 ** -6, 0, 8, True)
    if nhwc_input == "after":
        x = b.node("Transpose", [x], perm=[0, 3, 1, 2])
    w_scale = 2.0 ** rng.integers(-6, -3, (4, 1, 1, 1))
    weights = rng.integers(-7, 8, (4, 2, 3, 3)) * w_scale
    y = b.node("Conv", [x, b.quant(b.const(weights), w_scale, 0, 4, True, True)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = b.node("BatchNormalization", [y, b.const([1.5, -0.7, 0.9, -2.0]),
                                      b.const(rng.normal(0, 0.5, 4)),
                                      b.const(rng.normal(0, 0.5, 4)),
                                      b.const(rng.uniform(0.5, 2, 4))])
    y = b.multithreshold(y, np.sort(rng.normal(0, 1, (4, 3)), axis=1), "UINT2",
                         data_layout="NCHW")
    y = b.node("MaxPool", [y], kernel_shape=[2, 2], strides=[2, 2])
    y = b.node("Transpose", [y], perm=[0, 2, 3, 1])
    y = b.node("Flatten", [y], axis=1)

    def dense(y, n_in, n_out):
        w_scale = 2.0 ** -5
        weights = rng.integers(-7, 8, (n_in, n_out)) * w_scale
        y = b.node("MatMul", [y, b.quant(b.const(weights), w_scale, 0, 4, True, True)])
        return b.node("Add", [y, b.const(rng.normal(0, 1, n_out))])

    y = b.multithreshold(dense(y, 64, 12), rng.normal(0, 2, (1, 7)), "UINT3")
    y = dense(y, 12, 5)
    shape = [batch, 8, 8, 2] if nhwc_input else [batch, 2, 8, 8]
    return b.graph(y, shape, [batch, 5])


@pytest.mark.parametrize("nhwc_input", ["after", "before", None])
def test_cnn_with_multithresholds_and_transposes_agrees_with_qonnx(nhwc_input):
    rng = np.random.default_rng(3)
    model = cnn(rng, 1, nhwc_input=nhwc_input)
    shape = (60, 8, 8, 2) if nhwc_input else (60, 2, 8, 8)
    x = (rng.integers(-128, 128, shape) * np.float32(2.0 ** -6)).astype(np.float32)
    network = agrees_with_qonnx(model, x)
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool2d", "dense",
                                                        "dense"]
    assert network.info["input_layout"] == ("hwc" if nhwc_input else "chw")
    assert [str(layer.output.format) for layer in network.layers[:3]] == ["uint2", "uint2",
                                                                          "uint3"]
    assert network.layers[0].stage.descending.tolist() == [False, True, False, True]


def refused(change):
    """The message importing the CNN changed by ``change(nodes)`` raises."""
    model = cnn(np.random.default_rng(0), 1, nhwc_input=None)
    change(model.graph.node)
    with pytest.raises(ValueError) as error:
        from_qonnx(model)
    return str(error.value)


def node(nodes, op, index=0):
    return [n for n in nodes if n.op_type == op][index]


def set_attribute(n, name, value):
    from onnx import helper
    for attribute in n.attribute:
        if attribute.name == name:
            n.attribute.remove(attribute)
    n.attribute.append(helper.make_attribute(name, value))


@pytest.mark.parametrize("change, message", [
    (lambda nodes: set_attribute(node(nodes, "MultiThreshold"), "data_layout", "NHWC"),
     r"\(MultiThreshold\) data_layout 'NHWC' does not describe its input, laid out NCHW"),
    (lambda nodes: set_attribute(node(nodes, "MultiThreshold", 1), "out_dtype", "UINT2"),
     r"\(MultiThreshold\) has 7 thresholds, more than out_dtype UINT2 has steps \(3\)"),
    (lambda nodes: set_attribute(node(nodes, "MultiThreshold", 1), "out_dtype", "FLOAT32"),
     r"\(MultiThreshold\) out_dtype 'FLOAT32' is not an integer type"),
    (lambda nodes: set_attribute(node(nodes, "MultiThreshold", 1), "out_bias", 0.5),
     r"\(MultiThreshold\) out_scale 1.0 and out_bias 0.5 must make its outputs the codes"),
    (lambda nodes: set_attribute(node(nodes, "Transpose"), "perm", [0, 1, 3, 2]),
     r"\(Transpose\) permutes axes \[0, 1, 3, 2\] of an image laid out NCHW"),
])
def test_refuses_what_it_cannot_represent(change, message):
    text = refused(change)
    assert text.startswith("QONNX node ") and re.search(message, text), text


# Input centering --------------------------------------------------------------------------------

def dense_layers(b, rng, x, sizes, *, last):
    """Dense layers of 4-bit narrow weights (per-channel power-of-two scales) and biases,
    each but the last followed by a batch normalization and a uint4 Quant; ``last(b, y)``
    ends the last one."""
    for index in range(len(sizes) - 1):
        n_in, n_out = sizes[index], sizes[index + 1]
        w_scale = 2.0 ** rng.integers(-6, -2, (1, n_out))
        weights = rng.integers(-7, 8, (n_in, n_out)) * w_scale
        y = b.node("MatMul", [x, b.quant(b.const(weights), w_scale, 0, 4, True, True)])
        y = b.node("Add", [y, b.const(rng.normal(0, 1, n_out))])
        if index == len(sizes) - 2:
            return last(b, y)
        y = b.node("BatchNormalization", [y, b.const(rng.uniform(0.5, 2, n_out)),
                                          b.const(rng.normal(0, 1, n_out)),
                                          b.const(rng.normal(0, 1, n_out)),
                                          b.const(rng.uniform(0.5, 2, n_out))])
        x = b.quant(y, 2.0 ** -3, 0, 4, False)
    raise AssertionError("unreachable")


@pytest.mark.parametrize("steps, in_q, x_of", [
    # Brevitas' 2x - 1 on [0, 1) inputs (on a 1/256 grid, and anywhere).
    ([("Mul", 2.0), ("Sub", 1.0)], (2.0 ** -7, 8, True, "ROUND"),
     lambda rng, shape: np.where(rng.random(shape) < 0.5, rng.integers(0, 256, shape) / 256,
                                 rng.random(shape))),
    # x / 255 of 8-bit pixels.
    ([("Div", 255.0)], (2.0 ** -8, 8, False, "ROUND"),
     lambda rng, shape: rng.integers(0, 256, shape)),
    # 1 - x, then an offset, rounded down.
    ([("rsub", 1.0), ("Add", 0.25)], (2.0 ** -4, 6, True, "FLOOR"),
     lambda rng, shape: rng.normal(0, 1, shape)),
    # A binary input, centred first (0.5 itself included: it becomes +1).
    ([("Sub", 0.5)], "bipolar", lambda rng, shape: rng.integers(0, 5, shape) / 4),
])
def test_input_centering_folds_into_the_input_quantizer(steps, in_q, x_of):
    rng = np.random.default_rng(4)
    b = Builder()
    x = "x"
    for op, constant in steps:
        x = (b.node("Sub", [b.const(np.float32(constant)), x]) if op == "rsub"
             else b.node(op, [x, b.const(np.float32(constant))]))
    if in_q == "bipolar":
        x = b.bipolar(x, 1.0)
    else:
        scale, bits, signed, rounding = in_q
        x = b.quant(x, scale, 0, bits, signed, rounding=rounding)
    y = dense_layers(b, rng, x, [16, 12, 6], last=lambda b, y: y)
    model = b.model(y, 1, 16, 6)
    network = agrees_with_qonnx(model, x_of(rng, (300, 16)).astype(np.float32))
    assert [op for op, _ in network.info["input_quantizer"]["steps"]] == [
        op.lower() for op, _ in steps]


def test_refuses_a_tensor_step_on_the_input():
    b = Builder()
    x = b.quant(b.node("Mul", ["x", b.const(np.full(16, 2.0))]), 2.0 ** -7, 0, 8)
    model = b.model(dense_layers(b, np.random.default_rng(0), x, [16, 6],
                                 last=lambda b, y: y), 1, 16, 6)
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Mul\) on the graph input must "
                                         r"combine it with a scalar constant"):
        from_qonnx(model)


# The last layer without a Quant -----------------------------------------------------------------

def last_batchnorm(b, y):
    """A batch normalization with negative gammas on 6 outputs."""
    rng = np.random.default_rng(5)
    return b.node("BatchNormalization", [
        y, b.const(rng.uniform(0.5, 2, 6) * [1, -1, 1, -1, -1, 1]),
        b.const(rng.normal(0, 1, 6)), b.const(rng.normal(0, 1, 6)),
        b.const(rng.uniform(0.5, 2, 6))])


@pytest.mark.parametrize("last, stage", [
    (last_batchnorm, "accumulator"),
    (lambda b, y: b.node("Relu", [last_batchnorm(b, y)]), "requant"),
    (lambda b, y: b.node("Sub", [b.const(np.float32(0.5)), b.node(
        "Mul", [y, b.const(np.array([0.5, 2, -1, 1.5, -0.25, 3], np.float32))])]),
     "accumulator"),
])
def test_last_layer_without_quant_agrees_with_qonnx(last, stage):
    rng = np.random.default_rng(6)
    b = Builder()
    x = b.quant("x", 2.0 ** -6, 0, 8, True)
    model = b.model(dense_layers(b, rng, x, [16, 12, 6], last=last), 1, 16, 6)
    x = (rng.integers(-128, 128, (400, 16)) * np.float32(2.0 ** -6)).astype(np.float32)
    network = agrees_with_qonnx(model, x)
    assert network.layers[-1].stage_name == stage


def test_last_layer_refusals():
    def model_of(last, narrow=True):
        b = Builder()
        x = b.quant("x", 2.0 ** -6, 0, 8, True)
        weights = np.tile([[-8.0], [7.0]], (8, 6)) * 2.0 ** -4
        y = b.node("MatMul", [x, b.quant(b.const(weights), 2.0 ** -4, 0, 4, True, narrow)])
        return b.model(last(b, y), 1, 16, 6)

    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(BatchNormalization\) ends a "
                                         r"layer whose batchnorm reverse some outputs, and its "
                                         r"int4 weights cannot be negated"):
        from_qonnx(model_of(last_batchnorm, narrow=False))
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Mul\) ends a layer that "
                                         r"applies relu, mul to its accumulator without a "
                                         r"quantizer after it"):
        from_qonnx(model_of(lambda b, y: b.node("Mul", [b.node("Relu", [y]),
                                                        b.const(np.float32(2))])))


def test_cli_test_accuracy_of_an_nchw_model(tmp_path, capsys):
    """``hwnn quantize cnn.onnx --test`` takes the test images in the model's NCHW layout."""
    import onnx

    from hwnn.cli import main
    rng = np.random.default_rng(7)
    onnx.save(cnn(rng, 1, nhwc_input=None), str(tmp_path / "cnn.onnx"))
    x = (rng.integers(-128, 128, (40, 2, 8, 8)) * np.float32(2.0 ** -6)).astype(np.float32)
    batch_model = cnn(np.random.default_rng(7), 40, nhwc_input=None)   # the same, 40 inputs
    logits = run_qonnx(batch_model, x)[batch_model.graph.output[0].name]
    np.savez(tmp_path / "test.npz", x=x, y=logits.argmax(1))
    output = tmp_path / "cnn.hwnn.npz"
    assert main(["quantize", str(tmp_path / "cnn.onnx"), "--test", str(tmp_path / "test.npz"),
                 "-o", str(output)]) == 0
    assert "accuracy on 40 test inputs: golden model 100.00%" in capsys.readouterr().out
    assert output.exists()


# Average pools and Trunc ------------------------------------------------------------------------

def pooled_cnn(rng, batch, pool, trunc_version, times_size):
    """A QONNX CNN on (batch, 2, 6, 6) images: conv 3x3 pad 1 (2 -> 3) with BN and a uint4
    Quant of scale 2**-3, then ``pool`` ("global", or a kernel size) average pool, times the
    window's size when ``times_size`` (as Brevitas' TruncAvgPool2d exports it), a ``Trunc``
    of the given version to 4 bits (its scale the Quant's, 2 more input bits), Flatten and a
    MatMul to 4 outputs with a bias."""
    b = Builder()
    x = b.quant("x", 2.0 ** -6, 0, 8, True)
    w_scale = 2.0 ** rng.integers(-6, -3, (3, 1, 1, 1))
    weights = rng.integers(-7, 8, (3, 2, 3, 3)) * w_scale
    y = b.node("Conv", [x, b.quant(b.const(weights), w_scale, 0, 4, True, True)],
               kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    y = b.node("BatchNormalization", [y, b.const([1.5, -0.7, 0.9]),
                                      b.const(rng.normal(1, 0.5, 3)),
                                      b.const(rng.normal(0, 0.5, 3)),
                                      b.const(rng.uniform(0.5, 2, 3))])
    act_scale = 2.0 ** -3
    y = b.quant(y, act_scale, 0, 4, False)
    if pool == "global":
        y, size, cells = b.node("GlobalAveragePool", [y]), 36, 1
    else:
        y = b.node("AveragePool", [y], kernel_shape=[pool, pool], strides=[pool, pool])
        size, cells = pool * pool, (6 // pool) ** 2
    if times_size:
        y = b.node("Mul", [y, b.const(np.float32(size))])
    in_bits = 6
    if trunc_version == 1:
        y = b.node("Trunc", [y, b.const(act_scale), b.const(0.0), b.const(in_bits),
                             b.const(4.0)], "qonnx.custom_op.general", rounding_mode="FLOOR")
    else:
        y = b.node("Trunc", [y, b.const(act_scale), b.const(0.0), b.const(in_bits),
                             b.const(act_scale * 4), b.const(4.0)], "qonnx.custom_op.general",
                   rounding_mode="FLOOR", signed=0)
    y = b.node("Flatten", [y], axis=1)
    weights = rng.integers(-7, 8, (3 * cells, 4)) * 2.0 ** -4
    y = b.node("MatMul", [y, b.quant(b.const(weights), 2.0 ** -4, 0, 4, True, True)])
    y = b.node("Add", [y, b.const(rng.normal(0, 1, 4))])
    model = b.graph(y, [batch, 2, 6, 6], [batch, 4])
    model.opset_import[1].version = trunc_version
    return model


@pytest.mark.parametrize("pool, trunc_version, times_size", [
    ("global", 1, True), (2, 1, True), (3, 1, False), (2, 2, False), ("global", 2, True),
])
def test_average_pool_and_trunc_agree_with_qonnx(pool, trunc_version, times_size):
    rng = np.random.default_rng(8)
    model = pooled_cnn(rng, 1, pool, trunc_version, times_size)
    x = (rng.integers(-128, 128, (300, 2, 6, 6)) * np.float32(2.0 ** -6)).astype(np.float32)
    network = agrees_with_qonnx(model, x)
    assert [layer.kind for layer in network.layers] == ["conv2d", "conv2d", "dense"]
    pool_layer = network.layers[1]
    assert pool_layer.groups == 3 and np.all(pool_layer.weights == 1)
    assert pool_layer.stage_name == "thresholds"


def test_imported_average_pool_runs_on_the_dataflow_engine():
    """The window sum (a depthwise convolution of weights 1 over the whole image) and its
    Trunc thresholds in Amaranth's simulator, random stalls, against the golden model."""
    from hwnn.rtl.dataflow import DataflowAccelerator
    from hwnn.rtl.folding import auto_folding
    from hwnn.sim.pysim import run_vectors

    rng = np.random.default_rng(9)
    network = from_qonnx(pooled_cnn(rng, 1, "global", 1, True))
    codes = rng.integers(-128, 128, (3, 6, 6, 2))
    dut = DataflowAccelerator(network, auto_folding(network, 12))
    actual, _ = run_vectors(dut, network, codes.reshape(3, -1), seed=1, timeout=20_000)
    assert np.array_equal(actual, run_network(network, codes).reshape(3, -1))


@pytest.mark.parametrize("attribute, value", [("pads", [0, 0, 1, 1]), ("ceil_mode", 1)])
def test_refuses_a_padded_average_pool(attribute, value):
    model = pooled_cnn(np.random.default_rng(0), 1, 2, 1, True)
    set_attribute(node(model.graph.node, "AveragePool"), attribute, value)
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(AveragePool\) must average "
                                         r"without padding, dilation or ceil_mode"):
        from_qonnx(model)


def test_refuses_a_trunc_outside_a_layer():
    b = Builder()
    x = b.node("Trunc", [b.quant("x", 2.0 ** -3, 0, 8, False), b.const(2.0 ** -3),
                         b.const(0.0), b.const(8.0), b.const(4.0)], "qonnx.custom_op.general",
               rounding_mode="FLOOR")
    y = b.node("MatMul", [x, b.quant(b.const(np.ones((4, 2))), 1.0, 0, 2, True, True)])
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Trunc\) must truncate an "
                                         r"average pool's output"):
        from_qonnx(b.model(y, 1, 4, 2))
