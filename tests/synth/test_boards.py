"""Bitstreams for the boards of ``hwnn/boards/``: the digits int8 MLP and a binary MLP, each behind
the host link, built with the YoWASP tools; and the build command's errors."""

import json
import re

import numpy as np
import pytest

from hwnn.boards import BOARD_NAMES, board
from hwnn.tools.build import build_board, format_build_report
from hwnn.cli import main
from hwnn.flow.generate import generate
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_network, sample_network


@pytest.fixture(scope="module")
def designs(tmp_path_factory, digits_mlp):
    """The digits int8/uint8 MLP at 4 lanes (it fits an iCE40UP5K's 8 DSPs) and a binary
    MLP 64-256-256-10 at a 64-lane budget."""
    folder = tmp_path_factory.mktemp("boards")
    model, (x_train, *_rest) = digits_mlp
    digits = quantize_network(from_sklearn(model), x_train,
                              QuantOptions(weights="int8", acts="uint8"), name="digits_int8")
    binary = random_network(np.random.default_rng(0), [64, 256, 256, 10],
                            weight_formats=["binary"] * 3, act_formats=["binary", "binary"],
                            input_format="binary", name="binary_mlp")
    return {"digits": generate(digits, folder / "digits", max_lanes=4),
            "binary": generate(binary, folder / "binary", max_lanes=64)}


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("board_name", BOARD_NAMES)
@pytest.mark.parametrize("kind", ["digits", "binary"])
def test_bitstreams_build_for_every_board(designs, board_name, kind):
    said = []
    report = build_board(designs[kind], board_name, log=said.append)
    packer = "icepack" if board(board_name).device.startswith("ice40") else "ecppack"
    assert [line.split(" ...")[0] for line in said] == [
        "  synthesis (Yosys)", "  place and route (nextpnr)", f"  packing ({packer})"]
    assert all(re.fullmatch(r"  .* \.\.\. \(\d+ s so far\)", line) for line in said), said
    folder = designs[kind] / "build" / board_name
    assert (folder / report["bitstream"]).stat().st_size > 10_000
    assert json.loads((folder / "report.json").read_text()) == report
    target = board(board_name)
    assert report["device"] == target.device
    logic = "ICESTORM_LC" if target.device.startswith("ice40") else "TRELLIS_COMB"
    assert 0 < report["utilization"][logic]["used"] < report["utilization"][logic]["available"]
    assert report["fmax_mhz"] > 10
    assert report["link_fmax_mhz"] == report["fmax_mhz"]        # one clock
    assert (folder / "top.il").read_text().count("cell $adff ") < 5
    assert "host link: " not in format_build_report(report)
    # On ECP5 the build moved pipeline registers into block RAMs (both designs have them).
    assert (report["packed"].get("bram_output_registers", 0) > 0) == (
        target.device.startswith("ecp5"))
    manifest = json.loads((designs[kind] / "manifest.json").read_text())
    assert report["inferences_per_second_at_clock"] == pytest.approx(
        report["clock_mhz"] * 1e6 / manifest["cycles_per_inference"])


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("board_name, clock_mhz, seeds",
                         [("icebreaker", 30, 2), ("ulx3s-85f", 75, 1)])
