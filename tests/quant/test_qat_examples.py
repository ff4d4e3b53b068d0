"""The quantization-aware trained digits networks of ``examples/qat/`` (Brevitas exports made
by ``examples/train_qat_digits.py``; neither torch nor Brevitas is needed here): each imports,
every quantized code equals qonnx's executor on the demo's 540 test images, the accuracy is
the one training recorded, and the binary MLP runs bit-exact on its RTL."""

import json
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("qonnx")

from hwnn.flow.demo import digits_split  # noqa: E402
from hwnn.quant import load_qonnx  # noqa: E402
from hwnn.quant.qonnx_check import check_qonnx  # noqa: E402

QAT = Path(__file__).parents[2] / "examples" / "qat"
RECORDED = json.loads((QAT / "qat_accuracy.json").read_text())

#: Per network: its input shape and, per layer, (kind, weight format, output format).
NETWORKS = {
    "binary_mlp": ((64,), [("dense", "binary", "binary"), ("dense", "binary", "binary"),
                           ("dense", "binary", "int8")]),
    "ternary_mlp": ((64,), [("dense", "ternary", "uint2"), ("dense", "ternary", "uint2"),
                            ("dense", "ternary", "int8")]),
    "int4_cnn": ((1, 8, 8), [("conv2d", "int4n", "uint4"), ("maxpool2d", None, "uint4"),
                             ("conv2d", "int4n", "uint4"), ("maxpool2d", None, "uint4"),
                             ("dense", "int4n", "int13")]),
}


@pytest.fixture(scope="module")
def test_set():
    _, x_test, _, y_test = digits_split(0)
    return x_test.astype(np.float32), y_test


@pytest.mark.parametrize("name", list(NETWORKS))
def test_qat_example_agrees_with_qonnx_and_training(name, test_set):
    x, y = test_set
    shape, layers = NETWORKS[name]
    network, checks, predictions = check_qonnx(onnx.load(str(QAT / f"{name}.onnx")),
                                               x.reshape(-1, *shape))
    weights = [getattr(layer, "weight_format", None) for layer in network.layers]
    assert [(layer.kind, weight and str(weight), str(layer.output.format))
            for layer, weight in zip(network.layers, weights, strict=True)] == layers
    assert [check.first for check in checks] == [None] * (len(layers) + 1)
    assert np.all((predictions["qonnx"] == predictions["golden"]) | predictions["tied"])
    golden = float((predictions["golden"] == y).mean())
    # PyTorch sums in another order than qonnx's float32 arithmetic: a value within float
    # rounding of a quantizer boundary may round the other way; allow one image of 540.
    assert abs(golden - RECORDED[name]) <= 1 / len(y), (golden, RECORDED[name])
    # Far above post-training quantization (binary weights and activations: 33%).
    assert golden > 0.96


def test_binary_mlp_runs_bit_exact_on_its_rtl(tmp_path, test_set):
    from hwnn.flow.generate import generate, load_design
    from hwnn.sim.simulate import simulate

    x, _ = test_set
    network = load_qonnx(QAT / "binary_mlp.onnx", "binary_mlp")
    design = load_design(generate(network, tmp_path / "binary_mlp", fold="auto",
                                  max_lanes=128))
    codes = network.quantize_input(x[:24])
    result = simulate(design, codes, simulator="amaranth")
    assert result.passed, [mismatch.describe() for mismatch in result.mismatches[:3]]
    assert len(result.outputs) == 24
    assert result.cycles_per_inference == result.expected_cycles == 128


def test_the_demo_ships_the_imported_binary_mlp(test_set):
    from hwnn.flow.demo import DIGITS_QAT_BINARY
    from hwnn.ir import Network
    from hwnn.sim.golden import run_network

    shipped = Network.load(DIGITS_QAT_BINARY)
    imported = load_qonnx(QAT / "binary_mlp.onnx")
    for ours, theirs in zip(shipped.layers, imported.layers, strict=True):
        assert np.array_equal(ours.weights, theirs.weights)
        assert ours.output == theirs.output and ours.input == theirs.input
    codes = imported.quantize_input(test_set[0])
    assert np.array_equal(shipped.quantize_input(test_set[0]), codes)
    assert np.array_equal(run_network(shipped, codes), run_network(imported, codes))
