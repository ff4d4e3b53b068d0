"""Amaranth-simulator helpers: bounded stream transfers with seeded random stalls.

Every wait is bounded (a hung handshake fails instead of hanging) and every random choice
comes from a seed (a failure replays exactly).
"""

import random

from amaranth.hdl import ClockDomain, Const, Module
from amaranth.sim import Simulator

from ..rtl.engine import load_port
from .loader import WordLoader

__all__ = ["load_of", "run_bench", "run_stream", "run_vectors", "stream_get", "stream_put"]


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
               timeout=10_000, input_cycles=None, load=None):
    """Push ``inputs`` into ``i_stream`` and collect ``n_outputs`` payloads from ``o_stream``.

    With a ``seed`` the producer idles and the consumer back-pressures at random (seeded), which
    exercises every valid/ready combination; without one both run at full rate. ``load``, if
    given, is ``(stream, words)``: the design's load stream and the words it takes meanwhile
    (from the start; :class:`~hwnn.sim.loader.WordLoader`, idling at random with the same
    seed). Returns the outputs and, for each, the cycle at which it was accepted; the cycle at
    which each input was accepted is appended to ``input_cycles`` when that list is given.
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
    if load is not None:
        stream, words = load
        sim.add_testbench(_loader(stream, WordLoader(words, seed)))
    if vcd is not None:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return outputs, cycles


def _loader(stream, loader, rst=None):
    """A testbench process that feeds ``stream`` from ``loader`` (a
    :class:`~hwnn.sim.loader.WordLoader`): until it is done, or for ever, starting again after
    each cycle of ``rst``, when given."""
    async def process(ctx):
        while rst is not None or not loader.done:
            valid, word = loader.drive()
            ctx.set(stream.valid, valid)
            ctx.set(stream.payload, word)
            _, _, ready, reset = await ctx.tick().sample(stream.ready,
                                                         Const(0) if rst is None else rst)
            loader.observe(reset, ready)
        ctx.set(stream.valid, 0)
    return process


def run_vectors(dut, network, codes, *, seed=None, timeout=20_000):
    """Stream the input ``codes`` (N x features) through ``dut``, a network top with
    ``i_stream``/``o_stream`` of ``in_count``/``out_count`` values per beat (and, where it has
    one, its load stream fed its ``load_words``), and collect the outputs.

    Checks that ``last`` marks exactly each output vector's final beat; returns the output
    codes (N x out_features) and the cycle at which each output beat was accepted.
    """
    from .beats import beats_to_vectors, vectors_to_beats

    outputs, cycles = run_stream(
        dut, i_stream=dut.i_stream, o_stream=dut.o_stream,
        inputs=vectors_to_beats(codes, network.input.format, dut.in_count),
        n_outputs=len(codes) * network.out_features // dut.out_count, seed=seed,
        timeout=timeout, load=load_of(dut))
    per_vector = network.out_features // dut.out_count
    lasts = [int(beat.last) for beat in outputs]
    if lasts != ([0] * (per_vector - 1) + [1]) * len(codes):
        raise AssertionError(f"last is not set on exactly every {per_vector}th output beat: "
                             f"{lasts}")
    actual = beats_to_vectors([beat.data for beat in outputs], network.output.format,
                              dut.out_count, network.out_features)
    return actual, cycles


def load_of(dut):
    """``(stream, words)`` of ``dut``'s load stream and its ``load_words``, or None without
    one (:func:`~hwnn.rtl.engine.load_port`)."""
    stream = load_port(dut)
    return None if stream is None else (stream, dut.load_words)


def run_bench(dut, bench, *, seed=None):
    """Run ``bench`` (a :class:`~hwnn.sim.resets.ResetBench`) on ``dut``, a network top with
    ``i_stream``/``o_stream``, driving its ``sync`` domain's reset, until the bench is done; a
    load stream, where the top has one, is fed its ``load_words`` (idling at random with
    ``seed``) after every reset."""
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut
    i_data, o_data = dut.i_stream.payload.as_value(), dut.o_stream.payload.as_value()

    async def testbench(ctx):
        while not bench.done:
            rst, valid, word, ready = bench.drive()
            ctx.set(domain.rst, rst)
            ctx.set(dut.i_stream.valid, valid)
            ctx.set(i_data, word)
            ctx.set(dut.o_stream.ready, ready)
            _, _, *sampled = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid,
                                                     o_data)
            bench.observe(*sampled)

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if (load := load_of(dut)) is not None:
        stream, words = load
        sim.add_testbench(_loader(stream, WordLoader(words, seed), domain.rst),
                          background=True)
    sim.run()
