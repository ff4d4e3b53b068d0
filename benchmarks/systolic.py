"""Systolic benchmark: array utilization, cycles per inference, area and Fmax.

Utilization is useful MACs / (rows * cols * cycles), with cycles measured by the design's own
performance counters in Verilator (the cycles a layer held the array, and those it fed it a
row) and, for the whole batch, by the testbench (input, all layers, output). Area comes from
YoWASP Yosys (ECP5 and iCE40) and Fmax from YoWASP nextpnr on an ECP5-85F, through a register
harness. Run it from the repository root:

    python benchmarks/systolic.py [--quick]
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from hwnn.flow.demo import train_digits_mlp
from hwnn.flow.generate import generate, load_design
from hwnn.ir import Network
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_dense
from hwnn.flow.report import format_table
from hwnn.rtl.harness import RegisterHarness
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay, schedule
from hwnn.sim.simulate import simulate
from hwnn.tools.synth import DoesNotFit, place_and_route, synthesize
from hwnn.tools.toolchain import setup_env


def gemm_network(m, k, n):
    """A one-layer int8 network whose accumulator output is the GEMM (M rows at a time)."""
    layer = random_dense(np.random.default_rng(k + n), k, n, in_format="int8",
                         weight_format="int8", stage="accumulator")
    return Network(f"gemm_{m}x{k}x{n}", (layer,))


def measure(network, size, batch, codes, work):
    design = load_design(generate(network, work / f"{network.name}_{size}", arch="systolic",
                                  array=f"{size}x{size}", batch=batch))
    result = simulate(design, codes, simulator="verilator")
    assert result.passed, f"{network.name} on {size}x{size} mismatches the golden model"
    return design, result


def gemm_rows(work, quick):
    shapes = [(64, 64, 64), (100, 100, 100), (256, 256, 256)]
    sizes = [4, 8] if quick else [4, 8, 16]
    rows = []
    for m, k, n in shapes:
        for size in sizes:
            if quick and (m, size) == (256, 4):
                continue
            network = gemm_network(m, k, n)
            codes = np.random.default_rng(1).integers(-128, 128, size=(m, k))
            design, result = measure(network, size, m, codes, work)
            busy = result.counters["busy__0"]
            held = result.counters["cycles__0"]
            macs = m * k * n
            rows.append((f"{m}x{k}x{n}", f"{size}x{size}", held, busy,
                         f"{macs / (size * size * held):.3f}",
                         design.manifest["schedule"]["total"], result.total_cycles,
                         f"{macs / (size * size * design.manifest['schedule']['total']):.3f}"))
            print(f"  GEMM {m}x{k}x{n} on {size}x{size}: done", file=sys.stderr, flush=True)
    return rows


def digits_rows(work):
    model, (x_train, x_test, *_rest) = train_digits_mlp(0)
    float_net = from_sklearn(model)
    rows = []
    for weights, acts in (("int8", "uint8"), ("int4", "uint4")):
        network = quantize_network(float_net, x_train, QuantOptions(weights=weights, acts=acts),
                                   name=f"digits_{weights}")
        codes = network.quantize_input(x_test[:64])
        design, result = measure(network, 8, 16, codes, work)
        for index, layer in enumerate(design.manifest["layers"]):
            held = result.counters[f"cycles__{index}"]
            rows.append((f"{weights}/{acts}", layer["name"],
                         f"{layer['in_features']}->{layer['out_features']}", layer["tiles"],
                         held, f"{layer['macs'] * 4 / (64 * held):.3f}",
                         f"{result.cycles_per_inference:.2f}"))
        print(f"  digits {weights}: done", file=sys.stderr, flush=True)
    return rows


def digits_network(weights="int4", acts="uint4", pixels=None):
    """The digits MLP quantized to ``weights`` / ``acts``, its pixels to ``pixels`` (None:
    uint8)."""
    model, (x_train, *_rest) = train_digits_mlp(0)
    options = QuantOptions(weights=weights, acts=acts, input_format=pixels)
    return quantize_network(from_sklearn(model), x_train, options,
                            name=f"digits_{weights}" + (f"_{pixels}" if pixels else ""))


def packing_row(network, rows, cols, pack, work):
    """Yosys' cells of ``network`` on a ``rows x cols`` overlay with ``pack`` products per
    multiplier (requantization in logic, so that every DSP block is the array's), and MACs
    per DSP block per cycle: at peak (``rows * cols`` a cycle) and over a batch of 16 as
    scheduled (the hardware takes the scheduled cycles exactly)."""
    params = OverlayParams(rows, cols, 16, requant="logic", pack=pack)
    top = SystolicOverlay(network, params)
    path = work / f"{network.name}_{rows}x{cols}_pack{pack}.v"
    path.write_text(verilog.convert(top, name="overlay"))
    plan = schedule(network, params)
    macs = sum(layer["macs"] for layer in plan["layers"]) / plan["total"]
    row = [f"{rows}x{cols}", top.array_params.pack]
    for family in ("ecp5", "ice40"):
        report = synthesize(path, "overlay", family)
        per_dsp = (f"{rows * cols / report.dsp:.2f}", f"{macs / report.dsp:.3f}") \
            if report.dsp else ("-", "-")
        row += [report.lut4, report.ff, report.dsp, *per_dsp]
    return tuple(row)


#: What the packing table shows.
PACKING_TITLE = ("Packed narrow operands (int4 digits MLP with uint4 pixels, batch 16, "
                 "requantization in logic): "
                 "Yosys synth_ecp5 -nowidelut and synth_ice40 -dsp; MACs per DSP block per "
                 "cycle at peak and over a scheduled batch:")


def packing_table(work, arrays=((8, 8), (2, 4))):
    """The int4 digits MLP with 4-bit pixels on each array, unpacked and packed
    (``pack="auto"``). With 8-bit pixels the array holds 8-bit activations for every layer,
    and their sums leave no room for a second weight in 16 bits: it packs 1."""
    network = digits_network(pixels="uint4")
    rows = [packing_row(network, r, c, pack, work) for r, c in arrays for pack in (1, "auto")]
    return format_table(("array", "pack", "ECP5 LUT4", "FF", "MULT18X18D", "peak MAC/DSP/cycle",
                         "digits MAC/DSP/cycle", "iCE40 LUT4", "FF", "SB_MAC16",
                         "peak MAC/DSP/cycle", "digits MAC/DSP/cycle"),
                        rows, right=set(range(1, 12)))


def area_rows(work, quick):
    rows = []
    for size in ([8] if quick else [4, 8, 16]):
        network = gemm_network(16, 64, 64)
        top = SystolicOverlay(network, OverlayParams(size, size, 16))
        path = work / f"gemm_overlay_{size}.v"
        path.write_text(verilog.convert(top, name="gemm"))
        ice40 = synthesize(path, "gemm", "ice40")
        harness = work / f"harness_{size}.v"
        harness.write_text(verilog.convert(RegisterHarness(
            SystolicOverlay(network, OverlayParams(size, size, 16))), name="harness"))
        try:
            ecp5, fmax, seconds = place_and_route(harness, "harness", "ecp5-85f")
            fmax, seconds = f"{fmax:.1f}", f"{ecp5.seconds:.0f}+{seconds:.0f}"
        except DoesNotFit:         # more DSPs than the device has: report the synthesis only
            ecp5 = synthesize(harness, "harness", "ecp5")
            fmax, seconds = "does not fit", f"{ecp5.seconds:.0f}"
        rows.append((f"{size}x{size}", ecp5.lut4, ecp5.carry, ecp5.ff, ecp5.dsp, ecp5.bram,
                     fmax, ice40.lut4, ice40.ff, ice40.dsp, ice40.bram, seconds))
        print(f"  area {size}x{size}: done", file=sys.stderr, flush=True)
    return rows


def area_table(work, quick):
    return format_table(("array", "LUT4", "CCU2C", "FF", "DSP", "BRAM", "Fmax MHz",
                         "iCE40 LUT4", "FF", "SB_MAC16", "EBR", "yosys+pnr s"),
                        area_rows(work, quick), right=set(range(1, 12)))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--area-only", action="store_true", help="only the area table")
    parser.add_argument("--packing-only", action="store_true", help="only the packing table")
    args = parser.parse_args()
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-bench-") as folder:
        work = Path(folder)
        if args.area_only:
            print(area_table(work, args.quick))
            return
        if args.packing_only:
            print(PACKING_TITLE)
            print(packing_table(work))
            return
        print("int8 GEMMs (M = batch; counters measured in Verilator):")
        print(format_table(("GEMM MxKxN", "array", "layer cycles", "busy", "utilization",
                            "batch cycles (schedule)", "measured", "with I/O"),
                           gemm_rows(work, args.quick), right=set(range(2, 8))))
        print("\nDigits MLP on an 8x8 array, batch 16 (64 test images):")
        print(format_table(("scheme", "layer", "shape", "tiles", "cycles (4 batches)",
                            "utilization", "cycles/inference"), digits_rows(work),
                           right={3, 4, 5, 6}))
        print("\nArea (int8 GEMM overlay, 64x64 weights, batch 16): ECP5 synth_ecp5 -nowidelut "
              "and nextpnr on an ECP5-85F through a register harness; iCE40 synth_ice40 -dsp:")
        print(area_table(work, args.quick))
        print(f"\n{PACKING_TITLE}")
        print(packing_table(work))


if __name__ == "__main__":
    main()
