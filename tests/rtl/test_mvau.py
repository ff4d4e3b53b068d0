# amaranth: UnusedElaboratable=no
"""The matrix-vector-activation unit in Amaranth's simulator against the golden model."""

import numpy as np
import pytest
from amaranth.back import verilog

from hwnn.quant.synthetic import random_dense
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.rtl.params import LayerFold
from hwnn.rtl.stage import constant_multiplier, product_cycles
from hwnn.sim.beats import beats_to_vectors, vectors_to_beats
from hwnn.sim.golden import dense_accumulate, output_stage
from hwnn.sim.pysim import run_stream


def run_unit(layer, codes, pe, simd, seed, input_cycles=None, multipliers="dsp"):
    dut = MatrixVectorUnit(layer, pe=pe, simd=simd, multipliers=multipliers)
    outputs, cycles = run_stream(dut, i_stream=dut.i_stream, o_stream=dut.o_stream,
                                 inputs=vectors_to_beats(codes, layer.input.format, simd),
                                 n_outputs=len(codes) * dut.neuron_folds, seed=seed,
                                 input_cycles=input_cycles)
    lasts = [int(beat.last) for beat in outputs]
    assert lasts == ([0] * (dut.neuron_folds - 1) + [1]) * len(codes)
    actual = beats_to_vectors([beat.data for beat in outputs], layer.output.format, pe,
                              layer.out_features)
    return dut, actual, cycles


LAYERS = [
    # (in, out, input format, weight format, output format, stage)
    (12, 6, "binary", "binary", "binary", "thresholds"),
    (12, 6, "uint4", "ternary", "uint2", "thresholds"),
    (12, 6, "int4", "int4", "int4", "requant"),
    (12, 4, "uint8", "int8", None, "accumulator"),
    (6, 4, "binary", "int3", "uint3", "thresholds"),
    (6, 4, "uint3", "binary", "int8", "requant"),
]


@pytest.mark.parametrize("shape", LAYERS, ids=lambda s: f"{s[2]}x{s[3]}->{s[4] or 'acc'}")
@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 3), ("all", "all")])
@pytest.mark.parametrize("seed", [None, 1])
def test_matches_golden(shape, pe, simd, seed):
    in_features, out_features, in_format, weight_format, out_format, stage = shape
    rng = np.random.default_rng(7)
    layer = random_dense(rng, in_features, out_features, in_format=in_format,
                         weight_format=weight_format, out_format=out_format, stage=stage)
    pe = out_features if pe == "all" else pe
    simd = in_features if simd == "all" else simd
    codes = layer.input.format.level_value(
        rng.integers(0, layer.input.format.levels, size=(6, in_features)))
    _, actual, _ = run_unit(layer, codes, pe, simd, seed)
    expected = output_stage(layer, dense_accumulate(layer, codes))
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


@pytest.mark.parametrize("stage, out_format", [("requant", "uint4"), ("thresholds", "uint2"),
                                               ("thresholds", "uint8"), ("accumulator", None)])
@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 4), (4, 8)])
def test_throughput_and_latency(stage, out_format, pe, simd):
    rng = np.random.default_rng(3)
    layer = random_dense(rng, 8, 4, in_format="uint4", weight_format="int4",
                         out_format=out_format, stage=stage)
    codes = rng.integers(0, 16, size=(8, 8))
    accepted = []
    dut, _, cycles = run_unit(layer, codes, pe, simd, None, accepted)
    assert cycles[0] - accepted[0] == dut.latency
    per_vector = cycles[dut.neuron_folds - 1::dut.neuron_folds]
    steady = np.diff(per_vector[2:])
    assert list(steady) == [dut.cycles] * len(steady)


@pytest.mark.parametrize("pe, simd, error, message", [
    (0, 1, ValueError, r"^MatrixVectorUnit pe must be a positive integer, not 0$"),
    (1, True, TypeError, r"^MatrixVectorUnit simd must be a positive integer, not True$"),
    (3, 1, ValueError, r"^Layer 'dense': pe must divide its 4 outputs \(1, 2, 4\), not 3$"),
    (1, 5, ValueError, r"^Layer 'dense': simd must divide its 8 inputs \(1, 2, 4, 8\), not 5$"),
])
def test_rejects_bad_folding(pe, simd, error, message):
    layer = random_dense(np.random.default_rng(0), 8, 4, in_format="uint4",
                         weight_format="int4", out_format="uint4", stage="requant")
    with pytest.raises(error, match=message):
        MatrixVectorUnit(layer, pe=pe, simd=simd)


