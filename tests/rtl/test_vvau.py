# amaranth: UnusedElaboratable=no
"""Depthwise convolutions on the vector-vector unit: bit-exact against the golden model under
random stalls (several foldings, every weight format and output stage, padding), cycles per
image equal to the formula, the window unit's depthwise order, folding errors."""

import re

import numpy as np
import pytest

from hwnn.arch.dataflow import resolve_folding
from hwnn.quant.synthetic import random_cnn
from hwnn.rtl.convunit import ConvolutionUnit
from hwnn.rtl.dataflow import DataflowAccelerator
from hwnn.rtl.folding import LayerFold, auto_folding, folding_cycles
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.rtl.vvau import VectorVectorUnit
from hwnn.rtl.window import SlidingWindowUnit
from hwnn.sim.beats import vectors_to_beats
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_stream, run_vectors


def _depthwise(seed, image, kernel, *, stride=1, padding=0, weight_format, input_format,
               out_format, stage, in_zero_point=0):
    """A network of one depthwise convolution."""
    return random_cnn(np.random.default_rng(seed), image, [
        ("conv2d", dict(out_channels=image[2], kernel=kernel, stride=stride, padding=padding,
                        depthwise=True, weight_format=weight_format, out_format=out_format,
                        stage=stage)),
    ], input_format=input_format, in_zero_point=in_zero_point, name=f"dw{seed}")


#: Kernels 1..5, strides 1..2, odd and non-square images, padding up to kernel - 1 (corner
#: windows of one pixel, whole kernel rows in the padding), binary / ternary / int weights,
#: thresholds, requantization and the raw accumulator.
NETWORKS = {
    "int8-3x3-pad": lambda: _depthwise(1, (7, 5, 4), 3, padding=1, weight_format="int8",
                                       input_format="uint8", in_zero_point=3,
                                       out_format="uint8", stage="requant"),
    "ternary-5x5-s2": lambda: _depthwise(2, (6, 7, 6), 5, stride=2, padding=(4, 3, 4, 2),
                                         weight_format="ternary", input_format="uint4",
                                         in_zero_point=2, out_format="uint3",
                                         stage="thresholds"),
    "binary-2x2": lambda: _depthwise(3, (5, 5, 8), 2, weight_format="binary",
                                     input_format="binary", out_format="binary",
                                     stage="thresholds"),
    "int4-1x1-s2": lambda: _depthwise(4, (5, 6, 3), 1, stride=2, weight_format="int4",
                                      input_format="int4", out_format=None,
                                      stage="accumulator"),
    "binary-w-4x3": lambda: _depthwise(5, (6, 5, 2), (4, 3), stride=(2, 1),
                                       padding=(3, 1, 2, 0), weight_format="binary",
                                       input_format="int4", in_zero_point=-1,
                                       out_format="int4", stage="requant"),
}


def _codes(network, count, seed):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


@pytest.mark.parametrize("name, pe, simd, seed", [
    ("int8-3x3-pad", 1, 1, 1), ("int8-3x3-pad", 4, 9, 2), ("int8-3x3-pad", 2, 3, None),
    ("ternary-5x5-s2", 3, 5, 3), ("ternary-5x5-s2", 6, 25, 4),
    ("binary-2x2", 8, 4, 5), ("binary-2x2", 2, 2, 6),
    ("int4-1x1-s2", 1, 1, 7), ("int4-1x1-s2", 3, 1, None),
    ("binary-w-4x3", 2, 6, 8), ("binary-w-4x3", 1, 4, 9),
])
def test_depthwise_matches_golden(name, pe, simd, seed):
    network = NETWORKS[name]()
    dut = DataflowAccelerator(network, (LayerFold(pe, simd),))
    assert isinstance(dut.units[0].matrix, VectorVectorUnit)
    codes = _codes(network, 2, seed or 0)
    actual, _ = run_vectors(dut, network, codes, seed=seed, timeout=5_000)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


