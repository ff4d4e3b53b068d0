"""Threshold stage benchmark: Verilog size, conversion time and Yosys area against the number
of levels.

One output stage (:class:`hwnn.rtl.stage.OutputStage`, plain, as the systolic and sparse
engines use it) of a 16 -> 8 layer (uint8 inputs, int8 weights, a quarter of the channels
descending) on 2 lanes, for outputs of 2 to 65536 levels (1 to 65535 thresholds per channel).
For each it prints the Verilog's size (all of it, and without the ROMs' contents), the time
to convert it, the stage's latency and, from YoWASP Yosys, ECP5 LUT4 and flip-flops. Run it
from the repository root:

    python benchmarks/thresholds.py [--formats binary,uint2,uint4,uint8] [--no-area]
"""

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth import Signal, Value
from amaranth.back import verilog

from hwnn.planning.estimate import measured
from hwnn.quant.synthetic import random_dense
from hwnn.flow.report import format_table
from hwnn.rtl.stage import OutputStage
from hwnn.tools.synth import synthesize
from hwnn.tools.toolchain import setup_env


def stage_verilog(out_format):
    """The Verilog of the benchmark's stage for ``out_format`` outputs."""
    layer = random_dense(np.random.default_rng(1), 16, 8, in_format="uint8",
                         weight_format="int8", out_format=out_format, stage="thresholds")
    stage = OutputStage(layer, 2)
    ports = [Value.cast(value) for _, _, value in stage.signature.flatten(stage)
             if isinstance(Value.cast(value), Signal)]
    return stage, verilog.convert(stage, name="stage", ports=ports, emit_src=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--formats", default="binary,uint2,uint4,uint8,uint16")
    parser.add_argument("--no-area", action="store_true", help="skip Yosys")
    args = parser.parse_args()
    setup_env()
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwnn-thresholds-") as work:
        for fmt in args.formats.split(","):
            print(f"  {fmt}", file=sys.stderr, flush=True)
            start = time.perf_counter()
            stage, text = stage_verilog(fmt)
            seconds = time.perf_counter() - start
            logic = re.sub(r"  initial begin\n(?:    .*\n)*?  end\n", "", text)
            row = [fmt, stage.layer.stage.values.shape[1], stage.latency,
                   f"{len(text) / 1e3:.1f}", f"{len(logic) / 1e3:.1f}", f"{seconds:.1f}"]
            if not args.no_area:
                path = Path(work) / f"stage_{fmt}.v"
                path.write_text(text)
                used = measured(synthesize(path, "stage", "ecp5").cells, "ecp5")
                row += [used["lut4"], used["ff"], used["bram"]]
            rows.append(row)
    header = ["outputs", "thresholds", "latency", "Verilog kB", "without ROM data kB",
              "convert s"]
    if not args.no_area:
        header += ["ECP5 LUT4", "FF", "BRAM"]
    print(format_table(header, rows))


if __name__ == "__main__":
    main()
