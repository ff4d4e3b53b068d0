# amaranth: UnusedElaboratable=no
# (The estimator builds components for their sizes and never elaborates them.)
"""Resource estimator: LUT4, flip-flops, DSP blocks and block RAMs of a design, without Yosys.

Each engine's hardware is described by a handful of structural features that the generators
fix exactly (lanes by arithmetic kind, operand and product register bits, adder-tree and
accumulator bits, output-stage comparators and multipliers, and the memories, split into
those small enough for logic and the block RAMs the rest need). A resource is a non-negative
linear combination of an engine's features, with coefficients per family (ECP5, iCE40) and
engine fitted by :func:`fit` on Yosys results (``benchmarks/estimator.py`` synthesizes the
calibration designs, fits, and reports the errors on held-out designs). The fitted
coefficients ship in ``hwnn/estimator.json``.

LUT4 counts as :func:`hwnn.synth.utilization` does (ECP5: LUT4 + 2 per CCU2C carry cell and
per TRELLIS_DPR16X4 distributed RAM). The estimate is the accelerator alone: a board's host
link comes on top (:data:`BOARD_OVERHEAD`).
"""

import json
import math
from pathlib import Path

import numpy as np

from .quant.formats import Format
from .quant.ir import Network, Requant, Thresholds

__all__ = ["BOARD_OVERHEAD", "COEFFICIENTS_PATH", "TARGETS", "design_features", "estimate",
           "fit", "held_out", "load_coefficients", "measured", "predict", "save_coefficients"]

TARGETS = ("lut4", "ff", "dsp", "bram")
COEFFICIENTS_PATH = Path(__file__).with_name("estimator.json")
FAMILIES = ("ecp5", "ice40")

#: Memories at most this deep go to logic (LUTs, LUT RAM or flip-flops); deeper ones to block
#: RAM. (Yosys' own choice weighs cost; this depth reproduces it on the calibration designs.)
LOGIC_DEPTH = {"ecp5": 32, "ice40": 32}

#: Block RAM shapes (depth, width) per family: ECP5 DP16KD (18 Kbit; 36 bits wide only as a
#: pseudo-dual-port PDPW16KD), iCE40 SB_RAM40_4K (4 Kbit).
BLOCK_SHAPES = {
    "ecp5": ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)),
    "ice40": ((2048, 2), (1024, 4), (512, 8), (256, 16)),
}

#: Host link + UART + two-entry FIFOs of a board top, measured with Yosys around the
#: accelerator (``benchmarks/estimator.py``); added to a board's budget check.
BOARD_OVERHEAD = {"ecp5": {"lut4": 300, "ff": 250}, "ice40": {"lut4": 350, "ff": 250}}


def block_count(depth, width, family) -> int:
    """Block RAMs for a ``depth x width`` memory: the cheapest shape, tiled."""
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in BLOCK_SHAPES[family])


#: Yosys' multiplier-to-DSP mapping per family: the widest operand a block takes, and the
#: narrowest product it maps (``synth_ecp5``: every multiplier of 2+ bit operands;
#: ``synth_ice40 -dsp``: products of 11 bits or more, ``DSP_Y_MINWIDTH=11``).
DSP_RULES = {"ecp5": {"max_width": 18, "min_product": 4},
             "ice40": {"max_width": 16, "min_product": 11}}


def _multiplier(features, count, a_bits, b_bits, family):
    """Add ``count`` multipliers of ``a_bits x b_bits`` (as Yosys sees them, sign bits
    included): DSP blocks when the family maps them, else LUT multiplier bits."""
    rule = DSP_RULES[family]
    if a_bits >= 2 and b_bits >= 2 and a_bits + b_bits >= rule["min_product"]:
        width = rule["max_width"]
        features["dsp_mults"] += count * math.ceil(a_bits / width) * math.ceil(b_bits / width)
    else:
        features["lut_mult_bits"] += count * a_bits * b_bits


