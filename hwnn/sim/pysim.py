"""Amaranth-simulator helpers: bounded stream transfers with seeded random stalls.

Every wait is bounded (a hung handshake fails instead of hanging) and every random choice
comes from a seed (a failure replays exactly).
"""

import random

from amaranth.sim import Simulator

__all__ = ["run_stream", "stream_get", "stream_put"]


async def stream_put(ctx, stream, payload, *, timeout=10_000):
    """Offer ``payload`` on ``stream`` until it is accepted (at most ``timeout`` cycles)."""
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    for _ in range(timeout):
        _, _, ready = await ctx.tick().sample(stream.ready)
        if ready:
            ctx.set(stream.valid, 0)
            return
    raise AssertionError(f"payload not accepted within {timeout} cycles")


async def stream_get(ctx, stream, *, timeout=10_000):
    """Accept one payload from ``stream``, waiting at most ``timeout`` cycles for it."""
    ctx.set(stream.ready, 1)
    for _ in range(timeout):
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid:
            ctx.set(stream.ready, 0)
            return payload
    raise AssertionError(f"no payload offered within {timeout} cycles")


def run_stream(dut, *, i_stream, o_stream, inputs, n_outputs, seed=None, vcd=None,
               timeout=10_000, input_cycles=None):
    """Push ``inputs`` into ``i_stream`` and collect ``n_outputs`` payloads from ``o_stream``.

    With a ``seed`` the producer idles and the consumer back-pressures at random (seeded), which
    exercises every valid/ready combination; without one both run at full rate. Returns the
    outputs and, for each, the cycle at which it was accepted; the cycle at which each input
    was accepted is appended to ``input_cycles`` when that list is given.
    """
    rng = random.Random(seed)

    def stall():
        return rng.choice((0, 0, 0, 1, 3)) if seed is not None else 0

    outputs, cycles = [], []
    clock = [0]

    async def counter(ctx):
        async for _ in ctx.tick():
            clock[0] += 1

    async def producer(ctx):
        for payload in inputs:
            if idle := stall():
                await ctx.tick().repeat(idle)
            await stream_put(ctx, i_stream, payload, timeout=timeout)
            if input_cycles is not None:
                input_cycles.append(clock[0])

    async def consumer(ctx):
        while len(outputs) < n_outputs:
            if idle := stall():
                await ctx.tick().repeat(idle)
            outputs.append(await stream_get(ctx, o_stream, timeout=timeout))
            cycles.append(clock[0])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(counter, background=True)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    if vcd is not None:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return outputs, cycles