def test_a_pll_clocks_the_design_faster_than_the_board_clock(designs, board_name, clock_mhz,
                                                             seeds):
    said = []
    report = build_board(designs["binary"], board_name, clock_mhz=clock_mhz, seeds=seeds,
                         log=said.append)
    folder = designs["binary"] / "build" / board_name
    if seeds == 1:
        assert report["seeds"] is None
    else:
        # Place and route ran with each seed; the one kept is alone in the folder.
        sweep = report["seeds"]
        assert sweep["seeds"] == seeds and set(sweep["fmax_mhz"]) == {"1", "2"}
        assert report["fmax_mhz"] == sweep["fmax_mhz"][str(sweep["best"])]
        assert sorted(line.split(":")[0] for line in said if "seed" in line) == [
            "  place and route, seed 1 of 2", "  place and route, seed 2 of 2"]
        assert not list(folder.glob("*seed*"))
        assert f"place and route: seed {sweep['best']} of 2 kept" in format_build_report(report)
    target = board(board_name)
    pll = "ICESTORM_PLL" if target.device.startswith("ice40") else "EHXPLLL"
    assert report["utilization"][pll]["used"] == 1
    assert report["clock_mhz"] == pytest.approx(clock_mhz, rel=0.01)
    assert report["clock_mhz"] == report["pll"]["output_mhz"]
    assert report["board_clock_mhz"] == target.make_platform().default_clk_frequency / 1e6
    # The registers reset asynchronously (an iCE40's synchronous reset would go through the
    # enable logic of every register with an enable); without a PLL the platform's domain
    # resets them synchronously.
    netlist = (folder / "top.il").read_text()
    assert netlist.count("cell $adff ") > 50
    # The host link runs at the board clock, timed apart from the accelerator's.
    assert report["link_fmax_mhz"] > report["board_clock_mhz"]
    assert report["link_fmax_mhz"] != report["fmax_mhz"]
    assert report["timing_met"] == (report["fmax_mhz"] >= report["clock_mhz"])
    text = format_build_report(report)
    assert (f"host link: Fmax {report['link_fmax_mhz']:.1f} MHz against the board clock "
            f"{report['board_clock_mhz']:g} MHz: met") in text.splitlines()
    manifest = json.loads((designs["binary"] / "manifest.json").read_text())
    assert report["inferences_per_second_at_clock"] == pytest.approx(
        report["clock_mhz"] * 1e6 / manifest["cycles_per_inference"])


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.synth
def test_build_refuses_a_design_that_does_not_fit(capsys, tmp_path):
    path = generate(sample_network("int8", seed=1), tmp_path / "d", max_lanes=16)
    status, _, err = run(capsys, "build", path, "--board", "icebreaker")
    assert status == 2
    assert err.startswith("hwnn: error: The design does not fit the icebreaker (ICE40-UP5K): "
                          "it needs ICESTORM_DSP ")
    assert err.count("\n") == 1


def test_build_refuses_a_design_estimated_far_over_before_any_tool(capsys, monkeypatch,
                                                                   tmp_path):
    network = random_network(np.random.default_rng(0), [16, 12, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], name="modest")
    path = generate(network, tmp_path / "d", max_lanes=24)
    earlier = path / "build" / "icebreaker" / "report.json"   # an earlier build's, kept
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")

    def no_tools(*args, **kwargs):
        raise AssertionError(f"a tool ran: {args}")

    monkeypatch.setattr("hwnn.tools.build.subprocess.run", no_tools)
    status, _, err = run(capsys, "build", path, "--board", "icebreaker")
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("hwnn: error: The design does not fit the icebreaker (ICE40-UP5K): "
                          "its estimate needs DSP "), err
    assert err.endswith("so it was not synthesized (--force tries anyway)\n"), err
    assert earlier.read_text() == "{}"


@pytest.mark.synth
@pytest.mark.slow
def test_an_mnist_size_mlp_builds_for_the_icebreaker_with_its_weights_in_spram(capsys,
                                                                                tmp_path):
    """784-128-10 int8 (794 kbit of weights; the UP5K's block RAMs hold 120): its weights
    load from the board's flash into the four SPRAM blocks; the build says how to write
    them there, and the flash's six pins are used."""
    mnist = random_network(np.random.default_rng(1), [784, 128, 10],
                           weight_formats=["int8", "int8"], act_formats=["uint8"],
                           stages=["requant"], name="mnist")
    path = generate(mnist, tmp_path / "mnist", arch="systolic", array="2x2", batch=4,
                    weights="loaded")
    status, out, err = run(capsys, "build", path, "--board", "icebreaker")
    assert (status, err) == (0, "")
    report = json.loads((path / "build" / "icebreaker" / "report.json").read_text())
    used = {name: entry["used"] for name, entry in report["utilization"].items()}
    assert used["ICESTORM_SPRAM"] == 4 and used["ICESTORM_RAM"] <= 30
    assert used["SB_IO"] == 2 + 6 + 1          # UART, flash, clock
    command = f"iceprog -o 1M {path / 'weights.bin'}"
    assert report["flash"] == {"image": str(path / "weights.bin"), "offset": 0x100000,
                               "command": command}
    assert f"write them there once with {command}" in out
    # A byte per int8 weight (2x2 tiles of these layers need no padding).
    assert (path / "weights.bin").stat().st_size == 784 * 128 + 128 * 10


def test_a_failing_tool_names_its_error_line(monkeypatch, tmp_path):
    """A tool that fails (here a Yosys assertion, which quiet Yosys writes to its report
    only) is named in the error with the logs' folder."""
    from hwnn.errors import ToolError
    path = generate(sample_network("int8", seed=1), tmp_path / "d", max_lanes=4)

    def failing(folder, log, started):
        (folder / "top.rpt").write_text("2.46.24.7. Executing ABC\nERROR: Assert `wire' "
                                        "failed in abc_ops_reintegrate.cc:596.\n")
        return 1, ""

    monkeypatch.setattr("hwnn.tools.build._run_script", failing)
    with pytest.raises(ToolError, match=r"^The icebreaker build failed: ERROR: Assert `wire' "
                                        r"failed in abc_ops_reintegrate.cc:596. \(logs in "):
        build_board(path, "icebreaker")


