"""Estimator calibration and check: Yosys area of many designs, the fitted model, its errors.

It generates a fixed, seeded set of designs of every engine (random networks of every weight
and activation format at many foldings, some with hardwired weights, systolic arrays and sparse
PE arrays of several sizes, and the digits networks trained here), synthesizes each with YoWASP
Yosys for ECP5 and iCE40 (the accelerator alone, as ``hwnn.tools.synth.synthesize`` does) and
keeps the cell counts in ``benchmarks/estimator_samples.json``, keyed by a hash of each
design's configuration (a rerun synthesizes only what is missing; when a generator's hardware
changes, bump its architecture's :data:`GENERATIONS` entry: its samples get new keys and are
synthesized again). Then it fits the estimator's coefficients
(``hwnn.planning.estimate.fit``) on the calibration designs, writes them to
``hwnn/planning/estimator.json`` with ``--write``, and prints the errors of LUT4 and FF
predictions on the held-out designs, which the fit never sees. Run it from the
repository root:

    python benchmarks/estimator.py [--jobs 2] [--write]
"""

import argparse
import hashlib
import json
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from hwnn.planning.estimate import FAMILIES
from hwnn.flow.report import format_table

SAMPLES = Path(__file__).with_name("estimator_samples.json")

_WEIGHTS = ("binary", "ternary", "int2", "int4", "int8")
_ACTS = ("binary", "uint2", "uint4", "int4", "uint8")


def _random_config(rng, index):
    """A random small dataflow network and lane budget."""
    depth = int(rng.integers(2, 4))
    sizes = [int(rng.choice([16, 32, 64, 128])) for _ in range(depth)] + [
        int(rng.choice([4, 8, 10, 16]))]
    acts = [str(rng.choice(_ACTS)) for _ in range(depth - 1)]
    weights = [str(rng.choice(_WEIGHTS)) for _ in range(depth)]
    input_format = str(rng.choice(("binary", "uint4", "uint8", "int8")))
    # Thresholds up to 4-bit outputs (at most 15 per neuron), requantization for 8 bits.
    stages = ["requant" if act.endswith("8") else "thresholds" if act == "binary"
              else str(rng.choice(("thresholds", "requant"))) for act in acts]
    budget = int(rng.choice([depth, 8, 16, 32, 64, 128, 256]))
    return {"arch": "dataflow", "name": f"df{index}", "seed": index, "sizes": sizes,
            "weight_formats": weights, "act_formats": acts, "input_format": input_format,
            "stages": stages, "max_lanes": max(budget, depth)}


#: The generation of each architecture's hardware: bumped when a generator's output changes
#: (registers added, logic moved), so that every sample of that architecture gets a new key
#: and is synthesized again. Generation 1 is implicit: its configurations carry no
#: ``generation`` field, as the samples had before generations existed.
GENERATIONS = {"dataflow": 1, "systolic": 2, "sparse": 1}


def _generation(config):
    """``config`` with its architecture's generation (none for generation 1)."""
    generation = GENERATIONS[config["arch"]]
    return config if generation == 1 else {**config, "generation": generation}


def configs():
    """Every sample design, in a fixed order, each with its architecture's generation."""
    return [_generation(config) for config in _configs()]


