"""The ONNX frontend on models built with ``onnx.helper`` as ``torch.onnx.export`` lays them
out: the same CNN as the float ``.npz`` gives the same float network and the same IR, the ops
it imports, what it refuses, and ``hwnn quantize model.onnx``."""

import re

import numpy as np
import pytest
from conftest import reference_conv, reference_forward

from hwnn.cli import main
from hwnn.quant import QuantOptions, load_model, load_npz, quantize_network

onnx = pytest.importorskip("onnx")
helper = onnx.helper


def _save(model, path):
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("flatten, dense", [("Flatten", "Gemm"), ("Reshape", "MatMul")])
def test_onnx_cnn_is_the_npz_cnn(tmp_path, cnn_arrays, cnn_onnx_model, digits, flatten, dense):
    network = load_model(_save(cnn_onnx_model(cnn_arrays, flatten=flatten, dense=dense),
                               tmp_path / "cnn.onnx"))
    assert network.info == {"frontend": "onnx", "producer": "hwnn-tests", "file": "cnn.onnx"}
    assert network.input_layout == "chw" and network.input_shape == (8, 8, 1)
    images = digits[0][:100]
    np.testing.assert_allclose(network.forward(images), reference_forward(cnn_arrays, images),
                               rtol=1e-9, atol=1e-9)
    # ONNX holds epsilon as a float32.
    np.savez(tmp_path / "cnn.npz", **cnn_arrays, bn_eps_0=np.float64(np.float32(1e-5)))
    from_npz = load_npz(tmp_path / "cnn.npz")
    for options in (QuantOptions(per_channel=True), QuantOptions(weights="int4", acts="uint4")):
        ours = quantize_network(network, images, options)
        theirs = quantize_network(from_npz, images, options)
        for a, b in zip(ours.layers, theirs.layers, strict=True):
            (header_a, arrays_a), (header_b, arrays_b) = (a.header_and_arrays(),
                                                          b.header_and_arrays())
            assert header_a == header_b and arrays_a.keys() == arrays_b.keys()
            for key in arrays_a:
                assert np.array_equal(arrays_a[key], arrays_b[key]), (a.name, key)


def test_depthwise_strided_padded_conv(tmp_path, onnx_model):
    rng = np.random.default_rng(6)
    weight = rng.normal(size=(4, 1, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="dw", group=4,
                              kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 2, 1]),
             helper.make_node("Identity", ["c"], ["y"])]
    # pads are (top, left, bottom, right): output (7 + 1 + 2 - 3) // 2 + 1 = 4 rows,
    # (6 + 0 + 1 - 3) // 2 + 1 = 3 columns.
    model = onnx_model(nodes, {"w": weight, "b": bias}, [4, 7, 6], 4)
    network = load_model(_save(model, tmp_path / "dw.onnx"))
    (layer,) = network.layers
    assert (layer.groups, layer.stride, layer.padding) == (4, (2, 2), (1, 2, 0, 1))
    x = rng.normal(size=(3, 4, 7, 6))
    expected = reference_conv(x, weight.astype(np.float64), bias.astype(np.float64), (2, 2),
                              (1, 2, 0, 1), 4).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(network.forward(x), expected, rtol=1e-9, atol=1e-9)


def _dense_nodes(*extra):
    return [helper.make_node("Gemm", ["x", "w"], ["g"], name="fc", transB=1), *extra]


DENSE = {"w": np.ones((3, 4), dtype=np.float32)}


@pytest.mark.parametrize("nodes, initializers, message", [
    (_dense_nodes(helper.make_node("Sigmoid", ["g"], ["y"], name="act")), DENSE,
     (r"ONNX node 'act' \(Sigmoid\) is not supported: hwnn imports Conv, Gemm, MatMul, Add, "
     r"BatchNormalization, Relu, MaxPool, Flatten, Reshape, Identity, Dropout, Constant$")),
    (_dense_nodes(helper.make_node("Quant", ["g", "s", "z", "b"], ["y"], name="q",
                                   domain="qonnx.custom_op.general")), DENSE,
     r"ONNX node 'q' \(Quant\) of domain 'qonnx\.custom_op\.general' is not supported"),
    (_dense_nodes(helper.make_node("Relu", ["x"], ["y"], name="r")), DENSE,
     (r"ONNX node 'r' \(Relu\) does not take the output of the node before it \('g'\): hwnn "
     r"imports chains of layers$")),
    (_dense_nodes(helper.make_node("Relu", ["g"], ["r"]), helper.make_node("Relu", ["r"], ["y"])),
     DENSE, (r"ONNX node #2 \(Relu\): must follow a Conv, Gemm or MatMul node without an "
            r"activation$")),
    (_dense_nodes(helper.make_node("Relu", ["g"], ["r"]),
                  helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["y"],
                                   name="bn")),
     DENSE | dict.fromkeys("sbmv", np.ones(3, dtype=np.float32)),
     (r"ONNX node 'bn' \(BatchNormalization\): must directly follow a Conv, Gemm or MatMul "
     r"node$")),
    (_dense_nodes(helper.make_node("Add", ["g", "c"], ["y"], name="add")),
     DENSE | {"c": np.ones(3, dtype=np.float32)},
     r"ONNX node 'add' \(Add\): adds a bias only right after a MatMul node$"),
    ([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transA=1)], DENSE,
     r"ONNX node 'fc' \(Gemm\): transA must be 0$"),
    ([helper.make_node("Gemm", ["x", "w2"], ["y"], name="fc", transB=1)],
     {"w2": np.ones((3, 5), dtype=np.float32)},
     r"ONNX node 'fc' \(Gemm\): weights of shape \(3, 5\) do not take 4 inputs$"),
    ([helper.make_node("Gemm", ["x", "v"], ["y"], name="fc")], {},
     (r"ONNX node 'fc' \(Gemm\) has weights 'v', which is not a constant \(an initializer "
     r"or a Constant node\)$")),
    ([helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[1, 1])],
     {"w": np.ones((3, 4, 1, 1), dtype=np.float32)},
     r"ONNX node 'c' \(Conv\): takes a vector of 4, not an image$"),
    ([helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1, foo=1)], DENSE,
     r"ONNX node 'fc' \(Gemm\) has attribute 'foo', which hwnn does not import$"),
])
def test_onnx_refusals(tmp_path, onnx_model, nodes, initializers, message):
    path = _save(onnx_model(nodes, initializers, [4], 3), tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}': {message}"):
        load_model(path)


