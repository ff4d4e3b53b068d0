# amaranth: UnusedElaboratable=no
# (The estimator builds components for their sizes and never elaborates them.)
"""Resource estimator: LUT4, flip-flops, DSP blocks and block RAMs of a design, without Yosys.

Each engine's hardware is described by a handful of structural features that the generators
fix exactly (lanes by arithmetic kind, multipliers mapped to DSP blocks by Yosys' rules,
operand and product register bits, adder-tree and accumulator bits, output-stage comparators
and multipliers, and every memory mapped to logic, LUT RAM or block RAM by Yosys' mapping
costs, ROMs in logic costed by their distinct bit columns). A resource is a non-negative
linear combination of an engine's features, with coefficients per family (ECP5, iCE40) and
engine fitted by :func:`fit` on Yosys results (``benchmarks/estimator.py`` synthesizes the
calibration designs, fits, and reports the errors on held-out designs). The fitted
coefficients ship in ``hwnn/estimator.json``.

LUT4 counts as :func:`hwnn.synth.utilization` does (ECP5: LUT4 + 2 per CCU2C carry cell and
per TRELLIS_DPR16X4 distributed RAM). The estimate is the accelerator alone: a board's host
link comes on top (:func:`host_link_cost`).
"""

import functools
import json
import math
from pathlib import Path

import numpy as np

from .arch import architecture
from .ir import Network, Requant, Thresholds
from .ir.formats import Format, signed_bits_for
from .synth import FAMILIES

__all__ = ["BOARD_OVERHEAD", "COEFFICIENTS_PATH", "FEATURE_NAMES", "TARGETS", "dataflow_features",
           "design_features", "estimate", "fit", "held_out", "host_link_cost",
           "load_coefficients", "measured", "predict", "save_coefficients", "sparse_features",
           "systolic_features"]

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

#: What a board's host link (UART, frame logic, vector buffers, two-entry FIFOs) adds to an
#: accelerator: ``(base, per bit)`` with the bits of one input and one output vector, from
#: Yosys on two board tops (``benchmarks/estimator.py`` measures them).
BOARD_OVERHEAD = {"ecp5": {"lut4": (228, 2.12), "ff": (72, 2.69)},
                  "ice40": {"lut4": (217, 1.45), "ff": (73, 2.21)}}


def host_link_cost(network: Network, family: str) -> dict:
    """Estimated LUT4s and flip-flops of the host link in front of ``network``'s
    accelerator."""
    bits = (network.in_features * network.input.format.width
            + network.out_features * network.output.format.width)
    return {name: round(base + per_bit * bits)
            for name, (base, per_bit) in BOARD_OVERHEAD[family].items()}


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


def _multiplier(features, kind, count, a: Format, b: Format, family):
    """Add ``count`` multipliers ``a x b``: DSP blocks (feature ``dsp_<kind>``) when Yosys
    maps them for the family, else LUT multiplier bits."""
    rule = DSP_RULES[family]
    if a.bits >= 2 and b.bits >= 2 and _product_bits(a, b) >= rule["min_product"]:
        blocks = math.ceil(max(a.bits, b.bits) / rule["max_width"])
        features[f"dsp_{kind}"] += count * blocks
    else:
        features["lut_mult_bits"] += count * a.bits * b.bits


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


def _bits(words, width) -> np.ndarray:
    """A memory's contents as a ``words x width`` array of bits."""
    data = b"".join(int(word).to_bytes((width + 7) // 8, "little") for word in words)
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8).reshape(len(words), -1), axis=1,
                         bitorder="little")[:, :width]


def _distinct_columns(words, width) -> int:
    """Bit columns of a ROM's contents that are neither constant nor a copy (or inverse) of
    another: what logic synthesis has to build."""
    columns = _bits(words, width).T
    columns = columns ^ columns[:, :1]                 # an inverse counts as a copy
    varying = columns[columns.any(axis=1)]
    return len(np.unique(np.packbits(varying, axis=1), axis=0)) if len(varying) else 0


def _varying_columns(words, width) -> int:
    """Bit columns of a memory's contents that are not constant."""
    bits = _bits(words, width)
    return int(np.count_nonzero(bits.any(axis=0) & ~bits.all(axis=0)))