def _configs():
    rng = np.random.default_rng(2026)
    out = [_random_config(rng, index) for index in range(36)]
    extra = np.random.default_rng(2027)
    out += [_random_config(extra, index) for index in range(36, 64)]
    for index, (size, bits, sizes) in enumerate([
            (2, 8, [32, 32, 10]), (4, 8, [64, 32, 10]), (8, 8, [64, 64, 10]),
            (4, 4, [32, 16, 8]), (12, 4, [48, 48, 12]), (6, 8, [48, 24, 12]),
            (16, 8, [64, 64, 16]), (2, 4, [16, 16, 4]), (8, 2, [32, 32, 8]),
            (3, 8, [24, 12, 6])]):
        out.append({"arch": "systolic", "name": f"sy{index}", "seed": 100 + index,
                    "sizes": sizes, "weight_formats": [f"int{bits}"] * 2,
                    "act_formats": [f"uint{bits}"], "input_format": f"uint{bits}",
                    "stages": ["requant"], "array": f"{size}x{size}"})
    for index, (pes, density, share, sizes) in enumerate([
            (2, 0.2, 4, [64, 32, 10]), (4, 0.1, 4, [128, 64, 10]), (8, 0.3, None, [64, 64, 10]),
            (16, 0.1, 4, [128, 128, 16]), (1, 0.3, 4, [32, 16, 4]), (6, 0.25, 2, [48, 48, 6]),
            (8, 0.1, 4, [128, 64, 10]), (12, 0.2, None, [96, 48, 12]), (8, 0.05, 4, [256, 64, 8]),
            (3, 0.4, 3, [48, 24, 6]), (4, 0.15, None, [64, 64, 16]), (2, 0.5, 4, [32, 32, 4])]):
        out.append({"arch": "sparse", "name": f"sp{index}", "seed": 200 + index,
                    "sizes": sizes, "weight_formats": ["int8"] * 2, "act_formats": ["uint8"],
                    "input_format": "uint8", "stages": ["requant"], "pes": pes,
                    "density": density, "share": share})
    for budget in (8, 32, 128):
        out.append({"arch": "dataflow", "name": f"digits_int8_{budget}", "digits": "int8",
                    "max_lanes": budget})
        out.append({"arch": "dataflow", "name": f"digits_tern_{budget}", "digits": "ternary",
                    "max_lanes": budget})
    out.append({"arch": "systolic", "name": "digits_int8_sy8", "digits": "int8",
                "array": "8x8"})
    out.append({"arch": "sparse", "name": "digits_sparse_8", "digits": "int8", "pes": 8,
                "prune": 0.9, "share": 4})
    # Requantization in logic (the UP5K's plans), per-tensor (digits) and per-channel.
    out.append({"arch": "systolic", "name": "digits_int8_sy2x4_logic", "digits": "int8",
                "array": "2x4", "requant": "logic"})
    for index, (array, sizes) in enumerate([("2x2", [32, 16, 10]), ("4x4", [48, 32, 8])]):
        out.append({"arch": "systolic", "name": f"sy_logic{index}", "seed": 120 + index,
                    "sizes": sizes, "weight_formats": ["int8"] * 2, "act_formats": ["uint8"],
                    "input_format": "uint8", "stages": ["requant"], "array": array,
                    "requant": "logic"})
    cnn = np.random.default_rng(2028)
    out += [_random_cnn_config(cnn, index) for index in range(300, 316)]
    # Hardwired weights (adder graphs, fully parallel: ``fold="hardwired"``), every weight
    # format, thresholds and requantization; small, for Yosys' sake, but for three of the
    # first layer's size (seeds 403, 407 and 411 held out).
    for index, (sizes, weights, act, input_format, stage) in enumerate([
            ([16, 16, 8], ("binary", "binary"), "binary", "binary", "thresholds"),
            ([32, 16, 10], ("ternary", "ternary"), "uint2", "uint4", "thresholds"),
            ([16, 12, 6], ("int4", "int4"), "uint4", "uint4", "requant"),
            ([32, 16, 8], ("int8", "int4"), "uint4", "uint4", "thresholds"),
            ([24, 12, 4], ("int8", "int8"), "uint8", "uint8", "requant"),
            ([64, 16, 10], ("binary", "ternary"), "binary", "binary", "thresholds"),
            ([48, 16, 8], ("ternary", "int4"), "uint4", "uint8", "requant"),
            ([64, 12, 10], ("int4", "ternary"), "uint2", "uint4", "thresholds"),
            ([48, 16, 8], ("int8", "int4"), "uint4", "uint4", "thresholds"),
            ([32, 24, 10], ("int4", "int8"), "uint2", "uint8", "thresholds"),
            # Layers of the digits MLP's first layer's size: more sharing per product.
            ([64, 64, 8], ("int4", "int4"), "uint4", "uint4", "thresholds"),
            ([64, 64, 8], ("binary", "binary"), "binary", "uint8", "thresholds"),
            ([64, 48, 8], ("int8", "ternary"), "uint4", "uint8", "requant")]):
        out.append({"arch": "dataflow", "name": f"hw{index}", "seed": 400 + index,
                    "sizes": sizes, "weight_formats": list(weights), "act_formats": [act],
                    "input_format": input_format, "stages": [stage], "fold": "hardwired"})
    return out


