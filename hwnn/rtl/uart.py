"""A UART (8 data bits, no parity, one stop bit, LSB first) for the host link.

``divisor`` is the number of clock cycles per bit (clock frequency / baud rate, at least 4).
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .params import check_positive_int

__all__ = ["UartRx", "UartTx"]


def _check_divisor(owner, divisor):
    check_positive_int(owner, "divisor", divisor)
    if divisor < 4:
        raise ValueError(f"{owner} divisor must be at least 4 clock cycles per bit, not "
                         f"{divisor}")


class UartRx(wiring.Component):
    """Receiver: every byte whose stop bit is high comes out on ``o_byte`` for one cycle (no
    backpressure); a byte whose stop bit is low is dropped and pulses ``framing_error``.

    The line passes through two synchronizing flip-flops; a start bit is confirmed half a bit
    after its falling edge, and each bit is sampled in its middle.

    Members
    -------
    rx : ``In(1)``, idle high
    o_byte : ``Out(stream.Signature(8, always_ready=True))``
    framing_error : ``Out(1)``
    """

    rx:            In(1, init=1)
    o_byte:        Out(stream.Signature(8, always_ready=True))
    framing_error: Out(1)

    def __init__(self, divisor):
        _check_divisor("UartRx", divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        sync1, line = Signal(init=1), Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]
        # A down count, with a flag for its 0 kept beside it (no comparison before the state's
        # choices); the loaded values are never 0 (divisor >= 4).
        timer, expired = Signal(range(divisor)), Signal()
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.sync += [self.o_byte.valid.eq(0), self.framing_error.eq(0)]

        def restart(cycles):
            return [timer.eq(cycles - 1), expired.eq(0)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += restart(divisor // 2)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += [timer.eq(timer - 1), expired.eq(timer == 1)]
                with m.If(expired):
                    with m.If(line):           # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [*restart(divisor), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += [timer.eq(timer - 1), expired.eq(timer == 1)]
                with m.If(expired):
                    m.d.sync += [*restart(divisor), bit.eq(bit + 1)]
                    with m.If(bit == 8):      # the stop bit
                        with m.If(line):
                            m.d.sync += [self.o_byte.payload.eq(shift),
                                         self.o_byte.valid.eq(1)]
                            m.next = "IDLE"
                        with m.Else():
                            m.d.sync += self.framing_error.eq(1)
                            m.next = "BREAK"
                    with m.Else():
                        m.d.sync += shift.eq(Cat(shift[1:], line))
            with m.State("BREAK"):             # wait for the line to go idle again
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """Transmitter: takes a byte from ``i_byte`` when idle and sends it on ``tx``.

    Members
    -------
    i_byte : ``In(stream.Signature(8))``
    tx : ``Out(1)``, idle high
    """

    i_byte: In(stream.Signature(8))
    tx:     Out(1, init=1)

    def __init__(self, divisor):
        _check_divisor("UartTx", divisor)
        self.divisor = divisor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        divisor = self.divisor
        # Every enable comes from a register: ``idle`` (ready), ``expired`` (the bit time is
        # up: the timer is 0), both set a cycle ahead.
        timer, expired = Signal(range(divisor)), Signal()
        frame = Signal(10, init=0x3FF)       # stop, data (LSB first), start; shifted out
        remaining = Signal(range(11))        # bits still to send after this one
        idle = Signal(init=1)
        m.d.comb += [self.tx.eq(frame[0]), self.i_byte.ready.eq(idle)]
        with m.If(self.i_byte.valid & idle):
            m.d.sync += [frame.eq(Cat(Const(0, 1), self.i_byte.payload, Const(1, 1))),
                         remaining.eq(9), idle.eq(0), timer.eq(divisor - 1)]
        with m.Elif(~idle):
            # (At expiry the timer is 0, so expired falls; it is 0 while idle.)
            m.d.sync += [timer.eq(timer - 1), expired.eq(timer == 1)]
            with m.If(expired):
                m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), remaining.eq(remaining - 1),
                             timer.eq(divisor - 1), idle.eq(remaining == 0)]
        return m
