"""The QONNX frontend against qonnx's own executor.

Models are built here node by node with ``onnx.helper``, with QONNX ``Quant`` nodes as
Brevitas exports them (domain ``qonnx.custom_op.general``, attributes ``signed``, ``narrow``,
``rounding_mode``; scale, zero point and bit width as float32 initializers). The reference is
:func:`qonnx.core.onnx_exec.execute_onnx` on the model as built (not cleaned up); the golden
model runs the imported network on the input codes qonnx's input quantizer produced.
"""

from itertools import pairwise

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from qonnx_graphs import (DOMAIN, Builder, every_input, pow2, qonnx_codes,  # noqa: E402
                          run_qonnx, single_layer)

from hwnn.ir import Thresholds  # noqa: E402
from hwnn.quant.qonnx_frontend import from_qonnx, is_qonnx, load_qonnx  # noqa: E402
from hwnn.quant.threshold_search import search_thresholds  # noqa: E402
from hwnn.sim.golden import run_network  # noqa: E402


def mlp(rng, batch, sizes, *, in_q, acts, w_bits, per_channel, batchnorm, bias,
        po2=True, last_bias_quant=False, gemm=False):
    """A QONNX MLP: input Quant ``in_q`` = (bits, signed, zero point), then per layer a
    weight Quant (``w_bits`` signed narrow, per-tensor or per-channel scale), MatMul, bias
    Add, BatchNorm (negative gammas included), Relu and an activation Quant ``acts[i]`` =
    (bits, signed, narrow, rounding); the last layer ends at its bias. Input, weight and
    activation scales are powers of two when ``po2`` (the exact case), random otherwise.
    Returns the model, the input Quant's (scale, zero point) and the names of the activation
    Quant outputs."""
    b = Builder()
    in_bits, in_signed, in_zp = in_q
    in_scale = pow2(rng) if po2 else rng.uniform(0.01, 0.1)
    x = b.quant("x", in_scale, in_zp, in_bits, in_signed)
    x_scale = in_scale
    act_names = []
    for index, (n_in, n_out) in enumerate(pairwise(sizes)):
        last = index == len(sizes) - 2
        if per_channel:
            w_scale = pow2(rng, (1, n_out)) if po2 else rng.uniform(0.005, 0.05, (1, n_out))
        else:
            w_scale = pow2(rng) if po2 else rng.uniform(0.005, 0.05)
        limit = max(2 ** (w_bits - 1) - 1, 1)
        weights = rng.integers(-limit, limit + 1, (n_in, n_out)) * w_scale
        weights = weights + rng.uniform(-0.4, 0.4, weights.shape) * w_scale  # not on the grid
        if gemm:   # Gemm with transB: weights (out, in), a per-channel scale (out, 1)
            weights, w_scale = weights.T, np.reshape(w_scale, (-1, 1))
        if w_bits == 1:
            wq = b.bipolar(b.const(weights), w_scale)
        else:
            wq = b.quant(b.const(weights), w_scale, 0, w_bits, True, True)
        values = rng.normal(0, 2.0, n_out).astype(np.float32)
        if last and last_bias_quant:
            acc_step = np.float32(x_scale) * np.float32(w_scale)
            bias_input = b.quant(b.const(values), acc_step.reshape(-1), 0, 32)
        else:
            bias_input = b.const(values)
        if gemm:
            y = b.node("Gemm", [x, wq] + ([bias_input] if bias or last else []), transB=1)
        else:
            y = b.node("MatMul", [x, wq])
            if bias or last:
                y = b.node("Add", [y, bias_input])
        if last:
            return b.model(y, batch, sizes[0], n_out), (in_scale, in_zp), act_names
        if batchnorm:
            gamma = rng.uniform(0.5, 2, n_out) * rng.choice([-1, 1], n_out)
            y = b.node("BatchNormalization",
                       [y, b.const(gamma), b.const(rng.normal(0, 1, n_out)),
                        b.const(rng.normal(0, 3, n_out)), b.const(rng.uniform(0.5, 4, n_out))],
                       epsilon=1e-3)
        y = b.node("Relu", [y])
        bits, signed, narrow, rounding = acts[index]
        x_scale = pow2(rng, None, -5, -1) if po2 else rng.uniform(0.02, 0.3)
        if bits == "bipolar":
            x = b.bipolar(y, x_scale)
        else:
            x = b.quant(y, x_scale, 0, bits, signed, narrow, rounding)
        act_names.append(x)
    raise AssertionError("unreachable")


