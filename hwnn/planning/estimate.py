"""Resource estimator: LUT4, flip-flops, DSP blocks and block RAMs of a design, without Yosys.

Each engine's hardware is described by the structure its top component reports
(``structure()``, :mod:`hwnn.rtl.structure`: counts such as lanes by arithmetic kind, operand,
product, adder-tree and accumulator register bits and output-stage comparator bits; its
multipliers; its memories), which the estimator maps onto a family as Yosys would: multipliers
to DSP blocks by Yosys' width rules, every memory to logic, LUT RAM or block RAM by Yosys'
mapping costs, ROMs in logic costed by their distinct bit columns. A resource is a non-negative
linear combination of an engine's features, with coefficients per family (ECP5, iCE40) and
engine fitted by :func:`fit` on Yosys results (``benchmarks/estimator.py`` synthesizes the
calibration designs, fits, and reports the errors on held-out designs). The fitted coefficients
ship in ``hwnn/planning/estimator.json``.

LUT4 counts as :func:`hwnn.tools.synth.utilization` does (ECP5: LUT4 + 2 per CCU2C carry cell and
per TRELLIS_DPR16X4 distributed RAM). The estimate is the accelerator alone: a board's host
link comes on top (:func:`host_link_cost`).
"""

import dataclasses
import functools
import json
import math
from pathlib import Path

import numpy as np

from ..arch import architecture
from ..ir import Network
from ..ir.formats import Format, signed_bits_for
from ..rtl.engine import load_port
from ..rtl.structure import Memory, Multipliers, bit_matrix
from ..tools.synth import BLOCK_RAMS, FAMILIES, spram_count, spram_memories

__all__ = ["BOARD_OVERHEAD", "COEFFICIENTS_PATH", "ICE40_PAIRING", "MAPPED_FEATURES",
           "TARGETS", "design_features", "estimate", "fit", "flash_reader_cost", "held_out",
           "host_link_bits", "host_link_cost", "load_coefficients", "logic_cells", "measured",
           "predict", "save_coefficients", "spram_placement", "structure_features"]

TARGETS = ("lut4", "ff", "dsp", "bram")
#: The features DSP blocks and block RAMs are fitted on (LUT4s and flip-flops: all).
TARGET_FEATURES = {"dsp": ("dsp_lanes", "dsp_requant"), "bram": ("blocks",)}
COEFFICIENTS_PATH = Path(__file__).with_name("estimator.json")

#: Block RAM shapes (depth, width) per family: ECP5 DP16KD (18 Kbit; 36 bits wide only as a
#: pseudo-dual-port PDPW16KD), iCE40 SB_RAM40_4K (4 Kbit).
BLOCK_SHAPES = {
    "ecp5": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
    "ice40": ((2048, 2), (1024, 4), (512, 8), (256, 16)),
}

#: What a board's host link (UART, frame logic, the input beat being assembled, the output
#: vector, two-entry FIFOs) adds to an accelerator: ``(base, per bit)`` with the bits of
#: :func:`host_link_bits`, from Yosys on board tops (``benchmarks/estimator.py`` measures
#: them). The input vector's memory is mapped like the accelerator's memories.
BOARD_OVERHEAD = {"ecp5": {"lut4": (325, 1.55), "ff": (132, 2.83)},
                  "ice40": {"lut4": (252, 1.48), "ff": (65, 2.75)}}


def host_link_bits(network: Network, in_count: int) -> int:
    """The register bits of the host link in front of ``network``'s accelerator taking
    ``in_count`` codes per beat: the beat being assembled and the output vector (the input
    vector is in a memory, see :func:`host_link_cost`)."""
    return (in_count * network.input.format.width
            + network.out_features * network.output.format.width)


def host_link_cost(network: Network, family: str, in_count: int = 1) -> dict:
    """Estimated LUT4s, flip-flops and block RAMs of the host link in front of ``network``'s
    accelerator taking ``in_count`` codes per beat (the first layer's ``simd``)."""
    vector = Memory("host input", network.in_features // in_count,
                    in_count * network.input.format.width)
    memory = dict.fromkeys(MAPPED_FEATURES, 0.0)
    _memory(memory, vector, family)
    bits = host_link_bits(network, in_count) + memory["ram_bits"]
    cost = {name: round(base + per_bit * bits)
            for name, (base, per_bit) in BOARD_OVERHEAD[family].items()}
    cost["lut4"] += round(_LUT_PRIOR["lutram_cells"] * memory["lutram_cells"])
    cost["bram"] = int(memory["blocks"])
    return cost


