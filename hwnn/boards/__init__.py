"""Board targets: one module per board in this folder.

Each board module defines ``BOARD``, a :class:`Board`: the amaranth-boards platform, the
device it carries (a name of :data:`hwnn.tools.synth.DEVICES`), the UART the host link uses and the
synthesis options. :class:`BoardDesign` puts a design's accelerator behind the host link
(:class:`~hwnn.rtl.hostlink.BoardTop`) on the board's UART pins, clocked by the board's
default clock, and a design with a load stream behind a reader of the board's SPI flash
(its image at :data:`FLASH_OFFSET`); :func:`board` finds a board by name.
"""

import importlib
import math
from dataclasses import dataclass, field

from amaranth import ClockDomain, Elaboratable, Module
from amaranth.lib import io

__all__ = ["BOARD_NAMES", "FLASH_OFFSET", "Board", "BoardDesign", "board", "check_flash",
           "flash_command", "uart_divisor"]

#: The boards of this folder, by name.
BOARD_NAMES = ("icebreaker", "ulx3s-85f", "orangecrab-85f")
_MODULES = {"icebreaker": "icebreaker", "ulx3s-85f": "ulx3s", "orangecrab-85f": "orangecrab"}


#: Where on a board's flash a design's load image goes (:data:`Board.flash`): past the
#: bitstream (an iCE40UP5K's takes 104,090 bytes), at 1 MiB.
FLASH_OFFSET = 0x100000
#: The fastest SPI clock a board's flash reader runs (the flash reads at up to 50 MHz; the
#: round trip through the FPGA's pads bounds it lower).
FLASH_SCK_HZ = 15e6
#: The time the flash needs to leave deep power-down (W25Q128JV's tRES1 is 3 us).
FLASH_WAKE_SECONDS = 5e-6


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
    #: The SPI flash resource (``spi_flash_1x``) a design's load image is read from, and the
    #: command that writes the image there (``{image}`` and ``{offset}`` filled in); none:
    #: designs with a load stream are not built for the board.
    flash:         tuple = ()
    program_flash: str = ""


def board(name) -> Board:
    """The board called ``name``; ValueError naming the boards there are otherwise."""
    if name not in _MODULES:
        raise ValueError(f"Unknown board {name!r}; available: {', '.join(BOARD_NAMES)}")
    return importlib.import_module(f"{__name__}.{_MODULES[name]}").BOARD


def check_flash(target: Board):
    """ValueError unless ``target`` can load a design's image from its flash."""
    if not target.flash:
        with_flash = [name for name in BOARD_NAMES if board(name).flash]
        raise ValueError(f"The {target.name} has no flash reader in hwnn: a design whose "
                         f"weights are loaded at start-up builds for {', '.join(with_flash)}; "
                         f"generate it with weights 'rom' for the {target.name}")


def flash_command(target: Board, image) -> str:
    """The command that writes ``image`` (a path) to ``target``'s flash at
    :data:`FLASH_OFFSET`."""
    offset = (f"{FLASH_OFFSET >> 20}M" if FLASH_OFFSET % (1 << 20) == 0 else str(FLASH_OFFSET))
    return target.program_flash.format(offset=offset, image=image)


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
    board's clock) by a PLL's output; the host link runs at the board's clock either way (with
    a PLL in a domain of its own, ``board``: its paths never limit the accelerator's clock;
    with a PLL both domains' resets are asynchronous, released at their clocks' edges)."""

    def __init__(self, design, target: Board, *, baud=115200, pll=None):
        self.design, self.target, self.baud, self.pll = design, target, baud, pll

    def clock_hz(self, platform) -> float:
        """The frequency the accelerator runs at."""
        return platform.default_clk_frequency if self.pll is None else self.pll.output

    def divisor(self, platform) -> int:
        """Clock cycles per UART bit at the host link's clock (the board's)."""
        return uart_divisor(platform.default_clk_frequency, self.baud, self.target.name)

    def flash_reader(self, platform) -> dict | None:
        """The :class:`~hwnn.rtl.flash.FlashReader` settings (``offset``, ``divisor``,
        ``wake_cycles``) of a design with a load stream at the reader's clock (the board's,
        as the host link's), else None."""
        if "load" not in self.design.manifest:
            return None
        check_flash(self.target)
        clock = platform.default_clk_frequency
        return {"offset": FLASH_OFFSET, "divisor": math.ceil(clock / (2 * FLASH_SCK_HZ)),
                "wake_cycles": math.ceil(clock * FLASH_WAKE_SECONDS)}

    def elaborate(self, platform):
        from hwnn.rtl.clocking import PllDomain
        from hwnn.rtl.hostlink import BoardTop

        divisor = self.divisor(platform)
        m = Module()
        uart = platform.request(*self.target.uart, dir="-")
        if self.pll is not None:
            # Asynchronous resets (asserted and released by a flip-flop on each domain's
            # clock, so at the same edges as a synchronous one): on an iCE40 a synchronous
            # reset enters the enable logic of every register with an enable (SB_DFFESR
            # resets only when enabled), where it was the 2x4 overlay's critical path.
            m.domains.sync = ClockDomain("sync", async_reset=True)
            m.domains.board = ClockDomain("board", async_reset=True)
            m.submodules.pll = PllDomain(self.pll, platform.request(platform.default_clk,
                                                                    dir="-"))
        flash = self.flash_reader(platform)
        top = m.submodules.top = BoardTop(
            self.design.accelerator(), self.design.network, divisor=divisor, flash=flash,
            link_domain="sync" if self.pll is None else "board")
        m.submodules.rx = rx = io.Buffer("i", uart.rx)
        m.submodules.tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.rx.eq(rx.i), tx.o.eq(top.tx)]
        if flash is not None:
            pins = platform.request(*self.target.flash, dir="-")
            # Write protect and hold (active low pins, inverted by the resource) off.
            outputs = {"cs": top.flash_cs, "clk": top.flash_sck, "copi": top.flash_copi,
                       "wp": 0, "hold": 0}
            for name, value in outputs.items():
                buffer = m.submodules[f"flash_{name}"] = io.Buffer("o", getattr(pins, name))
                m.d.comb += buffer.o.eq(value)
            m.submodules.flash_cipo = cipo = io.Buffer("i", pins.cipo)
            m.d.comb += top.flash_cipo.eq(cipo.i)
        for index, (name, number) in enumerate(self.target.enables):
            enable = m.submodules[f"enable{index}"] = io.Buffer(
                "o", platform.request(name, number, dir="-"))
            m.d.comb += enable.o.eq(1)
        return m