@pytest.mark.parametrize("node, message", [
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3],
                      dilations=[2, 2]), r"'c' \(Conv\): dilations must be 1, not \[2, 2\]$"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3],
                      auto_pad="SAME_UPPER"),
     r"'c' \(Conv\): auto_pad must be NOTSET or VALID, not 'SAME_UPPER'$"),
    (helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3], group=2),
     r"'c' \(Conv\): groups must be 1, or the 3 channels of a depthwise convolution"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], pads=[1, 1, 1, 1]),
     r"'p' \(MaxPool\): must not pad \(pads \[1, 1, 1, 1\]\)$"),
    (helper.make_node("MaxPool", ["x"], ["y"], name="p", kernel_shape=[2, 2], ceil_mode=1),
     r"'p' \(MaxPool\): ceil_mode must be 0$"),
    (helper.make_node("Flatten", ["x"], ["y"], name="f", axis=2),
     r"'f' \(Flatten\): axis must be 1, not 2$"),
])
def test_onnx_image_refusals(tmp_path, onnx_model, node, message):
    initializers = {"w": np.ones((3, 4, 3, 3), dtype=np.float32)}
    path = _save(onnx_model([node], initializers, [4, 6, 6], 3), tmp_path / "bad.onnx")
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}': ONNX node {message}"):
        load_model(path)


def test_onnx_file_errors(tmp_path, onnx_model):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x01\x12\xff\xff")
    with pytest.raises(ValueError, match=r"^'.*garbage\.onnx' is not a readable ONNX model: "):
        load_model(garbage)
    model = onnx_model(_dense_nodes(), DENSE, [4], 3)
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_param = "F"
    path = _save(model, tmp_path / "unknown.onnx")
    with pytest.raises(ValueError, match=r"graph input 'x' must have shape \(N, F\) or "
                                         r"\(N, C, H, W\) with known sizes, not \(\?, \?\)$"):
        load_model(path)


def test_quantize_cli_on_an_onnx_cnn(tmp_path, capsys, cnn_arrays, cnn_onnx_model, digits):
    images, labels = digits
    model = _save(cnn_onnx_model(cnn_arrays), tmp_path / "cnn.onnx")
    np.save(tmp_path / "calib.npy", images[:300])
    np.savez(tmp_path / "test.npz", x=images[1300:], y=labels[1300:])
    output = tmp_path / "cnn.hwnn.npz"
    status = main(["quantize", str(model), "--calib", str(tmp_path / "calib.npy"),
                   "--per-channel", "--test", str(tmp_path / "test.npz"), "-o", str(output)])
    out = capsys.readouterr().out
    assert status == 0 and output.is_file()
    rows = [line.split() for line in out.splitlines()[:6]]
    assert rows[0][:3] == ["layer", "shape", "window"]
    assert rows[1][:5] == ["conv0", "8x8x1->8x8x8", "3x3", "s1", "p1"]
    assert rows[2][:4] == ["pool1", "8x8x8->4x4x8", "2x2", "s2"]
    assert rows[3][:4] == ["conv2", "4x4x8->2x2x12", "3x3", "s1"]
    assert rows[4][:3] == ["dense3", "48->10", "int8n"]
    assert rows[5][0] == "total"
    accuracy = re.search(r"accuracy on 497 test inputs: float ([0-9.]+)%, golden model "
                         r"([0-9.]+)%", out)
    float_accuracy, golden_accuracy = map(float, accuracy.groups())
    expected = np.mean(np.argmax(reference_forward(cnn_arrays, images[1300:]), axis=1)
                       == labels[1300:])
    assert float_accuracy == pytest.approx(100 * expected, abs=0.01)
    assert float_accuracy > 75 and abs(golden_accuracy - float_accuracy) < 2
