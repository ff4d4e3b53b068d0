# amaranth: UnusedElaboratable=no
# (fit_problem builds an overlay for its memory sizes only.)
"""Systolic benchmark: array utilization, cycles per inference, area and Fmax.

Utilization is useful MACs / (rows * cols * cycles), with cycles measured by the design's own
performance counters in Verilator (the cycles a layer held the array, and those it fed it a
row) and, for the whole batch, by the testbench (input, all layers, output). Area comes from
YoWASP Yosys (ECP5 and iCE40) and Fmax from YoWASP nextpnr on an ECP5-85F, through a register
harness. The networks tables run the digits CNN and FINN's CNV topology on the 8x8 array of
an ECP5-85F and the 2x4 of an iCE40UP5K: utilization per layer and cycles per inference from
the schedule (the digits CNN's confirmed in Verilator), Fmax by nextpnr on each device,
inferences/s and GOPS at Fmax, against MARLANN's published UP5K figures (:data:`MARLANN`).
Run it from the repository root:

    python benchmarks/systolic.py [--quick | --area-only | --packing-only | --networks-only
                                   | --fmax-only]
"""

import argparse
import re
import sys
import tempfile
from pathlib import Path

import numpy as np
from amaranth.back import verilog

from common import cnv_network
from hwnn.errors import ToolError
from hwnn.flow.demo import DIGITS_CNN, digits_split, train_digits_mlp
from hwnn.flow.generate import generate, load_design
from hwnn.ir import Network
from hwnn.planning.estimate import estimate
from hwnn.planning.planner import NoFolding, check_weights_on_chip
from hwnn.quant import QuantOptions, from_sklearn, load_npz, quantize_network
from hwnn.quant.synthetic import random_dense
from hwnn.flow.report import format_table
from hwnn.rtl.harness import RegisterHarness
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay, schedule
from hwnn.rtl.overlaysteps import overlay_steps
from hwnn.sim.simulate import simulate
from hwnn.tools.synth import CAPACITY, DEVICES, DoesNotFit, place_and_route, synthesize
from hwnn.tools.toolchain import setup_env


def gemm_network(m, k, n):
    """A one-layer int8 network whose accumulator output is the GEMM (M rows at a time)."""
    layer = random_dense(np.random.default_rng(k + n), k, n, in_format="int8",
                         weight_format="int8", stage="accumulator")
    return Network(f"gemm_{m}x{k}x{n}", (layer,))


def measure(network, params, codes, work):
    """Generate ``network`` on the overlay ``params``, stream ``codes`` through its Verilog in
    Verilator and check every output against the golden model."""
    array = f"{params.rows}x{params.cols}"
    design = load_design(generate(network, work / f"{network.name}_{array}", arch="systolic",
                                  array=array, batch=params.batch, requant=params.requant,
                                  pack=str(params.pack), stage_lanes=params.stage_lanes or 0,
                                  weights=params.weights))
    result = simulate(design, codes, simulator="verilator")
    assert result.passed, f"{network.name} on {array} mismatches the golden model"
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
            design, result = measure(network, OverlayParams(size, size, m), codes, work)
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
        design, result = measure(network, OverlayParams(8, 8, 16), codes, work)
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


#: MARLANN, Claire Wolf's hand-written int8 CNN engine for the iCE40UP5K (Symbiotic EDA,
#: https://github.com/SymbioticEDA/MARLANN, last commit aacc17f of 2019-05-06), as its own
#: pages give it: docs/isa.md "Each cycle it can add 8 multiply results into each
#: accumulator, yielding 16 MACC/cycle"; rtl/compute.v: 8 SB_MAC16 (NB = 2, NB*4
#: ``marlann_compute_mul2``, each an SB_MAC16 of two 8x8 products); benchmark/perf.md
#: (2018-09-03, nextpnr and icetime over 50 seeds): "icetime: min = 23.42 MHz, avg = 25.851
#: MHz, max = 27.31 MHz"; power-test/README.md (its "longrun" demo of convolutions,
#: simulated): "At 12MHz, 154 MMACC/s", "At 20Mhz, 256 MMACC/s". No inferences per second of
#: a named network are published.
MARLANN = {"peak_macs_per_cycle": 16, "dsp": 8, "fmax_mhz": (23.42, 25.851, 27.31),
           "macs_per_second": {12: 154e6, 20: 256e6}}

