"""The ONNX writer: what it writes computes what the float network computes, by onnx's own
reference executor and by the channels-first references of conftest, and the ONNX frontend
reads it back as the same network."""

import re

import numpy as np
import pytest
from conftest import reference_forward

from hwnn.quant import BatchNorm, FloatConv2d, FloatDense, FloatMaxPool2d, FloatNetwork, load_npz
from hwnn.quant.onnx_export import save_onnx, to_onnx
from hwnn.quant.onnx_frontend import from_onnx

onnx = pytest.importorskip("onnx")


def _run(model, x):
    """Outputs of ``model`` for inputs ``x`` by onnx's reference executor (float32)."""
    from onnx.reference import ReferenceEvaluator
    return ReferenceEvaluator(model).run(None, {"x": x.astype(np.float32)})[0]


def _same_network(read, written):
    """``read`` is the network ``written``, its real parameters rounded to float32."""
    assert read.input_layout == written.input_layout
    assert len(read.layers) == len(written.layers)
    for ours, theirs in zip(read.layers, written.layers, strict=True):
        assert type(ours) is type(theirs)
        for name in ("weight", "bias", "kernel", "stride", "padding", "groups", "activation"):
            if hasattr(ours, name):
                value = np.asarray(getattr(theirs, name))
                if value.dtype.kind == "f":
                    value = value.astype(np.float32).astype(np.float64)
                assert np.array_equal(getattr(ours, name), value), name


def test_the_cnn_written_computes_the_reference(tmp_path, cnn_arrays, digits):
    np.savez(tmp_path / "cnn.npz", **cnn_arrays)
    network = load_npz(tmp_path / "cnn.npz")
    path = save_onnx(network, tmp_path / "cnn.onnx", name="cnn", producer="tests")
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert [node.op_type for node in model.graph.node] == [
        "Conv", "BatchNormalization", "Relu", "MaxPool", "Conv", "Relu", "Flatten", "Gemm"]
    assert model.producer_name == "tests" and model.graph.output[0].name == "y"
    images = digits[0][:50]
    # float32 throughout in the executor: a float32 tolerance.
    np.testing.assert_allclose(_run(model, images), reference_forward(cnn_arrays, images),
                               rtol=1e-4, atol=1e-4)
    back = from_onnx(model)
    _same_network(back, network)
    np.testing.assert_allclose(back.forward(images), network.forward(images), rtol=1e-6,
                               atol=1e-6)


def test_depthwise_strided_conv_pool_and_mlp_round_trip():
    rng = np.random.default_rng(2)
    conv = FloatConv2d(rng.normal(size=(3, 3, 2, 1)), rng.normal(size=3), "relu",
                       in_size=(7, 6), stride=(2, 1), padding=(1, 0, 2, 1), groups=3)
    pool = FloatMaxPool2d(conv.output_shape[:2], 3, (2, 2), (1, 2))
    bn = BatchNorm(rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5),
                   rng.uniform(0.5, 2, 5))
    dense = FloatDense(rng.normal(size=(5, int(np.prod(pool.output_shape)))),
                       rng.normal(size=5), "relu", bn)
    image_network = FloatNetwork((conv, pool, dense, FloatDense(rng.normal(size=(2, 5)),
                                                                np.zeros(2))), input_layout="chw")
    mlp = FloatNetwork((FloatDense(rng.normal(size=(4, 6)), rng.normal(size=4), "relu"),
                        FloatDense(rng.normal(size=(3, 4)), rng.normal(size=3))))
    for network, x in ((image_network, rng.normal(size=(4, 3, 7, 6))),
                       (mlp, rng.normal(size=(4, 6)))):
        model = to_onnx(network)
        onnx.checker.check_model(model, full_check=True)
        np.testing.assert_allclose(_run(model, x), network.forward(x), rtol=1e-4, atol=1e-4)
        _same_network(from_onnx(model), network)


def test_onnx_writer_refusals():
    tanh = FloatNetwork((FloatDense(np.ones((2, 3)), np.zeros(2), "tanh"),))
    with pytest.raises(ValueError, match=r"^Layer 0 has activation 'tanh': the ONNX writer "
                                         r"writes identity and relu only$"):
        to_onnx(tanh)
    with pytest.raises(TypeError, match=re.escape("to_onnx takes a FloatNetwork, not 3")):
        to_onnx(3)
