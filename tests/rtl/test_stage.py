# amaranth: UnusedElaboratable=no
"""The output stage (thresholds, requantization, accumulator) in Amaranth's simulator against
the golden model, plain and pipelined, with accumulators across the whole range."""

import dataclasses
import re

import numpy as np
import pytest
from amaranth import Signal, Value
from amaranth.back import verilog
from amaranth.sim import Simulator

from hwnn.ir import Thresholds
from hwnn.quant.synthetic import random_dense
from hwnn.rtl.arith import signed_digits
from hwnn.rtl.stage import (PIECE_BITS, OutputStage, accumulator_pieces, parameter_bits,
                            stage_latency)
from hwnn.sim.golden import output_stage

LAYERS = {
    # name: (in, out, input format, weight format, output format, stage)
    "requant-wide": (8, 6, "int16", "int16", "int8", "requant"),
    "requant-narrow": (6, 6, "uint3", "int3", "uint4", "requant"),
    "thresholds": (12, 6, "uint4", "ternary", "uint2", "thresholds"),
    "accumulator": (12, 4, "uint8", "int8", None, "accumulator"),
}


def _layer(name):
    in_features, out_features, in_format, weight_format, out_format, stage = LAYERS[name]
    return random_dense(np.random.default_rng(11), in_features, out_features,
                        in_format=in_format, weight_format=weight_format,
                        out_format=out_format, stage=stage)


def _accumulators(layer, rng, count):
    """Random accumulators inside each channel's range, with both ends of it."""
    lo, hi = layer.acc_range
    acc = np.array([rng.integers(lo, hi + 1) for _ in range(count)], dtype=object)
    acc[0], acc[1] = lo, hi
    return acc


def _run(stage, groups, seed):
    """Feed ``groups`` (per cycle: None or (group index, accumulators)) with a tag counting
    the inputs; return each output's (cycle, tag, values) and each input's cycle."""
    sim = Simulator(stage)
    sim.add_clock(1e-6)
    outputs, inputs = [], []

    async def bench(ctx):
        tag = 0
        for cycle, entry in enumerate(groups + [None] * (stage.latency + 2)):
            if entry is None:
                ctx.set(stage.i_acc.valid, 0)
            else:
                group, accs = entry
                ctx.set(stage.i_acc.valid, 1)
                ctx.set(stage.i_acc.payload.group, group)
                ctx.set(stage.i_acc.payload.tag, tag % 256)
                for lane, value in enumerate(accs):
                    ctx.set(stage.i_acc.payload.acc[lane], int(value))
                inputs.append(cycle)
                tag += 1
            valid, out_tag, values = (ctx.get(stage.o_values.valid),
                                      ctx.get(stage.o_values.payload.tag),
                                      ctx.get(stage.o_values.payload.values))
            if valid:
                outputs.append((cycle, out_tag, [int(v) for v in values]))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return outputs, inputs


def _check_groups(stage, acc, expected, rng, label):
    """Stream the accumulator vectors ``acc`` through ``stage`` group by group, with random
    idle cycles between groups, padding lanes past the last channel with zeros; every output
    must come at the stage's latency with its tag and the ``expected`` values."""
    lanes = stage.lanes
    groups, wanted = [], []
    for vector in range(len(acc)):
        for group in range(stage.groups):
            if rng.random() < 0.3:
                groups.append(None)
            channels = slice(group * lanes, (group + 1) * lanes)
            groups.append((group, list(acc[vector, channels])
                           + [0] * (lanes - len(acc[vector, channels]))))
            wanted.append([int(v) for v in expected[vector, channels]])
    outputs, inputs = _run(stage, groups, 5)
    assert len(outputs) == len(wanted)
    for index, ((cycle, tag, values), want, accepted) in enumerate(
            zip(outputs, wanted, inputs, strict=True)):
        assert tag == index % 256, f"output {index}: tag {tag}"
        assert cycle - accepted == stage.latency, f"output {index}: after {cycle - accepted}"
        assert values[:len(want)] == want, \
            f"{label}, group input {index}: expected {want}, got {values}"