#: nextpnr's target per device: the issue's 150 MHz on the ECP5, 48 MHz on the UP5K.
TARGET_MHZ = {"ecp5-85f": 150.0, "ice40-up5k": 48.0}


def digits_cnn():
    """The digits CNN that ships with hwnn (:data:`hwnn.flow.demo.DIGITS_CNN`) quantized to
    int8 weights / uint8 activations on the demo's training images, and the input codes of
    its test images."""
    x_train, x_test, *_ = digits_split(0)
    float_network = load_npz(DIGITS_CNN)
    network = quantize_network(float_network, x_train,
                               QuantOptions(weights="int8", acts="uint8"), name="digits_cnn")
    codes = network.quantize_input(float_network.check_inputs(x_test))
    return network, codes.reshape(len(x_test), -1)


def network_cases():
    """``(label, network, test codes or None, device, params)`` of the networks table: the
    8x8 array on the ECP5-85F, the 2x4 on the UP5K (its 8 SB_MAC16, requantization in logic
    and one-lane output stages: with four lanes the digits CNN's 2x4 takes more than the
    UP5K's 5,280 logic cells). The digits CNN runs batches of 16 on the ECP5 and of 8 on the
    UP5K (16 needs more than its 30 block RAMs); CNV batches of 1, its smallest memories."""
    digits, codes = digits_cnn()
    cnv = cnv_network()
    for label, network, images, batches in (("digits CNN int8/uint8", digits, codes, (16, 8)),
                                            ("CNV binary (random weights)", cnv, None, (1, 1))):
        yield label, network, images, "ecp5-85f", OverlayParams(8, 8, batches[0])
        yield label, network, images, "ice40-up5k", OverlayParams(2, 4, batches[1], "logic",
                                                                 stage_lanes=1)


def fit_problem(network, device, params):
    """None when ``network`` on the overlay ``params`` may fit ``device``; else why not, in
    one line with the numbers: its weights alone over the device's block RAMs (the line of
    ``hwnn compile --arch systolic --board``), or the overlay's memories over them as the
    estimator counts them (the weights held as :class:`~hwnn.rtl.overlay.WeightStorage`
    words)."""
    try:
        check_weights_on_chip(network, device, f"the {device.upper()}")
    except NoFolding as error:
        return str(error)
    array = f"{params.rows}x{params.cols}"
    blocks = estimate(network, DEVICES[device][0], "systolic", array=array,
                      batch=params.batch, requant=params.requant)["bram"]
    available = CAPACITY[device]["bram"]
    if blocks <= available:
        return None
    top = SystolicOverlay(network, params)
    kbit = {use: f"{bits / 1024:,.0f} kbit" for use, bits in top.memory_bits.items()}
    return (f"The {array} overlay of {network.name!r} (batch {params.batch}) does not fit the "
            f"{device.upper()}: its memories take an estimated {blocks} of its {available} "
            f"block RAMs (weights {kbit['weights']} as {top.weight_storage.fmt.width}-bit "
            f"codes, "
            f"activations {kbit['activations']} as {top.a_format.bits}-bit values, "
            f"accumulators {kbit['accumulators']})")


def network_fmax(network, device, params, work, seeds=1):
    """``(Yosys report, Fmax in MHz)`` of ``network`` on the overlay ``params`` by nextpnr on
    ``device`` through the register harness, or ``(None, why it does not fit)``; with
    ``seeds``, the best seed's Fmax, and ``(report, Fmax, {seed: Fmax})``."""
    if (problem := fit_problem(network, device, params)) is not None:
        return None, problem
    harness = work / f"{network.name}_{device}_harness.v"
    harness.write_text(verilog.convert(RegisterHarness(SystolicOverlay(network, params)),
                                       name="harness"))
    heard = []
    try:
        report, fmax, _ = place_and_route(harness, "harness", device,
                                          target_mhz=TARGET_MHZ[device], seeds=seeds,
                                          log=heard.append)
    except DoesNotFit as error:
        return None, str(error)
    except ToolError as error:          # nextpnr found no placement: the cells did not fit
        if "ERROR" not in str(error):
            raise
        return None, (f"The {params.rows}x{params.cols} overlay of {network.name!r} (batch "
                      f"{params.batch}) does not place on the {device.upper()}: "
                      + str(error).rsplit("ERROR: ", 1)[1].splitlines()[0])
    if seeds == 1:
        return report, fmax
    # Each seed's Fmax, or how it ended (failed, or stopped: its router not converging).
    by_seed = re.findall(r"seed (\d+) of \d+: (.*)", "\n".join(heard))
    return report, fmax, {int(seed): float(end.split()[0]) if end.endswith(" MHz") else end
                          for seed, end in by_seed}


