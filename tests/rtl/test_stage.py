# amaranth: UnusedElaboratable=no
"""The output stage (thresholds, requantization, accumulator) in Amaranth's simulator against
the golden model, plain and pipelined, with accumulators across the whole range."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwnn.quant.synthetic import random_dense
from hwnn.rtl.stage import PIECE_BITS, OutputStage, accumulator_pieces, stage_latency
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
    # Vectors one after another, group by group, with random idle cycles between groups.
    groups, wanted = [], []
    for vector in range(len(acc)):
        for group in range(stage.groups):
            if rng.random() < 0.3:
                groups.append(None)
            groups.append((group, acc[vector, group * lanes:(group + 1) * lanes]))
            wanted.append(expected[vector, group * lanes:(group + 1) * lanes])
    outputs, inputs = _run(stage, groups, 5)
    assert len(outputs) == len(wanted)
    for index, ((cycle, tag, values), want, accepted) in enumerate(
            zip(outputs, wanted, inputs, strict=True)):
        assert tag == index % 256, f"output {index}: tag {tag}"
        assert cycle - accepted == stage.latency, f"output {index}: after {cycle - accepted}"
        want = [int(v) for v in want]
        assert values == want, f"{name}, group input {index}: expected {want}, got {values}"


def test_wide_accumulators_are_split_into_pieces():
    layer = _layer("requant-wide")
    pieces = accumulator_pieces(layer.acc_bits)
    assert layer.acc_bits > 2 * PIECE_BITS
    assert [offset for offset, _, _ in pieces] == [0, PIECE_BITS, 2 * PIECE_BITS]
    assert sum(width for _, width, _ in pieces) == layer.acc_bits
    assert [is_signed for _, _, is_signed in pieces] == [False, False, True]
    assert accumulator_pieces(16) == [(0, 16, True)]
    assert accumulator_pieces(17) == [(0, 16, False), (16, 1, True)]


def test_rejects_a_pipelined_flag_that_is_not_a_bool():
    with pytest.raises(TypeError, match=r"^pipelined must be True or False, not 1$"):
        OutputStage(_layer("thresholds"), 2, pipelined=1)
