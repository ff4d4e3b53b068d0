# amaranth: UnusedElaboratable=no
import random
from math import ceil

import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwnn.ir.packing import pack_values, unpack_values
from hwnn.rtl.widthconv import WidthConverter, WordSplitter
from hwnn.sim.pysim import run_stream, stream_get, stream_put

CONFIGS = [
    # width, in_count, out_count, vector
    (4, 1, 1, 4),
    (4, 3, 4, 12),
    (3, 4, 6, 24),
    (8, 8, 2, 16),
    (2, 2, 8, 16),
    (5, 1, 5, 10),
    (4, 6, 4, 12),
]
N_VECTORS = 4


def _vectors(width, vector, seed=1234):
    rng = random.Random(seed)
    return [[rng.randrange(1 << width) for _ in range(vector)] for _ in range(N_VECTORS)]


def _beats(vectors, count, width, *, last=True):
    beats = []
    for values in vectors:
        for start in range(0, len(values), count):
            end = start + count
            beats.append({"data": pack_values(values[start:end], width),
                          "last": int(last and end == len(values))})
    return beats


def _clocked(dut):
    # The wire-through (in_count == out_count) has no `sync` domain of its own, and
    # `Simulator.add_clock` (run_stream, the testbenches) refuses a design without one.
    m = Module()
    m.domains.sync = ClockDomain()
    m.submodules.dut = dut
    return m


def _convert(dut, inputs, n_outputs, seed):
    outputs, cycles = run_stream(_clocked(dut), i_stream=dut.i_stream, o_stream=dut.o_stream,
                                 inputs=inputs, n_outputs=n_outputs, seed=seed, timeout=1000)
    values = [v for beat in outputs for v in unpack_values(beat.data, dut.out_count, dut.width)]
    lasts = [int(beat.last) for beat in outputs]
    return values, lasts, cycles


@pytest.mark.parametrize("width, in_count, out_count, vector", CONFIGS)
@pytest.mark.parametrize("seed", [None, 0, 1])
def test_preserves_values_and_framing(width, in_count, out_count, vector, seed):
    dut = WidthConverter(width, in_count, out_count, vector)
    vectors = _vectors(width, vector)
    out_beats, in_beats = vector // out_count, vector // in_count

    values, lasts, cycles = _convert(dut, _beats(vectors, in_count, width),
                                     N_VECTORS * out_beats, seed)

    assert values == [v for values in vectors for v in values]
    assert lasts == ([0] * (out_beats - 1) + [1]) * N_VECTORS
    if seed is None:
        # Never the bottleneck: one vector every max(in_beats, out_beats) cycles.
        period = max(in_beats, out_beats)
        gaps = [cycles[k + out_beats] - cycles[k] for k in range(len(cycles) - out_beats)]
        assert gaps == [period] * len(gaps)


@pytest.mark.parametrize("width, in_count, out_count, vector", [(4, 3, 4, 12), (8, 8, 2, 16)])
def test_frames_by_count_ignoring_input_last(width, in_count, out_count, vector):
    dut = WidthConverter(width, in_count, out_count, vector)
    vectors = _vectors(width, vector)
    out_beats = vector // out_count

    values, lasts, _ = _convert(dut, _beats(vectors, in_count, width, last=False),
                                N_VECTORS * out_beats, seed=0)

    assert values == [v for values in vectors for v in values]
    assert lasts == ([0] * (out_beats - 1) + [1]) * N_VECTORS


def test_wire_through_passes_last():
    dut = WidthConverter(4, 2, 2, 4)
    inputs = [{"data": 0x12, "last": 1}, {"data": 0x34, "last": 0}, {"data": 0x56, "last": 0}]

    outputs, _ = run_stream(_clocked(dut), i_stream=dut.i_stream, o_stream=dut.o_stream,
                            inputs=inputs, n_outputs=3, seed=0, timeout=1000)

    assert [(int(o.data), int(o.last)) for o in outputs] == [(0x12, 1), (0x34, 0), (0x56, 0)]


@pytest.mark.parametrize("width, in_count, out_count, vector", CONFIGS)
def test_latency(width, in_count, out_count, vector):
    dut = WidthConverter(width, in_count, out_count, vector)
    needed = ceil(out_count / in_count)   # input beats that fill the first output beat
    measured = []

    async def testbench(ctx):
        ctx.set(dut.o_stream.ready, 1)
        for _ in range(needed - 1):
            await stream_put(ctx, dut.i_stream, {"data": 0, "last": 0}, timeout=100)
        ctx.set(dut.i_stream.payload, {"data": 0, "last": 0})
        ctx.set(dut.i_stream.valid, 1)
        # Edges from the one accepting the beat to the first at which an output is offered.
        accepted = None
        for edge in range(10):
            _, _, ready, valid = await ctx.tick().sample(dut.i_stream.ready, dut.o_stream.valid)
            if accepted is None and ready:
                accepted = edge
                ctx.set(dut.i_stream.valid, 0)
            if accepted is not None and valid:
                measured.append(edge - accepted)
                return

    sim = Simulator(_clocked(dut))
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()

    assert measured == [dut.latency]
    assert dut.latency == (0 if in_count == out_count else 1)


