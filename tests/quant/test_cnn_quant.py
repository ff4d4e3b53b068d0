"""Quantizing float CNNs: the golden model tracks the float network on digits, a convolution
is quantized as its im2col matrix, pools come after the output stage, and what cannot be
quantized is refused."""

import numpy as np
import pytest

from hwnn.flow.report import compression_table, layer_table
from hwnn.ir import Conv2d, Dense, MaxPool2d
from hwnn.quant import (FloatConv2d, FloatDense, FloatMaxPool2d, FloatNetwork, QuantOptions,
                        load_npz, quantize_network)
from hwnn.sim.golden import run_network


@pytest.fixture(scope="module")
def cnn(tmp_path_factory, cnn_arrays):
    path = tmp_path_factory.mktemp("cnn") / "cnn.npz"
    np.savez(path, **cnn_arrays)
    return load_npz(path)


def _golden(network, float_net, x):
    """Dequantized outputs of the golden model for inputs ``x`` as the float net takes them."""
    return network.dequantize_output(
        run_network(network, network.quantize_input(float_net.check_inputs(x))))


@pytest.mark.parametrize("options", [QuantOptions(), QuantOptions(per_channel=True),
                                     QuantOptions(acts="uint4")])
def test_golden_model_tracks_the_float_cnn(cnn, digits, options):
    images, labels = digits
    network = quantize_network(cnn, images[:200], options)
    assert [type(layer) for layer in network.layers] == [Conv2d, MaxPool2d, Conv2d, Dense]
    assert [layer.name for layer in network.layers] == ["conv0", "pool1", "conv2", "dense3"]
    assert network.layers[0].stage_name == ("thresholds" if options.acts == "uint4"
                                            else "requant")
    # The BatchNorm with negative gammas goes into thresholds (descending channels) or, for
    # requantization, into the weights.
    test = images[1200:1500]
    expected, got = cnn.forward(test), _golden(network, cnn, test)
    agreement = np.mean(np.argmax(expected, axis=1) == np.argmax(got, axis=1))
    assert agreement >= (0.95 if options.acts == "uint8" else 0.85)
    if options.acts == "uint8":
        assert np.abs(expected - got).max() < 0.05 * np.abs(expected).max()
        assert np.mean(np.argmax(got, axis=1) == labels[1200:1500]) > 0.85


def test_convolution_is_quantized_as_its_im2col_matrix(cnn, digits):
    # The same layer as a dense one on the im2col windows (1x1 image, a K-vector per pixel)
    # gets the same codes, scales and stage.
    images = digits[0][:200]
    conv = cnn.layers[0]
    windows = _im2col(cnn.check_inputs(images), 3, 1)
    dense = FloatNetwork((FloatDense(conv.matrix, conv.bias, conv.activation, conv.batchnorm),
                          FloatDense(np.ones((1, 8)), np.zeros(1))))
    for options in (QuantOptions(per_channel=True), QuantOptions(acts="uint3")):
        head = FloatNetwork((cnn.layers[0], FloatDense(np.ones((1, 512)), np.zeros(1))), {},
                            "chw")
        conv_net = quantize_network(head, images, options)
        dense_net = quantize_network(dense, windows, options)
        q_conv, q_dense = conv_net.layers[0], dense_net.layers[0]
        assert np.array_equal(q_conv.weights_matrix, q_dense.weights)
        assert np.array_equal(q_conv.weight_scale, q_dense.weight_scale)
        assert q_conv.output == q_dense.output and q_conv.stage_name == q_dense.stage_name
        # The stages may differ outside the accumulators a padded convolution reaches, not
        # on any window.
        conv_codes = run_network(conv_net, conv_net.quantize_input(cnn.check_inputs(images)),
                                 trace=True)[1][0].outputs
        dense_codes = run_network(dense_net, dense_net.quantize_input(windows),
                                  trace=True)[1][0].outputs
        assert np.array_equal(conv_codes.reshape(-1, 8), dense_codes)


def _im2col(x, kernel, pad):
    """The (kernel x kernel) windows of channels-last images ``x``, zero-padded by ``pad``,
    in (ky, kx, c) order, one row per output pixel."""
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    height, width = x.shape[1:3]
    return np.array([padded[n, y:y + kernel, c:c + kernel].ravel() for n in range(len(x))
                     for y in range(height) for c in range(width)])


