"""Dataflow multipliers in logic against DSP blocks: Yosys beside the estimator.

Each design is synthesized (YoWASP Yosys, ``synth_ice40 -dsp`` or ``synth_ecp5``, the
accelerator alone) twice: with every layer's multipliers in DSP blocks and with every layer's
in logic (``LayerFold(..., multipliers="logic")``). The table gives LUT4, flip-flops and DSP blocks,
measured and estimated, and the LUT4s and flip-flops a multiplier bit built in logic costs by
Yosys: the difference between the two builds over the multiplier bits that moved into logic
(``logic_mult_bits`` and ``const_mult_bits``, less the ``lut_mult_bits`` Yosys had in LUTs
already), whose least squares over the designs are the estimator's ``logic_mult_bits``
coefficients. Run it from the repository root (a few minutes a design):

    python benchmarks/logic_multipliers.py [--family ice40|ecp5] [--only NAME]
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

from hwnn.flow.report import format_table

def networks():
    """``{name: (network, max_lanes)}`` of the calibration designs."""
    from hwnn.flow.demo import train_digits_mlp
    from hwnn.quant import QuantOptions, from_sklearn, quantize_network
    from hwnn.quant.synthetic import random_network
    model, (x_train, *_rest) = train_digits_mlp(0)
    digits = quantize_network(from_sklearn(model), x_train,
                              QuantOptions(weights="int8", acts="uint8"), name="digits_int8")
    small = random_network(np.random.default_rng(5), [32, 16, 8], weight_formats=["int4"] * 2,
                           act_formats=["uint4"], input_format="uint4", stages=["requant"],
                           name="int4_mlp")
    return {"digits_int8_8": (digits, 8), "int4_mlp_16": (small, 16),
            "digits_int8_32": (digits, 32)}


def measure(network, folding, family):
    """``(measured, estimated, features)`` of ``network`` folded as ``folding``."""
    from hwnn.flow.generate import generate, load_design
    from hwnn.planning.estimate import design_features, estimate, measured
    from hwnn.tools.synth import synthesize
    from hwnn.tools.toolchain import setup_env
    setup_env()
    with tempfile.TemporaryDirectory(prefix="hwnn-logicmult-") as folder:
        design = load_design(generate(network, Path(folder) / "design", fold=folding))
        report = synthesize(design.verilog, design.top, family)
    return (measured(report.cells, family), estimate(network, family, fold=folding),
            design_features(network, family, fold=folding))


def main():
    from hwnn.rtl.folding import auto_folding
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=("ice40", "ecp5"), default="ice40")
    parser.add_argument("--only", default=None, help="one design by name")
    args = parser.parse_args()
    rows = []
    for name, (network, lanes) in networks().items():
        if args.only not in (None, name):
            continue
        folding = auto_folding(network, lanes)
        results = {}
        for multipliers in ("dsp", "logic"):
            folds = tuple(dataclasses.replace(fold, multipliers=multipliers) for fold in folding)
            results[multipliers] = measure(network, folds, args.family)
            got, guess, _ = results[multipliers]
            rows.append((name, multipliers, " ".join(f.label for f in folds),
                         f"{got['lut4']} / {guess['lut4']}", f"{got['ff']} / {guess['ff']}",
                         f"{got['dsp']} / {guess['dsp']}"))
            print(*rows[-1], sep="  ", file=sys.stderr, flush=True)
        logic, dsp = results["logic"][2], results["dsp"][2]
        bits = (logic["logic_mult_bits"] + logic["const_mult_bits"] - dsp["lut_mult_bits"]
                + logic["lut_mult_bits"])
        lut = results["logic"][0]["lut4"] - results["dsp"][0]["lut4"]
        ff = results["logic"][0]["ff"] - results["dsp"][0]["ff"]
        rows.append((name, "logic - dsp", f"{bits:g} bits to logic",
                     f"{lut} ({lut / bits:.2f}/bit)", f"{ff} ({ff / bits:.2f}/bit)", ""))
    print(format_table(("design", "multipliers", "folding", "LUT4 Yosys / est.",
                        "FF Yosys / est.", "DSP Yosys / est."), rows))


if __name__ == "__main__":
    main()