def test_rejects_non_layer():
    with pytest.raises(TypeError, match=r"^layer must be a Dense layer, not 'dense0'$"):
        MatrixVectorUnit("dense0", pe=1, simd=1)


def test_converts_to_verilog_with_weights_in_memory():
    layer = random_dense(np.random.default_rng(0), 8, 4, in_format="binary",
                         weight_format="binary", out_format="binary", stage="thresholds")
    text = verilog.convert(MatrixVectorUnit(layer, pe=2, simd=4), name="mvau")
    assert "module mvau" in text and "i_stream__payload" in text and "o_stream__valid" in text
    assert "reg [7:0] weights" in text


LOGIC_LAYERS = [
    # (in, out, input format, weight format, output format, stage, mult_bits)
    (12, 6, "int4", "int4", "int4", "requant", 8),
    (8, 4, "uint8", "int8", "uint8", "requant", 16),
    (12, 4, "uint8", "int8", None, "accumulator", None),
    (8, 4, "int8", "int8", "uint3", "thresholds", None),
    (8, 4, "uint3", "ternary", "int8", "requant", 12),        # requantization only
]


@pytest.mark.parametrize("shape", LOGIC_LAYERS, ids=lambda s: f"{s[2]}x{s[3]}->{s[4] or 'acc'}")
@pytest.mark.parametrize("pe, simd", [(1, 1), (2, 4), ("all", "all")])
@pytest.mark.parametrize("seed", [None, 2])
def test_logic_multipliers_match_golden_at_the_same_rate(shape, pe, simd, seed):
    in_features, out_features, in_format, weight_format, out_format, stage, mult_bits = shape
    rng = np.random.default_rng(17)
    layer = random_dense(rng, in_features, out_features, in_format=in_format,
                         weight_format=weight_format, out_format=out_format, stage=stage,
                         **({"mult_bits": mult_bits} if mult_bits else {}))
    pe = out_features if pe == "all" else pe
    simd = in_features if simd == "all" else simd
    fmt = layer.input.format
    codes = fmt.level_value(rng.integers(0, fmt.levels, size=(6, in_features)))
    codes[0] = fmt.min_value                  # the extreme products
    codes[1] = fmt.max_value
    runs = {multipliers: run_unit(layer, codes, pe, simd, seed, multipliers=multipliers)
            for multipliers in ("dsp", "logic")}
    dut, actual, cycles = runs["logic"]
    expected = output_stage(layer, dense_accumulate(layer, codes))
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"
    # The same cycles, but for the ROM read a per-tensor multiplier in logic (a constant)
    # does not wait for, and a register per level of a deep product's adder tree: outputs
    # come that much earlier or later (compared without random stalls, which would meet them
    # on other cycles).
    saved = 2 if constant_multiplier(layer, True) is not None else 0
    saved -= product_cycles(layer, True, True) - product_cycles(layer, True, False)
    assert dut.latency == runs["dsp"][0].latency - saved
    if not saved or seed is None:
        assert cycles == [cycle - saved for cycle in runs["dsp"][2]]


def test_logic_multipliers_have_no_multiplication_in_verilog():
    layer = random_dense(np.random.default_rng(4), 8, 4, in_format="uint8",
                         weight_format="int8", out_format="uint8", stage="requant")
    logic = verilog.convert(MatrixVectorUnit(layer, pe=2, simd=4, multipliers="logic"),
                            name="mvau")
    dsp = verilog.convert(MatrixVectorUnit(layer, pe=2, simd=4), name="mvau")
    assert " * " in dsp and " * " not in logic


def test_structure_reports_logic_multipliers():
    layer = random_dense(np.random.default_rng(4), 8, 4, in_format="uint8",
                         weight_format="int8", out_format="uint8", stage="requant")
    for multipliers, logic in (("dsp", False), ("logic", True)):
        found = MatrixVectorUnit(layer, pe=2, simd=4, multipliers=multipliers).structure()
        assert {group.use for group in found.multipliers} == {"lanes", "requant"}
        assert all(group.logic is logic for group in found.multipliers)