def random_input_codes(rng, batch, features, bits, signed):
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2 ** bits)
    return rng.integers(low, high, (batch, features))


def compare(model, in_q, act_names, codes, *, exact_logits):
    """Import ``model``, run it in qonnx and in the golden model on input ``codes``, and
    compare every activation code and the logits."""
    network = from_qonnx(model)
    scale, zero_point = in_q
    inputs = ((codes - zero_point) * np.float32(scale)).astype(np.float32)
    context = run_qonnx(model, inputs)
    first_quant = model.graph.node[0].output[0]
    assert np.array_equal(qonnx_codes(context, model, first_quant), codes)
    outputs, traces = run_network(network, codes, trace=True)
    assert len(traces) == len(act_names) + 1
    for trace, name in zip(traces, act_names, strict=False):
        assert np.array_equal(trace.outputs, qonnx_codes(context, model, name)), trace.name
    logits = context[model.graph.output[0].name]
    golden = network.dequantize_output(outputs)
    step = network.output.scale
    if exact_logits:
        assert np.array_equal(golden, logits.astype(np.float64))
    else:
        assert np.all(np.abs(golden - logits) <= step)
        top2 = np.sort(logits, axis=1)[:, -2:]
        clear = top2[:, 1] - top2[:, 0] > 2 * step.max()
        assert np.array_equal(golden.argmax(1)[clear], logits.argmax(1)[clear])
    return network


@pytest.mark.parametrize("seed, in_q, acts, w_bits, per_channel, batchnorm", [
    (0, (8, False, 0), [(4, False, False, "ROUND"), (3, False, False, "ROUND")], 4, False, True),
    (1, (6, True, 0), [(8, True, False, "ROUND"), (2, True, True, "ROUND")], 8, True, True),
    (2, (4, False, 3), [(5, False, True, "FLOOR"), (1, True, False, "ROUND")], 2, True, False),
    (3, (8, True, -5), [(6, True, True, "CEIL"), (4, False, False, "HALF_UP")], 3, False, True),
])
def test_mlp_codes_equal_qonnx(seed, in_q, acts, w_bits, per_channel, batchnorm):
    rng = np.random.default_rng(seed)
    batch, sizes = 200, [24, 16, 12, 10]
    model, in_params, act_names = mlp(rng, batch, sizes, in_q=in_q, acts=acts, w_bits=w_bits,
                                      per_channel=per_channel, batchnorm=batchnorm, bias=True)
    codes = random_input_codes(rng, batch, sizes[0], in_q[0], in_q[1])
    network = compare(model, in_params, act_names, codes, exact_logits=False)
    assert [layer.stage_name for layer in network.layers] == ["thresholds"] * 2 + [
        "accumulator"]
    if batchnorm:
        assert any(layer.stage.descending.any() for layer in network.layers[:-1])


@pytest.mark.parametrize("gemm, w_bits, acts", [
    (True, 4, [(4, False, False, "ROUND"), ("bipolar", None, None, None)]),
    (False, 1, [("bipolar", None, None, None), (3, False, False, "ROUND")]),
])
def test_gemm_and_bipolar_codes_equal_qonnx(gemm, w_bits, acts):
    rng = np.random.default_rng(9)
    batch, sizes = 200, [20, 16, 12, 10]
    model, in_params, act_names = mlp(rng, batch, sizes, in_q=(8, True, 0), acts=acts,
                                      w_bits=w_bits, per_channel=True, batchnorm=True,
                                      bias=True, gemm=gemm)
    codes = random_input_codes(rng, batch, sizes[0], 8, True)
    network = compare(model, in_params, act_names, codes, exact_logits=False)
    formats = [str(layer.output.format) for layer in network.layers[:-1]]
    assert formats == ["uint4" if acts[0][0] == 4 else "binary",
                       "binary" if acts[1][0] == "bipolar" else "uint3"]
    assert str(network.layers[0].weight_format) == ("binary" if w_bits == 1 else "int4n")


