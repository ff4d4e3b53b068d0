"""Float convolutional networks: convolution and pool layers against channels-first references
written in conftest.py, the float ``.npz`` with convolutions (PyTorch's order, the flatten
permutation), and inputs given channels first."""

import re
import zipfile

import numpy as np
import pytest
from conftest import reference_conv, reference_forward, reference_pool

from hwnn.quant import (FloatConv2d, FloatDense, FloatMaxPool2d, FloatNetwork, load_model,
                        load_npz, save_npz)


def _nhwc(x):
    return x.transpose(0, 2, 3, 1)


@pytest.mark.parametrize("stride, padding, groups", [
    ((1, 1), (0, 0, 0, 0), 1), ((2, 2), (1, 1, 1, 1), 1), ((2, 1), (0, 2, 1, 0), 1),
    ((1, 1), (1, 1, 1, 1), 5), ((2, 2), (1, 0, 0, 1), 5)])
def test_conv_matches_the_reference(stride, padding, groups):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 5, 7, 6))
    weight = rng.normal(size=(5 if groups > 1 else 4, 5 // groups, 3, 2))
    bias = rng.normal(size=weight.shape[0])
    layer = FloatConv2d(weight.transpose(0, 2, 3, 1), bias, in_size=(7, 6), stride=stride,
                        padding=padding, groups=groups)
    expected = reference_conv(x, weight, bias, stride, padding, groups)
    assert layer.output_shape == _nhwc(expected).shape[1:]
    np.testing.assert_allclose(layer(_nhwc(x)), _nhwc(expected), rtol=1e-12, atol=1e-12)


def test_pool_matches_the_reference():
    x = np.random.default_rng(2).normal(size=(4, 3, 7, 6))
    pool = FloatMaxPool2d((7, 6), 3, 2)
    assert pool.output_shape == (3, 3, 3)
    assert np.array_equal(pool(_nhwc(x)), _nhwc(reference_pool(x, 2)))
    # A stride other than the kernel: every (3, 3) window stepped by (1, 2).
    strided = FloatMaxPool2d((7, 6), 3, (3, 3), (1, 2))
    expected = [[x[:, :, y:y + 3, c:c + 3].max(axis=(2, 3)) for c in (0, 2)] for y in range(5)]
    assert np.array_equal(strided(_nhwc(x)), np.array(expected).transpose(2, 0, 1, 3))


def test_npz_cnn_matches_the_reference(tmp_path, cnn_arrays, digits):
    path = tmp_path / "cnn.npz"
    np.savez(path, **cnn_arrays)
    network = load_model(path)
    assert [type(layer).__name__ for layer in network.layers] == [
        "FloatConv2d", "FloatMaxPool2d", "FloatConv2d", "FloatDense"]
    assert network.input_shape == (8, 8, 1) and network.input_layout == "chw"
    assert [layer.output_shape for layer in network.layers] == [
        (8, 8, 8), (4, 4, 8), (2, 2, 12), (10,)]
    images = digits[0][:50]
    expected = reference_forward(cnn_arrays, images)
    np.testing.assert_allclose(network.forward(images), expected, rtol=1e-9, atol=1e-9)
    # Flattened per sample in (C, H, W) order, the same.
    np.testing.assert_allclose(network.forward(images.reshape(50, -1)), expected, rtol=1e-9,
                               atol=1e-9)
    assert np.mean(np.argmax(expected, axis=1) == digits[1][:50]) > 0.8


def test_dense_after_an_image_takes_pytorchs_flatten_order(tmp_path):
    # Two channels of 2x2: PyTorch's flattened vector is channel 0's pixels, then channel
    # 1's; hwnn's is pixel by pixel. A dense layer reading one PyTorch position must read the
    # same value after import (hwnn's position 5 is (y=1, x=0, c=1), which holds 6, not 5).
    conv = np.eye(2).reshape(2, 2, 1, 1)                         # the identity
    dense = np.zeros((1, 8))
    dense[0, 5] = 1.0                                            # PyTorch's (c=1, y=0, x=1)
    np.savez(tmp_path / "flat.npz", input_shape=np.array([2, 2, 2]), weight_0=conv,
             bias_0=np.zeros(2), weight_1=dense, bias_1=np.zeros(1))
    network = load_npz(tmp_path / "flat.npz")
    x = np.arange(8.0).reshape(1, 2, 2, 2)                       # (N, C, H, W)
    assert network.forward(x).tolist() == [[x[0, 1, 0, 1]]]
    assert network.forward(x).tolist() == [[x.reshape(1, -1)[0, 5]]]


@pytest.mark.parametrize("padding, sides", [
    (np.array(1), (1, 1, 1, 1)), (np.array([1, 2]), (1, 1, 2, 2)),
    (np.array([0, 1, 2, 0]), (0, 1, 2, 0))])
def test_npz_padding_forms(tmp_path, padding, sides):
    rng = np.random.default_rng(3)
    weight = rng.normal(size=(3, 2, 3, 3))
    np.savez(tmp_path / "pad.npz", input_shape=np.array([2, 5, 6]), weight_0=weight,
             bias_0=np.zeros(3), padding_0=padding, stride_0=np.array([2, 1]))
    (layer,) = load_npz(tmp_path / "pad.npz").layers
    assert layer.padding == sides and layer.stride == (2, 1)
    x = rng.normal(size=(2, 2, 5, 6))
    np.testing.assert_allclose(load_npz(tmp_path / "pad.npz").forward(x),
                               _nhwc(reference_conv(x, weight, np.zeros(3), (2, 1), sides)),
                               rtol=1e-12)


def test_npz_depthwise(tmp_path):
    rng = np.random.default_rng(4)
    weight = rng.normal(size=(3, 1, 3, 3))
    np.savez(tmp_path / "dw.npz", input_shape=np.array([3, 6, 6]), weight_0=weight,
             bias_0=np.ones(3), groups_0=np.array(3), padding_0=np.array(1))
    network = load_npz(tmp_path / "dw.npz")
    assert network.layers[0].groups == 3
    x = rng.normal(size=(2, 3, 6, 6))
    np.testing.assert_allclose(network.forward(x),
                               _nhwc(reference_conv(x, weight, np.ones(3), (1, 1), (1,) * 4, 3)),
                               rtol=1e-12)


def test_npz_cnn_round_trip(tmp_path, cnn_arrays, digits):
    network = load_npz(_write(tmp_path / "cnn.npz", cnn_arrays))
    again = load_npz(save_npz(network, tmp_path / "again.npz"))
    assert again.input_layout == "chw"
    images = digits[0][:20]
    assert np.array_equal(again.forward(images), network.forward(images))
    # The same network, the same bytes: no time of writing in the archive.
    assert save_npz(again, tmp_path / "third.npz").read_bytes() == (
        tmp_path / "again.npz").read_bytes()
    with zipfile.ZipFile(tmp_path / "again.npz") as archive:
        assert {member.date_time for member in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    with pytest.raises(ValueError, match=r"^The \.npz format takes images channels first"):
        save_npz(FloatNetwork(network.layers), tmp_path / "hwc.npz")


def _write(path, arrays):
    np.savez(path, **arrays)
    return path


CONV = {"input_shape": np.array([2, 6, 6]), "weight_0": np.ones((3, 2, 3, 3)),
        "bias_0": np.zeros(3), "weight_1": np.ones((2, 48)), "bias_1": np.zeros(2)}


@pytest.mark.parametrize("changes, message", [
    ({"input_shape": None}, (r"layer 0 is a convolution \(4-d weight_0\) but takes a vector "
                            r"of 2: give input_shape \(C, H, W\)$")),
    ({"input_shape": np.array([6, 6])},
     r"input_shape must be 3 positive integers \(C, H, W\), not \[6, 6\]$"),
    ({"input_shape": np.array([3, 6, 6])}, r"layer 0 takes 2 channels but its input has 3$"),
    ({"stride_1": np.array(2), "groups_1": np.array(1)},
     (r"layer 1 is dense but has stride_1, groups_1: only convolutions \(4-d weights\) have "
     r"those$")),
    ({"pool_1": np.array(2)}, (r"layer 1 is dense but has pool_1: only convolutions have a "
                              r"pool$")),
    ({"padding_0": np.array([1, 2, 3])}, (r"layer 0: padding_0 must be 1, 2 \(rows, columns\) "
                                         r"or 4 \(top, bottom, left, right\) integers")),
    ({"stride_0": np.array(1.5)}, (r"layer 0: stride_0 must be an integer or a vector of "
                                  r"integers, not float64 of shape \(\)$")),
    ({"groups_0": np.array(2)}, (r"layer 0: groups must be 1, or the 3 channels of a "
                                r"depthwise convolution")),
    ({"weight_1": np.ones((2, 40))}, (r"layer 1 takes 40 inputs but its input image "
                                     r"has 3x4x4 = 48 values$")),
])
def test_npz_cnn_rejects(tmp_path, changes, message):
    arrays = {key: value for key, value in (CONV | changes).items() if value is not None}
    path = _write(tmp_path / "bad.npz", arrays)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}' {message}"):
        load_npz(path)


def test_inputs_in_the_wrong_layout_are_refused(tmp_path, cnn_arrays):
    network = load_npz(_write(tmp_path / "cnn.npz", cnn_arrays))
    with pytest.raises(ValueError, match=r"^Inputs must have shape \(N, 1, 8, 8\) \(channels "
                                         r"first\) or \(N, 64\), not \(5, 8, 8, 1\)$"):
        network.forward(np.zeros((5, 8, 8, 1)))
    hwc = FloatNetwork((FloatConv2d(np.ones((2, 1, 1, 3)), np.zeros(2), in_size=(4, 4)),
                        FloatDense(np.ones((1, 32)), np.zeros(1))))
    assert hwc.forward(np.ones((2, 4, 4, 3))).shape == (2, 1)
    with pytest.raises(ValueError, match=r"^Inputs must have shape \(N, 4, 4, 3\) \(channels "
                                         r"last\) or \(N, 48\), not \(2, 3, 4, 4\)$"):
        hwc.forward(np.ones((2, 3, 4, 4)))