def test_rejects_bad_multipliers():
    layer = random_dense(np.random.default_rng(0), 8, 4, in_format="uint4",
                         weight_format="int4", out_format="uint4", stage="requant")
    with pytest.raises(ValueError, match=r"^multipliers must be one of 'dsp', 'logic', "
                                         r"'hardwired', not 'lut'$"):
        MatrixVectorUnit(layer, pe=1, simd=1, multipliers="lut")


#: Every format of :data:`LAYERS`, and wide weights on signed inputs.
HARDWIRED_LAYERS = [*LAYERS, (8, 3, "int8", "int16", "uint8", "requant")]


def _adversarial_codes(layer, rng, count):
    """Random input vectors, the format's extremes, and for each output the vector that
    drives its accumulator to the top and the bottom of its range."""
    fmt = layer.input.format
    lo, hi = fmt.level_value(0), fmt.level_value(fmt.levels - 1)
    codes = [fmt.level_value(rng.integers(0, fmt.levels, size=layer.in_features))
             for _ in range(count)]
    codes += [np.full(layer.in_features, lo), np.full(layer.in_features, hi)]
    for row in layer.weights:
        codes += [np.where(row > 0, hi, lo), np.where(row > 0, lo, hi)]
    return np.array(codes)


@pytest.mark.parametrize("shape", HARDWIRED_LAYERS,
                         ids=lambda s: f"{s[2]}x{s[3]}->{s[4] or 'acc'}")
@pytest.mark.parametrize("seed", [None, 5])
def test_hardwired_weights_match_golden(shape, seed):
    """Every weight format (zero weights among them), binary and wide inputs, thresholds,
    requantization and raw accumulators after the graph; accumulators at their extremes."""
    in_features, out_features, in_format, weight_format, out_format, stage = shape
    rng = np.random.default_rng(23)
    layer = random_dense(rng, in_features, out_features, in_format=in_format,
                         weight_format=weight_format, out_format=out_format, stage=stage,
                         density=1.0 if weight_format == "binary" else 0.7)
    codes = _adversarial_codes(layer, rng, 6)
    _, actual, _ = run_unit(layer, codes, out_features, in_features, seed,
                            multipliers="hardwired")
    expected = output_stage(layer, dense_accumulate(layer, codes))
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), (f"input {index} {list(codes[index])}: expected "
                                         f"{list(want)}, got {list(got)}")


def test_hardwired_layer_takes_a_vector_per_cycle_at_its_latency():
    rng = np.random.default_rng(4)
    layer = random_dense(rng, 16, 8, in_format="uint8", weight_format="int8",
                         out_format="uint8", stage="requant")
    codes = rng.integers(0, 256, size=(12, 16))
    accepted = []
    dut, actual, cycles = run_unit(layer, codes, 8, 16, None, accepted, "hardwired")
    assert dut.cycles == 1
    assert cycles[0] - accepted[0] == dut.latency
    assert list(np.diff(cycles)) == [1] * (len(codes) - 1)
    assert (actual == output_stage(layer, dense_accumulate(layer, codes))).all()


def test_hardwired_layer_has_no_weight_memory_and_no_multiplication():
    layer = random_dense(np.random.default_rng(4), 8, 4, in_format="uint8",
                         weight_format="int8", out_format="uint8", stage="requant")
    dut = MatrixVectorUnit(layer, pe=4, simd=8, multipliers="hardwired")
    text = verilog.convert(dut, name="mvau")
    assert " * " not in text and "weights" not in text
    structure = dut.structure()
    assert "weights" not in {memory.use for memory in structure.memories}
    assert {group.logic for group in structure.multipliers} <= {True}
    assert structure.counts["graph_bits"] > 0 and structure.counts["graph_register_bits"] > 0
    assert structure.counts["tree_bits"] == 0
    assert LayerFold(4, 8, "hardwired").label == "4x8H"


def test_hardwired_layer_must_be_fully_parallel():
    layer = random_dense(np.random.default_rng(0), 8, 4, in_format="uint4",
                         weight_format="int4", out_format="uint4", stage="requant")
    with pytest.raises(ValueError, match=r"^Layer 'dense': hardwired multipliers need the "
                                         r"layer fully parallel \(pe 4, simd 8\), not pe 2, "
                                         r"simd 8$"):
        MatrixVectorUnit(layer, pe=2, simd=8, multipliers="hardwired")