def test_brevitas_domain_is_read():
    rng = np.random.default_rng(2)
    batch, sizes = 50, [8, 6, 4]
    model, in_params, act_names = mlp(rng, batch, sizes, in_q=(8, False, 0),
                                      acts=[(4, False, False, "ROUND")], w_bits=4,
                                      per_channel=False, batchnorm=False, bias=True)
    for node in model.graph.node:
        if node.domain == DOMAIN:
            node.domain = "onnx.brevitas"
    model.opset_import[1].domain = "onnx.brevitas"
    assert is_qonnx(model)
    codes = random_input_codes(rng, batch, sizes[0], 8, False)
    compare(model, in_params, act_names, codes, exact_logits=False)


def test_quantized_bias_gives_exact_logits():
    rng = np.random.default_rng(7)
    batch, sizes = 100, [16, 12, 10]
    model, in_params, act_names = mlp(rng, batch, sizes, in_q=(8, False, 0),
                                      acts=[(4, False, False, "ROUND")], w_bits=4,
                                      per_channel=True, batchnorm=True, bias=True,
                                      last_bias_quant=True)
    codes = random_input_codes(rng, batch, sizes[0], 8, False)
    compare(model, in_params, act_names, codes, exact_logits=True)


@pytest.mark.parametrize("in_bits, act, seed", [
    (4, (3, False, False, "ROUND"), 1),
    (4, (2, False, True, "HALF_UP"), 1),
    (8, (8, False, False, "ROUND"), 0),   # float64 batch normalization fails this one
    (8, (5, True, True, "FLOOR"), 3),
    (8, (4, False, False, "CEIL"), 4),
    (6, (12, False, False, "ROUND"), 5),
    (4, (1, False, False, "ROUND"), 6),
])
def test_threshold_stage_exhaustive_over_accumulator_range(in_bits, act, seed):
    """Every accumulator value of the layer's range, through qonnx's executor: the golden
    codes equal qonnx's on all of them (per-channel weight scales, negative gammas)."""
    rng = np.random.default_rng(seed)
    w_scale = 2.0 ** rng.integers(-8, -2, (1, 6))
    model, out = single_layer(rng, in_bits, act, w_scale=w_scale)
    network = from_qonnx(model)
    (layer,) = network.layers
    codes, x = every_input(in_bits)
    acc = codes[:, 0] + 2 ** in_bits * codes[:, 1]
    lo, hi = layer.acc_range
    assert np.array_equal(np.sort(acc), np.arange(lo.min(), hi.max() + 1))
    assert np.all(lo == lo.min()) and np.all(hi == hi.max())
    context = run_qonnx(model, x)
    assert np.array_equal(run_network(network, codes), qonnx_codes(context, model, out))
    assert layer.stage.descending.tolist() == [False, True] * 3


def scalar_ops(b, rng, y, channels):
    """What exporters put between layers: a per-channel Mul (negative factors included),
    Relu before the bias, a scalar Div, a Sub from a constant (falling), a Sub of one."""
    y = b.node("Mul", [y, b.const(rng.uniform(0.3, 3, channels) * [1, 1, -1, -1, 1, -1])])
    y = b.node("Relu", [y])
    y = b.node("Add", [b.const(rng.normal(0, 2, (1, channels))), y])
    y = b.node("Div", [y, b.const(np.float32(0.7))])
    y = b.node("Sub", [b.const(rng.normal(0, 1, channels)), y])
    return b.node("Sub", [y, b.const(np.float32(-3.0))])


