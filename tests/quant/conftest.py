"""A small float CNN for the convolution tests, in PyTorch's layout (weights (out, in / groups,
kh, kw), images (N, C, H, W), flattening (C, H, W)), with a channels-first reference forward
pass written here, independent of hwnn, and writers of the same network as a float ``.npz``
and as an ONNX file built with ``onnx.helper`` (node by node, independently of
hwnn's ONNX writer; :func:`hwnn.quant.onnx_export.onnx_model` assembles the graph).

The network: conv 3x3 (1 -> 8 channels, padding 1) + BatchNorm + ReLU + max pool 2, conv 3x3
(8 -> 12) + ReLU, flatten (12 x 2 x 2 = 48), dense 48 -> 10. The convolutions are random; the
dense layer is fitted (ridge regression) to sklearn's digits on the features before it, so
that the network classifies (about 90% on held-out digits).
"""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from hwnn.quant import onnx_export


def reference_conv(x, weight, bias, stride=(1, 1), padding=(0, 0, 0, 0), groups=1):
    """PyTorch's conv2d, output pixel by output pixel: ``x`` (N, C, H, W), ``weight``
    (out, in / groups, kh, kw), ``padding`` (top, bottom, left, right)."""
    top, bottom, left, right = padding
    padded = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    kh, kw = weight.shape[2:]
    out_h = (padded.shape[2] - kh) // stride[0] + 1
    out_w = (padded.shape[3] - kw) // stride[1] + 1
    out = np.zeros((len(x), weight.shape[0], out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            window = padded[:, :, oy * stride[0]:oy * stride[0] + kh,
                            ox * stride[1]:ox * stride[1] + kw]
            if groups == 1:
                out[:, :, oy, ox] = np.einsum("nckl,ockl->no", window, weight)
            else:
                out[:, :, oy, ox] = np.einsum("nckl,ckl->nc", window, weight[:, 0])
    return out + bias[None, :, None, None]


def reference_pool(x, kernel):
    """Max pool with stride = kernel of ``x`` (N, C, H, W), pixel by pixel."""
    out_h, out_w = x.shape[2] // kernel, x.shape[3] // kernel
    out = np.empty((*x.shape[:2], out_h, out_w))
    for oy in range(out_h):
        for ox in range(out_w):
            out[:, :, oy, ox] = x[:, :, oy * kernel:(oy + 1) * kernel,
                                  ox * kernel:(ox + 1) * kernel].max(axis=(2, 3))
    return out


def reference_features(a, x):
    """The CNN of arrays ``a`` up to its flattened (C, H, W) features, for images ``x``
    (N, 1, 8, 8)."""
    z = reference_conv(x, a["weight_0"], a["bias_0"], padding=(1, 1, 1, 1))
    gain = a["bn_gamma_0"] / np.sqrt(a["bn_var_0"] + 1e-5)
    z = (z - a["bn_mean_0"][None, :, None, None]) * gain[None, :, None, None] \
        + a["bn_beta_0"][None, :, None, None]
    z = reference_pool(np.maximum(z, 0), 2)
    z = np.maximum(reference_conv(z, a["weight_1"], a["bias_1"]), 0)
    return z.reshape(len(x), -1)


def reference_forward(a, x):
    return reference_features(a, x) @ a["weight_2"].T + a["bias_2"]


@pytest.fixture(scope="session")
def digits():
    """sklearn's digits as (N, 1, 8, 8) images in [0, 1] and labels."""
    data = load_digits()
    return data.images[:, None] / 16.0, data.target


@pytest.fixture(scope="session")
def cnn_arrays(digits):
    """The float CNN as the arrays of a float ``.npz`` (see the module docstring), float32
    values in float64 arrays."""
    rng = np.random.default_rng(0)
    a = {"input_shape": np.array([1, 8, 8]),
         "weight_0": rng.normal(0, 0.5, (8, 1, 3, 3)), "bias_0": rng.normal(0, 0.1, 8),
         "bn_gamma_0": rng.uniform(0.5, 1.5, 8) * rng.choice([-1, 1], 8),
         "bn_beta_0": rng.normal(0, 0.2, 8), "bn_mean_0": rng.normal(0, 0.2, 8),
         "bn_var_0": rng.uniform(0.5, 2.0, 8), "padding_0": np.array(1),
         "activation_0": np.array("relu"), "pool_0": np.array(2),
         "weight_1": rng.normal(0, 0.25, (12, 8, 3, 3)), "bias_1": rng.normal(0, 0.1, 12),
         "activation_1": np.array("relu")}
    images, labels = digits
    features = reference_features(a, images[:1200])
    features = np.hstack([features, np.ones((len(features), 1))])
    targets = np.eye(10)[labels[:1200]]
    solution = np.linalg.solve(features.T @ features + 1e-2 * np.eye(features.shape[1]),
                               features.T @ targets)
    a["weight_2"], a["bias_2"] = solution[:-1].T.copy(), solution[-1].copy()
    # Float32 values, as an ONNX file holds them, so that both files hold the same numbers.
    return {key: value.astype(np.float32).astype(np.float64) if value.dtype.kind == "f"
            else value for key, value in a.items()}


def _onnx_model(nodes, initializers, input_shape, output_size):
    return onnx_export.onnx_model(nodes, initializers, input_shape, (output_size,), name="cnn",
                                  producer="hwnn-tests")


def cnn_onnx(a, *, flatten="Flatten", dense="Gemm"):
    """The CNN of arrays ``a`` as an ONNX model, as ``torch.onnx.export`` lays it out
    (float32 initializers; ``flatten`` ``"Flatten"`` or ``"Reshape"``, ``dense`` ``"Gemm"``
    or ``"MatMul"`` + ``Add``)."""
    from onnx import helper
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="conv0", kernel_shape=[3, 3],
                         pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["c0", "gamma", "beta", "mean", "var"],
                         ["n0"], name="bn0", epsilon=1e-5),
        helper.make_node("Relu", ["n0"], ["r0"], name="relu0"),
        helper.make_node("MaxPool", ["r0"], ["p0"], name="pool0", kernel_shape=[2, 2],
                         strides=[2, 2]),
        helper.make_node("Conv", ["p0", "w1", "b1"], ["c1"], name="conv1", kernel_shape=[3, 3]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Dropout", ["r1"], ["d1"], name="dropout"),
    ]
    initializers = {"w0": a["weight_0"], "b0": a["bias_0"], "gamma": a["bn_gamma_0"],
                    "beta": a["bn_beta_0"], "mean": a["bn_mean_0"], "var": a["bn_var_0"],
                    "w1": a["weight_1"], "b1": a["bias_1"]}
    if flatten == "Flatten":
        nodes.append(helper.make_node("Flatten", ["d1"], ["f"], name="flatten", axis=1))
    else:
        nodes.append(helper.make_node("Reshape", ["d1", "shape"], ["f"], name="view"))
        initializers["shape"] = np.array([-1, 48], dtype=np.int64)
    if dense == "Gemm":
        nodes.append(helper.make_node("Gemm", ["f", "w2", "b2"], ["y"], name="fc", transB=1))
        initializers |= {"w2": a["weight_2"], "b2": a["bias_2"]}
    else:
        nodes += [helper.make_node("MatMul", ["f", "w2t"], ["m"], name="fc"),
                  helper.make_node("Add", ["m", "b2"], ["y"], name="fc_bias")]
        initializers |= {"w2t": a["weight_2"].T, "b2": a["bias_2"]}
    return _onnx_model(nodes, initializers, [1, 8, 8], 10)


@pytest.fixture(scope="session")
def onnx_model():
    """Build an ONNX model of nodes and initializers (input x of shape (N, *input_shape))."""
    return _onnx_model


@pytest.fixture(scope="session")
def cnn_onnx_model():
    return cnn_onnx
