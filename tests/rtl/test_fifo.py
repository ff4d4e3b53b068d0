# amaranth: UnusedElaboratable=no
"""FlagFIFO against a reference model, cycle by cycle, and against SyncFIFOBuffered."""

import random
from collections import deque

import pytest
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.sim import Simulator

from hwnn.rtl.fifo import FlagFIFO


def ports(dut):
    """(w_data, w_en, w_rdy, r_data, r_rdy, r_en) of a FlagFIFO (its streams) or an Amaranth
    FIFO."""
    if isinstance(dut, FlagFIFO):
        i, o = dut.i_stream, dut.o_stream
        return i.payload, i.valid, i.ready, o.payload, o.valid, o.ready
    return dut.w_data, dut.w_en, dut.w_rdy, dut.r_data, dut.r_rdy, dut.r_en


def run(dut, cycles, seed, p_write, p_read):
    """Random writes and reads; per cycle (w_rdy, r_rdy, r_data if r_rdy, wrote, read, level)."""
    rng = random.Random(seed)
    trace = []
    w_data, w_en_port, w_rdy_port, r_data_port, r_rdy_port, r_en_port = ports(dut)

    async def bench(ctx):
        word = 0
        for _ in range(cycles):
            w_en, r_en = rng.random() < p_write, rng.random() < p_read
            ctx.set(w_en_port, w_en)
            ctx.set(w_data, word)
            ctx.set(r_en_port, r_en)
            w_rdy, r_rdy, r_data = ctx.get(w_rdy_port), ctx.get(r_rdy_port), ctx.get(r_data_port)
            trace.append((w_rdy, r_rdy, r_data if r_rdy else None, w_en and w_rdy,
                          r_en and r_rdy, ctx.get(dut.level)))
            if w_en and w_rdy:
                word += 1
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return trace


@pytest.mark.parametrize("depth", [2, 3, 5, 8])
@pytest.mark.parametrize("p_write, p_read", [(0.9, 0.9), (0.9, 0.3), (0.3, 0.9), (0.6, 0.6)])
def test_words_come_out_in_order_and_the_flags_are_exact(depth, p_write, p_read):
    trace = run(FlagFIFO(8, depth=depth), 400, depth, p_write, p_read)
    model, total = deque(), 0
    for cycle, (w_rdy, r_rdy, r_data, wrote, read, level) in enumerate(trace):
        assert level == total, (cycle, level, total)
        # depth - 1 words in the memory and one in the output register; a write is refused
        # only while the memory is full.
        assert w_rdy == (total - r_rdy < depth - 1), (cycle, total)
        assert total <= depth
        if r_rdy:
            assert r_data == model[0], (cycle, r_data, model[0])
        if read:
            model.popleft()
            total -= 1
        if wrote:
            model.append(sum(1 for _, _, _, w, _, _ in trace[:cycle] if w) & 0xFF)
            total += 1
    assert sum(1 for *_, read, _ in trace if read) > 50


@pytest.mark.parametrize("depth", [2, 4, 7])
def test_it_behaves_as_sync_fifo_buffered_cycle_by_cycle(depth):
    """Same stimulus, same flags, data and level in every cycle as Amaranth's
    SyncFIFOBuffered."""
    ours = run(FlagFIFO(6, depth=depth), 300, 7, 0.7, 0.6)
    theirs = run(SyncFIFOBuffered(width=6, depth=depth), 300, 7, 0.7, 0.6)
    assert ours == theirs


def test_a_depth_below_two_is_refused():
    with pytest.raises(ValueError, match="FlagFIFO depth must be an integer of at least 2"):
        FlagFIFO(4, depth=1)