def test_scalar_ops_between_layers_exhaustive():
    rng = np.random.default_rng(12)
    w_scale = 2.0 ** rng.integers(-8, -2, (1, 6))
    model, out = single_layer(rng, 6, (5, True, False, "ROUND"), w_scale=w_scale,
                              chain=scalar_ops)
    network = from_qonnx(model)
    (layer,) = network.layers
    codes, x = every_input(6)
    context = run_qonnx(model, x)
    assert np.array_equal(run_network(network, codes), qonnx_codes(context, model, out))
    # Mul's sign, then the Sub from a constant, which falls.
    assert layer.stage.descending.tolist() == [True, True, False, False, True, False]


def test_refuses_a_non_monotone_division():
    def reciprocal(b, rng, y, channels):
        return b.node("Div", [b.const(np.float32(1.0)), y])
    model, _ = single_layer(np.random.default_rng(0), 4, (4, False, False, "ROUND"),
                            w_scale=2.0 ** -4, chain=reciprocal)
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Div\) divides a constant by "
                                         r"the tensor, which is not monotone"):
        from_qonnx(model)


def test_search_thresholds_matches_brute_force():
    rng = np.random.default_rng(5)
    lo, hi = np.array([-40, -3, 0, 10]), np.array([50, 3, 0, 90])
    descending = np.array([False, True, False, True])
    cuts = [np.sort(rng.integers(low - 5, high + 6, 7)) for low, high in zip(lo, hi, strict=True)]

    def level_of(acc):
        levels = np.stack([np.searchsorted(cuts[c], acc[:, c], side="right")
                           for c in range(4)], axis=1)
        return np.where(descending, 7 - levels, levels)

    stage = search_thresholds(level_of, lo, hi, 8, descending)
    assert isinstance(stage, Thresholds)
    for c in range(4):
        acc = np.arange(lo[c], hi[c] + 1)
        counted = ((acc[:, None] <= stage.values[c]) if descending[c]
                   else (acc[:, None] >= stage.values[c])).sum(1)
        expected = level_of(np.repeat(acc[:, None], 4, axis=1))[:, c]
        assert np.array_equal(counted, expected)


def test_non_power_of_two_scales_disagree_only_at_float_ties():
    """With other scales qonnx's float32 matrix product is rounded: codes agree except where
    the value before the quantizer lies within float32 rounding of a rounding boundary."""
    rng = np.random.default_rng(11)
    batch, sizes = 300, [32, 16, 10]
    model, (scale, _), act_names = mlp(rng, batch, sizes, in_q=(8, False, 0),
                                       acts=[(4, False, False, "ROUND")], w_bits=8,
                                       per_channel=True, batchnorm=True, bias=True, po2=False)
    network = from_qonnx(model)
    codes = random_input_codes(rng, batch, sizes[0], 8, False)
    context = run_qonnx(model, (codes * np.float32(scale)).astype(np.float32))
    _, traces = run_network(network, codes, trace=True)
    ours, theirs = traces[0].outputs, qonnx_codes(context, model, act_names[0])
    (quant,) = [node for node in model.graph.node if node.output[0] == act_names[0]]
    act_scale = numpy_helper.to_array(
        next(init for init in model.graph.initializer if init.name == quant.input[1]))
    scaled = context[quant.input[0]] / act_scale
    near_tie = np.abs(scaled - np.floor(scaled) - 0.5) < 1e-4
    assert np.all((ours == theirs) | near_tie)


def test_is_qonnx_and_file_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    model, _, _ = mlp(rng, 4, [8, 6, 3], in_q=(8, False, 0), acts=[(4, False, False, "ROUND")],
                      w_bits=4, per_channel=False, batchnorm=False, bias=True)
    assert is_qonnx(model)
    path = tmp_path / "mlp.onnx"
    onnx.save(model, str(path))
    network = load_qonnx(path, "mlp")
    assert network.name == "mlp" and network.info["file"] == "mlp.onnx"
    assert network.info["frontend"] == "qonnx"