def _memories(features, memories, family):
    """Add the memory features for ``[(depth, width, words)]`` (``words`` the contents of a
    ROM, None for a RAM), each mapped as Yosys would (the cheapest of :data:`BLOCK_COST`,
    :data:`LUTRAM_COST` and logic): ROMs in logic as ``rom_luts`` (by their distinct
    columns), RAMs in logic as ``ram_bits`` (flip-flops and multiplexers), ECP5 LUT RAM cells
    as ``lutram_cells``, block RAMs as ``blocks``."""
    for depth, width, words in memories:
        if depth <= 0 or width <= 0:
            continue
        rom = words is not None
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
                features["rom_luts"] += _distinct_columns(words, width) * _rom_luts(depth)
            else:
                features["ram_bits"] += depth * width
        elif choice == "lutram":
            features["lutram_cells"] += cells
        else:
            features["blocks"] += blocks


def _new(names):
    return dict.fromkeys(names, 0.0)


def _stage(features, memories, layer, lanes, family, pipelined=False):
    """The output stage of ``layer`` on ``lanes`` channels: threshold comparators (one per
    search step and lane) or requantization multipliers (one per accumulator piece when
    ``pipelined``), and its parameter memories; the registers of a threshold search's later
    steps (accumulators and level bits) and a pipelined stage's extra registers go to
    ``pipeline_bits``."""
    from .rtl.stage import accumulator_pieces, parameter_words, search_steps
    stage = layer.stage
    words = parameter_words(layer, lanes)
    if isinstance(stage, Thresholds):
        for name, (width, rom) in words.items():
            if name.startswith("thresholds"):
                # A comparator bit against a threshold bit that is the same at every address
                # (always so for a one-word ROM) costs half of one that varies.
                varying = _varying_columns(rom, width)
                features["compare_bits"] += varying + 0.5 * (width - varying)
        steps = search_steps(layer)
        features["pipeline_bits"] += ((2 if pipelined else 1) * lanes * (steps - 1)
                                      * (layer.acc_bits + steps / 2))
    elif isinstance(stage, Requant):
        pieces = (accumulator_pieces(layer.acc_bits) if pipelined
                  else [(0, layer.acc_bits, True)])
        for _, width, is_signed in pieces:
            _multiplier(features, "requant", lanes,
                        Format.int(width) if is_signed else Format.uint(width),
                        Format.uint(stage.mult_bits), family)
        features["requant_bits"] += lanes * (layer.acc_bits + stage.mult_bits)
        if pipelined:   # the pieces' products, at the multipliers and again; the scaled value
            features["pipeline_bits"] += lanes * (layer.acc_bits
                                                  + 2 * len(pieces) * stage.mult_bits)
    if pipelined and stage is not None:
        # The registered parameters and the accumulators waiting beside them.
        features["pipeline_bits"] += (sum(width for width, _ in words.values())
                                      + lanes * layer.acc_bits)
    memories.extend((len(group_words), width, group_words)
                    for width, group_words in words.values())