@pytest.mark.synth
@pytest.mark.slow
def test_an_abc9_failure_on_an_ecp5_board_is_built_again_with_abc(monkeypatch, tmp_path):
    """Yosys' ABC9 failing an assertion (as on CNV's 8x16 overlay for the ULX3S) makes an
    ECP5 board build synthesize again with the classic ABC mapper, and go on."""
    import hwnn.tools.build as build
    path = generate(sample_network("int8", seed=1), tmp_path / "d", max_lanes=4)
    real_run, scripts = build._run_script, []

    def abc9_fails_once(folder, log, started):
        scripts.append((folder / "top.ys").read_text())
        if len(scripts) == 1:
            (folder / "top.rpt").write_text("2.46.17.7. Executing ABC_OPS_REINTEGRATE pass\n"
                                            "ERROR: Assert `GetSize(conn.first) == "
                                            "GetSize(conn.second)' failed.\n")
            return 1, ""
        return real_run(folder, log, started)

    monkeypatch.setattr(build, "_run_script", abc9_fails_once)
    said = []
    report = build_board(path, "ulx3s-85f", log=said.append)
    assert "abc -lut 4" not in scripts[0] and "abc -lut 4 -dress" in scripts[1]
    assert any("ABC9 LUT mapper failed" in line for line in said), said
    assert (path / "build" / "ulx3s-85f" / report["bitstream"]).stat().st_size > 10_000
    assert report["utilization"]["TRELLIS_COMB"]["used"] > 0


@pytest.mark.parametrize("clock_mhz", [None, 48])
def test_the_flash_reader_runs_at_the_board_clock(tmp_path, clock_mhz):
    """With or without a PLL, the reader (in the host link's domain) counts 12 MHz cycles:
    SCK at 6 MHz (divisor 1), at least 5 us of wake-up wait (60 cycles, or one more)."""
    from hwnn.boards import BoardDesign
    from hwnn.flow.generate import load_design
    from hwnn.rtl.clocking import pll_settings
    design = load_design(generate(sample_network("int8", seed=1), tmp_path / "d",
                                  arch="systolic", array="2x4", batch=2, weights="loaded"))
    target = board("icebreaker")
    pll = None if clock_mhz is None else pll_settings("ice40", 12e6, clock_mhz * 1e6)
    settings = BoardDesign(design, target, pll=pll).flash_reader(target.make_platform())
    assert settings["offset"] == 0x100000 and settings["divisor"] == 1
    assert settings["wake_cycles"] in (60, 61)
    assert BoardDesign(design, target, pll=pll).divisor(target.make_platform()) == 104


def test_a_design_with_loaded_weights_is_refused_for_a_board_without_a_flash_reader(
        capsys, tmp_path):
    path = generate(sample_network("int8", seed=1), tmp_path / "d", arch="systolic",
                    array="2x4", batch=2, weights="loaded")
    status, _, err = run(capsys, "build", path, "--board", "ulx3s-85f")
    assert status == 2 and err.count("\n") == 1
    assert ("The ulx3s-85f has no flash reader in hwnn: a design whose weights are loaded at "
            "start-up builds for icebreaker; generate it with weights 'rom' for the "
            "ulx3s-85f") in err
    assert not (path / "build").exists()


@pytest.mark.parametrize("argv, message", [
    (["--board", "de10"], "invalid choice: 'de10'"),
    (["--board", "icebreaker", "--baud", "9000000"],
     "9000000 baud is too fast for the icebreaker's 12 MHz clock"),
    (["--board", "icebreaker", "--clock-mhz", "500"],
     "The ice40 PLL cannot make 500 MHz from 12 MHz (nearest 270.000 MHz"),
    (["--board", "ulx3s-85f", "--clock-mhz", "-5"],
     "argument --clock-mhz: must be a positive number, not '-5'"),
    (["--board", "icebreaker", "--seeds", "0"],
     "argument --seeds: must be a positive integer, not '0'"),
])
def test_build_refuses_bad_options(capsys, tmp_path, argv, message):
    path = generate(sample_network("int8", seed=1), tmp_path / "d", max_lanes=4)
    status, _, err = run(capsys, "build", path, *argv)
    assert status == 2 and message in err and err.count("\n") == 1


def test_unknown_board_names_the_boards():
    with pytest.raises(ValueError, match="Unknown board 'zedboard'; available: icebreaker, "
                                         "ulx3s-85f, orangecrab-85f"):
        board("zedboard")
