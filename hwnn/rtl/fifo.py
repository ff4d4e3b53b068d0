"""A buffered FIFO whose flags are registers, for stream paths that must be fast.

:class:`FlagFIFO` behaves as Amaranth's ``SyncFIFOBuffered`` (first word fall-through from an
output register; ``depth`` words in all, ``depth - 1`` of them in a memory), but ``w_rdy``
and "the memory holds a word" are flip-flops computed one cycle ahead, not comparisons of a
level counter. So ``r_en`` reaches the FIFO's registers through one gate, and ``w_rdy`` comes
straight from a flip-flop: chains of streams do not add up long ready paths.
"""

from amaranth import *

__all__ = ["FlagFIFO"]


class FlagFIFO(Elaboratable):
    """``depth`` (2 or more) words of ``width`` bits.

    Attributes: ``w_data``, ``w_en``, ``w_rdy`` (write side: a word is written when ``w_en``
    and ``w_rdy``), ``r_data``, ``r_rdy``, ``r_en`` (read side: ``r_data`` is valid while
    ``r_rdy``; it is consumed when ``r_en`` and ``r_rdy``). A word written in cycle ``t`` can
    be read in cycle ``t + 2``.
    """

    def __init__(self, *, width, depth):
        if not isinstance(depth, int) or depth < 2:
            raise ValueError(f"FlagFIFO depth must be an integer of at least 2, not {depth!r}")
        self.width, self.depth = width, depth
        self.w_data = Signal(width)
        self.w_en = Signal()
        self.w_rdy = Signal(init=1)
        self.r_data = Signal(width)
        self.r_rdy = Signal()
        self.r_en = Signal()

    def elaborate(self, platform):
        from amaranth.lib.memory import Memory

        m = Module()
        inner = self.depth - 1
        storage = m.submodules.storage = Memory(shape=self.width, depth=inner, init=[])
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")
        produce = Signal(range(inner))
        consume = Signal(range(inner))
        count = Signal(range(inner + 1))          # words in the memory
        stored = Signal()                          # count != 0, one cycle ahead

        do_write = self.w_en & self.w_rdy
        do_move = stored & (~self.r_rdy | self.r_en)   # memory -> output register

        def step(pointer):
            return Mux(pointer == inner - 1, 0, pointer + 1)

        m.d.comb += [
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(do_write),
            r_port.addr.eq(consume), r_port.en.eq(do_move), self.r_data.eq(r_port.data),
        ]
        with m.If(do_write):
            m.d.sync += produce.eq(step(produce))
        with m.If(do_move):
            m.d.sync += [consume.eq(step(consume)), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        with m.If(do_write & ~do_move):
            m.d.sync += [count.eq(count + 1), stored.eq(1), self.w_rdy.eq(count != inner - 1)]
        with m.If(do_move & ~do_write):
            m.d.sync += [count.eq(count - 1), stored.eq(count != 1), self.w_rdy.eq(1)]
        return m