def network_layer_rows(label, network, device, params, plan, result):
    """Rows of the per-layer table: each layer's GEMM, tiles, cycles held per batch by the
    schedule and (``result``: a Verilator run of whole batches) by the design's counters, and
    utilization (useful MACs / (rows * cols * cycles held))."""
    steps = {step.index: step for step in overlay_steps(network)}
    batches = None if result is None else len(result.outputs) // params.batch
    rows = []
    for index, layer in enumerate(plan["layers"]):
        where = (label, f"{params.rows}x{params.cols} {device}", layer["name"])
        if "folded_into" in layer:
            rows.append((*where, f"(max pool, folded into {layer['folded_into']})", "", "", "",
                         ""))
            continue
        step = steps[index]
        measured = ("-" if result is None
                    else f"{result.counters[f'cycles__{index}'] / batches:g}")
        rows.append((*where, f"{layer['rows']}x{step.layer.in_features}x{step.out_channels}",
                     layer["tiles"], layer["cycles"], measured, f"{layer['utilization']:.3f}"))
    return rows


def network_tables(work):
    """The per-layer and per-network tables of :func:`network_cases`, and the notes under
    them (why a design does not fit, MARLANN's sources)."""
    layer_rows, summary_rows, notes = [], [], []
    for label, network, codes, device, params in network_cases():
        plan = schedule(network, params)
        result = None
        if codes is not None:    # two whole batches of test images in Verilator
            _, result = measure(network, params, codes[:2 * params.batch], work)
        layer_rows += network_layer_rows(label, network, device, params, plan, result)
        macs = sum(layer["macs"] for layer in plan["layers"]) / params.batch
        lanes = params.rows * params.cols
        report, fmax = network_fmax(network, device, params, work)
        measured = "-" if result is None else f"{result.cycles_per_inference:,.1f}"
        row = [label, device.upper(), f"{params.rows}x{params.cols}", params.batch,
               f"{macs:,.0f}", f"{plan['per_inference']:,.1f}", measured,
               f"{macs / (lanes * plan['per_inference']):.3f}"]
        if report is None:
            notes.append(f"({len(notes) + 1}) {fmax}")
            row += ["-", f"does not fit ({len(notes)})", "-", "-", "-"]
        else:
            per_second = fmax * 1e6 / plan["per_inference"]
            gops = 2 * macs * per_second / 1e9
            row += [report.dsp, f"{fmax:.1f}", f"{per_second:,.0f}", f"{gops:.3f}",
                    f"{gops / report.dsp:.4f}"]
        summary_rows.append(tuple(row))
        print(f"  {label} on {device}: done", file=sys.stderr, flush=True)
    low, average, high = MARLANN["fmax_mhz"]
    measured = MARLANN["macs_per_second"][12] / 12e6
    gops = 2 * measured * average * 1e6 / 1e9
    summary_rows.append((
        "MARLANN (published)", "ICE40-UP5K", "16 MACs", "-", "not published",
        "not published", "-", f"{measured / MARLANN['peak_macs_per_cycle']:.3f} (a)",
        MARLANN["dsp"], f"{low}-{high}", "not published", f"{gops:.3f} (b)",
        f"{gops / MARLANN['dsp']:.4f} (b)"))
    notes += [
        (f"(a) MARLANN's 'longrun' demo: 154 MMACC/s at 12 MHz (power-test/README.md), "
         f"{measured:.2f} of its 16 MACs a cycle (docs/isa.md)"),
        (f"(b) derived: 2 ops x {measured:.2f} MACs/cycle x {average} MHz (benchmark/perf.md's "
         f"average Fmax); published: 154 and 256 MMACC/s at 12 and 20 MHz (0.308 and 0.512 "
         f"GOPS)"),
        ("MARLANN: https://github.com/SymbioticEDA/MARLANN (docs/isa.md, benchmark/perf.md, "
         "power-test/README.md; its 8 SB_MAC16: rtl/compute.v)")]
    layers = format_table(("network", "array", "layer", "GEMM MxKxN (batch)", "tiles",
                           "cycles (schedule)", "measured", "utilization"),
                          layer_rows, right={4, 5, 6, 7})
    summary = format_table(("network", "device", "array", "batch", "MACs/inference",
                            "cycles/inference", "measured", "utilization", "DSP", "Fmax MHz",
                            "inferences/s", "GOPS", "GOPS/DSP"),
                           summary_rows, right=set(range(3, 13)))
    return layers, summary, "\n".join(notes)