def flash_reader_cost(word_bits) -> dict:
    """Estimated LUT4s and flip-flops of a board's :class:`~hwnn.rtl.flash.FlashReader` of
    ``word_bits``-bit words (Yosys ``synth_ice40``: 85 LUT4 and 48 FF at 8 bits, 90 and 62
    at 20, 101 and 107 at 64)."""
    return {"lut4": round(85 + word_bits / 4), "ff": 40 + word_bits}


def block_count(depth, width, family) -> int:
    """Block RAMs for a ``depth x width`` memory: the cheapest shape, tiled."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BLOCK_SHAPES[family])


#: Yosys' multiplier-to-DSP mapping per family: the widest operand a block takes, and the
#: narrowest product it maps (``synth_ecp5``: every multiplier of 2+ bit operands;
#: ``synth_ice40 -dsp``: products of 11 bits or more, ``DSP_Y_MINWIDTH=11``, counted after
#: ``wreduce`` has trimmed the product to the bits its range needs).
DSP_RULES = {"ecp5": {"max_width": 18, "min_product": 4},
             "ice40": {"max_width": 16, "min_product": 11}}


def _product_bits(a: Format, b: Format) -> int:
    ends = [x * y for x in (a.min_value, a.max_value) for y in (b.min_value, b.max_value)]
    if a.signed or b.signed:
        return signed_bits_for(min(ends), max(ends))
    return max(max(ends).bit_length(), 1)


def _multipliers(features, multipliers: Multipliers, family):
    """Add ``multipliers``: those the design builds in logic
    (:func:`~hwnn.rtl.arith.logic_product`) as ``logic_mult_bits`` (``const_mult_bits`` for
    a constant ``b``: shifted copies of ``a`` added, no partial products to form), the others
    as DSP blocks (feature ``dsp_<use>``) when Yosys maps them for the family, else as
    ``lut_mult_bits`` (Yosys' own LUT multipliers); bits are the operands' widths multiplied
    (for those in logic, ``a``'s width by the partial products, ``terms``)."""
    rule, a, b = DSP_RULES[family], multipliers.a, multipliers.b
    mapped = a.bits >= 2 and b.bits >= 2 and _product_bits(a, b) >= rule["min_product"]
    if multipliers.logic and multipliers.terms is not None:
        features["const_mult_bits"] += multipliers.count * a.bits * multipliers.terms
    elif multipliers.logic:
        features["logic_mult_bits"] += multipliers.count * a.bits * b.bits
    elif mapped:
        blocks = math.ceil(max(a.bits, b.bits) / rule["max_width"])
        features[f"dsp_{multipliers.use}"] += multipliers.count * blocks
    else:
        features["lut_mult_bits"] += multipliers.count * a.bits * b.bits


def _rom_luts(depth) -> float:
    """LUT4s per bit of a ROM in logic: none for a constant (depth 1, folded into the logic it
    feeds), a fraction for 2-4 words (an address bit or two that merge into the next LUT), one
    LUT4 up to 16 words, then a LUT4 per 16 words and a multiplexer tree."""
    if depth <= 1:
        return 0.0
    if depth <= 4:
        return 0.25 * (depth - 1)
    return 2 * math.ceil(depth / 16) - 1


#: Yosys' memory mapping costs (``memory_libmap`` and the family libraries of Yosys 0.70): a
#: block RAM costs 128 (ECP5 DP16KD) or 64 (iCE40 SB_RAM40_4K), an ECP5 16x4 LUT RAM 4, a bit
#: of ROM in logic 1/16 and a bit of RAM in logic 1; the cheapest mapping wins.
BLOCK_COST = {"ecp5": 128, "ice40": 64}
LUTRAM_COST = {"ecp5": 4, "ice40": None}


def _distinct_columns(words, width) -> int:
    """Bit columns of a ROM's contents that are neither constant nor a copy (or inverse) of
    another: what logic synthesis has to build."""
    columns = bit_matrix(words, width).T
    columns = columns ^ columns[:, :1]                 # an inverse counts as a copy
    varying = columns[columns.any(axis=1)]
    return len(np.unique(np.packbits(varying, axis=1), axis=0)) if len(varying) else 0


def _memory(features, memory: Memory, family):
    """Add the features of ``memory``, mapped as Yosys would (the cheapest of
    :data:`BLOCK_COST`, :data:`LUTRAM_COST` and logic): ROMs in logic as ``rom_luts`` (by
    their distinct columns), RAMs in logic as ``ram_bits`` (flip-flops and multiplexers),
    ECP5 LUT RAM cells as ``lutram_cells``, block RAMs as ``blocks``."""
    depth, width, rom = memory.depth, memory.width, memory.contents is not None
    if depth <= 0 or width <= 0:
        return
    blocks = block_count(depth, width, family)
    options = {"block": BLOCK_COST[family] * blocks}
    if rom:
        logic = int(depth * width / 16)
    else:
        logic = depth * width
        if LUTRAM_COST[family] is not None:
            cells = math.ceil(depth / 16) * math.ceil(width / 4)
            options["lutram"] = LUTRAM_COST[family] * cells
    choice = min(options, key=options.get)
    if options[choice] >= logic:
        if rom:
            features["rom_luts"] += _distinct_columns(memory.contents, width) * _rom_luts(depth)
        else:
            features["ram_bits"] += depth * width
    elif choice == "lutram":
        features["lutram_cells"] += cells
    else:
        features["blocks"] += blocks


#: The features the estimator derives from a component's multipliers and memories for a
#: family; the others are the component's counts (:mod:`hwnn.rtl.structure`).
MAPPED_FEATURES = ("dsp_lanes", "dsp_requant", "lut_mult_bits", "logic_mult_bits",
                   "const_mult_bits", "rom_luts",
                   "ram_bits",
                   "lutram_cells", "blocks")


def structure_features(structure, family: str) -> dict:
    """The features of a component's :class:`~hwnn.rtl.structure.Structure` on ``family``:
    its counts, and its multipliers and memories mapped by Yosys' rules."""
    features = {**structure.counts, **dict.fromkeys(MAPPED_FEATURES, 0.0)}
    for multipliers in structure.multipliers:
        _multipliers(features, multipliers, family)
    for memory in structure.memories:
        _memory(features, memory, family)
    return features


def design_features(network: Network, family: str, arch="dataflow", **options) -> dict:
    """The structural features of ``network`` built as ``arch`` with ``options`` (those of
    :func:`hwnn.flow.generate.generate` for that architecture) for ``family``: what the top
    component reports (:meth:`structure`), mapped by :func:`structure_features`."""
    return structure_features(_top(network, family, arch, options).structure(), family)


def _top(network, family, arch, options):
    """The top component of ``network`` built as ``arch`` with ``options`` (not elaborated)."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    if family not in FAMILIES:
        raise ValueError(f"Unknown FPGA family {family!r}; available: {', '.join(FAMILIES)}")
    arch = architecture(arch)
    return arch.build(network, arch.check(network, arch.params(**options)))


def measured(cells, family) -> dict:
    """The :data:`TARGETS` of a Yosys cell count, as :func:`hwnn.tools.synth.utilization` counts."""
    from ..tools.implement import FAMILY_DEVICES
    from ..tools.synth import SynthReport, utilization
    report = SynthReport(family, "", cells, 0.0)
    used = {name: used for name, (used, _) in
            utilization(report, FAMILY_DEVICES[family]).items()}
    return {"lut4": used["lut4"], "ff": used["ff"], "dsp": used["dsp"], "bram": used["bram"]}


#: Per-feature costs from the structure alone (LUT4s and flip-flops a feature unit needs by
#: hand count), toward which :func:`fit` pulls coefficients the samples leave undetermined.
_LUT_PRIOR = {"unit": 60, "cells": 20, "pes": 60, "xnor_lanes": 1.5, "addsub_bits": 2,
              "lut_mult_bits": 1.5, "tree_bits": 1, "acc_bits": 1.5, "register_bits": 0.1,
              "pipeline_bits": 0.05,
              "graph_register_bits": 0.05, "counter_bits": 1,
              "cell_bits": 0.5, "edge_bits": 0.25, "pe_bits": 2, "readout_bits": 1,
              "compare_bits": 1, "requant_bits": 1, "rom_luts": 1, "ram_bits": 0.3,
              "lutram_cells": 2.5, "blocks": 2}
_FF_PRIOR = {"unit": 30, "cells": 2, "pes": 30, "xnor_lanes": 0.2, "addsub_bits": 1,
             "lut_mult_bits": 0.5, "tree_bits": 0.3, "acc_bits": 1, "register_bits": 1,
             "pipeline_bits": 1, "graph_register_bits": 1, "counter_bits": 1,
             "cell_bits": 1, "edge_bits": 1, "pe_bits": 1, "readout_bits": 1,
             "compare_bits": 0.1, "requant_bits": 1, "ram_bits": 1}
#: ``logic_mult_bits`` (LUT4s, flip-flops) per family, measured by
#: ``benchmarks/logic_multipliers.py`` (dataflow designs built with their multipliers in DSP
#: blocks and in logic; per bit that moved into logic, by least squares over the differences:
#: three designs on iCE40, the int8 digits MLP folded 2x2 1x2 1x1 on ECP5; their per-tensor
#: requantization multipliers moved too, by constants). They are also the priors of
#: ``const_mult_bits`` (multipliers by a constant in logic), which :func:`fit` refines on the
#: designs that have them (the hardwired designs' and overlays' requantization in logic). No
#: dataflow calibration design has other multipliers in logic, so :func:`fit` keeps
#: ``logic_mult_bits`` there.
LOGIC_MULT_COST = {"ecp5": (1.27, 0.12), "ice40": (1.39, 0.51)}
#: ``graph_bits`` (LUT4s per adder bit of a hardwired layer's graph, :mod:`hwnn.rtl.cmvm`; its
#: registers count as ``graph_register_bits``), the prior: on ECP5 the mean over the digits
#: MLP's first layer (accumulators) hardwired with int8, int4, ternary and binary weights, what
#: Yosys took beyond the rest of this estimate per adder bit (0.86, 0.87, 0.84, 0.79; a shifted
#: term's low bits pass an adder without a LUT; ``benchmarks/peers.py --no-pnr``, 2026-12-03);
#: on iCE40 the hand count, one LUT4 beside each carry cell. :func:`fit` refines it on the
#: hardwired calibration designs (``benchmarks/estimator.py``, ``hw*``: 0.70 on ECP5, 0.92 on
#: iCE40 in the shipped coefficients of 2026-12-03).
GRAPH_COST = {"ecp5": 0.84, "ice40": 1.0}
PRIORS = {family: {"lut4": _LUT_PRIOR | {"logic_mult_bits": lut4, "const_mult_bits": lut4,
                                         "graph_bits": GRAPH_COST[family]},
                   "ff": _FF_PRIOR | {"logic_mult_bits": ff, "const_mult_bits": ff,
                                      "graph_bits": 0.0}}
          for family, (lut4, ff) in LOGIC_MULT_COST.items()}
PRIORS |= {"dsp": {"dsp_lanes": 1, "dsp_requant": 1}, "bram": {"blocks": 1}}
#: How strongly :func:`fit` pulls toward :data:`PRIORS` (relative to one sample's error).
PRIOR_WEIGHT = 0.1


def _prior(family, target, names):
    table = PRIORS[target] if target in ("dsp", "bram") else PRIORS[family][target]
    return np.array([table.get(name, 0.0) for name in names], dtype=float)


def held_out(config) -> bool:
    """Whether a calibration sample is kept out of the fit (to measure the error): every
    fourth random design and the digits designs."""
    return config["name"].startswith("digits") or config.get("seed", 0) % 4 == 3


def fit(samples) -> dict:
    """Coefficients ``{family: {arch: {target: {feature: c}}}}`` by non-negative least squares
    on relative errors, from samples ``{"config", "features": {family: {...}}, family:
    {"cells"}}`` not :func:`held_out`."""
    from scipy.optimize import nnls
    coefficients = {}
    for family in FAMILIES:
        for arch in sorted({s["config"]["arch"] for s in samples}):
            rows = [s for s in samples if s["config"]["arch"] == arch
                    and not held_out(s["config"])]
            if not rows:
                continue
            all_names = sorted(rows[0]["features"][family])
            for target in TARGETS:
                names = TARGET_FEATURES.get(target, all_names)
                x = np.array([[s["features"][family][n] for n in names] for s in rows],
                             dtype=float)
                y = np.array([measured(s[family]["cells"], family)[target] for s in rows],
                             dtype=float)
                weight = 1 / np.maximum(y, 1.0)
                # Relative errors of the samples, plus a pull toward the structural prior.
                prior = _prior(family, target, names)
                scale = np.maximum(prior, 0.5)
                a = np.vstack([x * weight[:, None], PRIOR_WEIGHT * np.diag(1 / scale)])
                b = np.concatenate([y * weight, PRIOR_WEIGHT * prior / scale])
                solution, _ = nnls(a, b)
                coefficients.setdefault(family, {}).setdefault(arch, {})[target] = {
                    name: round(float(c), 5) for name, c in zip(names, solution, strict=True)}
    return coefficients


def save_coefficients(coefficients, path=COEFFICIENTS_PATH):
    Path(path).write_text(json.dumps(coefficients, indent=1, sort_keys=True) + "\n")


@functools.cache
def _shipped() -> dict:
    return json.loads(COEFFICIENTS_PATH.read_text())


def load_coefficients(path=None) -> dict:
    """The coefficients in ``path``, or the shipped ones (read once)."""
    return _shipped() if path is None else json.loads(Path(path).read_text())


def predict(features, coefficients, family, arch) -> dict:
    """``{target: estimate}`` from features and coefficients."""
    table = coefficients[family][arch]
    return {target: sum(c * features[name] for name, c in table[target].items())
            for target in TARGETS}


#: iCE40 logic cells: a cell holds a LUT4 and a flip-flop, but nextpnr packs a flip-flop with
#: its LUT only when that LUT drives nothing else, so a design takes about ``lut4 + ff -
#: pairing * min(lut4, ff)`` cells, the pairing per architecture (fitted by least squares on
#: the board tops of nine designs of all three engines, estimated LUT4s and flip-flops
#: against nextpnr's packed ``ICESTORM_LC``: ``python benchmarks/ice40_cells.py``; the sparse
#: engine's one design, whose LUT4 and flip-flop estimates are low on iCE40, at no pairing).
ICE40_PAIRING = {"dataflow": 0.42, "systolic": 0.73, "sparse": 0.0}


def logic_cells(lut4: int, ff: int, arch: str) -> int:
    """iCE40 logic cells of a design of architecture ``arch`` with ``lut4`` LUT4s and ``ff``
    flip-flops (:data:`ICE40_PAIRING`)."""
    return round(lut4 + ff - ICE40_PAIRING[arch] * min(lut4, ff))


def spram_placement(network: Network, family: str, arch="dataflow", *, host_link=False,
                    **options) -> list:
    """The memories a build of ``network`` puts in SPRAM, as :func:`estimate` counts them
    (arguments as its): for :func:`hwnn.tools.synth.synthesize` and ``place_and_route``
    (``memories``) or :func:`hwnn.tools.synth.spram_commands`; empty when none."""
    if not estimate(network, family, arch, host_link=host_link, **options).get("spram"):
        return []
    return spram_memories(_top(network, family, arch, options).structure().memories, family)


def estimate(network: Network, family: str, arch="dataflow", *, host_link=False,
             **options) -> dict:
    """Estimated ``{"lut4", "ff", "dsp", "bram"}`` (whole numbers) of the accelerator, and of
    the board's host link in front of it with ``host_link`` (:func:`host_link_cost`); on
    iCE40 also ``"lc"``, its logic cells (:func:`logic_cells`), and ``"spram"``, the SPRAM
    blocks its single-port memories take: only where the block RAMs would not hold the
    design (SPRAM sits at the die's corners: its buses cost routing) and those memories fit
    the SPRAM (:func:`~hwnn.tools.synth.spram_memories`); a build places them as this says
    (:func:`~hwnn.tools.synth.spram_commands`)."""
    top = _top(network, family, arch, options)
    structure = top.structure()

    def total_of(structure):
        guess = predict(structure_features(structure, family), load_coefficients(), family,
                        arch)
        total = {target: math.ceil(value) if target in ("dsp", "bram") else round(value)
                 for target, value in guess.items()}
        if host_link:
            for name, value in host_link_cost(network, family, top.in_count).items():
                total[name] += value
            if (load := load_port(top)) is not None:
                for name, value in flash_reader_cost(len(load.payload)).items():
                    total[name] += value
        return total

    total = total_of(structure)
    moved = spram_memories(structure.memories, family)
    if moved and total["bram"] > BLOCK_RAMS.get(family, 0):
        # They take none of the block RAMs or logic then.
        total = total_of(dataclasses.replace(structure, memories=[
            memory for memory in structure.memories if memory not in moved]))
    else:
        moved = []
    if family == "ice40":
        total["lc"] = logic_cells(total["lut4"], total["ff"], arch)
        total["spram"] = sum(map(spram_count, moved))
    return total