def _random_cnn_config(rng, index):
    """A random small convolutional dataflow network (one or two convolutions, each maybe
    followed by a max pool, then a dense layer) and lane budget."""
    side, channels = int(rng.choice([6, 8, 10, 12])), int(rng.choice([1, 2, 3, 4]))
    input_format = str(rng.choice(("binary", "uint4", "uint8")))
    layers, size, act = [], side, input_format
    for _ in range(int(rng.integers(1, 3))):
        kernel = int(rng.choice([1, 3, 5])) if size >= 5 else 1
        # Binary codes have no zero to pad with.
        padding = 0 if act == "binary" else int(rng.integers(0, kernel // 2 + 1))
        act = str(rng.choice(_ACTS))
        stage = ("requant" if act.endswith("8") else "thresholds" if act == "binary"
                 else str(rng.choice(("thresholds", "requant"))))
        layers.append(["conv2d", {"out_channels": int(rng.choice([4, 8, 16])),
                                  "kernel": kernel, "padding": padding,
                                  "weight_format": str(rng.choice(_WEIGHTS)),
                                  "out_format": act, "stage": stage}])
        size = size + 2 * padding - kernel + 1
        if size >= 4 and size % 2 == 0 and rng.random() < 0.6:
            layers.append(["maxpool2d", {"kernel": 2}])
            size //= 2
    layers.append(["dense", {"out_features": int(rng.choice([4, 10])),
                             "weight_format": str(rng.choice(_WEIGHTS)),
                             "stage": "accumulator"}])
    return {"arch": "dataflow", "name": f"cnn{index}", "seed": index,
            "input_shape": [side, side, channels],
            "input_format": input_format, "layers": layers,
            "max_lanes": int(rng.choice([4, 8, 16, 32, 64]))}


def key(config):
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def network_of(config):
    """The quantized network of a sample configuration."""
    from hwnn.quant.synthetic import random_cnn, random_network
    if "layers" in config:
        return random_cnn(np.random.default_rng(config["seed"]), config["input_shape"],
                          [(kind, dict(options)) for kind, options in config["layers"]],
                          input_format=config["input_format"], name=config["name"])
    if "digits" in config:
        from hwnn.flow.demo import train_digits_mlp
        from hwnn.quant import QuantOptions, from_sklearn, quantize_network
        model, (x_train, *_rest) = train_digits_mlp(0)
        options = (QuantOptions(weights="int8", acts="uint8", prune=config.get("prune", 0.0),
                                share=config.get("share")) if config["digits"] == "int8"
                   else QuantOptions(weights="ternary", acts="uint4"))
        return quantize_network(from_sklearn(model), x_train, options, name=config["name"])
    return random_network(np.random.default_rng(config["seed"]), config["sizes"],
                          weight_formats=config["weight_formats"],
                          act_formats=config["act_formats"],
                          input_format=config["input_format"], stages=config["stages"],
                          name=config["name"], density=config.get("density", 1.0),
                          share=config.get("share"))


def generate_options(config):
    options = {"arch": config["arch"]}
    for name in ("max_lanes", "fold", "array", "pes", "requant"):
        if name in config:
            options[name] = config[name]
    return options


def measure(config):
    """Synthesize one sample for both families: ``{family: cells}`` and the design manifest."""
    from hwnn.flow.generate import generate, load_design
    from hwnn.tools.synth import synthesize
    from hwnn.tools.toolchain import setup_env
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-cal-") as folder:
        design = load_design(generate(network_of(config), Path(folder) / "design",
                                      **generate_options(config)))
        result = {"config": config, "cycles": design.manifest["cycles_per_inference"]}
        for family in FAMILIES:
            report = synthesize(design.verilog, design.top, family)
            result[family] = {"cells": report.cells, "mapper": report.mapper,
                              "seconds": round(report.seconds, 1)}
    return result


def collect(jobs, synthesize=True):
    """The samples of :func:`configs`, synthesizing those not cached (unless not
    ``synthesize``); a synthesis drops the cached samples of configurations no longer in
    :func:`configs` (an older generation, :data:`GENERATIONS`) from the file."""
    samples = json.loads(SAMPLES.read_text()) if SAMPLES.is_file() else {}
    order = {key(config): index for index, config in enumerate(configs())}
    missing = [config for config in configs() if key(config) not in samples and synthesize]
    stale = [k for k in samples if k not in order]
    print(f"{len(samples) - len(stale)} samples cached ({len(stale)} stale), {len(missing)} to "
          f"synthesize", file=sys.stderr)
    if missing:
        samples = {k: sample for k, sample in samples.items() if k in order}
    with ProcessPoolExecutor(jobs) as pool:
        futures = {pool.submit(measure, config): config for config in missing}
        for done, future in enumerate(as_completed(futures), 1):
            config = futures[future]
            try:
                samples[key(config)] = future.result()
            except Exception as error:        # report it, keep the others
                print(f"  {config['name']}: FAILED {error}", file=sys.stderr)
                continue
            SAMPLES.write_text(json.dumps(samples, indent=1, sort_keys=True) + "\n")
            print(f"  [{done}/{len(missing)}] {config['name']}", file=sys.stderr, flush=True)
    return [samples[k] for k in sorted(samples, key=lambda k: order.get(k, 1 << 30))
            if k in order]


def host_link_rows():
    """What the host link adds to small accelerators (two MLPs, a CNN on a 16x16x3 image),
    by Yosys, beside :func:`hwnn.planning.estimate.host_link_cost` (for its
    ``BOARD_OVERHEAD``: per family, ``base + per_bit * bits``)."""
    from amaranth.back import verilog

    from hwnn.planning.estimate import host_link_bits, host_link_cost, measured
    from hwnn.flow.generate import generate, load_design
    from hwnn.quant.synthetic import random_cnn, sample_network
    from hwnn.rtl.hostlink import BoardTop
    from hwnn.tools.synth import synthesize
    image = random_cnn(np.random.default_rng(0), (16, 16, 3), [
        ("conv2d", dict(out_channels=4, kernel=3, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("dense", dict(out_features=10, weight_format="binary", stage="accumulator"))],
        input_format="uint8", name="image")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnn-cal-") as folder:
        for network in (sample_network("int8"), sample_network("binary"), image):
            kind = network.name
            design = load_design(generate(network, Path(folder) / kind, max_lanes=8))
            accelerator = design.accelerator()
            top = Path(folder) / f"{kind}_board.v"
            top.write_text(verilog.convert(BoardTop(accelerator, network, divisor=104),
                                           name="board"))
            bits = host_link_bits(network, accelerator.in_count)
            for family in FAMILIES:
                alone = measured(synthesize(design.verilog, design.top, family).cells, family)
                board = measured(synthesize(top, "board", family).cells, family)
                guess = host_link_cost(network, family, accelerator.in_count)
                rows.append((kind, bits, family,
                             *(f"{board[t] - alone[t]} / {guess[t]}"
                               for t in ("lut4", "ff", "bram"))))
    return rows


def _engine(config):
    """The engine a sample's errors are summarized under: its architecture, hardwired dataflow
    designs apart."""
    return "hardwired" if config.get("fold") == "hardwired" else config["arch"]


def _versus(measured, estimated):
    error = 100 * (estimated / measured - 1) if measured else 0.0
    return f"{measured} / {estimated:.0f} ({error:+.1f}%)"


def main():
    from hwnn.planning.estimate import (COEFFICIENTS_PATH, TARGETS, design_features, fit, held_out,
                               measured, predict, save_coefficients)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="parallel Yosys runs")
    parser.add_argument("--write", action="store_true",
                        help=f"write the fitted coefficients to {COEFFICIENTS_PATH}")
    parser.add_argument("--cached", action="store_true",
                        help="use the samples already synthesized, synthesize nothing")
    args = parser.parse_args()
    samples = collect(args.jobs, synthesize=not args.cached)
    rows = []
    for sample in samples:
        network = network_of(sample["config"])
        sample["features"] = {family: design_features(network, family,
                                                      **generate_options(sample["config"]))
                              for family in FAMILIES}
    coefficients = fit(samples)
    if args.write:
        save_coefficients(coefficients)
    errors = {}
    for sample in samples:
        config = sample["config"]
        for family in FAMILIES:
            truth = measured(sample[family]["cells"], family)
            guess = predict(sample["features"][family], coefficients, family, config["arch"])
            split = "held out" if held_out(config) else "calibration"
            for target in TARGETS:
                error = (0.0 if truth[target] == guess[target] == 0
                         else guess[target] / max(truth[target], 1) - 1)
                errors.setdefault((split, family, _engine(config), target), []).append(error)
            if held_out(config):
                rows.append((config["name"], _engine(config), family,
                             *(_versus(truth[t], guess[t]) for t in TARGETS)))
    print("Held-out designs (never seen by the fit), measured / estimated (error):")
    print(format_table(("design", "arch", "family",
                        *(f"{t} measured / estimated" for t in TARGETS)), rows))
    summary = []
    for (split, family, arch, target), values in sorted(errors.items()):
        values = np.abs(values)
        summary.append((split, family, arch, target, len(values),
                        f"{100 * values.mean():.1f}%", f"{100 * np.median(values):.1f}%",
                        f"{100 * np.mean(values <= 0.15):.0f}%", f"{100 * values.max():.1f}%"))
    print("\nAbsolute relative errors:")
    print(format_table(("designs", "family", "engine", "resource", "n", "mean", "median",
                        "within 15%", "worst"), summary, right={4, 5, 6, 7, 8}))
    if not args.cached:
        print("\nHost link over the accelerator alone (for BOARD_OVERHEAD):")
        print(format_table(("network", "register bits", "family", "LUT4 measured / estimated",
                            "FF", "BRAM"), host_link_rows(), right={1, 3, 4, 5}))


if __name__ == "__main__":
    main()