def error_model(change):
    rng = np.random.default_rng(0)
    model, _, _ = mlp(rng, 4, [8, 6, 3], in_q=(8, False, 0), acts=[(4, False, False, "ROUND")],
                      w_bits=4, per_channel=False, batchnorm=False, bias=True)
    change(model)
    return model


def test_refuses_unsupported_op():
    def to_sigmoid(model):
        (relu,) = [node for node in model.graph.node if node.op_type == "Relu"]
        relu.op_type = "Sigmoid"
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Sigmoid\) is not supported: "):
        from_qonnx(error_model(to_sigmoid))


def test_refuses_per_channel_activation_scale():
    def per_channel(model):
        (relu,) = [node for node in model.graph.node if node.op_type == "Relu"]
        (quant,) = [node for node in model.graph.node if relu.output[0] in node.input]
        (init,) = [init for init in model.graph.initializer if init.name == quant.input[1]]
        init.CopyFrom(numpy_helper.from_array(np.full(6, 0.1, np.float32), init.name))
    with pytest.raises(ValueError, match=r"^QONNX node '\w+' \(Quant\) quantizes an activation "
                                         r"per channel"):
        from_qonnx(error_model(per_channel))


def test_refuses_unquantized_weights_and_float_models():
    def float_weights(model):
        (matmul, _) = [node for node in model.graph.node if node.op_type == "MatMul"]
        quant = next(node for node in model.graph.node if node.output[0] == matmul.input[1])
        matmul.input[1] = quant.input[0]
    with pytest.raises(ValueError, match=r"\(MatMul\) input '\w+' is not quantized by a Quant "
                                         r"node"):
        from_qonnx(error_model(float_weights))
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "f",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    with pytest.raises(ValueError, match="has no QONNX Quant node"):
        from_qonnx(helper.make_model(graph))


