"""The CNN shipped with the examples (``examples/digits_cnn.onnx``, written by
``examples/train_digits_cnn.py``): its float accuracy on the demo's test split, recomputed
here by a NumPy forward pass of the ONNX graph, is the one the script printed, hwnn reads it
as the same classifier, int8 quantization keeps its accuracy, and the copy ``hwnn demo``
ships as ``.npz`` (written by the same script) holds the same weights and classifies the same
way."""

from pathlib import Path

import numpy as np
import pytest
from conftest import reference_conv, reference_pool
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from hwnn.flow.demo import DIGITS_CNN
from hwnn.flow.report import golden_predictions
from hwnn.quant import QuantOptions, load_model, load_npz, quantize_network

onnx = pytest.importorskip("onnx", reason="reading the ONNX file needs hwnn[onnx]")

MODEL = Path(__file__).parents[2] / "examples" / "digits_cnn.onnx"
#: Test digits the script reported right: "float test accuracy 98.15% on 540 digits".
CORRECT, TESTED = 530, 540


@pytest.fixture(scope="module")
def split():
    """The demo's split: 70% train / 30% test, stratified, random_state 0; images
    (N, 1, 8, 8) in [0, 1]."""
    images, labels = load_digits(return_X_y=True)
    return train_test_split(images.reshape(-1, 1, 8, 8) / 16.0, labels, test_size=0.3,
                            random_state=0, stratify=labels)


def _numpy_forward(model, x):
    """The ONNX graph (a chain of Conv, Relu, MaxPool, Flatten, Gemm) run node by node with
    conftest's channels-first references."""
    from onnx import helper, numpy_helper
    weights = {tensor.name: numpy_helper.to_array(tensor).astype(np.float64)
               for tensor in model.graph.initializer}
    for node in model.graph.node:
        attributes = {attribute.name: helper.get_attribute_value(attribute)
                      for attribute in node.attribute}
        if node.op_type == "Conv":
            top, left, bottom, right = attributes["pads"]
            x = reference_conv(x, weights[node.input[1]], weights[node.input[2]],
                               tuple(attributes["strides"]), (top, bottom, left, right))
        elif node.op_type == "Relu":
            x = np.maximum(x, 0)
        elif node.op_type == "MaxPool":
            assert attributes["kernel_shape"] == attributes["strides"] == [2, 2]
            x = reference_pool(x, 2)
        elif node.op_type == "Flatten":
            x = x.reshape(len(x), -1)
        else:
            assert node.op_type == "Gemm" and attributes == {"transB": 1}
            x = x @ weights[node.input[1]].T + weights[node.input[2]]
    return x


def test_the_shipped_cnn_classifies_as_its_script_said(split):
    _, x_test, _, y_test = split
    assert len(y_test) == TESTED
    model = onnx.load(str(MODEL))
    assert [node.op_type for node in model.graph.node] == [
        "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm"]
    predictions = _numpy_forward(model, x_test).argmax(axis=1)
    assert np.sum(predictions == y_test) == CORRECT
    network = load_model(MODEL)
    assert network.input_layout == "chw" and network.input_shape == (8, 8, 1)
    assert np.array_equal(network.forward(x_test).argmax(axis=1), predictions)


def test_int8_quantization_keeps_the_accuracy(split):
    x_train, x_test, _, y_test = split
    network = load_model(MODEL)
    quantized = quantize_network(network, x_train, QuantOptions(weights="int8", acts="uint8"))
    golden = golden_predictions(quantized, network.check_inputs(x_test))
    assert abs(np.sum(golden == y_test) - CORRECT) <= 0.015 * TESTED


def test_the_demo_ships_the_same_cnn_as_npz(split):
    _, x_test, _, _ = split
    from onnx import numpy_helper
    model = onnx.load(str(MODEL))
    initializers = [numpy_helper.to_array(tensor) for tensor in model.graph.initializer]
    with np.load(DIGITS_CNN) as arrays:
        # ONNX's (weight, bias) pairs in layer order; the .npz's float32 values widened.
        shipped = [arrays[f"{kind}_{index}"] for index in range(3) for kind in ("weight", "bias")]
    assert len(initializers) == len(shipped)
    for onnx_array, npz_array in zip(initializers, shipped, strict=True):
        assert onnx_array.dtype == np.float32
        assert np.array_equal(npz_array, onnx_array.astype(np.float64))
    logits = load_npz(DIGITS_CNN).forward(x_test)
    assert np.allclose(logits, _numpy_forward(model, x_test), rtol=0, atol=1e-9)
    assert np.array_equal(logits.argmax(axis=1), load_model(MODEL).forward(x_test).argmax(axis=1))
