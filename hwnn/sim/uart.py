"""A serial port to a simulated board: the host link tested without hardware.

:class:`SimulatedSerial` runs a board top (ports ``rx``, ``tx``) in Amaranth's simulator and
behaves like a pyserial port: ``write`` queues bytes that a testbench sends on ``rx`` as UART
frames (8N1, ``divisor`` cycles per bit), and ``read(n)`` advances the simulation until ``n``
bytes have come out of ``tx`` or ``timeout`` cycles have passed (with a link on a clock of its
own: ``timeout`` pairs of simulator steps). So the real host code
(:class:`hwnn.host.link.BoardLink`) talks to the real board logic, bit by bit.

:func:`simulate_board` runs the board top's Verilog under cocotb (Icarus or Verilator), the
UART modelled in the testbench, and returns what the board answered to given byte sequences.
"""

import functools
import json
import math
from collections import deque
from pathlib import Path
from types import SimpleNamespace

from amaranth.sim import Simulator

from ..boards import FLASH_OFFSET
from ..errors import ToolError
from .flash import SpiFlashModel, serve_flash

__all__ = ["SIMULATED_FLASH", "SimulatedSerial", "board_flash", "simulate_board",
           "simulated_board"]


#: The flash reader of a simulated board (:func:`board_flash`): SCK at half the clock, and a
#: wake-up wait that the simulated flash checks.
SIMULATED_FLASH = {"offset": FLASH_OFFSET, "divisor": 1, "wake_cycles": 8}


def board_flash(design):
    """The :class:`~hwnn.rtl.hostlink.BoardTop` ``flash`` settings of ``design`` on a
    simulated board and its flash (a :class:`~hwnn.sim.flash.SpiFlashModel` holding the
    design's load image, asleep as an iCE40 leaves it), or ``(None, None)`` without a load
    stream."""
    if "load" not in design.manifest:
        return None, None
    image = (design.path / design.manifest["load"]["image"]).read_bytes()
    return SIMULATED_FLASH, SpiFlashModel(image, base=FLASH_OFFSET, asleep=True,
                                          wake_time=SIMULATED_FLASH["wake_cycles"])


def simulated_board(design, *, divisor=4, timeout=200_000) -> "SimulatedSerial":
    """A serial port to ``design``'s board top (host link and accelerator, and the flash
    reader of a design with a load stream, on a simulated flash holding its image) in
    Amaranth's simulator."""
    from ..rtl.hostlink import BoardTop
    flash, model = board_flash(design)
    top = BoardTop(design.accelerator(), design.network, divisor=divisor, flash=flash)
    return SimulatedSerial(top, divisor, timeout=timeout, flash=model)


