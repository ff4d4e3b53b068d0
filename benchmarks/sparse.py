"""Sparse PE array benchmark: cycles against weight and activation density, load balance
against queue depth, speed-up over a dense engine with as many multipliers, and ECP5 area.

A 256x256 int8 layer (random weights pruned to each density, 4-bit weight sharing) runs on 8
PEs. For each design it measures steady-state cycles per inference in simulation (Verilator by
default) and compares them with the load-balanced ideal (the most entries, nonzeros and
padding, any PE must process for the input's nonzero activations) and with the dataflow
engine's matrix-vector unit folded to the same 8 multipliers (measured the same way). Then the
digits MLP pruned to 90% with 4-bit sharing, on real test digits, and ECP5 area from YoWASP
Yosys. Run it from the repository root:

    python benchmarks/sparse.py [--simulator verilator|icarus] [--quick] [--no-area]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from hwnn.flow.demo import train_digits_mlp
from hwnn.errors import ToolError
from hwnn.flow.generate import generate, load_design
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_network
from hwnn.flow.report import format_table
from hwnn.rtl.folding import LayerFold
from hwnn.planning.sparse_cycles import ideal_cycles
from hwnn.rtl.sparse import SparseParams
from hwnn.sim.golden import layer_inputs
from hwnn.sim.simulate import simulate
from hwnn.tools.synth import synthesize
from hwnn.tools.toolchain import setup_env

PES = 8
SIZE = 256
INPUTS = 8


def layer_network(density, seed=0):
    """One 256x256 layer: int8 weights kept with probability ``density``, shared through a
    4-bit codebook; uint8 inputs; accumulator outputs."""
    return random_network(np.random.default_rng(seed), [SIZE, SIZE], weight_formats=["int8"],
                          act_formats=[], density=density, share=4, name="layer")


def inputs(network, activation_density, seed=1):
    """Random nonzero input codes, a ``1 - activation_density`` fraction of them zeroed."""
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    codes = fmt.level_value(rng.integers(1, fmt.levels, size=(INPUTS, network.in_features)))
    codes[rng.random(codes.shape) >= activation_density] = 0
    return codes


def measure(design, codes, simulator):
    print(f"  simulating {design.path.name} ({simulator})", file=sys.stderr, flush=True)
    result = simulate(design, codes, simulator=simulator)
    if not result.passed:
        raise SystemExit(f"{design.path}: {result.mismatches[0].describe()}")
    return result.cycles_per_inference


def dense_cycles(network, codes, work, simulator):
    """Cycles per inference of the dataflow engine folded to PES multipliers."""
    design = load_design(generate(network, work / "dense", fold=[LayerFold(pe=PES, simd=1)]))
    return measure(design, codes, simulator), design


def density_rows(work, simulator, quick):
    """Cycles against weight density (queue depth 8) and activation density."""
    weight_densities = (0.05, 0.1, 0.5) if quick else (0.05, 0.1, 0.2, 0.5, 1.0)
    act_densities = (1.0, 0.5) if quick else (1.0, 0.5, 0.25)
    dense, _ = dense_cycles(layer_network(1.0), inputs(layer_network(1.0), 1.0), work,
                            simulator)
    rows, params = [], SparseParams(PES, 8)
    for density in weight_densities:
        network = layer_network(density)
        design = load_design(generate(network, work / f"w{density}", arch="sparse", pes=PES,
                                      queue_depth=8))
        for act_density in act_densities:
            codes = inputs(network, act_density)
            cycles = measure(design, codes, simulator)
            ideal = ideal_cycles(network, params, layer_inputs(network, codes)).sum(axis=1).mean()
            rows.append((f"{100 * density:g}%", f"{100 * act_density:g}%", f"{cycles:.0f}",
                         f"{ideal:.0f}", f"{cycles / ideal:.3f}", f"{dense:.0f}",
                         f"{dense / cycles:.1f}x"))
    return rows, dense


def queue_rows(work, simulator, quick):
    """Load balance against queue depth at 10% weight density, all activations nonzero."""
    network = layer_network(0.1)
    codes = inputs(network, 1.0)
    rows = []
    for depth in (1, 2, 4, 8) if not quick else (1, 8):
        design = load_design(generate(network, work / f"q{depth}", arch="sparse", pes=PES,
                                      queue_depth=depth))
        cycles = measure(design, codes, simulator)
        ideal = ideal_cycles(network, SparseParams(PES, depth),
                             layer_inputs(network, codes)).sum(axis=1).mean()
        rows.append((depth, f"{cycles:.0f}", f"{ideal:.0f}", f"{cycles / ideal:.3f}",
                     f"{ideal / cycles:.3f}"))
    return rows


def digits_rows(work, simulator):
    """The digits MLP pruned to 90% with 4-bit sharing, on real test digits."""
    model, (x_train, x_test, _, _) = train_digits_mlp(0)
    options = QuantOptions(weights="int8", acts="uint8", prune=0.9, prune_scope="global",
                           share=4)
    network = quantize_network(from_sklearn(model), x_train, options, name="digits_sparse")
    codes = network.quantize_input(x_test[:INPUTS * 2])
    design = load_design(generate(network, work / "digits", arch="sparse", pes=PES,
                                  queue_depth=8))
    cycles = measure(design, codes, simulator)
    ideal = ideal_cycles(network, SparseParams(PES, 8),
                         layer_inputs(network, codes)).sum(axis=1).mean()
    unpruned = quantize_network(from_sklearn(model), x_train,
                                QuantOptions(weights="int8", acts="uint8"), name="digits_int8")
    dense_design = load_design(generate(unpruned, work / "digits_dense", max_lanes=PES))
    dense = measure(dense_design, codes, simulator)
    return [("digits 64-64-32-10, 90% pruned, 4-bit shared", f"{cycles:.0f}", f"{ideal:.0f}",
             f"{cycles / ideal:.3f}", f"{dense:.0f} ({dense_design.manifest['lanes']} lanes)")]


def area_rows(work):
    rows = []
    for label, path in (("sparse 8 PEs, 256x256 at 10%", work / "w0.1"),
                        ("dataflow 8 lanes, 256x256 dense", work / "dense")):
        design = load_design(path)
        print(f"  synthesizing {label}", file=sys.stderr, flush=True)
        started = time.monotonic()
        try:
            report = synthesize(design.verilog, design.top, "ecp5")
        except ToolError as error:
            rows.append((label, f"Yosys failed: {str(error)[:60]}", "", "", "", "", "", ""))
            continue
        rows.append((label, report.lut4, report.carry, report.ff, report.dsp, report.bram,
                     report.mapper, f"{time.monotonic() - started:.0f}"))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--simulator", choices=("verilator", "icarus"), default="verilator")
    parser.add_argument("--quick", action="store_true", help="fewer densities and depths")
    parser.add_argument("--no-area", action="store_true", help="skip Yosys synthesis")
    args = parser.parse_args()
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-bench-") as folder:
        work = Path(folder)
        started = time.monotonic()
        rows, dense = density_rows(work, args.simulator, args.quick)
        print(f"256x256 int8 layer, 4-bit shared weights, {PES} PEs, queue depth 8 "
              f"({args.simulator}, {INPUTS} inputs; dense engine: dataflow unit with {PES} "
              f"multipliers, {dense:.0f} cycles)")
        print(format_table(("weights", "activations", "cycles", "ideal", "cycles/ideal",
                            "dense", "speed-up"), rows, right=set(range(7))))
        print("\nLoad balance against queue depth (10% weights, all activations nonzero)")
        print(format_table(("queue", "cycles", "ideal", "cycles/ideal", "efficiency"),
                           queue_rows(work, args.simulator, args.quick), right=set(range(5))))
        print()
        print(format_table(("network", "cycles", "ideal", "cycles/ideal", "dense engine"),
                           digits_rows(work, args.simulator), right={1, 2, 3, 4}))
        if not args.no_area:
            print("\nECP5 area (YoWASP Yosys synth_ecp5 -nowidelut)")
            print(format_table(("design", "LUT4", "CCU2C", "FF", "MULT18X18D", "DP16KD",
                                "LUT mapper", "Yosys s"), area_rows(work),
                               right={1, 2, 3, 4, 5, 7}))
        print(f"\n{time.monotonic() - started:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