#: What the networks tables show.
NETWORKS_TITLE = ("CNNs on the overlay: the digits CNN (int8/uint8) and FINN's CNV topology "
                  "(binary, run as +-1 ints; random weights) on an 8x8 array (ECP5-85F) and a "
                  "2x4 (iCE40UP5K). Cycles and utilization (useful MACs / (rows * cols * "
                  "cycles)) from the schedule, which the hardware follows cycle for cycle "
                  "(measured: the design's counters in Verilator over two batches of test "
                  "images, checked against the golden model); Fmax by nextpnr through a "
                  "register harness; GOPS = 2 x MACs x inferences/s at Fmax:")


#: Seeds of nextpnr each Fmax of :func:`fmax_table` is the best of (nextpnr's own, then
#: ``--seed 2..``; as ``hwnn build --seeds`` runs them).
FMAX_SEEDS = 4


#: What the Fmax table shows.
FMAX_TITLE = ("Fmax of the 8x8 int8 overlay on an ECP5-85F (speed grade 6): YoWASP Yosys "
              "synth_ecp5 -nowidelut, registers moved into DSP and block RAM registers, "
              f"nextpnr-ecp5 through a register harness, {FMAX_SEEDS} seeds:")


def fmax_table(work):
    """Fmax of the digits MLP and CNN (int8/uint8, requantization in DSP blocks) on the 8x8
    overlay, batch 16, on the ECP5-85F through the register harness, against the 150 MHz
    target: nextpnr's own seed, the best of :data:`FMAX_SEEDS` and their range."""
    mlp = digits_network(weights="int8", acts="uint8")
    cnn, _ = digits_cnn()
    rows = []
    target = TARGET_MHZ["ecp5-85f"]
    for label, network in (("digits MLP", mlp), ("digits CNN", cnn)):
        params = OverlayParams(8, 8, 16)
        report, fmax, by_seed = network_fmax(network, "ecp5-85f", params, work,
                                             seeds=FMAX_SEEDS)
        placed = [mhz for mhz in by_seed.values() if isinstance(mhz, float)]
        own = by_seed.get(1)
        rows.append((label, "8x8", params.batch, report.lut4, report.carry, report.ff,
                     report.dsp, report.bram, f"{own:.1f}" if isinstance(own, float) else own,
                     f"{fmax:.1f}", f"{min(placed):.1f}-{max(placed):.1f}",
                     f"{sum(mhz >= target for mhz in placed)} of {len(by_seed)}",
                     f"{schedule(network, params)['per_inference']:.2f}"))
        print(f"  {label}: done", file=sys.stderr, flush=True)
    return format_table(("network", "array", "batch", "LUT4", "CCU2C", "FF", "MULT18X18D",
                         "DP16KD", "Fmax MHz (nextpnr's seed)", f"best of {FMAX_SEEDS}",
                         "seeds' range", f"seeds >= {target:.0f} MHz", "cycles/inference"),
                        rows, right=set(range(2, 13)))


def print_networks(work):
    layers, summary, notes = network_tables(work)
    print(NETWORKS_TITLE)
    print(layers)
    print()
    print(summary)
    print(notes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer shapes")
    parser.add_argument("--area-only", action="store_true", help="only the area table")
    parser.add_argument("--packing-only", action="store_true", help="only the packing table")
    parser.add_argument("--networks-only", action="store_true",
                        help="only the CNN tables (digits CNN and CNV on ECP5 and UP5K)")
    parser.add_argument("--fmax-only", action="store_true",
                        help="only the ECP5 Fmax of the digits MLP and CNN on the 8x8")
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
        if args.networks_only:
            print_networks(work)
            return
        if args.fmax_only:
            print(FMAX_TITLE)
            print(fmax_table(work))
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
        print()
        print_networks(work)
        print(f"\n{FMAX_TITLE}")
        print(fmax_table(work))


if __name__ == "__main__":
    main()
