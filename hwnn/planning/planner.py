# amaranth: UnusedElaboratable=no
# (The planner builds layer units for their structure only and never elaborates them.)
"""Automatic sizing for a board: a dataflow folding, or a systolic array and batch, that meets
a throughput target and fits.

The design runs at the board's clock (or the PLL's, see ``clock_mhz``), so a target of ``F``
inferences per second allows ``floor(clock / F)`` cycles per inference. :func:`plan_folding`
takes the cheapest folding within that many cycles (fewest lanes in every layer), estimates its
resources (:mod:`hwnn.planning.estimate`, plus the board's host link) and checks them against
the board's device: DSP blocks and block RAMs up to the device's count, LUT4s and flip-flops
(and an iCE40's logic cells, which nextpnr packs them into) up to their :data:`LOGIC_CEILING`
(room for placement and for the estimate's error). Where the folding's multipliers need more
DSP blocks than the device has, the layers that save the most LUT4s by them keep them and the
others build theirs in logic (:func:`logic_fallback`), so a folding refused for DSP blocks
alone fits when its LUT4s allow. Without a target it takes the fastest folding that fits.
When nothing meets the target it says why: the target is faster than the fully parallel
design, or the folding it needs is over the device (what is over, by how much) and which
throughput the fastest fitting folding gives.

:func:`plan_array` does the same for the systolic overlay over the arrays of
:data:`hwnn.arch.systolic.ARRAYS` and the batches of :data:`BATCHES` (cycles per inference from
the overlay's schedule); a network whose weights alone need more memory than the device's
block RAMs hold is refused at once, saying so (the overlay keeps every weight on chip).
"""

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from .estimate import estimate, load_coefficients, predict, structure_features
from ..ir import Network
from ..rtl.folding import cycle_targets, folding_cycles, folding_for_cycles
from ..rtl.mvau import MatrixVectorUnit
from ..rtl.structure import Structure
from ..rtl.units import unit_class
from ..tools.synth import CAPACITY, DEVICES

__all__ = ["BATCHES", "LOGIC_CEILING", "LOGIC_RESOURCES", "PLANNED", "NoFolding", "Plan",
           "board_clock", "check_weights_on_chip", "logic_fallback", "plan_array",
           "plan_folding"]

#: The architectures this module plans for a board, and what it chooses for them.
PLANNED = {"dataflow": "the folding", "systolic": "the array and batch"}

#: The batches :func:`plan_array` tries with each array.
BATCHES = (1, 2, 4, 8, 16, 32, 64)

#: Bits of one block RAM per family (iCE40 SB_RAM40_4K, ECP5 DP16KD), and of an iCE40
#: UltraPlus SPRAM block (SB_SPRAM256KA).
BLOCK_BITS = {"ice40": 4096, "ecp5": 18432}
SPRAM_BITS = 256 * 1024

#: Share of a device's LUT4s, flip-flops and iCE40 logic cells a planned design may take: an
#: iCEBreaker top of 88-89% of the UP5K's cells failed nextpnr's placement (2026-12-03), one
#: of 86% placed; since the host link's own clock domain and asynchronous resets (2026-12-04)
#: tops of 87% and 88% (estimated 86%) place and meet 48 MHz on every seed; the cells'
#: estimate is within about 10% (``benchmarks/ice40_cells.py``).
LOGIC_CEILING = {"lut4": 0.85, "ff": 0.85, "lc": 0.86}
#: The resources :data:`LOGIC_CEILING` applies to.
LOGIC_RESOURCES = tuple(LOGIC_CEILING)


class NoFolding(ValueError):
    """No folding (or array) meets the target on the board."""


@dataclass(frozen=True)
class Plan:
    """A design for ``board``: ``options`` of :func:`hwnn.flow.generate.generate` for ``arch``
    (``choice`` says them in words), its cycles per inference, the inferences per second at
    the board's clock and the estimated resources (accelerator and host link) with the
    device's capacity: ``{resource: (estimated, available)}``."""
    board:      str
    device:     str
    clock_hz:   float
    arch:       str
    options:    dict
    choice:     str
    cycles:     float
    resources:  dict
    target_fps: float | None = None

    @property
    def folding(self) -> tuple:
        """A dataflow plan's folding."""
        return self.options["fold"]

    @property
    def inferences_per_second(self) -> float:
        return self.clock_hz / self.cycles

    def describe(self) -> str:
        used = ", ".join(f"{name.upper()} {used}/{available}"
                         for name, (used, available) in self.resources.items())
        target = ("" if self.target_fps is None
                  else f" (target {self.target_fps:,.0f})")
        cycles = f"{self.cycles:.2f}".rstrip("0").rstrip(".")
        return (f"{self.board} ({self.device.upper()}, {self.clock_hz / 1e6:g} MHz): "
                f"{cycles} cycles per inference, {self.inferences_per_second:,.0f} "
                f"inferences/s{target}; estimated {used}")