def test_pool_follows_the_output_stage(cnn, digits):
    images = digits[0][:100]
    network = quantize_network(cnn, images, QuantOptions(acts="uint4"))
    conv, pool = network.layers[:2]
    assert pool.input == conv.output and pool.kernel == (2, 2)
    codes = network.quantize_input(cnn.check_inputs(images))
    _, traces = run_network(network, codes, trace=True)
    conv_out = traces[0].outputs
    # The pool's output is the largest of the conv's output codes in each window.
    expected = conv_out.reshape(100, 4, 2, 4, 2, 8).max(axis=(2, 4))
    assert np.array_equal(traces[1].outputs, expected)


def test_stride_padding_and_depthwise_cnn_tracks_float():
    rng = np.random.default_rng(5)
    layers = (
        FloatConv2d(rng.normal(0, 0.5, (6, 3, 3, 2)), rng.normal(0, 0.1, 6), "relu",
                    in_size=(9, 9), stride=2, padding=(1, 0, 1, 0)),
        FloatConv2d(rng.normal(0, 0.5, (6, 3, 3, 1)), rng.normal(0, 0.1, 6), "relu",
                    in_size=(4, 4), padding=1, groups=6),
        FloatMaxPool2d((4, 4), 6, 2),
        FloatDense(rng.normal(0, 0.3, (5, 24)), rng.normal(0, 0.1, 5)))
    float_net = FloatNetwork(layers)
    x = rng.uniform(-1, 1, (300, 9, 9, 2))
    network = quantize_network(float_net, x, QuantOptions(per_channel=True))
    assert network.input.format.signed
    assert network.layers[0].stride == (2, 2) and network.layers[1].depthwise
    expected, got = float_net.forward(x), _golden(network, float_net, x)
    assert np.mean(np.argmax(expected, axis=1) == np.argmax(got, axis=1)) >= 0.95
    assert np.abs(expected - got).max() < 0.05 * np.abs(expected).max()
    table = layer_table(network)
    assert table.splitlines()[0].split() == ["layer", "shape", "window", "weights", "inputs",
                                             "outputs", "stage", "zeros", "weight", "bits",
                                             "acc", "bits"]
    assert table.splitlines()[1].split()[:4] == ["conv0", "9x9x2->4x4x6", "3x3", "s2"]
    assert "p1x0x1x0" in table.splitlines()[1]
    assert table.splitlines()[2].split()[:6] == ["conv1", "4x4x6->4x4x6", "3x3", "s1", "p1",
                                                 "dw"]
    assert table.splitlines()[3].split()[:9] == ["pool2", "4x4x6->2x2x6", "2x2", "s2", "-",
                                                 "uint8", "uint8", "max", "-"]


def test_cnn_quantization_refusals(cnn, digits):
    images = digits[0][:50]
    with pytest.raises(ValueError, match=r"^Layer 'conv0' is a convolution: weights are "
                                         r"shared in dense layers only$"):
        quantize_network(cnn, images, QuantOptions(share=4))
    with pytest.raises(ValueError, match=r"^Layer 'conv2' cannot pad its binary input"):
        padded = FloatConv2d(np.ones((2, 3, 3, 8)), np.zeros(2), in_size=(4, 4), padding=1)
        quantize_network(FloatNetwork((*cnn.layers[:2], padded), {}, "chw"), images,
                         QuantOptions(acts="binary"))
    with pytest.raises(ValueError, match=r"^A network to quantize needs a dense or "
                                         r"convolution layer$"):
        quantize_network(FloatNetwork((FloatMaxPool2d((8, 8), 1, 2),), {}, "chw"), images)


def test_pruning_a_cnn(cnn, digits):
    network = quantize_network(cnn, digits[0][:100], QuantOptions(prune=0.5))
    for layer in network.layers:
        if not isinstance(layer, MaxPool2d):
            assert np.mean(layer.weights == 0) >= 0.5
    rows = [line.split() for line in compression_table(network).splitlines()]
    assert [row[0] for row in rows] == ["layer", "conv0", "conv2", "dense3", "total"]
    assert rows[1][1:4] == [f"{100 * np.mean(network.layers[0].weights == 0):.1f}%", "-",
                            str(network.layers[0].weight_bits)]