def test_cli_imports_a_qonnx_model_and_refuses_quantization_options(tmp_path, capsys):
    from hwnn.cli import main
    from hwnn.ir import Network
    rng = np.random.default_rng(4)
    model, (scale, _), _ = mlp(rng, 50, [8, 6, 3], in_q=(8, False, 0),
                               acts=[(4, False, False, "ROUND")], w_bits=4, per_channel=True,
                               batchnorm=True, bias=True)
    onnx.save(model, str(tmp_path / "q.onnx"))
    codes = random_input_codes(rng, 50, 8, 8, False)
    x = (codes * scale).astype(np.float32)
    context = run_qonnx(model, x)
    np.savez(tmp_path / "test.npz", x=x, y=context[model.graph.output[0].name].argmax(1))
    out = tmp_path / "q.hwnn.npz"
    assert main(["quantize", str(tmp_path / "q.onnx"), "--test", str(tmp_path / "test.npz"),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "golden model 100.00%" in printed and out.exists(), printed
    assert [layer.stage_name for layer in Network.load(out).layers] == ["thresholds",
                                                                        "accumulator"]
    refused = tmp_path / "r.hwnn.npz"
    assert main(["quantize", str(tmp_path / "q.onnx"), "--calib", "c.npy", "--acts", "uint4",
                 "-o", str(refused)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a QONNX model, quantized already: drop --acts, --calib" \
        in err
    assert not refused.exists()


def cnn(rng, batch):
    """A QONNX CNN on (batch, 1, 8, 8) uint8 images: conv 3x3 pad 1 (1 -> 4, 4-bit weights
    per channel, bias, BN, Relu, uint4), max pool 2, depthwise conv 3x3 stride 2 with pads
    top 1, left 0, bottom 0, right 1 (BN with negative gammas, Relu, uint3), flatten (4 x 2 x
    2 in (C, H, W) order), Gemm to 5 outputs. Power-of-two input and weight scales. Returns
    the model, the input scale and the quantized tensors after each layer (the pool's too)."""
    b = Builder()
    in_scale = 2.0 ** -8
    x = b.quant("x", in_scale, 0, 8, False)

    def conv(x, weights_shape, pads, strides, group, batchnorm, act_bits):
        out = weights_shape[0]
        w_scale = pow2(rng, (out, 1, 1, 1), -6, -2)
        weights = rng.integers(-7, 8, weights_shape) * w_scale
        wq = b.quant(b.const(weights), w_scale, 0, 4, True, True)
        y = b.node("Conv", [x, wq, b.const(rng.normal(0, 0.5, out))], kernel_shape=[3, 3],
                   pads=pads, strides=strides, group=group)
        if batchnorm:
            gamma = rng.uniform(0.5, 2, out) * np.array([1, -1, 1, -1])[:out]
            y = b.node("BatchNormalization",
                       [y, b.const(gamma), b.const(rng.normal(0, 0.5, out)),
                        b.const(rng.normal(0, 0.5, out)), b.const(rng.uniform(0.5, 2, out))])
        y = b.node("Relu", [y])
        return b.quant(y, pow2(rng, None, -4, -1), 0, act_bits, False)

    first = conv(x, (4, 1, 3, 3), [1, 1, 1, 1], [1, 1], 1, True, 4)
    pooled = b.node("MaxPool", [first], kernel_shape=[2, 2], strides=[2, 2])
    second = conv(pooled, (4, 1, 3, 3), [1, 0, 0, 1], [2, 2], 4, True, 3)
    flat = b.node("Flatten", [second], axis=1)
    w_scale = 2.0 ** -5
    weights = rng.integers(-7, 8, (5, 16)) * w_scale
    y = b.node("Gemm", [flat, b.quant(b.const(weights), w_scale, 0, 4, True, True),
                        b.const(rng.normal(0, 1, 5))], transB=1)
    graph = helper.make_graph(
        b.nodes, "qcnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 1, 8, 8])],
        [helper.make_tensor_value_info(y, TensorProto.FLOAT, [batch, 5])], b.inits)
    model = helper.make_model(graph, producer_name="hwnn-tests", opset_imports=[
        helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])
    model.ir_version = 8
    return model, in_scale, [first, pooled, second]


def test_cnn_codes_equal_qonnx():
    rng = np.random.default_rng(21)
    batch = 100
    model, in_scale, quantized = cnn(rng, batch)
    network = from_qonnx(model)
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert network.info["input_layout"] == "chw"
    codes = rng.integers(0, 256, (batch, 1, 8, 8))
    context = run_qonnx(model, (codes * np.float32(in_scale)).astype(np.float32))
    outputs, traces = run_network(network, codes.transpose(0, 2, 3, 1), trace=True)
    theirs = [qonnx_codes(context, model, quantized[0]),
              qonnx_codes(context, model, quantized[1], quant=quantized[0]),
              qonnx_codes(context, model, quantized[2])]
    for trace, codes_nchw in zip(traces[:3], theirs, strict=True):
        assert np.array_equal(trace.outputs, codes_nchw.transpose(0, 2, 3, 1)), trace.name
    assert network.layers[2].stage.descending.tolist() == [False, True, False, True]
    logits = context[model.graph.output[0].name]
    golden = network.dequantize_output(outputs)
    assert np.all(np.abs(golden - logits) <= network.output.scale)


def cnn_files(tmp_path, batch=40):
    rng = np.random.default_rng(22)
    model, in_scale, _ = cnn(rng, 1)
    onnx.save(model, str(tmp_path / "cnn.onnx"))
    x = (rng.integers(0, 256, (batch, 1, 8, 8)) * in_scale).astype(np.float32)
    np.savez(tmp_path / "test.npz", x=x, y=rng.integers(0, 5, batch))
    return [str(tmp_path / "cnn.onnx"), "--test", str(tmp_path / "test.npz"), "--check"]


def test_cli_check_compares_every_tensor_with_qonnx(tmp_path, capsys):
    from hwnn.cli import main
    arguments = cnn_files(tmp_path)
    assert main(["quantize", *arguments, "-o", str(tmp_path / "c.hwnn.npz")]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if " agree (" in line]
    assert [row.split()[0] for row in rows] == ["input", "conv0", "pool1", "conv2", "dense3"]
    assert "2560/2560 agree" in rows[0]
    assert all("(100.00%)" in row and "first:" not in row for row in rows)
    assert "classes agree on 100.00% of the inputs" in out and "all agree" in out


def test_cli_check_reports_the_first_disagreement(tmp_path, capsys, monkeypatch):
    import hwnn.quant.qonnx_check as qonnx_check
    from hwnn.cli import main

    def tampered(network, codes, trace):
        outputs, traces = run_network(network, codes, trace=trace)
        traces[2].outputs[3, 1, 0, 2] += 1    # conv2, input 3, pixel (1, 0), channel 2
        return outputs, traces

    monkeypatch.setattr(qonnx_check, "run_network", tampered)
    arguments = cnn_files(tmp_path)
    output = tmp_path / "c.hwnn.npz"
    assert main(["quantize", *arguments, "-o", str(output)]) == 1
    out = capsys.readouterr().out
    (row,) = [line for line in out.splitlines() if line.startswith("  conv2 ")]
    assert "639/640 agree" in row and "first: input 3, element 10, channel 2: hwnn" in row
    assert "DISAGREEMENT" in out
    assert f"not writing {output}: the imported network disagrees" in out
    assert not output.exists()


def test_cli_check_refuses_inputs_of_another_shape(tmp_path, capsys):
    from hwnn.cli import main
    arguments = cnn_files(tmp_path)
    np.savez(tmp_path / "test.npz", x=np.zeros((3, 64), np.float32), y=np.zeros(3, int))
    output = tmp_path / "c.hwnn.npz"
    assert main(["quantize", *arguments, "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "takes inputs of shape (1, 8, 8), not (64,)" in err
    assert not output.exists()


@pytest.mark.parametrize("scales", ["tensor", "channel"])
def test_brevitas_exports_agree_with_qonnx(scales):
    """Real Brevitas exports (tests/quant/data/make_brevitas_models.py): float scales, Int32
    biases, a batch normalization with negative gammas. Every code agrees; a class differs
    only where golden outputs tie exactly (then qonnx's float32 rounding picked one)."""
    from pathlib import Path

    from hwnn.quant.qonnx_check import check_qonnx
    model = onnx.load(str(Path(__file__).parent / "data" / f"brevitas_mlp_{scales}.onnx"))
    x = np.random.default_rng(0).normal(0, 1, (300, 64)).astype(np.float32)
    network, checks, predictions = check_qonnx(model, x)
    assert [layer.stage_name for layer in network.layers] == ["thresholds", "thresholds",
                                                              "accumulator"]
    assert [check.first for check in checks] == [None] * 4
    assert [check.total for check in checks] == [300 * 64, 300 * 32, 300 * 16, 300 * 10]
    same = predictions["qonnx"] == predictions["golden"]
    assert np.all(same | predictions["tied"])
    assert (~same).sum() == {"tensor": 3, "channel": 0}[scales]


def test_brevitas_cnn_export_agrees_with_qonnx():
    """A real Brevitas CNN export: conv + BatchNorm2d (negative gammas) + QuantReLU + max pool,
    depthwise conv, flatten (a Reshape), linear; float per-channel scales."""
    from pathlib import Path

    from hwnn.quant.qonnx_check import check_qonnx
    model = onnx.load(str(Path(__file__).parent / "data" / "brevitas_cnn.onnx"))
    x = np.random.default_rng(0).normal(0, 1, (100, 1, 8, 8)).astype(np.float32)
    network, checks, predictions = check_qonnx(model, x)
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool2d", "conv2d", "dense"]
    assert network.layers[2].groups == 8 and network.layers[0].stage.descending.any()
    assert [check.first for check in checks] == [None] * 5
    assert np.all((predictions["qonnx"] == predictions["golden"]) | predictions["tied"])