@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("name", LAYERS)
def test_matches_golden_at_its_latency(name, pipelined):
    layer = _layer(name)
    lanes = 2
    stage = OutputStage(layer, lanes, tag_bits=8, pipelined=pipelined)
    assert stage.latency == stage_latency(layer, pipelined)
    rng = np.random.default_rng(5)
    acc = _accumulators(layer, rng, 40)
    expected = output_stage(layer, acc.astype(np.int64) if layer.acc_bits < 63 else acc)
    _check_groups(stage, acc, expected, rng, name)


@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("name", ["requant-wide", "requant-narrow"])
def test_requantization_in_logic_matches_golden_at_the_same_latency(name, pipelined):
    layer = _layer(name)
    stage = OutputStage(layer, 2, tag_bits=8, pipelined=pipelined, logic_multipliers=True)
    assert stage.latency == stage_latency(layer, pipelined, logic_multipliers=True)
    rng = np.random.default_rng(6)
    acc = _accumulators(layer, rng, 40)
    _check_groups(stage, acc, output_stage(layer, acc.astype(np.int64)), rng, name)


@pytest.mark.parametrize("multiplier", [0, 1, 34014, 2**16 - 1, 0b1010101010101011])
@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
def test_a_shared_multiplier_in_logic_is_a_constant_and_matches_golden(multiplier, pipelined):
    """Per-tensor scaling: every channel's multiplier the same, multiplied as a constant (its
    signed digits), with no multiplier ROM; extreme and dense-digit multipliers."""
    layer = _layer("requant-wide")
    shared = np.full(layer.out_features, multiplier)
    layer = dataclasses.replace(layer, stage=dataclasses.replace(layer.stage, multiplier=shared))
    stage = OutputStage(layer, 2, tag_bits=8, pipelined=pipelined, logic_multipliers=True)
    assert "multiplier" not in stage.parameter_words()
    # No parameter ROM to wait for: the ROM read (and its register, pipelined) is saved;
    # pipelined, a register after each level of the digits' adder tree, two cycles at least.
    levels = max(1, (len(signed_digits(multiplier)) - 1).bit_length())
    deeper = max(0, levels - 2) if pipelined else 0
    assert stage.latency == stage_latency(layer, pipelined) - (2 if pipelined else 1) + deeper
    [terms] = {group.terms for group in stage.structure().multipliers}
    assert terms == len(signed_digits(multiplier)) <= 9
    rng = np.random.default_rng(multiplier)
    acc = _accumulators(layer, rng, 30)
    _check_groups(stage, acc, output_stage(layer, acc.astype(np.int64)), rng, f"M={multiplier}")


