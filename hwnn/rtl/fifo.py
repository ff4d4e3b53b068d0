"""A buffered FIFO whose flags are registers, for stream paths that must be fast.

:class:`FlagFIFO` behaves as Amaranth's ``SyncFIFOBuffered`` (first word fall-through from an
output register; ``depth`` words in all, ``depth - 1`` of them in a memory), but its input's
``ready`` and "the memory holds a word" are flip-flops computed one cycle ahead, not
comparisons of a level counter. So the output's ``ready`` reaches the FIFO's registers through
one gate, and the input's ``ready`` comes straight from a flip-flop: chains of streams do not
add up long ready paths.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import structure

__all__ = ["FlagFIFO"]


class FlagFIFO(wiring.Component):
    """``depth`` (2 or more) payloads of ``shape``, first in first out.

    A payload is taken from ``i_stream`` when it is valid and ready, and offered on
    ``o_stream`` (valid, and stable, until it is taken); cycle for cycle, the flags and the
    data are those of ``SyncFIFOBuffered(width=Shape.cast(shape).width, depth=depth)``
    (``i_stream.ready`` is its ``w_rdy``, ``o_stream.valid`` its ``r_rdy``). A payload taken
    in cycle ``t`` can be offered in cycle ``t + 2``.

    Parameters
    ----------
    shape : shape-like
        Payload of both streams (an ``unsigned(width)`` or a layout).
    depth : int

    Members
    -------
    i_stream : ``In(stream.Signature(shape))``
    o_stream : ``Out(stream.Signature(shape))``
    level : ``Out(range(depth + 1))``
        Payloads held (as ``SyncFIFOBuffered``'s ``level``).
    """

    def __init__(self, shape, *, depth):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 2:
            raise ValueError(f"FlagFIFO depth must be an integer of at least 2, not {depth!r}")
        self.depth = depth
        super().__init__({
            "i_stream": In(stream.Signature(shape)),
            "o_stream": Out(stream.Signature(shape)),
            "level": Out(range(depth + 1)),
        })

    def structure(self) -> structure.Structure:
        """Its memory (``depth - 1`` payloads, use ``"fifo"``)."""
        width = Shape.cast(self.i_stream.payload.shape()).width
        return structure.Structure(memories=[structure.Memory("fifo", self.depth - 1, width)])

    def elaborate(self, platform):
        m = Module()
        inner = self.depth - 1
        width = Shape.cast(self.i_stream.payload.shape()).width
        storage = m.submodules.storage = Memory(shape=width, depth=inner, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        count = Signal(range(inner + 1))          # words in the memory
        stored = Signal()                          # count != 0, one cycle ahead
        w_rdy = Signal(init=1)                     # the memory has room
        # The same flag, inverted, in a flip-flop of its own for i_stream.ready: the
        # producer's logic, wherever it is placed, does not pull w_rdy away from the
        # FIFO's own (it was an ECP5 overlay's critical path).
        full = Signal()
        w_rdy_next = Signal()
        r_rdy = Signal()                           # the output register holds a word
        r_en = self.o_stream.ready

        do_write = self.i_stream.valid & w_rdy
        do_move = stored & (~r_rdy | r_en)         # memory -> output register

        def step(pointer):
            return Mux(pointer == inner - 1, 0, pointer + 1)

        m.d.sync += [w_rdy.eq(w_rdy_next), full.eq(~w_rdy_next)]
        m.d.comb += [
            w_rdy_next.eq(w_rdy),
            self.i_stream.ready.eq(~full), self.o_stream.valid.eq(r_rdy),
            w_port.addr.eq(produce), w_port.data.eq(self.i_stream.payload),
            w_port.en.eq(do_write),
            r_port.addr.eq(consume), r_port.en.eq(do_move),
            self.o_stream.payload.eq(r_port.data),
            self.level.eq(count + r_rdy),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(step(produce))
        with m.If(do_move):
            m.d.sync += [consume.eq(step(consume)), r_rdy.eq(1)]
        with m.Elif(r_en):
            m.d.sync += r_rdy.eq(0)
        with m.If(do_write & ~do_move):
            m.d.sync += [count.eq(count + 1), stored.eq(1)]
            m.d.comb += w_rdy_next.eq(count != inner - 1)
        with m.If(do_move & ~do_write):
            m.d.sync += [count.eq(count - 1), stored.eq(count != 1)]
            m.d.comb += w_rdy_next.eq(1)
        return m
