"""Dataflow benchmark: measured cycles per inference against the ideal, and ECP5 area.

For the demo's digits networks (int8/uint8 and ternary/uint4, trained here) and a binary MLP
64-256-256-10 (random weights and thresholds), at several lane budgets, it generates the
design, measures steady-state cycles per inference in simulation (Icarus by default) and
synthesizes it with YoWASP Yosys for ECP5. Then it measures the cost of binary and int8 lanes
on single matrix-vector units. Run it from the repository root:

    python benchmarks/dataflow.py [--simulator verilator|icarus|amaranth] [--quick]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from common import simulate_design
from hwnn.flow.demo import train_digits_mlp
from hwnn.errors import ToolError
from hwnn.flow.generate import generate, load_design
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_dense, random_network
from hwnn.flow.report import format_table
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.tools.synth import synthesize
from hwnn.tools.toolchain import setup_env


def networks(quick):
    model, (x_train, *_rest) = train_digits_mlp(0)
    float_net = from_sklearn(model)
    yield ("digits int8/uint8", quantize_network(
        float_net, x_train, QuantOptions(weights="int8", acts="uint8"), name="digits_int8"),
        (16, 64) if quick else (16, 64, 256))
    yield ("digits ternary/uint4", quantize_network(
        float_net, x_train, QuantOptions(weights="ternary", acts="uint4"), name="digits_tern"),
        (64,) if quick else (16, 64, 256))
    binary = random_network(np.random.default_rng(0), [64, 256, 256, 10],
                            weight_formats=["binary"] * 3, act_formats=["binary", "binary"],
                            input_format="binary", name="binary_mlp")
    yield "binary MLP 64-256-256-10", binary, (256,) if quick else (64, 256, 1024)


def design_rows(work, simulator, quick):
    rows = []
    for label, network, budgets in networks(quick):
        for budget in budgets:
            design = load_design(generate(network, work / f"{network.name}_{budget}",
                                          max_lanes=budget))
            result, sim_seconds = simulate_design(design, 12, simulator,
                                                  f"{label} at {budget} lanes")
            folds = " ".join(f"{f.pe}x{f.simd}" for f in design.folding)
            try:
                synth = synthesize(design.verilog, design.top, "ecp5")
                area = (synth.lut4, synth.carry, synth.ff, synth.dsp, synth.bram, synth.lutram,
                        f"{synth.seconds:.1f}")
            except ToolError:      # keep measuring the others; the row says Yosys failed
                area = ("Yosys failed", "", "", "", "", "", "")
            rows.append((label, budget, design.manifest["lanes"], folds,
                         f"{result.cycles_per_inference:.1f}", result.expected_cycles,
                         f"{result.cycles_per_inference / result.expected_cycles:.3f}",
                         result.latency, *area[:6], f"{sim_seconds:.1f}", area[6]))
            print(f"  {label}, {budget} lanes: done", file=sys.stderr, flush=True)
    return rows


def lane_rows(work):
    """Cost per lane of single units, weights in block RAM; the marginal cost between two
    widths removes the control, FIFO and output stage that do not grow with the lanes."""
    cases = [
        ("binary x binary -> binary", "binary", "binary", "binary", "thresholds",
         [(4, 32), (4, 64), (8, 64)]),
        ("int8 x uint8 -> uint8", "int8", "uint8", "uint8", "requant", [(2, 4), (4, 8)]),
        ("ternary x uint4 -> uint4", "ternary", "uint4", "uint4", "thresholds",
         [(4, 16), (4, 32)]),
    ]
    rows = []
    for label, weights, inputs, outputs, stage, folds in cases:
        layer = random_dense(np.random.default_rng(2), 256, 64, in_format=inputs,
                             weight_format=weights, out_format=outputs, stage=stage)
        previous = None
        for pe, simd in folds:
            path = work / f"unit_{weights}_{pe}x{simd}.v"
            unit = MatrixVectorUnit(layer, pe=pe, simd=simd, ram_style="block")
            path.write_text(verilog.convert(unit, name="unit"))
            report = synthesize(path, "unit", "ecp5")
            lanes = pe * simd
            marginal = "-"
            if previous is not None:
                marginal = (f"{(report.lut4_equivalent - previous[1]) / (lanes - previous[0]):.2f}")
            rows.append((label, f"{pe}x{simd}", lanes, report.lut4, report.carry,
                         report.lut4_equivalent, f"{report.lut4_equivalent / lanes:.2f}",
                         marginal, report.ff, report.dsp, report.bram))
            previous = (lanes, report.lut4_equivalent)
            print(f"  {label} {pe}x{simd}: done", file=sys.stderr, flush=True)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", default="icarus",
                        choices=("verilator", "icarus", "amaranth"))
    parser.add_argument("--quick", action="store_true", help="fewer designs")
    args = parser.parse_args()
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-bench-") as folder:
        work = Path(folder)
        print("Whole designs (cycles measured in simulation, area from Yosys synth_ecp5):")
        print(format_table(
            ("network", "budget", "lanes", "pe x simd per layer", "cycles", "ideal", "ratio",
             "latency", "LUT4", "CCU2C", "FF", "DSP", "BRAM", "DPR16X4", "sim s", "yosys s"),
            design_rows(work, args.simulator, args.quick),
            right={1, 2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}))
        print("\nLane cost of single units (256 inputs x 64 outputs, weights in block RAM), "
              "ECP5; LUT4 equivalent = LUT4 + 2 x CCU2C:")
        print(format_table(
            ("unit", "pe x simd", "lanes", "LUT4", "CCU2C", "LUT4 eq", "per lane",
             "marginal/lane", "FF", "DSP", "BRAM"),
            lane_rows(work), right=set(range(2, 11))))


if __name__ == "__main__":
    main()