@pytest.mark.parametrize("logic", [False, True], ids=["dsp", "logic"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("shift", [0, 1, 2])
def test_every_accumulator_across_the_clamp_edges_matches_golden(shift, pipelined, logic):
    """A shared multiplier of 1 and a shared shift (constants in the stage), the layer's zero point:
    every accumulator of the layer's range, so every rounding step and both clamp edges
    (the last value clamped and the first not, at each end) are met exactly: every value of
    the accumulators' width (wider than any channel's range)."""
    layer = _layer("requant-narrow")
    ones = np.ones(layer.out_features, dtype=np.int64)
    layer = dataclasses.replace(layer, stage=dataclasses.replace(
        layer.stage, multiplier=ones, shift=ones * shift))
    lo, hi = -(1 << layer.acc_bits - 1), (1 << layer.acc_bits - 1) - 1
    stage = OutputStage(layer, 2, tag_bits=8, pipelined=pipelined, logic_multipliers=logic)
    values = np.arange(lo, hi + 1)
    acc = np.repeat(values[:, None], layer.out_features, axis=1).astype(object)
    expected = output_stage(layer, acc.astype(np.int64))
    assert {0, 15} <= set(expected.ravel()) and len(set(expected.ravel())) == 16
    _check_groups(stage, acc, expected, np.random.default_rng(shift), f"shift {shift}")


@pytest.mark.parametrize("logic", [False, True], ids=["dsp", "logic"])
@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("shift", [0, 3])
def test_wide_accumulators_across_the_clamp_edges_match_golden(shift, pipelined, logic):
    """An accumulator of more than one piece (pipelined on DSP blocks: a product summed from
    the pieces' products), a shared multiplier and shift: every accumulator around both
    clamp edges (where the result leaves the output range, each rounding step on either
    side), both ends of the accumulators' range and zero."""
    layer = _layer("requant-wide")
    assert layer.acc_bits > PIECE_BITS
    multiplier, zero_point = 3, int(layer.stage.zero_point)
    ones = np.ones(layer.out_features, dtype=np.int64)
    layer = dataclasses.replace(layer, stage=dataclasses.replace(
        layer.stage, multiplier=ones * multiplier, shift=ones * shift))
    lo, hi = -(1 << layer.acc_bits - 1), (1 << layer.acc_bits - 1) - 1
    reach = (1 << shift) + 3
    values = [lo, lo + 1, -1, 0, 1, hi - 1, hi]
    for edge in (layer.stage.lo - zero_point, layer.stage.hi + 1 - zero_point):
        center = (edge << shift) // multiplier
        values += range(center - reach, center + reach + 1)
    acc = np.repeat(np.array(values, dtype=object)[:, None], layer.out_features, axis=1)
    expected = output_stage(layer, acc.astype(np.int64))
    assert {layer.stage.lo, layer.stage.hi} < set(expected.ravel())
    stage = OutputStage(layer, 3, tag_bits=8, pipelined=pipelined, logic_multipliers=logic)
    _check_groups(stage, acc, expected, np.random.default_rng(shift), f"shift {shift}")


def test_requantization_in_logic_has_no_multiplication_and_counts_as_logic():
    """Synthesis maps only multiplications (``$mul``) to DSP blocks; a stage whose
    multipliers are in logic has none, and reports its multipliers as logic."""
    layer = _layer("requant-wide")
    for logic in (False, True):
        stage = OutputStage(layer, 2, pipelined=True, logic_multipliers=logic)
        multiplies = re.findall(r"= [^;]* \* [^;]*;", _verilog(stage))
        assert bool(multiplies) != logic
        assert {multipliers.logic for multipliers in stage.structure().multipliers} == {logic}


#: Output format of a threshold stage: its latency plain and pipelined. A binary search over
#: ``levels - 1`` thresholds takes ``k = ceil(log2(levels))`` steps, a cycle each (two
#: pipelined), and the output register comes on top.
SEARCH_LATENCY = {"binary": (2, 3), "ternary": (3, 5), "uint2": (3, 5), "uint4": (5, 9),
                  "uint8": (9, 17), "uint16": (17, 33)}


def _search_layer(out_format, edges, rng):
    """A 5-channel threshold layer; with ``edges``, thresholds at and beyond both ends of each
    channel's accumulator range (``lo - 1``, ``lo``, ``hi``, ``hi + 1``), repeated, and
    channels 0, 2 and 4 descending."""
    layer = random_dense(rng, 12, 5, in_format="int8", weight_format="int8",
                         out_format=out_format, stage="thresholds")
    if not edges:
        return layer
    lo, hi = layer.acc_range
    count = layer.stage.values.shape[1]
    values = np.array([rng.choice(np.concatenate([
        [lo[c] - 1, lo[c], hi[c], hi[c] + 1] * 2, rng.integers(lo[c] - 1, hi[c] + 2, 8)]),
        size=count) for c in range(5)])
    # Every edge once in every channel, when there are thresholds enough.
    if count >= 4:
        values[:, :4] = np.stack([lo - 1, lo, hi, hi + 1], axis=1)
    values = np.sort(values, axis=1)
    descending = np.array([True, False, True, False, True])
    values = np.where(descending[:, None], values[:, ::-1], values)
    return dataclasses.replace(layer, stage=Thresholds(values, descending))


def _probe_accumulators(layer, rng, count):
    """Accumulators inside each channel's range: both ends, each side of thresholds, random."""
    lo, hi = layer.acc_range
    thresholds = layer.stage.values
    acc = np.array([rng.integers(lo, hi + 1) for _ in range(count)])
    acc[0], acc[1] = lo, hi
    for c in range(layer.out_features):
        near = rng.choice(thresholds[c], size=count - 2)[:, None] + np.array([-1, 0, 1])
        acc[2:, c] = np.clip(near[np.arange(count - 2), rng.integers(0, 3, count - 2)],
                             lo[c], hi[c])
    return acc


@pytest.mark.parametrize("pipelined", [False, True], ids=["plain", "pipelined"])
@pytest.mark.parametrize("edges", [False, True], ids=["random", "edges"])
@pytest.mark.parametrize("out_format", [
    pytest.param(fmt, marks=pytest.mark.slow if fmt == "uint16" else ())
    for fmt in SEARCH_LATENCY])
def test_threshold_search_matches_golden(out_format, edges, pipelined):
    rng = np.random.default_rng(17)
    layer = _search_layer(out_format, edges, rng)
    lanes = 2        # three groups, the last with a padding channel
    stage = OutputStage(layer, lanes, tag_bits=8, pipelined=pipelined)
    assert stage.latency == SEARCH_LATENCY[out_format][pipelined]
    acc = _probe_accumulators(layer, rng, 30)
    expected = output_stage(layer, acc)
    _check_groups(stage, acc, expected, rng, out_format)


def _verilog(stage):
    """The stage's Verilog (ports: its signals; ``i_acc.ready`` is a constant)."""
    ports = [Value.cast(value) for _, _, value in stage.signature.flatten(stage)
             if isinstance(Value.cast(value), Signal)]
    return verilog.convert(stage, name="stage", ports=ports, emit_src=False)


def _logic(text):
    """Verilog without the ROMs' initial contents."""
    return re.sub(r"  initial begin\n(?:    .*\n)*?  end\n", "", text)


def test_threshold_logic_grows_with_the_search_steps_not_the_levels():
    """255 thresholds per channel: ROMs of 2**k - 1 thresholds per channel and a comparator
    per step and lane; the logic grows with the 8 steps (4 times the 2 steps of 3
    thresholds), not with the thresholds (with a comparator per threshold, 15 thresholds
    alone gave 15 times the logic of 3, and 255 did not convert in 15 minutes)."""
    layers = {fmt: random_dense(np.random.default_rng(1), 16, 8, in_format="uint8",
                                weight_format="int8", out_format=fmt, stage="thresholds")
              for fmt in ("uint2", "uint8")}
    wide = layers["uint8"]
    # 8 channels of 255 thresholds, one direction bit each.
    assert parameter_bits(wide, 2) == 8 * 255 * wide.threshold_bits + 8
    texts = {fmt: _verilog(OutputStage(layer, 2)) for fmt, layer in layers.items()}
    assert len(_logic(texts["uint8"])) < 4 * len(_logic(texts["uint2"]))
    assert len(texts["uint8"]) < 150_000


def test_wide_accumulators_are_split_into_pieces():
    layer = _layer("requant-wide")
    pieces = accumulator_pieces(layer.acc_bits)
    assert layer.acc_bits > 2 * PIECE_BITS
    assert [offset for offset, _, _ in pieces] == [0, PIECE_BITS, 2 * PIECE_BITS]
    assert sum(width for _, width, _ in pieces) == layer.acc_bits
    assert [is_signed for _, _, is_signed in pieces] == [False, False, True]
    assert accumulator_pieces(16) == [(0, 16, True)]
    assert accumulator_pieces(17) == [(0, 16, False), (16, 1, True)]


@pytest.mark.parametrize("name", ["pipelined", "logic_multipliers"])
def test_rejects_a_flag_that_is_not_a_bool(name):
    with pytest.raises(TypeError, match=rf"^{name} must be True or False, not 1$"):
        OutputStage(_layer("thresholds"), 2, **{name: 1})
