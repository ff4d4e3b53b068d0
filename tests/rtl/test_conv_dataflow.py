# amaranth: UnusedElaboratable=no
"""Convolutional networks on the dataflow engine: whole designs in Amaranth's simulator against
the golden model (random stalls, several foldings), the units' cycles and latency, folding."""

import re

import numpy as np
import pytest

from hwnn.arch import architecture
from hwnn.arch.dataflow import resolve_folding
from hwnn.planning.estimate import estimate
from hwnn.quant.synthetic import random_cnn
from hwnn.rtl.convunit import ConvolutionUnit
from hwnn.rtl.dataflow import DataflowAccelerator
from hwnn.rtl.folding import (LayerFold, auto_folding, cycle_targets, fold_from_mapping,
                              folding_cycles, fully_parallel, hardwired, unfolded)
from hwnn.rtl.poolunit import PoolingUnit
from hwnn.sim.beats import vectors_to_beats
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_stream, run_vectors

#: Small CNNs covering the corners: every weight format, thresholds (both directions) and
#: requantization, zero points that pad, kernels 1..5, strides 1..2, odd and non-square
#: images, the most padding a kernel allows (a corner window holds one pixel), depthwise,
#: overlapping and binary (OR) pools, a pool first, and a convolution as the last layer.
CNNS = {
    "int8": lambda: random_cnn(np.random.default_rng(1), (7, 7, 2), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=1, weight_format="int8",
                        out_format="uint8", stage="requant")),
        ("maxpool2d", dict(kernel=2, stride=1)),
        ("conv2d", dict(out_channels=2, kernel=1, stride=2, weight_format="int4",
                        out_format="uint2", stage="thresholds")),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], input_format="uint8", in_zero_point=5, name="int8"),
    "binary": lambda: random_cnn(np.random.default_rng(2), (8, 8, 4), [
        ("conv2d", dict(out_channels=4, kernel=3, weight_format="binary",
                        out_format="binary", stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=2, kernel=2, weight_format="binary",
                        out_format="binary", stage="thresholds")),
        ("dense", dict(out_features=2, weight_format="binary", stage="accumulator")),
    ], input_format="binary", name="binary"),
    "depthwise": lambda: random_cnn(np.random.default_rng(3), (6, 5, 3), [
        ("conv2d", dict(out_channels=3, kernel=3, stride=2, padding=(2, 2, 2, 2),
                        depthwise=True, weight_format="ternary", out_format="uint3",
                        stage="thresholds")),
        ("conv2d", dict(out_channels=2, kernel=(5, 4), padding=(4, 4, 3, 3),
                        weight_format="int4", out_format="int4", stage="requant")),
        ("dense", dict(out_features=2, weight_format="ternary", stage="accumulator")),
    ], input_format="uint4", in_zero_point=2, name="depthwise"),
    "image-out": lambda: random_cnn(np.random.default_rng(4), (9, 6, 2), [
        ("maxpool2d", dict(kernel=3, stride=2)),
        ("conv2d", dict(out_channels=4, kernel=(3, 2), stride=(1, 2), padding=(1, 2, 0, 1),
                        weight_format="int8", out_format="int8", stage="requant")),
        ("conv2d", dict(out_channels=2, kernel=1, weight_format="binary",
                        stage="accumulator")),
    ], input_format="int4", in_zero_point=-2, name="image_out"),
}


def _codes(network, count, seed):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


