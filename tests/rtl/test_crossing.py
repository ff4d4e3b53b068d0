# amaranth: UnusedElaboratable=no
"""The stream crossing between clock domains: every payload arrives once, in order, whatever
the two clocks and the stalls on either side; the output keeps its payload until taken."""

import random

import pytest
from amaranth.sim import Simulator

from hwnn.rtl.crossing import StreamCrossing

PAYLOADS = 120


@pytest.mark.parametrize("i_period, o_period", [(10, 10), (10, 37), (37, 10), (10, 41.3)],
                         ids=["same-clock", "slower-output", "slower-input", "unrelated"])
@pytest.mark.parametrize("seed", [1, 2])
def test_every_payload_crosses_once_in_order(i_period, o_period, seed):
    rng = random.Random(seed)
    same = i_period == o_period
    i_domain, o_domain = ("sync", "sync") if same else ("source", "sink")
    dut = StreamCrossing(16, i_domain=i_domain, o_domain=o_domain)
    sent = [rng.randrange(1 << 16) for _ in range(PAYLOADS)]
    received, problems = [], []

    async def produce(ctx):
        for value in sent:
            while rng.random() < 0.3:
                await ctx.tick(i_domain)
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, value)
            await ctx.tick(i_domain).until(dut.i_stream.ready)
            ctx.set(dut.i_stream.valid, 0)
            ctx.set(dut.i_stream.payload, 0xDEAD)          # the crossing keeps its copy

    async def consume(ctx):
        offered = None                                     # a payload offered, not taken
        while len(received) < PAYLOADS:
            ready = rng.random() < 0.5
            ctx.set(dut.o_stream.ready, ready)
            _, _, valid, payload = await ctx.tick(o_domain).sample(dut.o_stream.valid,
                                                                   dut.o_stream.payload)
            if offered is not None and (not valid or payload != offered):
                problems.append(f"payload {offered:#x} withdrawn before it was taken "
                                f"(then valid={valid}, payload={payload:#x})")
            offered = None
            if valid and ready:
                received.append(payload)
            elif valid:
                offered = payload

    sim = Simulator(dut)
    sim.add_clock(i_period * 1e-9, domain=i_domain)
    if not same:
        sim.add_clock(o_period * 1e-9, domain=o_domain)
    sim.add_testbench(produce)
    sim.add_testbench(consume)
    sim.run_until(PAYLOADS * 20 * max(i_period, o_period) * 1e-9)
    assert problems == []
    assert received == sent


def test_a_payload_takes_two_edges_of_each_domain():
    """Offered from the third output edge after the input edge that took it (taken at the
    fourth); the input is ready again from the third input edge after the output edge that
    took it: eight cycles a payload in one domain."""
    dut = StreamCrossing(8)
    timeline = []

    async def bench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        ctx.set(dut.i_stream.valid, 1)
        ctx.set(dut.i_stream.payload, 0x5A)
        for cycle in range(10):
            _, _, i_ready, o_valid, payload = await ctx.tick().sample(
                dut.i_stream.ready, dut.o_stream.valid, dut.o_stream.payload)
            timeline.append((cycle, i_ready, o_valid, payload if o_valid else None))
            if cycle == 0:
                ctx.set(dut.i_stream.valid, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    # Taken in at edge 0, taken out at edge 4, ready again for edge 8.
    assert timeline == [(0, 1, 0, None), *((cycle, 0, 0, None) for cycle in (1, 2, 3)),
                        (4, 0, 1, 0x5A), *((cycle, 0, 0, None) for cycle in (5, 6, 7)),
                        (8, 1, 0, None), (9, 1, 0, None)]


def test_domains_are_names():
    with pytest.raises(TypeError, match=r"^StreamCrossing o_domain must be a clock domain "
                                        r"name, not 3$"):
        StreamCrossing(8, o_domain=3)