def board_clock(board_name) -> tuple[str, float]:
    """``(device, clock in Hz)`` of a board of :mod:`hwnn.boards`."""
    from ..boards import board
    target = board(board_name)
    return target.device, float(target.make_platform().default_clk_frequency)


def _resources(network, arch, options, device):
    family = DEVICES[device][0]
    guess = estimate(network, family, arch, host_link=True, **options)
    return {name: (guess[name], available) for name, available in CAPACITY[device].items()}


def _over(resources):
    """The resources over their limit, as text; empty when the design fits."""
    over = []
    for name, (used, available) in resources.items():
        limit = (math.floor(available * LOGIC_CEILING[name]) if name in LOGIC_RESOURCES
                 else available)
        if used > limit:
            over.append(f"{name.upper()} {used} of {limit}"
                        + (f" ({LOGIC_CEILING[name]:.0%} of {available})" if limit != available
                           else "") + f" (+{used - limit})")
    return ", ".join(over)


def _layer_costs(layer, fold, family):
    """``(DSP blocks, LUT4s)`` of ``layer``'s unit folded as ``fold``, estimated."""
    unit = unit_class(layer)(layer, pe=fold.pe, simd=fold.simd, multipliers=fold.multipliers)
    structure = Structure.of(MatrixVectorUnit.COUNTS).merge(unit.structure())
    guess = predict(structure_features(structure, family), load_coefficients(), family,
                    "dataflow")
    return guess["dsp"], guess["lut4"]


#: Layers with DSP blocks up to which :func:`logic_fallback` tries every choice (above:
#: greedily, by LUT4s saved per DSP block).
EXHAUSTIVE_LAYERS = 12


def _without_dsp(layer, fold, family, lut4_available):
    """``(LUT4s, fold)``: the cheaper way to build ``layer`` folded as ``fold`` without DSP
    blocks, by the estimate: its multipliers in logic or, where its unit takes it (fully
    parallel) and its products could fit ``lut4_available`` at one LUT4 each (hardwired
    products take more; the graph of a large layer takes a minute to build), its weights
    hardwired."""
    options = []
    for choice in ("logic", "hardwired"):
        candidate = dataclasses.replace(fold, multipliers=choice)
        try:
            unit_class(layer).check_fold(layer, candidate)
        except ValueError:
            continue
        if choice == "hardwired" and np.count_nonzero(layer.weights) > lut4_available:
            continue
        options.append((_layer_costs(layer, candidate, family)[1], candidate))
    return min(options, key=lambda option: option[0])


def logic_fallback(network: Network, folding, device: str) -> tuple:
    """``folding`` with some layers' multipliers out of DSP blocks, in logic
    (``multipliers="logic"``) or, for a fully parallel layer where that is cheaper, hardwired
    (:func:`_without_dsp`), so that the estimated DSP blocks fit ``device``'s: of the layers
    with DSP blocks, those that keep them are the set within the device's count that saves the
    most estimated LUT4s (every set up to :data:`EXHAUSTIVE_LAYERS` such layers, greedily by
    LUT4s per block beyond). ``folding`` as it is when its DSP blocks fit."""
    family, available = DEVICES[device][0], CAPACITY[device]["dsp"]
    folding = tuple(fold if fold.multipliers == "hardwired"
                    else dataclasses.replace(fold, multipliers="dsp") for fold in folding)
    layers = []                                              # (index, blocks, LUT4s saved)
    instead = {}                                             # index -> the fold without DSPs
    for index, (layer, fold) in enumerate(zip(network.layers, folding, strict=True)):
        blocks, lut4 = _layer_costs(layer, fold, family)
        if blocks > 0:
            cost, instead[index] = _without_dsp(layer, fold, family,
                                                CAPACITY[device]["lut4"])
            layers.append((index, blocks, cost - lut4))
    if sum(blocks for _, blocks, _ in layers) <= available:
        return folding

    def fits(kept):
        return sum(blocks for _, blocks, _ in kept) <= available

    if len(layers) <= EXHAUSTIVE_LAYERS:
        choices = (kept for size in range(len(layers) + 1)
                   for kept in itertools.combinations(layers, size))
        keep = max((kept for kept in choices if fits(kept)),
                   key=lambda kept: sum(saved for _, _, saved in kept))
    else:
        keep = []
        for entry in sorted(layers, key=lambda entry: -entry[2] / entry[1]):
            if fits([*keep, entry]):
                keep.append(entry)
    moved = {index for index, _, _ in layers} - {index for index, _, _ in keep}
    return tuple(instead[index] if index in moved else fold
                 for index, fold in enumerate(folding))


