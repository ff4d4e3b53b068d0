"""A register harness for measuring area and Fmax of a design without its wide ports.

A generated top can have hundreds of port bits, more than an FPGA package has pins. The
harness drives every input bit of the design from a shift register fed by one pin (``sin``)
(each bit registered once more beside the design) and folds every output bit, registered, into
one registered pin (``sout``) by exclusive-or (a tree of registered 4-input XORs), so no logic
can be optimized away and every port path starts and ends at a flip-flop of the harness's own.
"""

from amaranth import *
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterHarness"]


class RegisterHarness(wiring.Component):
    """``design`` between a serial input shift register and an XOR-folded output register.

    Members
    -------
    sin : ``In(1)``
        Serial input feeding the shift register that drives all of the design's inputs.
    sout : ``Out(1)``
        Exclusive-or of all of the design's outputs, a few cycles later.
    """

    sin:  In(1)
    sout: Out(1)

    def __init__(self, design: wiring.Component):
        if not isinstance(design, wiring.Component):
            raise TypeError(f"design must be an Amaranth wiring.Component, not {design!r}")
        self.design = design
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.design = design = self.design
        inputs, outputs = [], []
        for _path, member, value in design.signature.flatten(design):
            (inputs if member.flow == wiring.Flow.In else outputs).append(Value.cast(value))
        chain = Signal(max(sum(len(value) for value in inputs), 1))
        m.d.sync += chain.eq(Cat(self.sin, chain[:-1]))
        if inputs:
            # Each input bit registered again off the chain: the chain's order would place
            # an input far from the logic it drives; its own register can sit beside it, with
            # a route and no logic from the chain.
            staged = Signal.like(chain)
            m.d.sync += staged.eq(chain)
            m.d.comb += Cat(*inputs).eq(staged)
        # The outputs registered as they are (a port's path ends at a flip-flop, as at its
        # consumer's), then a tree of registered 4-input XORs (one LUT level each), so that
        # the harness's own paths are never the slowest.
        bits = Signal(max(sum(len(value) for value in outputs), 1))
        m.d.sync += bits.eq(Cat(*outputs))
        while True:
            folded = Signal(max((len(bits) + 3) // 4, 1))
            m.d.sync += folded.eq(Cat(*(bits[i:i + 4].xor() for i in range(0, len(bits), 4))))
            bits = folded
            if len(bits) == 1:
                break
        m.d.comb += self.sout.eq(bits)
        return m