def _operand_bits(fmt: Format, other: Format) -> int:
    """A multiplier operand's width: an unsigned operand times a signed one gains a sign
    bit."""
    return fmt.width + (1 if not fmt.signed and other.signed else 0)


def _memories(features, memories, family):
    """Add ``logic_bits`` and ``blocks`` features for ``[(depth, width)]``."""
    for depth, width in memories:
        if depth <= 0 or width <= 0:
            continue
        if depth <= LOGIC_DEPTH[family]:
            features["logic_bits"] += depth * width
            features["logic_words"] += width * math.ceil(depth / 16)
        else:
            features["blocks"] += block_count(depth, width, family)


def _new(names):
    return dict.fromkeys(names, 0.0)


def _stage(features, memories, layer, lanes, family):
    """The output stage of ``layer`` on ``lanes`` channels: comparators or requantization
    multipliers, and its parameter memories."""
    from .rtl.stage import parameter_words
    stage = layer.stage
    if isinstance(stage, Thresholds):
        features["compare_bits"] += lanes * stage.values.shape[1] * layer.threshold_bits
    elif isinstance(stage, Requant):
        _multiplier(features, lanes, layer.acc_bits, stage.mult_bits + 1, family)
        features["requant_bits"] += lanes * (layer.acc_bits + stage.mult_bits)
    memories.extend((len(words), width) for width, words in parameter_words(layer, lanes).values())


_DATAFLOW = ("unit", "xnor_lanes", "addsub_bits", "dsp_mults", "lut_mult_bits", "tree_bits",
             "acc_bits", "register_bits", "compare_bits", "requant_bits", "logic_bits",
             "logic_words", "blocks")


def _dataflow(network, family, fold="auto", max_lanes=256):
    from .generate import resolve_folding
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
            features["addsub_bits"] += lanes * term
        else:
            term = wb + xb
            _multiplier(features, lanes, _operand_bits(w_fmt, x_fmt), _operand_bits(x_fmt, w_fmt),
                        family)
        features["tree_bits"] += pe * (simd - 1) * (term + math.log2(simd) / 2)
        features["acc_bits"] += pe * layer.acc_bits
        features["register_bits"] += (lanes * (wb + term) + 2 * simd * xb + 2 * pe * layer.acc_bits
                                      + unit.fifo_depth.bit_length() + 8
                                      + 2 * (unit.cycles.bit_length()))
        _stage(features, memories, layer, pe, family)
        memories.append((unit.cycles, lanes * wb))
        if np.any(layer.bias != 0):
            memories.append((unit.neuron_folds, pe * layer.acc_bits))
        if unit.neuron_folds > 1:
            memories.append((unit.synapse_folds, simd * xb))
        memories.append((unit.fifo_depth - 1, pe * unit.out_width + 1))
        if index + 1 < len(units):
            consumer = units[index + 1]
            memories.append((consumer.synapse_folds + 1, consumer.simd * consumer.in_width + 1))
            features["register_bits"] += 2 * max(pe, consumer.simd) * unit.out_width
    _memories(features, memories, family)
    return features


_SYSTOLIC = ("unit", "cells", "dsp_mults", "lut_mult_bits", "cell_bits", "edge_bits",
             "compare_bits", "requant_bits", "logic_bits", "logic_words", "blocks")


def _systolic(network, family, array="8x8", batch=16):
    from .generate import parse_array
    from .rtl.overlay import OverlayParams, SystolicOverlay
    overlay = SystolicOverlay(network, OverlayParams(parse_array(array), batch))
    size = overlay.params.size
    a_bits, w_bits = overlay.a_format.bits, overlay.w_format.bits
    array_acc = overlay.array_params.acc_bits
    features = _new(_SYSTOLIC)
    features["unit"] = 1
    features["cells"] = size * size
    _multiplier(features, size * size, a_bits, w_bits, family)
    features["cell_bits"] = size * size * (a_bits + w_bits + array_acc)
    features["edge_bits"] = size * overlay.acc_bits
    weights, _ = overlay.weight_words()
    biases, _ = overlay.bias_words()
    last = network.layers[-1]
    stride = overlay.stride
    memories = []
    for layer in network.layers:
        _stage(features, memories, layer, size, family)
    memories += [(len(weights), size * w_bits), (len(biases), size * overlay.acc_bits),
                 (2 * batch * stride, size * a_bits), (2 * batch * stride, size * a_bits),
                 (batch, size * overlay.acc_bits),
                 (batch * overlay.nt[-1], size * last.output.format.bits)]
    _memories(features, memories, family)
    return features


