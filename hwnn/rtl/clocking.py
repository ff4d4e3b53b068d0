"""A faster clock from a board's clock: the PLL of an iCE40 or ECP5 and a clock domain on it.

:func:`pll_settings` finds the divider settings whose output is closest to the requested
frequency within the PLL's ranges (Lattice's iCE40 sysCLOCK PLL and ECP5 sysCLOCK PLL
technical notes, TN1251 and TN1263: iCE40 phase-detector input 10-133 MHz, VCO 533-1066 MHz,
output 16-275 MHz; ECP5 phase-detector input 3.125-400 MHz, VCO 400-800 MHz, output
3.125-400 MHz). :class:`PllDomain` drives the ``sync`` clock domain from the board's clock pin
through the PLL.
"""

from dataclasses import dataclass

from amaranth import *

__all__ = ["PllDomain", "PllSettings", "pll_settings"]


@dataclass(frozen=True)
class PllSettings:
    """Divider settings and the output frequency they give."""
    family:     str
    reference:  float
    output:     float
    parameters: dict


def _ice40(reference):
    for divr in range(16):
        pfd = reference / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                output = vco / 2 ** divq
                if 16e6 <= output <= 275e6:
                    # FILTER_RANGE by phase-detector frequency (icepll's table).
                    filter_range = next(i for i, limit in enumerate(
                        (17e6, 26e6, 44e6, 66e6, 101e6, float("inf")), 1) if pfd < limit)
                    yield output, {"DIVR": divr, "DIVF": divf, "DIVQ": divq,
                                   "FILTER_RANGE": filter_range}


def _ecp5(reference):
    for clki in range(1, 129):
        pfd = reference / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            output = pfd * clkfb
            if not 3.125e6 <= output <= 400e6:
                continue
            for clkop in range(1, 129):
                if 400e6 <= output * clkop <= 800e6:
                    yield output, {"CLKI_DIV": clki, "CLKFB_DIV": clkfb, "CLKOP_DIV": clkop,
                                   "CLKOP_CPHASE": clkop - 1}
                    break


_SEARCH = {"ice40": _ice40, "ecp5": _ecp5}


def pll_settings(family, reference_hz, target_hz) -> PllSettings:
    """The settings whose output is closest to ``target_hz`` (then the lowest VCO dividers);
    ValueError when the PLL cannot come within 1% of it."""
    if family not in _SEARCH:
        raise ValueError(f"No PLL for FPGA family {family!r}; available: {', '.join(_SEARCH)}")
    if not isinstance(target_hz, int | float) or isinstance(target_hz, bool) or target_hz <= 0:
        raise ValueError(f"The clock must be a positive frequency, not {target_hz!r}")
    options = list(_SEARCH[family](reference_hz))
    output, parameters = min(options, key=lambda option: abs(option[0] - target_hz))
    if abs(output - target_hz) > 0.01 * target_hz:
        low, high = min(o for o, _ in options), max(o for o, _ in options)
        raise ValueError(f"The {family} PLL cannot make {target_hz / 1e6:g} MHz from "
                         f"{reference_hz / 1e6:g} MHz (nearest {output / 1e6:.3f} MHz; it makes "
                         f"{low / 1e6:g} to {high / 1e6:g} MHz)")
    return PllSettings(family, float(reference_hz), float(output), parameters)


class PllDomain(Elaboratable):
    """Drives the ``sync`` clock domain at ``settings.output`` and the ``board`` clock domain at
    the board's clock (both defined by the parent) from the board's clock pin ``pin`` (a port
    from ``platform.request(clock, dir="-")``): iCE40 ``SB_PLL40_2_PAD`` on the pin (the UP5K's
    PLL sits on the clock pad, so the pin must feed it directly; its port A passes the pin's
    clock on), ECP5 ``EHXPLLL`` behind the pin's input buffer. ``sync`` is held in reset until
    the PLL has locked and then ``reset_delay`` seconds more (iCE40 block RAMs read as zeros
    for some microseconds after configuration; the platform's own clock domain waits 15 us for
    the same reason); ``board`` leaves reset two of its cycles after ``sync``. Both resets are
    released at an edge of their domain's clock (``sync``'s comes from a flip-flop on it,
    ``board``'s from a ``ResetSynchronizer``), so the parent may declare the domains with
    ``async_reset`` (the registers' reset pins then stay out of their enable logic) or
    not."""

    def __init__(self, settings: PllSettings, pin, *, reset_delay=15e-6):
        if not isinstance(settings, PllSettings):
            raise TypeError(f"settings must be a PllSettings, not {settings!r}")
        self.settings, self.pin, self.reset_delay = settings, pin, reset_delay

    def elaborate(self, platform):
        from amaranth.lib import io
        from amaranth.lib.cdc import ResetSynchronizer

        m = Module()
        clock, board_clock, locked = Signal(), Signal(), Signal()
        p = self.settings.parameters
        if self.settings.family == "ice40":
            m.submodules.pll = Instance(
                "SB_PLL40_2_PAD", p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT_PORTB="GENCLK",
                p_DIVR=p["DIVR"], p_DIVF=p["DIVF"], p_DIVQ=p["DIVQ"],
                p_FILTER_RANGE=p["FILTER_RANGE"],
                io_PACKAGEPIN=self.pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBALA=board_clock, o_PLLOUTGLOBALB=clock, o_LOCK=locked)
        else:
            m.submodules.clk_buf = buffer = io.Buffer("i", self.pin)
            m.d.comb += board_clock.eq(buffer.i)
            m.submodules.pll = Instance(
                "EHXPLLL", p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED",
                p_STDBY_ENABLE="DISABLED", p_DPHASE_SOURCE="DISABLED",
                p_OUTDIVIDER_MUXA="DIVA", p_CLKOP_ENABLE="ENABLED", p_FEEDBK_PATH="CLKOP",
                p_CLKI_DIV=p["CLKI_DIV"], p_CLKFB_DIV=p["CLKFB_DIV"],
                p_CLKOP_DIV=p["CLKOP_DIV"], p_CLKOP_CPHASE=p["CLKOP_CPHASE"],
                p_CLKOP_FPHASE=0,
                a_FREQUENCY_PIN_CLKI=f"{self.settings.reference / 1e6:.6f}",
                a_FREQUENCY_PIN_CLKOP=f"{self.settings.output / 1e6:.6f}",
                i_CLKI=buffer.i, i_CLKFB=clock, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=1, i_PHASESTEP=1,
                i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=clock, o_LOCK=locked)
        # A counter on the PLL's clock, cleared while the PLL is unlocked, releases the reset
        # when it reaches the delay; the reset itself comes from a flip-flop (it reaches every
        # register of the design: no logic in front of that net).
        delay = max(int(self.reset_delay * self.settings.output), 2)
        count = Signal(range(delay + 1))
        held = Signal(init=1)                              # count != delay, registered
        m.domains += ClockDomain("pll_start", async_reset=True, local=True)
        m.d.comb += [ClockSignal("sync").eq(clock), ClockSignal("pll_start").eq(clock),
                     ResetSignal("pll_start").eq(~locked),
                     ResetSignal("sync").eq(held), ClockSignal("board").eq(board_clock)]
        m.submodules.board_reset = ResetSynchronizer(held, domain="board")
        with m.If(count != delay):
            m.d.pll_start += count.eq(count + 1)
        m.d.pll_start += held.eq((count != delay) & (count != delay - 1))
        return m
