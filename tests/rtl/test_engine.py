# amaranth: UnusedElaboratable=no
"""The parts shared by the layer-by-layer engines, on their own."""

import math

import pytest
from amaranth.sim import Simulator

from hwnn.quant.synthetic import sample_network
from hwnn.rtl.dataflow import DataflowAccelerator
from hwnn.rtl.engine import LayerCounters, OutputDrain, bias_words
from hwnn.rtl.folding import LayerFold
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay
from hwnn.rtl.sparse import SparseAccelerator, SparseParams


def test_bias_words_pack_lanes_low_first_and_pad_with_zeros():
    words, bases = bias_words([[1, -2, 3], [4]], [2, 2], lanes=2, bits=4)
    # -2 in 4 bits is 0b1110; layer 0's second word holds 3 and a padding zero.
    assert words == [0b1110_0001, 0b0000_0011, 0b0000_0100, 0]
    assert bases == [0, 2]


def test_layer_counters_count_the_enabled_cycles_of_the_current_layer():
    dut = LayerCounters(3)
    pattern = [(0, 1), (0, 1), (1, 0), (1, 1), (2, 1), (0, 0), (2, 1), (2, 1)]

    async def bench(ctx):
        for layer, enable in pattern:
            ctx.set(dut.layer, layer)
            ctx.set(dut.enable, enable)
            await ctx.tick()
        assert [ctx.get(count) for count in dut.counts] == [2, 1, 3]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("buffered, delay", [(True, 2), (False, 1)])
def test_output_drain_splits_words_and_says_when_the_burst_ended(buffered, delay):
    # Words of 4 two-bit values, beats of 2 values; a vector is 2 words of which the second
    # holds 2 values (tail), so 3 beats per vector. Two vectors, the second ends the burst.
    dut = OutputDrain(2, 4, 2, 2, depth=4, buffered=buffered)
    words = [(0x1B, 0, 0), (0x06, 1, 0), (0xE4, 0, 0), (0x09, 1, 1)]
    beats, ended = [], []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for cycle in range(12):
            if cycle < len(words):
                data, final, end = words[cycle]
                ctx.set(dut.i_word.payload, {"data": data, "final": final, "end": end})
                ctx.set(dut.i_word.valid, 1)
            else:
                ctx.set(dut.i_word.valid, 0)
            if ctx.get(dut.o_stream.valid):
                beats.append((ctx.get(dut.o_stream.payload.data),
                              ctx.get(dut.o_stream.payload.last)))
            if ctx.get(dut.ended):
                ended.append(cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert beats == [(0xB, 0), (0x1, 0), (0x6, 1), (0x4, 0), (0xE, 0), (0x9, 1)]
    # The first word (written in cycle 0) is offered `delay` cycles later; from then on one
    # beat leaves per cycle, and the burst's last word leaves with the sixth beat.
    assert ended == [delay + 5]


@pytest.mark.parametrize("make, lanes", [
    (lambda net: DataflowAccelerator(net, [LayerFold(2, 4), LayerFold(1, 2), LayerFold(2, 2)]),
     None),
    (lambda net: SystolicOverlay(net, OverlayParams(3, 6, 2)), 6),
    (lambda net: SparseAccelerator(net, SparseParams(pes=6)), 6),
])
def test_every_top_says_how_many_values_each_beat_carries(make, lanes):
    network = sample_network("ternary", seed=5)
    top = make(network)
    assert top.i_stream.payload.shape().count == top.in_count
    assert top.o_stream.payload.shape().count == top.out_count
    if lanes is None:
        assert (top.in_count, top.out_count) == (4, 2)
    else:
        assert top.in_count == math.gcd(network.in_features, lanes)
        assert top.out_count == math.gcd(network.out_features, lanes)


def test_an_overlay_refuses_parameters_of_another_type():
    with pytest.raises(TypeError, match=r"^params must be an OverlayParams, not 3$"):
        SystolicOverlay(sample_network("int8", seed=1), 3)