def _tree_register_bits(count, width, levels_per_register=1) -> int:
    """Register bits of a pipelined adder tree over ``count`` values of ``width`` bits
    (:func:`hwnn.rtl.arith.pipelined_sum`): the registered levels' sums, one bit wider a
    level."""
    if count <= 1:
        return width
    levels = (count - 1).bit_length()
    registered = sorted({*range(levels_per_register, levels, levels_per_register), levels})
    return sum(-(-count // 2 ** level) * (width + level) for level in registered)


_DATAFLOW = ("unit", "xnor_lanes", "addsub_bits", "dsp_lanes", "dsp_requant", "lut_mult_bits",
             "tree_bits", "acc_bits", "register_bits", "pipeline_bits", "compare_bits",
             "requant_bits", "rom_luts", "ram_bits", "lutram_cells", "blocks")


def dataflow_features(network, family, fold, max_lanes):
    """The features of a dataflow design (:class:`~hwnn.arch.dataflow.DataflowParams`)."""
    from .arch.dataflow import resolve_folding
    from .rtl.mvau import MatrixVectorUnit
    features = _new(_DATAFLOW)
    units = [MatrixVectorUnit(layer, pe=f.pe, simd=f.simd) for layer, f in
             zip(network.layers, resolve_folding(network, fold, max_lanes), strict=True)]
    memories = []
    for index, unit in enumerate(units):
        layer, pe, simd, lanes = unit.layer, unit.pe, unit.simd, unit.lanes
        w_fmt, x_fmt = layer.weight_format, layer.input.format
        wb, xb = w_fmt.width, x_fmt.width
        features["unit"] += 1
        if w_fmt.kind == "bipolar" and x_fmt.kind == "bipolar":
            term = 1
            features["xnor_lanes"] += lanes
        elif w_fmt.kind == "bipolar" or w_fmt == Format.ternary() or x_fmt.kind == "bipolar":
            term = (wb if x_fmt.kind == "bipolar" else xb) + 1
            # Constant weights (a one-word memory): zero weights drop out of the logic.
            used = (np.count_nonzero(layer.weights) / layer.weights.size
                    if unit.cycles == 1 else 1.0)
            features["addsub_bits"] += lanes * term * used
        else:
            term = wb + xb
            _multiplier(features, "lanes", lanes, w_fmt, x_fmt, family)
        features["tree_bits"] += pe * (simd - 1) * (term + math.log2(simd) / 2)
        features["acc_bits"] += pe * layer.acc_bits
        # Weights of a one-word memory are constants: no register holds them.
        weight_register = lanes * wb if unit.cycles > 1 else 0
        features["register_bits"] += (weight_register + lanes * term + 2 * simd * xb
                                      + pe * layer.acc_bits
                                      + unit.fifo_depth.bit_length() + 8
                                      + 2 * (unit.cycles.bit_length()))
        # Registers for speed: the adder tree's levels, multiplier lanes' second operand and
        # product registers (unit.dsp_stages), the output stage's (in _stage).
        features["pipeline_bits"] += (pe * _tree_register_bits(simd, term,
                                                               unit._levels_per_register())
                                      + unit.dsp_stages * (weight_register + lanes * term
                                                           + simd * xb))
        _stage(features, memories, layer, pe, family, pipelined=True)
        memories.append((unit.cycles, lanes * wb, unit._weight_words()))
        if np.any(layer.bias != 0):
            memories.append((unit.neuron_folds, pe * layer.acc_bits, unit._bias_words()))
            features["register_bits"] += pe * layer.acc_bits
        if unit.neuron_folds > 1:
            memories.append((unit.synapse_folds, simd * xb, None))
        memories.append((unit.fifo_depth - 1, pe * unit.out_width + 1, None))
        if index + 1 < len(units):
            consumer = units[index + 1]
            memories.append((consumer.synapse_folds + 1, consumer.simd * consumer.in_width + 1,
                             None))
            features["register_bits"] += 2 * max(pe, consumer.simd) * unit.out_width
    _memories(features, memories, family)
    return features


_SYSTOLIC = ("unit", "cells", "dsp_lanes", "dsp_requant", "lut_mult_bits", "cell_bits",
             "edge_bits", "compare_bits", "pipeline_bits", "requant_bits", "rom_luts", "ram_bits",
             "lutram_cells", "blocks")


def systolic_features(network, family, array, batch):
    """The features of a systolic design
    (:class:`~hwnn.arch.systolic.SystolicOverlayParams`)."""
    from .arch.systolic import parse_array
    from .rtl.overlay import OverlayParams, SystolicOverlay
    overlay = SystolicOverlay(network, OverlayParams(parse_array(array), batch))
    size = overlay.params.size
    a_bits, w_bits = overlay.a_format.bits, overlay.w_format.bits
    array_acc = overlay.array_params.acc_bits
    features = _new(_SYSTOLIC)
    features["unit"] = 1
    features["cells"] = size * size
    _multiplier(features, "lanes", size * size, overlay.a_format, overlay.w_format, family)
    features["cell_bits"] = size * size * (a_bits + w_bits + array_acc)
    features["edge_bits"] = size * overlay.acc_bits
    weights, _ = overlay.weight_words()
    biases, _ = overlay.bias_words()
    last = network.layers[-1]
    stride = overlay.stride
    memories = []
    for layer in network.layers:
        _stage(features, memories, layer, size, family)
    memories += [(len(weights), size * w_bits, weights),
                 (len(biases), size * overlay.acc_bits, biases),
                 (2 * batch * stride, size * a_bits, None),
                 (2 * batch * stride, size * a_bits, None),
                 (batch, size * overlay.acc_bits, None),
                 (batch * overlay.nt[-1], size * last.output.format.bits, None)]
    _memories(features, memories, family)
    return features


_SPARSE = ("unit", "pes", "dsp_lanes", "dsp_requant", "lut_mult_bits", "pe_bits",
           "readout_bits", "compare_bits", "pipeline_bits", "requant_bits", "rom_luts",
           "ram_bits", "lutram_cells", "blocks")


def sparse_features(network, family, pes, queue_depth, index_bits):
    """The features of a sparse design (:class:`~hwnn.rtl.sparse.SparseParams`)."""
    from .rtl.sparse import SparseAccelerator, SparseParams
    accelerator = SparseAccelerator(network, SparseParams(pes, queue_depth, index_bits))
    a_bits, w_bits, acc_bits = (accelerator.a_format.bits, accelerator.w_format.bits,
                                accelerator.acc_bits)
    features = _new(_SPARSE)
    features["unit"] = 1
    features["pes"] = pes
    _multiplier(features, "lanes", pes, accelerator.a_format, accelerator.w_format, family)
    memories = []
    for layer in network.layers:
        _stage(features, memories, layer, pes, family)
    for pe in accelerator.pes:
        entries, _ = pe.entry_words()
        pointers, _ = pe.pointer_words()
        table, _ = pe.codebook_words()
        column_bits = max(pe.columns - 1, 1).bit_length()
        features["pe_bits"] += (pe.field_bits + index_bits + a_bits + w_bits + 2 * acc_bits
                                + 2 * pe._pointer_bits + column_bits)
        memories += [(len(entries), pe.field_bits + index_bits, entries),
                     (len(pointers), pe._pointer_bits, pointers), (len(table), w_bits, table),
                     (pe.rows, acc_bits, None), (queue_depth, column_bits + a_bits, None)]
    features["readout_bits"] = pes * (acc_bits + a_bits)
    biases, _ = accelerator.bias_words()
    memories += [(len(biases), pes * acc_bits, biases),
                 (accelerator._activation_words, pes * a_bits, None)]
    _memories(features, memories, family)
    return features


#: The names of each architecture's features (:meth:`hwnn.arch.base.Architecture.features`).
FEATURE_NAMES = {"dataflow": _DATAFLOW, "systolic": _SYSTOLIC, "sparse": _SPARSE}


def design_features(network: Network, family: str, arch="dataflow", **options) -> dict:
    """The structural features of ``network`` built as ``arch`` with ``options`` (those of
    :func:`hwnn.generate.generate` for that architecture) for ``family``."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    if family not in FAMILIES:
        raise ValueError(f"Unknown FPGA family {family!r}; available: {', '.join(FAMILIES)}")
    arch = architecture(arch)
    return arch.features(network, family, arch.params(**options))


def measured(cells, family) -> dict:
    """The :data:`TARGETS` of a Yosys cell count, as :func:`hwnn.synth.utilization` counts."""
    from .implement import FAMILY_DEVICES
    from .synth import SynthReport, utilization
    report = SynthReport(family, "", cells, 0.0)
    used = {name: used for name, (used, _) in
            utilization(report, FAMILY_DEVICES[family]).items()}
    return {"lut4": used["lut4"], "ff": used["ff"], "dsp": used["dsp"], "bram": used["bram"]}


#: Per-feature costs from the structure alone (LUT4s and flip-flops a feature unit needs by
#: hand count), toward which :func:`fit` pulls coefficients the samples leave undetermined.
_LUT_PRIOR = {"unit": 60, "cells": 20, "pes": 60, "xnor_lanes": 1.5, "addsub_bits": 2,
              "lut_mult_bits": 1.5, "tree_bits": 1, "acc_bits": 1.5, "register_bits": 0.1,
              "pipeline_bits": 0.05,
              "cell_bits": 0.5, "edge_bits": 1, "pe_bits": 2, "readout_bits": 1,
              "compare_bits": 1, "requant_bits": 1, "rom_luts": 1, "ram_bits": 0.3,
              "lutram_cells": 2.5, "blocks": 2}
_FF_PRIOR = {"unit": 30, "cells": 2, "pes": 30, "xnor_lanes": 0.2, "addsub_bits": 1,
             "lut_mult_bits": 0.5, "tree_bits": 0.3, "acc_bits": 1, "register_bits": 1,
             "pipeline_bits": 1,
             "cell_bits": 1, "edge_bits": 1, "pe_bits": 1, "readout_bits": 1,
             "compare_bits": 0.1, "requant_bits": 1, "ram_bits": 1}
PRIORS = {"ecp5": {"lut4": _LUT_PRIOR, "ff": _FF_PRIOR},
          "ice40": {"lut4": _LUT_PRIOR, "ff": _FF_PRIOR},
          "dsp": {"dsp_lanes": 1, "dsp_requant": 1}, "bram": {"blocks": 1}}
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
        for arch, all_names in FEATURE_NAMES.items():
            rows = [s for s in samples if s["config"]["arch"] == arch
                    and not held_out(s["config"])]
            if not rows:
                continue
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


def estimate(network: Network, family: str, arch="dataflow", **options) -> dict:
    """Estimated ``{"lut4", "ff", "dsp", "bram"}`` (whole numbers) of the accelerator."""
    features = design_features(network, family, arch, **options)
    guess = predict(features, load_coefficients(), family, arch)
    return {target: math.ceil(value) if target in ("dsp", "bram") else round(value)
            for target, value in guess.items()}