def _device_and_clock(network, board_name, target_fps, clock_mhz):
    """Check the arguments of a plan; the board's device and the clock (Hz) to plan for."""
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
    return device, clock


def plan_folding(network: Network, board_name: str, target_fps=None, *,
                 clock_mhz=None) -> Plan:
    """The cheapest folding reaching ``target_fps`` inferences per second on the board (the
    fastest that fits without a target), at the board's clock or at ``clock_mhz`` (the PLL
    frequency ``hwnn build --clock-mhz`` will make); :class:`NoFolding` saying why when there
    is none."""
    device, clock = _device_and_clock(network, board_name, target_fps, clock_mhz)
    targets = cycle_targets(network, hardwired=True)

    def plan(limit):
        folding = folding_for_cycles(network, limit, hardwired=True)
        resources = _resources(network, "dataflow", {"fold": folding}, device)
        if resources["dsp"][0] > resources["dsp"][1]:
            folding = logic_fallback(network, folding, device)
            resources = _resources(network, "dataflow", {"fold": folding}, device)
        return Plan(board_name, device, clock, "dataflow", {"fold": folding}, "folding",
                    folding_cycles(network, folding), resources, target_fps)

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
                   else "every layer at its fastest fold, convolutions hardwired")
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
    return " ".join(fold.label for fold in folding)


def check_weights_on_chip(network: Network, device: str, where: str):
    """Raise :class:`NoFolding` in one line when ``network``'s weights alone need more bits
    than ``device``'s block RAMs and SPRAM hold (the systolic overlay keeps every weight on
    chip; loaded weights may go to SPRAM); ``where`` names the device (or the board) in the
    message."""
    family, blocks = DEVICES[device][0], CAPACITY[device]["bram"]
    spram = CAPACITY[device].get("spram", 0)
    weights = sum(layer.weight_bits for layer in network.layers)
    held = blocks * BLOCK_BITS[family] + spram * SPRAM_BITS
    memories = f"{blocks} block RAMs" + (f" and {spram} SPRAM blocks" if spram else "")
    if weights > held:
        raise NoFolding(f"No systolic array of {network.name!r} fits {where}: its weights "
                        f"alone take {weights / 1024:,.1f} kbit, more than the {memories} of "
                        f"the {device.upper()} hold ({held / 1024:,.0f} kbit); the overlay "
                        f"keeps every weight on chip")


