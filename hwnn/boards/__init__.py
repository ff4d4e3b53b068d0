"""Board targets: one module per board in this folder.

Each board module defines ``BOARD``, a :class:`Board`: the amaranth-boards platform, the
device it carries (a name of :data:`hwnn.tools.synth.DEVICES`), the UART the host link uses and the
synthesis options. :class:`BoardDesign` puts a design's accelerator behind the host link
(:class:`~hwnn.rtl.hostlink.BoardTop`) on the board's UART pins, clocked by the board's
default clock; :func:`board` finds a board by name.
"""

import importlib
from dataclasses import dataclass, field

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io

__all__ = ["BOARD_NAMES", "Board", "BoardDesign", "board", "uart_divisor"]

#: The boards of this folder, by name.
BOARD_NAMES = ("icebreaker", "ulx3s-85f", "orangecrab-85f")
_MODULES = {"icebreaker": "icebreaker", "ulx3s-85f": "ulx3s", "orangecrab-85f": "orangecrab"}


@dataclass(frozen=True)
class Board:
    """A board: ``make_platform()`` returns a fresh amaranth-boards platform."""
    name:          str
    make_platform: object
    device:        str
    uart:          tuple = ("uart", 0)
    build_options: dict = field(default_factory=dict)
    #: Output resources to drive high (for instance a level shifter's enable).
    enables:       tuple = ()


def board(name) -> Board:
    """The board called ``name``; ValueError naming the boards there are otherwise."""
    if name not in _MODULES:
        raise ValueError(f"Unknown board {name!r}; available: {', '.join(BOARD_NAMES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}").BOARD


def uart_divisor(clock_hz, baud, board_name) -> int:
    """Clock cycles per UART bit; ValueError when the clock is too slow for ``baud``."""
    divisor = round(clock_hz / baud)
    if divisor < 4:
        raise ValueError(f"{baud} baud is too fast for the {board_name}'s {clock_hz / 1e6:g} "
                         f"MHz clock")
    return divisor


class BoardDesign(Elaboratable):
    """``design``'s accelerator behind the host link on ``target``'s UART at ``baud``, clocked
    by the board's clock, or with ``pll`` (a :class:`~hwnn.rtl.clocking.PllSettings` for the
    board's clock) by a PLL's output."""

    def __init__(self, design, target: Board, *, baud=115200, pll=None):
        self.design, self.target, self.baud, self.pll = design, target, baud, pll

    def clock_hz(self, platform) -> float:
        """The frequency the accelerator and host link run at."""
        return platform.default_clk_frequency if self.pll is None else self.pll.output

    def divisor(self, platform) -> int:
        """Clock cycles per UART bit at the design's clock."""
        return uart_divisor(self.clock_hz(platform), self.baud, self.target.name)

    def elaborate(self, platform):
        from hwnn.rtl.clocking import PllDomain
        from hwnn.rtl.hostlink import BoardTop

        divisor = self.divisor(platform)
        m = Module()
        uart = platform.request(*self.target.uart, dir="-")
        if self.pll is not None:
            m.domains.sync = ClockDomain("sync")
            m.submodules.pll = PllDomain(self.pll, platform.request(platform.default_clk,
                                                                    dir="-"))
        top = m.submodules.top = BoardTop(self.design.accelerator(), self.design.network,
                                          divisor=divisor)
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        for index, (name, number) in enumerate(self.target.enables):
            enable = m.submodules[f"enable{index}"] = io.Buffer(
                "o", platform.request(name, number, dir="-"))
            m.d.comb += enable.o.eq(1)
        return m