_SPARSE = ("unit", "pes", "dsp_mults", "lut_mult_bits", "pe_bits", "readout_bits",
           "compare_bits", "requant_bits", "logic_bits", "logic_words", "blocks")


def _sparse(network, family, pes=8, queue_depth=8, index_bits=4):
    from .rtl.sparse import SparseAccelerator, SparseParams
    accelerator = SparseAccelerator(network, SparseParams(pes, queue_depth, index_bits))
    a_bits, w_bits, acc_bits = (accelerator.a_format.bits, accelerator.w_format.bits,
                                accelerator.acc_bits)
    features = _new(_SPARSE)
    features["unit"] = 1
    features["pes"] = pes
    _multiplier(features, pes, a_bits, w_bits, family)
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
        memories += [(len(entries), pe.field_bits + index_bits), (len(pointers), pe._pointer_bits),
                     (len(table), w_bits), (pe.rows, acc_bits),
                     (queue_depth, column_bits + a_bits)]
    features["readout_bits"] = pes * (acc_bits + a_bits)
    biases, _ = accelerator.bias_words()
    memories += [(len(biases), pes * acc_bits),
                 (accelerator._activation_words, pes * a_bits)]
    _memories(features, memories, family)
    return features


_BUILDERS = {"dataflow": (_dataflow, _DATAFLOW), "systolic": (_systolic, _SYSTOLIC),
             "sparse": (_sparse, _SPARSE)}


def design_features(network: Network, family: str, arch="dataflow", **options) -> dict:
    """The structural features of ``network`` built as ``arch`` with ``options`` (those of
    :func:`hwnn.generate.generate` for that architecture) for ``family``."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    if family not in FAMILIES:
        raise ValueError(f"Unknown FPGA family {family!r}; available: {', '.join(FAMILIES)}")
    if arch not in _BUILDERS:
        raise ValueError(f"Unknown architecture {arch!r}; available: {', '.join(_BUILDERS)}")
    return _BUILDERS[arch][0](network, family, **options)


def measured(cells, family) -> dict:
    """The :data:`TARGETS` of a Yosys cell count, as :func:`hwnn.synth.utilization` counts."""
    from .synth import SynthReport, utilization
    report = SynthReport(family, "", cells, 0.0)
    device = "ecp5-85f" if family == "ecp5" else "ice40-up5k"
    used = {name: used for name, (used, _) in utilization(report, device).items()}
    return {"lut4": used["lut4"], "ff": used["ff"], "dsp": used["dsp"], "bram": used["bram"]}


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
        for arch, (_builder, names) in _BUILDERS.items():
            rows = [s for s in samples if s["config"]["arch"] == arch
                    and not held_out(s["config"])]
            if not rows:
                continue
            x = np.array([[s["features"][family][n] for n in names] for s in rows], dtype=float)
            for target in TARGETS:
                y = np.array([measured(s[family]["cells"], family)[target] for s in rows],
                             dtype=float)
                weight = 1 / np.maximum(y, 1.0)
                solution, _ = nnls(x * weight[:, None], y * weight)
                coefficients.setdefault(family, {}).setdefault(arch, {})[target] = {
                    name: round(float(c), 5) for name, c in zip(names, solution, strict=True)}
    return coefficients


def save_coefficients(coefficients, path=COEFFICIENTS_PATH):
    Path(path).write_text(json.dumps(coefficients, indent=1, sort_keys=True) + "\n")


def load_coefficients(path=COEFFICIENTS_PATH) -> dict:
    return json.loads(Path(path).read_text())


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