def plan_array(network: Network, board_name: str, target_fps=None, *, clock_mhz=None) -> Plan:
    """The systolic array and batch for the board (arguments as :func:`plan_folding`'s):
    without a target the fewest cycles per inference that fits, with one the fewest
    multipliers (then the smallest batch) that reach it; the requantization multipliers in
    DSP blocks where they fit, else in logic; unpacked multipliers where they fit, else the
    most products per multiplier the formats allow exactly (:func:`~hwnn.rtl.systolic.max_pack`);
    output stages one lane per column where they fit, else narrower (a divisor of the
    columns, taking a row's sums in pieces: more cycles); weights in a ROM where they fit,
    else, on a device with SPRAM, loaded at start-up (``weights="loaded"``: the estimate puts
    them in SPRAM when the block RAMs would not hold them); :class:`NoFolding` saying why when
    there is none."""
    from ..arch.systolic import ARRAYS, SYSTOLIC
    from ..rtl.overlay import (REQUANT_MULTIPLIERS, WEIGHT_SOURCES, OverlayParams,
                               SystolicOverlay, check_overlay, schedule)
    from ..rtl.systolic import max_pack

    device, clock = _device_and_clock(network, board_name, target_fps, clock_mhz)
    SYSTOLIC.check_layer_kinds(network)
    where = f"the {board_name} ({device.upper()}, {clock / 1e6:g} MHz)"
    check_weights_on_chip(network, device, where)
    check_overlay(network, OverlayParams(1, 2, 1))
    formats = SystolicOverlay(network, OverlayParams(1, 2, 1))      # the array's value formats
    # (cycles, lanes, batch, requantization in logic, products per multiplier, pieces of a
    # row's sums in the output stages, weights loaded, params); the schedule depends on
    # neither where the requantization multipliers are, nor the packing, nor where the
    # weights come from.
    sources = WEIGHT_SOURCES if CAPACITY[device].get("spram") else ("rom",)
    candidates = []
    for rows, cols in ARRAYS:
        pack = max_pack(formats.a_format, formats.w_format, rows, cols=cols)
        for batch in BATCHES:
            for pieces in (d for d in range(1, cols + 1) if cols % d == 0):
                cycles = schedule(network, OverlayParams(rows, cols, batch, stage_lanes=cols
                                                         // pieces))["per_inference"]
                candidates += [(cycles, rows * cols, batch, requant == "logic", packed, pieces,
                                weights == "loaded",
                                OverlayParams(rows, cols, batch, requant, packed,
                                              None if pieces == 1 else cols // pieces, weights))
                               for requant in REQUANT_MULTIPLIERS
                               for packed in sorted({1, pack})
                               for weights in sources]

    def plan(candidate):
        cycles, _, batch, in_logic, packed, pieces, loaded, params = candidate
        options = {"array": f"{params.rows}x{params.cols}", "batch": batch,
                   "requant": params.requant, "pack": str(packed),
                   "stage_lanes": params.stage_lanes or 0, "weights": params.weights}
        choice = (f"array {options['array']}, batch {batch}"
                  + (f", {packed} products per multiplier" if packed > 1 else "")
                  + (", requantization in logic" if in_logic else "")
                  + (f", output stages {params.stage_lanes} lane"
                     f"{'s' if params.stage_lanes > 1 else ''} wide" if pieces > 1 else "")
                  + (", weights loaded at start-up" if loaded else ""))
        return Plan(board_name, device, clock, "systolic", options, choice, cycles,
                    _resources(network, "systolic", options, device), target_fps)

    def first_fitting(ordered):
        for candidate in ordered:
            if not _over((found := plan(candidate)).resources):
                return found
        return None

    fastest = sorted(candidates, key=lambda candidate: candidate[:7])
    if target_fps is None:
        if (found := first_fitting(fastest)) is None:
            # The smallest array with the fewest DSP blocks.
            smallest = plan(min(candidates, key=lambda candidate: (
                *candidate[1:3], not candidate[3], -candidate[4], -candidate[5],
                candidate[6])))
            raise NoFolding(f"No systolic array of {network.name!r} fits {where}: even the "
                            f"smallest ({smallest.choice}) needs {_over(smallest.resources)}")
        return found
    allowed = clock / target_fps
    meeting = sorted((candidate for candidate in candidates if candidate[0] <= allowed),
                     key=lambda candidate: candidate[1:7])
    if not meeting:
        best = plan(fastest[0])
        raise NoFolding(f"{target_fps:,.0f} inferences/s on {where} allows {allowed:,.0f} "
                        f"cycles per inference; the fastest systolic design of "
                        f"{network.name!r} ({best.choice}) takes {best.cycles:,.1f}")
    if (found := first_fitting(meeting)) is None:
        cheapest, best = plan(meeting[0]), first_fitting(fastest)
        reach = ("no array fits at all" if best is None else
                 f"the fastest that fits ({best.choice}) takes {best.cycles:,.1f} cycles "
                 f"({best.inferences_per_second:,.0f} inferences/s)")
        raise NoFolding(f"{target_fps:,.0f} inferences/s on {where} needs at most "
                        f"{allowed:,.0f} cycles per inference; the cheapest such design "
                        f"({cheapest.choice}) is estimated over the device: "
                        f"{_over(cheapest.resources)}; {reach}")
    return found
