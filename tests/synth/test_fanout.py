"""Registered copies of a control bit: each a cycle late, and kept apart by Yosys."""

from amaranth import Cat, Module, Mux
from amaranth.back import verilog
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hwnn.rtl.fanout import flavor, registered_copies
from hwnn.tools.synth import synthesize

COPIES = 8


class Selects(wiring.Component):
    """Each of 8 lanes chooses between two bytes by its copy of ``select``."""

    select: In(1)
    a: In(8 * COPIES)
    b: In(8 * COPIES)
    out: Out(8 * COPIES)

    def elaborate(self, platform):
        m = Module()
        copies = registered_copies(m, self.select, COPIES, name="select")
        m.d.comb += self.out.eq(Cat(*(
            Mux(copy, self.a[8 * i:8 * i + 8], self.b[8 * i:8 * i + 8])
            for i, copy in enumerate(copies))))
        return m


def test_flavors_differ_for_eight_consecutive_copies():
    assert len({flavor(index) for index in range(COPIES)}) == COPIES
    assert len({flavor(index) for index in range(3, 3 + COPIES)}) == COPIES


def test_every_copy_is_the_bit_a_cycle_later():
    dut = Selects()
    pattern = [1, 0, 0, 1, 1, 0, 1, 0, 0, 1]
    a, b = 0x5A * sum(1 << 8 * i for i in range(COPIES)), 0

    async def bench(ctx):
        ctx.set(dut.a, a)
        ctx.set(dut.b, b)
        previous = None
        for bit in pattern:
            ctx.set(dut.select, bit)
            if previous is not None:        # the copies still hold the bit of the cycle before
                assert ctx.get(dut.out) == (a if previous else b), (previous, bit)
            await ctx.tick()
            assert ctx.get(dut.out) == (a if bit else b), bit
            previous = bit

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def test_yosys_keeps_the_copies_apart(tmp_path):
    # With one register per copy, no flip-flop drives more than one lane's multiplexers.
    path = tmp_path / "selects.v"
    path.write_text(verilog.convert(Selects(), name="selects"))
    for family in ("ecp5", "ice40"):
        assert synthesize(path, "selects", family).ff == COPIES, family