class SimulatedSerial:
    """A byte transport to ``top`` (a component with ``rx`` and ``tx``) in simulation; with
    ``flash`` (a :class:`~hwnn.sim.flash.SpiFlashModel`) on its ``flash_*`` pins. ``sync``
    has a period of 10 ns; a link in a clock domain of its own (``top.link_domain``, as on a
    board with a PLL) runs at ``link_period`` seconds, and ``divisor`` counts its cycles."""

    def __init__(self, top, divisor, *, timeout=200_000, flash=None, link_period=None):
        self.divisor, self.timeout = divisor, timeout
        self.cycles = 0
        self._domain = getattr(top, "link_domain", "sync")
        if (self._domain != "sync") != (link_period is not None):
            raise ValueError(f"link_period is the period of a link in a domain of its own: "
                             f"this top's link is in {self._domain!r}, link_period is "
                             f"{link_period!r}")
        self._outgoing, self._incoming = deque(), deque()
        self._sim = Simulator(top)
        self._sim.add_clock(1e-8)
        if link_period is not None:
            self._sim.add_clock(link_period, domain=self._domain)
        self._sim.add_testbench(self._send, background=True)
        self._sim.add_testbench(self._receive, background=True)
        if flash is not None:
            pins = SimpleNamespace(cs=top.flash_cs, sck=top.flash_sck, copi=top.flash_copi,
                                   cipo=top.flash_cipo)
            self._sim.add_testbench(functools.partial(serve_flash, pins=pins, model=flash,
                                                      domain=self._domain), background=True)
        self._top = top

    async def _send(self, ctx):
        ctx.set(self._top.rx, 1)
        while True:
            if not self._outgoing:
                await ctx.tick(self._domain)
                continue
            byte = self._outgoing.popleft()
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                ctx.set(self._top.rx, bit)
                await ctx.tick(self._domain).repeat(self.divisor)

    async def _receive(self, ctx):
        half = self.divisor // 2
        while True:
            await ctx.tick(self._domain)
            if ctx.get(self._top.tx):
                continue
            await ctx.tick(self._domain).repeat(half)     # the middle of the start bit
            byte = 0
            for i in range(8):
                await ctx.tick(self._domain).repeat(self.divisor)
                byte |= ctx.get(self._top.tx) << i
            await ctx.tick(self._domain).repeat(self.divisor)   # the stop bit
            self._incoming.append(byte)

    def write(self, data):
        self._outgoing.extend(bytes(data))
        return len(data)

    def read(self, count=1) -> bytes:
        start = self.cycles
        while len(self._incoming) < count and self.cycles - start < self.timeout:
            self._sim.advance()
            self._sim.advance()
            self.cycles += 1
        return bytes(self._incoming.popleft() for _ in range(min(count,
                                                                 len(self._incoming))))


def simulate_board(top, exchanges, *, divisor, simulator="icarus", work, flash=None,
                   link_period_ns=None):
    """Run the board top ``top`` (a :class:`~hwnn.rtl.hostlink.BoardTop`) as Verilog under
    cocotb: send each ``(data, expect)`` of ``exchanges`` on ``rx`` and wait for ``expect``
    reply bytes; return every byte the board sent on ``tx``. ``flash`` (a
    :class:`~hwnn.sim.flash.SpiFlashModel`) serves the top's ``flash_*`` pins. The top's
    ``sync`` clock has a period of 10 ns; a link in a domain of its own
    (``top.link_domain``) runs at ``link_period_ns``."""
    from amaranth.back import verilog

    from .simulate import build_cocotb

    own_clock = top.link_domain != "sync"
    if own_clock != (link_period_ns is not None):
        raise ValueError(f"link_period_ns is the period of a link in a domain of its own: "
                         f"this top's link is in {top.link_domain!r}, link_period_ns is "
                         f"{link_period_ns!r}")
    link = (None if not own_clock else {"clk": f"{top.link_domain}_clk",
                                        "rst": f"{top.link_domain}_rst",
                                        "period_ns": link_period_ns})
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    source = work / "board.v"
    source.write_text(verilog.convert(top, name="board"))
    total_bytes = sum(len(data) + expect for data, expect in exchanges)
    results = work / "results.json"
    results.unlink(missing_ok=True)
    if flash is not None:
        (work / "flash.bin").write_bytes(flash.image)
    job = {"divisor": divisor, "results": str(results), "link": link,
           "flash": None if flash is None else {"image": str(work / "flash.bin"),
                                                "base": flash.base,
                                                "wake_time": flash.wake_time},
           "exchanges": [{"send": bytes(data).hex(), "expect": expect}
                         for data, expect in exchanges],
           "timeout_us": math.ceil(0.01 * (total_bytes * 12 * divisor * (link_period_ns or 10) / 10
                                           + 200_000))}
    runner = build_cocotb(simulator, source, "board", work)
    runner.test(hdl_toplevel="board", test_module="hwnn.sim.cocotb_uart",
                build_dir=work / "build", test_dir=work, results_xml=str(work / "results.xml"),
                extra_env={"HWNN_SIM_JOB": json.dumps(job)}, log_file=work / "sim.log")
    if not results.is_file():
        raise ToolError(f"The board simulation ended without results; see {work / 'sim.log'}")
    return bytes.fromhex(json.loads(results.read_text())["received"])