@pytest.mark.parametrize("width, in_count, out_count, vector", [(4, 3, 4, 12), (2, 8, 2, 16)])
def test_obeys_stream_rules(width, in_count, out_count, vector):
    """While ``valid & ~ready`` the output keeps ``valid`` and its payload (rule 2)."""
    dut = WidthConverter(width, in_count, out_count, vector)
    inputs = _beats(_vectors(width, vector), in_count, width)
    n_outputs = N_VECTORS * vector // out_count
    rng = random.Random(7)
    done, violations, stalls = [], [], []

    async def producer(ctx):
        for payload in inputs:
            if idle := rng.choice((0, 0, 1, 2)):
                await ctx.tick().repeat(idle)
            await stream_put(ctx, dut.i_stream, payload, timeout=1000)

    async def consumer(ctx):
        for _ in range(n_outputs):
            await ctx.tick().repeat(rng.choice((1, 2, 3)))
            await stream_get(ctx, dut.o_stream, timeout=1000)
        done.append(True)

    async def monitor(ctx):
        held = None
        async for _, _, valid, ready, payload in ctx.tick().sample(
                dut.o_stream.valid, dut.o_stream.ready, dut.o_stream.payload):
            payload = (int(payload.data), int(payload.last))
            if held is not None and (not valid or payload != held):
                violations.append((held, valid, payload))
            held = payload if valid and not ready else None
            stalls.append(held is not None)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(monitor, background=True)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.run()

    assert done and any(stalls) and violations == []


@pytest.mark.parametrize("args, error, message", [
    ((0, 1, 1, 1), ValueError, r"^WidthConverter width must be a positive integer, not 0$"),
    ((4, -1, 1, 1), ValueError,
     r"^WidthConverter in_count must be a positive integer, not -1$"),
    ((4, 1, True, 1), TypeError,
     r"^WidthConverter out_count must be a positive integer, not True$"),
    ((4, 1, 1, 2.0), TypeError,
     r"^WidthConverter vector must be a positive integer, not 2\.0$"),
    ((4, 3, 4, 10), ValueError,
     r"^WidthConverter vector must be a multiple of in_count 3 and out_count 4, not 10$"),
    ((4, 3, 4, 9), ValueError,
     r"^WidthConverter vector must be a multiple of in_count 3 and out_count 4, not 9$"),
])
def test_rejects_bad_args(args, error, message):
    with pytest.raises(error, match=message):
        WidthConverter(*args)


@pytest.mark.parametrize("width, in_count, out_count, vector", [(4, 2, 2, 4), (3, 4, 6, 24)])
def test_converts_to_verilog(width, in_count, out_count, vector):
    text = verilog.convert(WidthConverter(width, in_count, out_count, vector), name="widthconv")
    assert "module widthconv" in text
    assert "i_stream__payload" in text and "o_stream__ready" in text


@pytest.mark.parametrize("size, count, tail", [(4, 2, 2), (4, 4, 4), (6, 2, 4), (3, 1, 1)])
@pytest.mark.parametrize("seed", [None, 3])
def test_word_splitter_sends_each_vectors_values_once(size, count, tail, seed):
    width, words_per_vector, vectors = 3, 3, 2
    rng = random.Random(size * 10 + tail)
    words = []
    for _ in range(vectors):
        for index in range(words_per_vector):
            values = [rng.randrange(1 << width) for _ in range(size)]
            words.append({"data": pack_values(values, width),
                          "final": int(index == words_per_vector - 1)})
    dut = WordSplitter(width, size, count, tail)
    per_vector = ((words_per_vector - 1) * size + tail) // count
    outputs, _ = run_stream(dut, i_stream=dut.i_stream, o_stream=dut.o_stream, inputs=words,
                            n_outputs=vectors * per_vector, seed=seed)
    sent = [value for beat in outputs for value in unpack_values(beat.data, count, width)]
    expected = []
    for word in words:
        values = unpack_values(word["data"], size, width)
        expected.extend(values[:tail] if word["final"] else values)
    assert sent == expected
    assert [int(beat.last) for beat in outputs] == ([0] * (per_vector - 1) + [1]) * vectors


def test_word_splitter_checks_its_parameters():
    with pytest.raises(ValueError, match="size 4 and tail 3 must be multiples of count 2"):
        WordSplitter(3, 4, 2, 3)
    with pytest.raises(TypeError, match="WordSplitter count must be a positive integer"):
        WordSplitter(3, 4, 2.0, 2)