def _reference_cycles(layer, fold):
    """Cycles per inference of a layer folded as ``fold``, written out here."""
    if layer.kind == "dense":
        return (layer.out_features // fold.pe) * (layer.in_features // fold.simd)
    height, width, channels = layer.input_shape
    if layer.kind == "maxpool2d":
        return height * width * channels // fold.pe
    out_h, out_w, out_c = layer.output_shape
    taps = layer.kernel[0] * layer.kernel[1]
    return max(out_h * out_w * (out_c // fold.pe) * (taps * channels // fold.simd),
               height * width * channels // fold.simd)


FOLDINGS = {
    "unfolded": unfolded,
    "auto": lambda network: auto_folding(network, 12),
    "parallel": fully_parallel,
}


@pytest.mark.parametrize("name, fold, seed", [
    ("int8", "auto", 1), ("int8", "unfolded", None),
    ("binary", "auto", 2), ("binary", "parallel", 3),
    ("depthwise", "auto", 4), ("depthwise", "parallel", None),
    ("image-out", "auto", 5), ("image-out", "unfolded", 6),
])
def test_cnn_matches_golden(name, fold, seed):
    network = CNNS[name]()
    folding = FOLDINGS[fold](network)
    dut = DataflowAccelerator(network, folding)
    codes = _codes(network, 3, seed or 0)
    # run_vectors also checks that last marks exactly each output vector's final beat.
    actual, _ = run_vectors(dut, network, codes, seed=seed, timeout=20_000)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


@pytest.mark.parametrize("name, seed", [("int8", 1), ("binary", None), ("depthwise", 2),
                                        ("image-out", 3)])
def test_cnn_with_hardwired_weights_matches_golden(name, seed):
    """Every layer fully parallel and hardwired (a convolution a whole window per beat, a
    depthwise layer's block-diagonal matrix one adder graph): no weight memory left, the same
    outputs as the golden model under random stalls, and a convolution's cycles one per output
    pixel (or input pixel, where the input is the slower)."""
    network = CNNS[name]()
    folding = hardwired(network)
    dut = DataflowAccelerator(network, folding)
    assert not [memory for memory in dut.structure().memories if memory.use == "weights"]
    assert [fold.multipliers == "hardwired" for fold in folding] == [
        layer.kind != "maxpool2d" for layer in network.layers]
    for layer, unit in zip(network.layers, dut.units, strict=True):
        if layer.kind == "conv2d" and not layer.depthwise:
            (out_h, out_w), (height, width, _) = layer.out_size, layer.input_shape
            assert unit.cycles == max(out_h * out_w, height * width)
            assert unit.lanes == layer.weights.size
    codes = _codes(network, 3, seed or 0)
    actual, _ = run_vectors(dut, network, codes, seed=seed, timeout=20_000)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


def test_a_hardwired_convolution_must_be_fully_parallel():
    network = CNNS["int8"]()
    conv = network.layers[0]
    with pytest.raises(ValueError, match=r"^Layer 'conv0': hardwired multipliers need the "
                                         r"layer fully parallel \(pe 4, simd 2\), not pe 2, "
                                         r"simd 2$"):
        ConvolutionUnit(conv, pe=2, simd=2, multipliers="hardwired")


@pytest.mark.parametrize("name, seed", [("int8", 1), ("image-out", None)])
def test_cnn_with_logic_multipliers_matches_golden(name, seed):
    network = CNNS[name]()
    folding = tuple(LayerFold(fold.pe, fold.simd, "logic")
                    for fold in FOLDINGS["auto"](network))
    dut = DataflowAccelerator(network, folding)
    assert any(group.logic for group in dut.structure().multipliers)
    assert not any(group.logic is False for group in dut.structure().multipliers)
    codes = _codes(network, 2, seed or 0)
    actual, _ = run_vectors(dut, network, codes, seed=seed, timeout=20_000)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


def _conv(channels, kernel, padding=0):
    return ("conv2d", dict(out_channels=channels, kernel=kernel, padding=padding,
                           weight_format="int8", out_format="uint8", stage="requant"))


#: Units fed at a beat per cycle from the unit before them (through its width converter and
#: the FIFO the unit asks for): a pool taking a value per cycle from a convolution that gives
#: 8 values every 9 cycles, and a 1x1 convolution as fast as its input.
FULL_RATE = {
    "pool": lambda: random_cnn(np.random.default_rng(5), (6, 6, 1), [
        _conv(8, 3, 1), ("maxpool2d", dict(kernel=2)),
        ("dense", dict(out_features=2, weight_format="int8", stage="accumulator")),
    ], name="pool"),
    "conv1x1": lambda: random_cnn(np.random.default_rng(6), (6, 6, 4), [
        _conv(4, 1), _conv(4, 1),
        ("dense", dict(out_features=2, weight_format="int8", stage="accumulator")),
    ], name="conv1x1"),
}


@pytest.mark.parametrize("name, folding", [
    ("int8", (LayerFold(2, 1), LayerFold(1, 1), LayerFold(2, 2), LayerFold(1, 2))),
    ("int8", (LayerFold(4, 2), LayerFold(2, 2), LayerFold(1, 1), LayerFold(3, 2))),
    ("pool", (LayerFold(8, 1), LayerFold(1, 1), LayerFold(1, 1))),
    ("conv1x1", (LayerFold(4, 4), LayerFold(4, 4), LayerFold(2, 4))),
])
def test_steady_state_throughput_is_the_slowest_unit(name, folding):
    network = (CNNS | FULL_RATE)[name]()
    dut = DataflowAccelerator(network, folding)
    assert [unit.cycles for unit in dut.units] == \
        [_reference_cycles(layer, fold) for layer, fold in zip(network.layers, folding,
                                                                strict=True)]
    codes = _codes(network, 6, 7)
    _, cycles = run_vectors(dut, network, codes, timeout=20_000)
    per_vector = network.out_features // dut.out_count
    ends = cycles[per_vector - 1::per_vector]
    steady = np.diff(ends[2:])
    assert max(steady) <= 1.05 * dut.cycles, (list(steady), dut.cycles)


def _first_transfers(unit, layer, seed):
    """Cycles of the first input and first output transfer of one inference through
    ``unit``, and the outputs."""
    codes = _codes_of(layer, seed)
    inputs = []
    outputs, cycles = run_stream(unit, i_stream=unit.i_stream, o_stream=unit.o_stream,
                                 inputs=vectors_to_beats(codes, layer.input.format,
                                                         unit.in_count),
                                 n_outputs=int(np.prod(layer.output_shape)) // unit.out_count,
                                 input_cycles=inputs)
    return inputs[0], cycles[0], outputs


def _codes_of(layer, seed):
    fmt = layer.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(1, int(np.prod(
        layer.input_shape)))))


@pytest.mark.parametrize("name, index, fold", [
    ("int8", 0, LayerFold(2, 2)), ("int8", 1, LayerFold(2, 2)), ("int8", 2, LayerFold(1, 4)),
    ("depthwise", 1, LayerFold(1, 3)), ("image-out", 0, LayerFold(1, 1)),
])
def test_unit_latency_and_framing(name, index, fold):
    layer = CNNS[name]().layers[index]
    unit = {"conv2d": ConvolutionUnit, "maxpool2d": PoolingUnit}[layer.kind](
        layer, pe=fold.pe, simd=fold.simd)
    first_in, first_out, outputs = _first_transfers(unit, layer, index)
    assert first_out - first_in == unit.latency
    assert [int(beat.last) for beat in outputs] == [0] * (len(outputs) - 1) + [1]


def test_cnn_auto_folding_obeys_the_budget_and_the_cycle_formula():
    network = CNNS["int8"]()
    previous = None
    for budget in (4, 8, 16, 64, 1000):
        folding = auto_folding(network, budget)
        lanes = [fold.pe if layer.kind == "maxpool2d" else fold.pe * fold.simd
                 for layer, fold in zip(network.layers, folding, strict=True)]
        assert sum(lanes) <= budget
        cycles = max(_reference_cycles(layer, fold)
                     for layer, fold in zip(network.layers, folding, strict=True))
        assert cycles == folding_cycles(network, folding) == \
            DataflowAccelerator(network, folding).cycles
        assert previous is None or cycles <= previous
        previous = cycles
    # The fastest folding: every layer at its fewest cycles; the targets start there.
    fastest = fully_parallel(network)
    assert folding_cycles(network, fastest) == cycle_targets(network)[0] == max(
        min(_reference_cycles(layer, LayerFold(pe, simd))
            for pe in range(1, 65) for simd in range(1, 65)
            if _divides(layer, LayerFold(pe, simd)))
        for layer in network.layers)


def _divides(layer, fold):
    if layer.kind == "dense":
        return layer.out_features % fold.pe == 0 and layer.in_features % fold.simd == 0
    channels = layer.input_shape[-1]
    if layer.kind == "maxpool2d":
        return fold.pe == fold.simd and channels % fold.pe == 0
    return layer.output_shape[-1] % fold.pe == 0 and channels % fold.simd == 0


@pytest.mark.parametrize("mapping, message", [
    ({"conv0": (4, 3)}, "simd must divide its 2 input channels (1, 2), not 3"),
    ({"conv0": (3, 1)}, "pe must divide its 4 output channels (1, 2, 4), not 3"),
    ({"maxpool1": (2, 4)}, ("a max pool's pe and simd are its values per beat and must be "
                            "equal, not pe 2 and simd 4")),
    ({"maxpool1": (3, 3)}, "pe must divide its 4 channels (1, 2, 4), not 3"),
])
def test_bad_folds_are_refused_with_one_line(mapping, message):
    network = CNNS["int8"]()
    folds = {layer.name: {"pe": 1, "simd": 1} for layer in network.layers}
    folds |= {name: {"pe": pe, "simd": simd} for name, (pe, simd) in mapping.items()}
    (name,) = mapping
    with pytest.raises(ValueError, match=f"^{re.escape(f'Layer {name!r}: {message}')}$"):
        resolve_folding(network, fold_from_mapping(network, folds), 256)


def test_manifest_summary_and_estimate_of_a_cnn(tmp_path):
    from hwnn.flow.generate import generate, load_design
    network = CNNS["int8"]()
    design = load_design(generate(network, tmp_path / "cnn", max_lanes=12))
    manifest = design.manifest
    conv, pool, _, dense = manifest["layers"]
    assert conv["input_shape"] == [7, 7, 2] and conv["output_shape"] == [7, 7, 4]
    assert (conv["kernel"], conv["stride"], conv["padding"], conv["groups"]) == \
        ([3, 3], [1, 1], [1, 1, 1, 1], 1)
    assert (pool["kind"], pool["kernel"], pool["stride"], pool["weight_format"],
            pool["stage"]) == ("maxpool2d", [2, 2], [1, 1], None, "none")
    assert "kind" not in dense and (dense["in_features"], dense["out_features"]) == (18, 3)
    assert conv["memory_bits"]["line_buffer"] > 0 and pool["memory_bits"]["partial_maxima"] > 0
    assert manifest["input"]["beats_per_vector"] == 98 // manifest["input"]["values_per_beat"]
    assert design.params.fold == auto_folding(network, 12)
    summary = architecture("dataflow").summary(manifest)
    assert "7x7x2->7x7x4" in summary and "7x7x4->6x6x4" in summary and "18->3" in summary
    figures = estimate(network, "ecp5", max_lanes=12)
    assert figures["bram"] >= 0 and figures["lut4"] > 0

