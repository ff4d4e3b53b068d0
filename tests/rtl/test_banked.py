# amaranth: UnusedElaboratable=no
"""BankedMemory: words read LATENCY cycles after their address whatever the banks, through
resets; the bank shape; a deep ROM's banks as block RAMs with their own output registers."""

import random

import pytest
from amaranth import ResetInserter, Signal
from amaranth.sim import Simulator

from hwnn.rtl import banked
from hwnn.rtl.banked import LATENCY, BankedMemory, bank_depth


@pytest.fixture
def small_banks(monkeypatch):
    """Banks of 4 words (whatever their width), so that small memories have many."""
    monkeypatch.setattr(banked, "MIN_BANK_DEPTH", 4)
    monkeypatch.setattr(banked, "BANK_BITS", 1)


@pytest.mark.parametrize("width, depth", [(9, 2048), (16, 2048), (64, 2048), (8, 2048),
                                          (4, 4096), (3, 8192), (1, 16384)])
def test_a_bank_is_a_power_of_two_of_2048_words_or_more_holding_16_kbit(width, depth):
    assert bank_depth(width) == depth


@pytest.mark.parametrize("depth, banks, group, groups", [
    (4, 1, 1, 1), (5, 2, 2, 1), (16, 4, 2, 2), (17, 5, 4, 2), (40, 10, 4, 3),
    (380, 95, 16, 6)])
def test_banks_are_grouped_by_about_their_square_root(small_banks, depth, banks, group,
                                                      groups):
    memory = BankedMemory(7, depth, init=range(depth))
    assert (memory.bank_depth, memory.banks, memory.group, memory.groups) == \
        (4, banks, group, groups)
    assert memory.register_bits == (banks + groups + 1) * 7


def test_a_cnv_size_rom_has_95_banks_of_one_dp16kd_each():
    memory = BankedMemory(9, 193_600)
    assert (memory.bank_depth, memory.banks, memory.group, memory.groups) == (2048, 95, 16, 6)


def test_a_writable_memory_is_one_bank():
    memory = BankedMemory(9, 193_600, writable=True)
    assert (memory.banks, memory.groups, memory.register_bits) == (1, 1, 27)


def read_all(memory, addresses, *, writes=(), reset_at=()):
    """``data`` in each cycle while ``addresses`` are read one per cycle after ``writes``
    (``(address, word)`` pairs, one per cycle), with the reset held in the cycles
    ``reset_at`` of the reads."""
    reset = Signal()
    dut = ResetInserter(reset)(memory)
    seen = []

    async def bench(ctx):
        for address, word in writes:
            ctx.set(memory.write_en, 1)
            ctx.set(memory.write_addr, address)
            ctx.set(memory.write_data, word)
            await ctx.tick()
        if writes:
            ctx.set(memory.write_en, 0)
        for cycle, address in enumerate(addresses):
            ctx.set(memory.addr, address)
            ctx.set(reset, cycle in reset_at)
            seen.append(ctx.get(memory.data))
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("depth", [1, 3, 4, 9, 37, 64, 380])
def test_every_word_comes_latency_cycles_after_its_address(small_banks, depth):
    rng = random.Random(depth)
    words = [rng.randrange(1 << 11) for _ in range(depth)]
    memory = BankedMemory(11, depth, init=words)
    addresses = [*range(depth), *(rng.randrange(depth) for _ in range(300))]
    seen = read_all(memory, addresses)
    for cycle, address in enumerate(addresses[:-LATENCY]):
        assert seen[cycle + LATENCY] == words[address], (
            f"address {address} read in cycle {cycle}: expected {words[address]}, got "
            f"{seen[cycle + LATENCY]}")


@pytest.mark.parametrize("seed", range(4))
def test_reads_after_a_reset_at_any_cycle_are_exact(small_banks, seed):
    rng = random.Random(seed)
    words = [rng.randrange(1 << 6) for _ in range(41)]
    memory = BankedMemory(6, 41, init=words)
    addresses = [rng.randrange(41) for _ in range(200)]
    resets = set(rng.sample(range(200), 6))
    seen = read_all(memory, addresses, reset_at=resets)
    # A read in a cycle after the reset's (the bank choices are registers the reset clears).
    for cycle, address in enumerate(addresses[:-LATENCY]):
        if cycle not in resets and not resets & set(range(cycle, cycle + LATENCY)):
            assert seen[cycle + LATENCY] == words[address], (cycle, address)


def test_a_writable_memory_reads_what_was_written(small_banks):
    rng = random.Random(3)
    words = [rng.randrange(1 << 9) for _ in range(23)]
    memory = BankedMemory(9, 23, writable=True)
    assert memory.banks == 1
    order = rng.sample(range(23), 23)
    addresses = [rng.randrange(23) for _ in range(100)]
    seen = read_all(memory, addresses, writes=[(address, words[address]) for address in order])
    for cycle, address in enumerate(addresses[:-LATENCY]):
        assert seen[cycle + LATENCY] == words[address], (cycle, address)


@pytest.mark.parametrize("width, depth", [(0, 4), (4, 0), (True, 4), (4, 2.0)])
def test_refuses_bad_shapes(width, depth):
    with pytest.raises(ValueError, match=r"^BankedMemory (width|depth) must be a positive "
                                         r"int, not "):
        BankedMemory(width, depth)


def test_refuses_more_words_than_its_depth():
    with pytest.raises(ValueError, match=r"^BankedMemory init has 5 words, more than its "
                                         r"depth 4$"):
        BankedMemory(4, 4, init=range(5))
