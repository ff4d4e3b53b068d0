"""Convolutional dataflow benchmark: measured cycles per inference against the ideal, and
FINN's CNV on an ECP5-85F.

First, small CNNs of the digits CNN's shape (8x8x1 input; conv 3x3 8 padding 1, max pool 2,
conv 3x3 8 padding 1, max pool 2, dense 10; random weights, int8 and binary) at the foldings
``--fold auto`` gives for several lane budgets: a few inferences back to back in simulation
(Icarus by default), steady-state cycles per inference against the ideal (the slowest layer's
cycles, :func:`hwnn.rtl.folding.folding_cycles`). Then FINN's CNV topology (32x32x3 uint8
input; unpadded 3x3 convolutions 64, 64, max pool 2, 128, 128, max pool 2, 256, 256; dense
512, 512, 10; binary weights and activations, random weights and thresholds) at the fastest
folding :func:`hwnn.planning.planner.plan_folding` finds for the ULX3S-85F (ECP5-85F): the plan
and its estimate, then Yosys and nextpnr through the register harness (``hwnn synth``'s path):
LUT4, FF, block RAM, Fmax and images per second at Fmax. Run it from the repository root:

    python benchmarks/conv.py [--simulator verilator|icarus|amaranth] [--quick]
                              [--only cycles|cnv] [--skip-place]

CNV is large: Yosys alone takes tens of minutes on a busy 2-core machine; the plan and its
estimate are printed before it starts.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import cnv_network, simulate_design
from hwnn.flow.generate import generate, load_design
from hwnn.flow.report import format_table
from hwnn.planning.planner import plan_folding
from hwnn.quant.synthetic import random_cnn
from hwnn.tools.implement import synth_design, write_harness
from hwnn.tools.synth import synthesize, utilization
from hwnn.tools.toolchain import setup_env

#: FINN's CNV on the ZC706 (Umuroglu et al., "FINN: A Framework for Fast, Scalable Binarized
#: Neural Network Inference", FPGA 2017, table of results), for reference.
FINN_CNV_FPS = 21906
BOARD = "ulx3s-85f"


def digits_cnn(weights, acts, stage, second_padding=1):
    """A random CNN of the digits CNN's shape (uint8 pixels) with ``weights`` and ``acts``
    formats, its second convolution padded by ``second_padding``."""
    def conv(padding):
        return ("conv2d", dict(out_channels=8, kernel=3, padding=padding,
                               weight_format=weights, out_format=acts, stage=stage))
    pool = ("maxpool2d", dict(kernel=2))
    return random_cnn(np.random.default_rng(0), (8, 8, 1), [
        conv(1), pool, conv(second_padding), pool,
        ("dense", dict(out_features=10, weight_format=weights, stage="accumulator")),
    ], input_format="uint8", name=f"digits_cnn_{weights}")


def cycle_networks(quick):
    budgets = (5, 16, 64) if quick else (5, 16, 64, 256, 1024)
    yield "digits CNN int8/uint8", digits_cnn("int8", "uint8", "requant"), budgets
    yield "digits CNN ternary/uint2", digits_cnn("ternary", "uint2", "thresholds"), budgets
    # Binary maps cannot be padded (binary codes have no zero): the second convolution is
    # unpadded (4x4 -> 2x2), the pools after it OR binary codes, as in CNV.
    yield ("digits CNN binary, conv2 unpadded",
           digits_cnn("binary", "binary", "thresholds", second_padding=0), budgets)


def cycle_rows(work, simulator, quick, count):
    rows = []
    for label, network, budgets in cycle_networks(quick):
        for budget in budgets:
            design = load_design(generate(network, work / f"{network.name}_{budget}",
                                          max_lanes=budget))
            result, sim_seconds = simulate_design(design, count, simulator, label)
            folds = " ".join(f"{f.pe}x{f.simd}" for f in design.folding)
            rows.append((label, budget, design.manifest["lanes"], folds,
                         f"{result.cycles_per_inference:.1f}", result.expected_cycles,
                         f"{result.cycles_per_inference / result.expected_cycles:.3f}",
                         result.latency, f"{sim_seconds:.1f}"))
            print(f"  {label}, {budget} lanes: done", file=sys.stderr, flush=True)
    return rows


def cnv_plan(network):
    """The planner's folding for the board, printed with its estimate, and the per-layer
    table: shape, fold, cycles."""
    started = time.monotonic()
    plan = plan_folding(network, BOARD)
    print(f"Plan ({time.monotonic() - started:.0f} s): folding for {plan.describe()}")
    rows = []
    for layer, fold in zip(network.layers, plan.folding, strict=True):
        shape = getattr(layer, "output_shape", None) or (layer.out_features,)
        rows.append((layer.name, "x".join(map(str, shape)), f"{fold.pe}x{fold.simd}",
                     fold.pe * fold.simd))
    print(format_table(("layer", "output", "pe x simd", "lanes"), rows, right={3}))
    print(f"{plan.cycles} cycles per image: {plan.inferences_per_second:,.0f} images/s at the "
          f"board's {plan.clock_hz / 1e6:g} MHz, {100e6 / plan.cycles:,.0f} at 100 MHz "
          f"(FINN on a ZC706: {FINN_CNV_FPS:,} images/s)", flush=True)
    return plan


def cnv_area(work, plan, network, skip_place):
    """Yosys (and nextpnr unless ``skip_place``) on the planned CNV; the table's row."""
    started = time.monotonic()
    design = load_design(generate(network, work / "cnv", fold=plan.folding))
    print(f"  CNV generated in {time.monotonic() - started:.0f} s; Yosys ...", file=sys.stderr,
          flush=True)
    if skip_place:
        harness = write_harness(design, work / "cnv_harness.v")
        report = synthesize(harness, "harness", "ecp5")
        used = {name: used for name, (used, _) in utilization(report, "ecp5-85f").items()}
        return (used["lut4"], used["ff"], used["dsp"], used["bram"], "not placed", "-",
                f"{report.seconds:.0f}")
    result = synth_design(design, "ecp5-85f", log=lambda line: print(
        f"  {line}", file=sys.stderr, flush=True))
    used = {name: entry["used"] for name, entry in result["utilization"].items()}
    return (used["lut4"], used["ff"], used["dsp"], used["bram"], f"{result['fmax_mhz']:.1f}",
            f"{result['inferences_per_second']:,.0f}",
            f"{result['seconds']['yosys']:.0f}+{result['seconds']['nextpnr']:.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", default="icarus",
                        choices=("verilator", "icarus", "amaranth"))
    parser.add_argument("--quick", action="store_true", help="fewer lane budgets")
    parser.add_argument("--only", choices=("cycles", "cnv"), help="one part only")
    parser.add_argument("--skip-place", action="store_true",
                        help="CNV: Yosys only (no nextpnr, no Fmax)")
    parser.add_argument("--inferences", type=int, default=6,
                        help="back-to-back inferences per simulation (at least 4)")
    args = parser.parse_args()
    if args.inferences < 4:
        parser.error(f"--inferences must be at least 4, not {args.inferences}")
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-bench-") as folder:
        work = Path(folder)
        if args.only != "cnv":
            print(f"Digits-shaped CNNs, random weights: {args.inferences} inferences back to "
                  f"back in {args.simulator}; ideal = the slowest layer's cycles:")
            print(format_table(
                ("network", "budget", "lanes", "pe x simd per layer", "cycles", "ideal",
                 "ratio", "latency", "sim s"),
                cycle_rows(work, args.simulator, args.quick, args.inferences),
                right={1, 2, 4, 5, 6, 7, 8}), flush=True)
        if args.only != "cycles":
            print(f"\nFINN's CNV (binary, uint8 input, random weights) at the fastest folding "
                  f"the planner finds for the {BOARD.upper()}:")
            network = cnv_network()
            plan = cnv_plan(network)
            print(format_table(
                ("design", "LUT4", "FF", "DSP", "BRAM", "Fmax MHz", "images/s at Fmax",
                 "yosys+pnr s"),
                [("CNV", *cnv_area(work, plan, network, args.skip_place))],
                right=set(range(1, 8))))


if __name__ == "__main__":
    main()
