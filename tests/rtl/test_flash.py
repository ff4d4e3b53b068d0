# amaranth: UnusedElaboratable=no
"""The SPI flash reader against the flash model: in Amaranth's simulator (word widths, offsets,
backpressure, wake-up, a reset at any cycle) and as Verilog under cocotb (Icarus)."""

import functools
import json
import random
import shutil
from dataclasses import dataclass, field

import pytest
from amaranth.back import verilog
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from hwnn.ir.packing import image_words, word_image
from hwnn.rtl.flash import FlashReader
from hwnn.sim.flash import READ, RELEASE_POWER_DOWN, SpiFlashModel, ready_levels, serve_flash

WAKE = 20          # the wake_cycles of most tests: short, for short simulations


def random_words(count, word_bits, seed):
    rng = random.Random(seed)
    return [rng.randrange(1 << word_bits) for _ in range(count)]


def padded_image(words, word_bits, seed):
    """The flash image of ``words`` with random bits above ``word_bits`` in each word's last
    byte (the reader must drop them)."""
    rng = random.Random(seed)
    image = bytearray(word_image(words, word_bits))
    size = -(-word_bits // 8)
    if word_bits % 8:
        for end in range(size - 1, len(image), size):
            image[end] |= rng.randrange(256) & ~((1 << word_bits % 8) - 1) & 0xFF
    return bytes(image)


@dataclass
class Run:
    """What the consumer saw: the words taken (before the reset and after it) with the clock
    edge each was taken at, the edge at which ``done`` was first seen, any breach of the stream
    rules or of ``done``'s promise, and the longest time SCK stayed low with CS active."""
    before:     list = field(default_factory=list)
    words:      list = field(default_factory=list)
    edges:      list = field(default_factory=list)
    done_edge:  int | None = None
    breaches:   list = field(default_factory=list)
    sck_held:   int = 0


def run_reader(reader, model, *, seed=None, reset_at=None, tail=40, timeout=20_000):
    """Simulate ``reader`` against ``model``, taking words with random backpressure
    (:func:`ready_levels`), with ``rst`` high for 1-3 cycles from edge ``reset_at`` (none when
    None); watch ``tail`` cycles after ``done``. Edges count from 1, the first after
    power-on."""
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.reader = reader
    levels = ready_levels(seed)
    out = reader.o_stream
    run = Run()

    async def consumer(ctx):
        resetting, offered, left, low = 0, None, None, 0
        for edge in range(1, timeout + 1):
            if edge == reset_at:
                resetting = random.Random(reset_at).randint(1, 3)
            ctx.set(domain.rst, resetting > 0)
            ctx.set(out.ready, next(levels))
            _, rst, valid, ready, payload, done, cs, sck = await ctx.tick().sample(
                out.valid, out.ready, out.payload, reader.done, reader.cs, reader.sck)
            if rst:
                resetting -= 1
                run.before, run.words, run.edges = run.before + run.words, [], []
                offered = None
                continue
            # Stream rule 2: a word offered stays offered, unchanged, until it is taken.
            if offered is not None and (not valid or payload != offered):
                run.breaches.append(f"edge {edge}: word {offered:#x} withdrawn or changed")
            offered = payload if valid and not ready else None
            if valid and ready:
                run.words.append(payload)
                run.edges.append(edge)
            low = low + 1 if cs and not sck else 0
            run.sck_held = max(run.sck_held, low)
            if left is not None:
                if valid or cs or sck or not done:
                    run.breaches.append(f"edge {edge}: the reader moved after done")
                left -= 1
                if left == 0:
                    return
            elif done:
                run.done_edge, left = edge, tail
        raise AssertionError(f"done not seen within {timeout} cycles")

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(functools.partial(serve_flash, pins=reader, model=model),
                      background=True)
    sim.add_testbench(consumer)
    sim.run()
    return run


def check_read(word_bits, count, offset, *, divisor=1, seed=None, data_seed=0):
    words = random_words(count, word_bits, data_seed)
    reader = FlashReader(offset, count, word_bits, divisor, wake_cycles=WAKE)
    model = SpiFlashModel(padded_image(words, word_bits, data_seed), base=offset)
    run = run_reader(reader, model, seed=seed)
    assert run.words == words
    assert run.breaches == [] and model.violations == []
    assert model.commands == [(RELEASE_POWER_DOWN, None), (READ, offset)]
    return reader, run


@pytest.mark.parametrize("word_bits", [1, 7, 8, 16, 20, 64])
@pytest.mark.parametrize("offset, count, divisor, seed", [
    (0, 1, 1, None),
    (0x2A_B3C7, 9, 1, 3),
    (0x00_0101, 6, 3, 4),
])
def test_reads_every_word_in_order(word_bits, offset, count, divisor, seed):
    _, run = check_read(word_bits, count, offset, divisor=divisor, seed=seed,
                        data_seed=word_bits)
    if count > 1 and seed is not None:
        assert run.sck_held > 2 * divisor          # backpressure did stop the flash's clock


@pytest.mark.parametrize("word_bits, count", [(8, 1), (16, 5), (20, 3), (64, 2)])
def test_reads_up_to_the_end_of_the_address_space(word_bits, count):
    offset = (1 << 24) - count * -(-word_bits // 8)
    check_read(word_bits, count, offset, seed=5)


@pytest.mark.parametrize("word_bits, divisor", [(64, 1), (20, 1), (8, 2), (1, 3)])
def test_throughput_and_latency(word_bits, divisor):
    reader, run = check_read(word_bits, 4, 3, divisor=divisor)
    # Always ready: a word is taken at the edge after it is offered.
    assert run.edges == [reader.latency + 1 + i * reader.cycles_per_word for i in range(4)]
    assert reader.cycles_per_word == 16 * divisor * -(-word_bits // 8)
    # done rises once the flash is deselected, half an SCK period after the last bit's.
    assert run.done_edge == run.edges[-1] + 2 * divisor


def test_wakes_a_sleeping_flash_and_waits_trs1():
    words = random_words(5, 16, 1)
    model = SpiFlashModel(word_image(words, 16), base=0x40, asleep=True, wake_time=WAKE)
    run = run_reader(FlashReader(0x40, 5, 16, wake_cycles=WAKE), model, seed=2)
    assert run.words == words and run.breaches == []
    assert model.commands == [(RELEASE_POWER_DOWN, None), (READ, 0x40)]
    assert model.violations == [] and not model.asleep


def test_a_flash_given_too_little_wake_time_reads_nothing():
    # The model's tRES1 check: a flash that needs one cycle more than the reader waits
    # ignores the READ and leaves CIPO high.
    model = SpiFlashModel(word_image(range(3), 8), asleep=True, wake_time=WAKE + 1)
    run = run_reader(FlashReader(0, 3, 8, wake_cycles=WAKE), model)
    assert run.words == [0xFF] * 3
    assert model.commands == [(RELEASE_POWER_DOWN, None), (READ, None)]
    assert len(model.violations) == 1
    assert model.violations[0].endswith(f"{WAKE} after the release from deep power-down, "
                                        f"before tRES1 ({WAKE + 1})")


# Resets during the first wait, 0xAB, the wait for tRES1 and READ's address, then at random.
RESETS = [(0, 5), (0, WAKE + 9), (0, WAKE + 30), (0, 2 * WAKE + 60),
          *((seed, None) for seed in range(1, 7))]


@pytest.mark.parametrize("word_bits, count, offset", [(8, 6, 0x55), (20, 4, 0x1234)])
@pytest.mark.parametrize("seed, reset_at", RESETS)
def test_a_reset_at_any_cycle_reads_again_from_the_start(word_bits, count, offset, seed,
                                                        reset_at):
    words = random_words(count, word_bits, seed)
    image = padded_image(words, word_bits, seed)
    if reset_at is None:
        # Somewhere in a whole read under the same backpressure.
        span = run_reader(FlashReader(offset, count, word_bits, wake_cycles=WAKE),
                          SpiFlashModel(image, base=offset), seed=seed).done_edge
        reset_at = random.Random(seed).randrange(1, span + 1)
    model = SpiFlashModel(image, base=offset, asleep=True, wake_time=WAKE)
    run = run_reader(FlashReader(offset, count, word_bits, wake_cycles=WAKE), model,
                     seed=seed, reset_at=reset_at)
    assert run.before == words[:len(run.before)]
    assert run.words == words
    assert run.breaches == [] and model.violations == []
    assert model.commands[-2:] == [(RELEASE_POWER_DOWN, None), (READ, offset)]


def bits_of(data):
    return [byte >> (7 - i) & 1 for byte in data for i in range(8)]


def exchange(model, data, *, extra_bytes=0):
    """Select the flash, send ``data`` then ``extra_bytes`` of zeros (mode 0), release it;
    return the bytes read during the extra bytes."""
    model.step(1, 0, 0)
    received = []
    for copi in bits_of(data) + [0] * (8 * extra_bytes):
        model.step(1, 1, copi)
        received.append(model.step(1, 0, copi))
    model.step(0, 0, 0)
    tail = received[8 * len(data) - 1:-1] if extra_bytes else []
    return bytes(int("".join(map(str, tail[i:i + 8])), 2) for i in range(0, len(tail), 8))


def test_flash_model_protocol():
    model = SpiFlashModel(b"\x12\x34")
    # Reads wrap at the end of the address space, and erased bytes read 0xFF.
    assert exchange(model, [READ, 0xFF, 0xFF, 0xFF], extra_bytes=3) == b"\xff\x12\x34"
    exchange(model, [READ, 0x00, 0x00])                 # CS released before the address ends
    assert model.commands == [(READ, (1 << 24) - 1), (READ, None)]
    # Another command is ignored until CS is released, and CIPO is not driven meanwhile.
    assert exchange(model, [0x9F], extra_bytes=2) == b"\xff\xff"
    # Asleep, the flash ignores a READ; 0xAB, with CS released after it, wakes it.
    model = SpiFlashModel(b"\x5a", asleep=True)
    assert exchange(model, [READ, 0, 0, 0], extra_bytes=1) == b"\xff"
    exchange(model, [RELEASE_POWER_DOWN])
    assert exchange(model, [READ, 0, 0, 0], extra_bytes=1) == b"\x5a"
    assert not model.asleep and model.violations == []
    model.step(1, 1, 0)
    assert model.violations == ["CS activated at 0 with SCK high (mode 0 needs it low)"]


@pytest.mark.parametrize("args, kwargs, error, message", [
    ((1.0, 1, 8), {}, TypeError, r"^FlashReader offset must be an integer, not 1\.0$"),
    ((-1, 1, 8), {}, ValueError, r"^FlashReader offset must be 0\.\.16777215, not -1$"),
    ((1 << 24, 1, 8), {}, ValueError,
     r"^FlashReader offset must be 0\.\.16777215, not 16777216$"),
    ((0, 0, 8), {}, ValueError, r"^FlashReader count must be a positive integer, not 0$"),
    ((0, True, 8), {}, TypeError, r"^FlashReader count must be a positive integer, not True$"),
    ((0, 1, 0), {}, ValueError, r"^FlashReader word_bits must be a positive integer, not 0$"),
    ((0, 1, 8, 0), {}, ValueError,
     r"^FlashReader divisor must be a positive integer, not 0$"),
    ((0, 1, 8), {"wake_cycles": 2.5}, TypeError,
     r"^FlashReader wake_cycles must be a positive integer, not 2\.5$"),
    (((1 << 24) - 5, 3, 16), {}, ValueError,
     (r"^FlashReader count must be at most 2 \(the words of 16 bits between offset 0xfffffb "
      r"and the end of the 24-bit address space\), not 3$")),
])
def test_reader_rejects_bad_args(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        FlashReader(*args, **kwargs)


def test_word_image_and_back():
    assert word_image([0x1234, 0xBEEF], 16) == b"\x34\x12\xef\xbe"
    assert word_image([0x12345, 1], 20) == b"\x45\x23\x01\x01\x00\x00"
    assert word_image([1, 0, 1], 1) == b"\x01\x00\x01"
    assert image_words(b"\x45\x23\x01\x01\x00\x00", 20) == [0x12345, 1]
    with pytest.raises(ValueError, match=r"^an image of 20-bit words holds a multiple of 3 "
                                         r"bytes, not 4$"):
        image_words(b"\x00" * 4, 20)
    with pytest.raises(TypeError, match=r"^word_image width must be a positive integer, "
                                        r"not 8\.0$"):
        word_image([1], 8.0)
    with pytest.raises(ValueError, match=r"^word_image width must be a positive integer, "
                                         r"not 0$"):
        word_image([1], 0)
    with pytest.raises(TypeError, match=r"^word_image words must be integers, not 1\.5 "
                                        r"\(word 1\)$"):
        word_image([1, 1.5], 8)
    with pytest.raises(ValueError, match=r"^word_image words must be 0\.\.127, not 128 "
                                         r"\(word 2\)$"):
        word_image([0, 1, 128], 7)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"image": 3.5}, TypeError, r"^SpiFlashModel image must be bytes-like, not 3\.5$"),
    ({"image": b"ab", "base": (1 << 24) - 1}, ValueError,
     (r"^SpiFlashModel base must be 0\.\.16777214 \(the image of 2 bytes within the 24-bit "
      r"address space\), not 16777215$")),
    ({"image": b"", "base": "0"}, TypeError,
     r"^SpiFlashModel base must be an integer, not '0'$"),
    ({"image": b"", "wake_time": -1}, ValueError,
     r"^SpiFlashModel wake_time must be at least 0, not -1$"),
])
def test_flash_model_rejects_bad_args(kwargs, error, message):
    with pytest.raises(error, match=message):
        SpiFlashModel(**kwargs)