@pytest.mark.parametrize("name, pe, simd", [
    ("int8-3x3-pad", 2, 3), ("int8-3x3-pad", 4, 9), ("ternary-5x5-s2", 3, 5),
    ("binary-2x2", 1, 1),
])
def test_steady_state_cycles_are_the_formula(name, pe, simd):
    network = NETWORKS[name]()
    layer = network.layers[0]
    (out_h, out_w), (kh, kw) = layer.out_size, layer.kernel
    formula = out_h * out_w * (layer.in_channels // pe) * (kh * kw // simd)
    dut = DataflowAccelerator(network, (LayerFold(pe, simd),))
    assert dut.cycles == dut.units[0].cycles == formula
    _, cycles = run_vectors(dut, network, _codes(network, 5, 0), timeout=5_000)
    per_image = network.out_features // dut.out_count
    ends = cycles[per_image - 1::per_image]
    assert list(np.diff(ends[1:])) == [formula] * 3


def test_window_unit_depthwise_order():
    """Channel group by channel group, ``taps`` kernel positions a beat, element ``c * taps +
    j``, padding in place (values are their own positions, so the order is visible)."""
    height, width, channels, (kh, kw), simd, taps = 3, 4, 4, (2, 3), 2, 3
    dut = SlidingWindowUnit((height, width, channels), (kh, kw), width=8, padding=(1, 0, 1, 1),
                            pad_code=255, in_count=2, simd=simd, order="depthwise", taps=taps)
    image = np.arange(height * width * channels).reshape(height, width, channels)
    padded = np.pad(image, ((1, 0), (1, 1), (0, 0)), constant_values=255)
    expected = []
    for oy in range(dut.out_size[0]):
        for ox in range(dut.out_size[1]):
            window = padded[oy:oy + kh, ox:ox + kw].reshape(kh * kw, channels)
            for group in range(channels // simd):
                for first in range(0, kh * kw, taps):
                    block = window[first:first + taps, group * simd:(group + 1) * simd]
                    expected.append(list(block.T.reshape(-1)))
    inputs = [{"data": int(sum(int(v) << (8 * i) for i, v in enumerate(pair))), "last": 0}
              for pair in image.reshape(-1, 2)]
    outputs, _ = run_stream(dut, i_stream=dut.i_stream, o_stream=dut.o_stream, inputs=inputs,
                            n_outputs=len(expected), seed=3)
    got = [[(beat.data >> (8 * i)) & 255 for i in range(simd * taps)] for beat in outputs]
    assert got == expected
    per_window = channels * kh * kw // (simd * taps)
    assert [int(beat.last) for beat in outputs] == ([0] * (per_window - 1) + [1]) * (
        len(outputs) // per_window)


def test_work_and_weight_memory_drop_by_the_channels():
    """Against the block-diagonal matrix-vector unit at the same lanes: C times fewer cycles
    and C times fewer weight bits."""
    layer = NETWORKS["int8-3x3-pad"]().layers[0]
    channels = layer.in_channels
    vvau = ConvolutionUnit(layer, pe=2, simd=3)
    block_diagonal = MatrixVectorUnit(layer.im2col(), pe=2, simd=3)
    out_pixels = layer.out_size[0] * layer.out_size[1]
    assert block_diagonal.cycles * out_pixels == channels * vvau.cycles
    assert vvau.memory_bits["weights"] == layer.weight_bits
    assert block_diagonal.memory_bits["weights"] == channels * layer.weight_bits
    assert vvau.memory_bits["input_buffer"] == 0


def test_auto_folding_uses_the_depthwise_formula():
    network = NETWORKS["ternary-5x5-s2"]()
    layer = network.layers[0]
    (out_h, out_w), channels, taps = layer.out_size, layer.in_channels, 25
    budget = 30
    (fold,) = auto_folding(network, budget)
    assert fold.pe * fold.simd <= budget
    best = min(max(out_h * out_w * (channels // pe) * (taps // simd),
                   6 * 7 * channels // pe)
               for pe in (1, 2, 3, 6) for simd in (1, 5, 25) if pe * simd <= budget)
    assert folding_cycles(network, (fold,)) == best


@pytest.mark.parametrize("pe, simd, message", [
    (1, 4, "Layer 'conv0': simd must divide its 9 kernel positions (1, 3, 9), not 4"),
    (3, 1, "Layer 'conv0': pe must divide its 4 output channels (1, 2, 4), not 3"),
])
def test_bad_folding_is_refused(pe, simd, message):
    layer = NETWORKS["int8-3x3-pad"]().layers[0]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        ConvolutionUnit(layer, pe=pe, simd=simd)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        resolve_folding(NETWORKS["int8-3x3-pad"](), (LayerFold(pe, simd),), 256)


@pytest.mark.parametrize("options, message", [
    ({"taps": 3}, ("SlidingWindowUnit taps must be 1 in window order unless simd is the 2 "
                   "channels (simd 1), not 3")),
    ({"order": "depthwise", "taps": 2},
     "SlidingWindowUnit taps must divide the 9 kernel positions, not 2"),
    ({"order": "channels"},
     "SlidingWindowUnit order must be one of window, depthwise, not 'channels'"),
])
def test_window_unit_rejects_bad_orders(options, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        SlidingWindowUnit((4, 4, 2), 3, width=4, **options)


def test_vector_vector_unit_takes_depthwise_layers_only():
    layer = random_cnn(np.random.default_rng(0), (4, 4, 2), [
        ("conv2d", dict(out_channels=2, kernel=3, weight_format="int4", stage="accumulator"))],
        input_format="int4").layers[0]
    with pytest.raises(TypeError, match=r"^layer must be a depthwise Conv2d layer, not "):
        VectorVectorUnit(layer)


@pytest.mark.parametrize("name, pe, simd", [("int8-3x3-pad", 2, 3), ("binary-2x2", 8, 1)])
def test_unit_latency_and_framing(name, pe, simd):
    network = NETWORKS[name]()
    layer = network.layers[0]
    unit = ConvolutionUnit(layer, pe=pe, simd=simd)
    inputs = []
    outputs, cycles = run_stream(unit, i_stream=unit.i_stream, o_stream=unit.o_stream,
                                 inputs=vectors_to_beats(_codes(network, 1, 0),
                                                         layer.input.format, unit.in_count),
                                 n_outputs=network.out_features // pe, input_cycles=inputs)
    assert cycles[0] - inputs[0] == unit.latency
    assert [int(beat.last) for beat in outputs] == [0] * (len(outputs) - 1) + [1]
