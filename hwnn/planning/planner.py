"""Automatic folding for a board: a dataflow folding that meets a throughput target and fits.

The design runs at the board's clock (or the PLL's, see ``clock_mhz``), so a target of ``F``
inferences per second allows ``floor(clock / F)`` cycles per inference. :func:`plan_folding`
takes the cheapest folding within that many cycles (fewest lanes in every layer), estimates its
resources (:mod:`hwnn.planning.estimate`, plus the board's host link) and checks them against
the board's device: DSP blocks and block RAMs up to the device's count, LUT4s and flip-flops up
to :data:`LOGIC_CEILING` of it (room for placement and for the estimate's error). Without a
target it takes the fastest folding that fits. When nothing meets the target it says why: the
target is faster than the fully parallel design, or the folding it needs is over the device
(what is over, by how much) and which throughput the fastest fitting folding gives.
"""

import math
from dataclasses import dataclass

from .estimate import estimate, host_link_cost
from ..ir import Network
from ..rtl.folding import cycle_targets, folding_cycles, folding_for_cycles
from ..tools.synth import CAPACITY, DEVICES

__all__ = ["ARCH", "LOGIC_CEILING", "NoFolding", "Plan", "board_clock", "plan_folding"]

#: The architecture whose foldings this module plans.
ARCH = "dataflow"

#: Share of a device's LUT4s and flip-flops a planned design may take.
LOGIC_CEILING = 0.85


class NoFolding(ValueError):
    """No folding meets the target on the board."""


@dataclass(frozen=True)
class Plan:
    """A folding for ``board`` with its cycles per inference, the inferences per second at the
    board's clock and the estimated resources (accelerator and host link) with the device's
    capacity: ``{resource: (estimated, available)}``."""
    board:      str
    device:     str
    clock_hz:   float
    folding:    tuple
    cycles:     int
    resources:  dict
    target_fps: float | None = None

    @property
    def inferences_per_second(self) -> float:
        return self.clock_hz / self.cycles

    def describe(self) -> str:
        used = ", ".join(f"{name.upper()} {used}/{available}"
                         for name, (used, available) in self.resources.items())
        target = ("" if self.target_fps is None
                  else f" (target {self.target_fps:,.0f})")
        return (f"{self.board} ({self.device.upper()}, {self.clock_hz / 1e6:g} MHz): "
                f"{self.cycles} cycles per inference, {self.inferences_per_second:,.0f} "
                f"inferences/s{target}; estimated {used}")


def board_clock(board_name) -> tuple[str, float]:
    """``(device, clock in Hz)`` of a board of :mod:`hwnn.boards`."""
    from ..boards import board
    target = board(board_name)
    return target.device, float(target.make_platform().default_clk_frequency)


def _resources(network, folding, device):
    family = DEVICES[device][0]
    guess = estimate(network, family, ARCH, fold=folding)
    overhead = host_link_cost(network, family, in_count=folding[0].simd)
    return {name: (guess[name] + overhead.get(name, 0), available)
            for name, available in CAPACITY[device].items()}


def _over(resources):
    """The resources over their limit, as text; empty when the design fits."""
    over = []
    for name, (used, available) in resources.items():
        limit = math.floor(available * LOGIC_CEILING) if name in ("lut4", "ff") else available
        if used > limit:
            over.append(f"{name.upper()} {used} of {limit}"
                        + (f" ({LOGIC_CEILING:.0%} of {available})" if limit != available
                           else "") + f" (+{used - limit})")
    return ", ".join(over)


def plan_folding(network: Network, board_name: str, target_fps=None, *,
                 clock_mhz=None) -> Plan:
    """The cheapest folding reaching ``target_fps`` inferences per second on the board (the
    fastest that fits without a target), at the board's clock or at ``clock_mhz`` (the PLL
    frequency ``hwnn build --clock-mhz`` will make); :class:`NoFolding` saying why when there
    is none."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    if target_fps is not None:
        if isinstance(target_fps, bool) or not isinstance(target_fps, int | float):
            raise TypeError(f"target_fps must be a number, not {target_fps!r}")
        if not target_fps > 0 or math.isinf(target_fps):
            raise ValueError(f"target_fps must be a positive number, not {target_fps!r}")
    device, clock = board_clock(board_name)
    if clock_mhz is not None:
        from ..rtl.clocking import pll_settings
        clock = pll_settings(DEVICES[device][0], clock, clock_mhz * 1e6).output
    targets = cycle_targets(network)

    def plan(limit):
        folding = folding_for_cycles(network, limit)
        return Plan(board_name, device, clock, folding, folding_cycles(network, folding),
                    _resources(network, folding, device), target_fps)

    def fastest_fitting():
        for cycles in targets:
            candidate = plan(cycles)
            if not _over(candidate.resources):
                return candidate
        return None

    where = f"the {board_name} ({device.upper()}, {clock / 1e6:g} MHz)"
    if target_fps is None:
        found = fastest_fitting()
        if found is None:
            raise NoFolding(f"No folding of {network.name!r} fits {where}: even one lane per "
                            f"layer needs {_over(plan(targets[-1]).resources)}")
        return found
    allowed = math.floor(clock / target_fps)
    if allowed < targets[0]:
        fastest = ("every weight its own lane" if all(layer.kind == "dense"
                                                      for layer in network.layers)
                   else "every layer at its fastest fold")
        raise NoFolding(f"{target_fps:,.0f} inferences/s on {where} allows {allowed} cycles "
                        f"per inference; the fastest folding of {network.name!r} ({fastest}) "
                        f"takes {targets[0]} ({clock / targets[0]:,.0f} inferences/s)")
    cheapest = plan(allowed)
    if over := _over(cheapest.resources):
        best = fastest_fitting()
        reach = ("no folding fits at all" if best is None else
                 f"the fastest folding that fits takes {best.cycles} cycles "
                 f"({best.inferences_per_second:,.0f} inferences/s)")
        raise NoFolding(f"{target_fps:,.0f} inferences/s on {where} needs at most {allowed} "
                        f"cycles per inference; the cheapest such folding "
                        f"({_folds(cheapest.folding)}) is estimated over the device: {over}; "
                        f"{reach}")
    return cheapest


def _folds(folding):
    return " ".join(f"{fold.pe}x{fold.simd}" for fold in folding)