def test_converts_to_verilog():
    text = verilog.convert(FlashReader(0x100, 4, 20), name="flash_reader")
    for port in ("cs", "sck", "copi", "cipo", "done", "o_stream__payload", "o_stream__ready"):
        assert f"{port};" in text


@pytest.mark.cocotb
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
def test_reader_verilog_under_cocotb(tmp_path):
    from cocotb_tools.runner import get_runner

    offset, count, word_bits, wake = 0x1_2345, 12, 20, 40
    words = random_words(count, word_bits, 9)
    reader = FlashReader(offset, count, word_bits, wake_cycles=wake)
    source = tmp_path / "flash_reader.v"
    source.write_text(verilog.convert(reader, name="flash_reader"))
    runner = get_runner("icarus")
    # Amaranth emits no `timescale; without one Icarus runs at 1 s precision.
    runner.build(sources=[source], hdl_toplevel="flash_reader", build_dir=tmp_path / "build",
                 timescale=("1ns", "1ps"), always=True, log_file=tmp_path / "build.log")
    for seed in (None, 6):
        results = tmp_path / f"results-{seed}.json"
        job = {"image": padded_image(words, word_bits, 9).hex(), "base": offset,
               "asleep": True, "wake_time": 10 * wake, "seed": seed, "timeout_us": 200,
               "results": str(results)}
        runner.test(hdl_toplevel="flash_reader", test_module="hwnn.sim.cocotb_flash",
                    build_dir=tmp_path / "build", test_dir=tmp_path,
                    results_xml=str(tmp_path / f"results-{seed}.xml"),
                    log_file=tmp_path / f"sim-{seed}.log",
                    extra_env={"HWNN_FLASH_JOB": json.dumps(job)})
        result = json.loads(results.read_text())
        assert result["words"] == words
        assert result["commands"] == [[RELEASE_POWER_DOWN, None], [READ, offset]]
        assert result["violations"] == []
        if seed is None:
            assert result["cycles"] == [reader.latency + 1 + i * reader.cycles_per_word
                                        for i in range(count)]
