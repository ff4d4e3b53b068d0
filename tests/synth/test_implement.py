"""``hwnn synth``: area, fit and Fmax of a design folder through a register harness."""

import json
import re

import numpy as np
import pytest

from hwnn.cli import main
from hwnn.planning.estimate import estimate
from hwnn.flow.generate import generate, load_design
from hwnn.tools.implement import check_estimate
from hwnn.quant.synthetic import random_network
from hwnn.tools.synth import CAPACITY, DoesNotFit, SynthReport, check_fit, utilization


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture(scope="module")
def int8_design(tmp_path_factory):
    network = random_network(np.random.default_rng(0), [16, 12, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], name="tiny")
    return generate(network, tmp_path_factory.mktemp("d") / "tiny", max_lanes=24)


@pytest.mark.synth
def test_synth_reports_area_fmax_and_throughput(capsys, int8_design):
    status, text, err = run(capsys, "synth", int8_design, "--family", "ecp5")
    assert (status, err) == (0, ""), text
    report = json.loads((int8_design / "synth" / "ecp5-85f" / "report.json").read_text())
    manifest = json.loads((int8_design / "manifest.json").read_text())
    assert report["utilization"]["dsp"]["used"] >= manifest["lanes"] // 2
    assert report["utilization"]["lut4"]["available"] == CAPACITY["ecp5-85f"]["lut4"]
    assert 10 < report["fmax_mhz"] < 500
    assert report["inferences_per_second"] == pytest.approx(
        report["fmax_mhz"] * 1e6 / manifest["cycles_per_inference"])
    assert "on ECP5-85F" in text and "inferences per second" in text
    assert re.search(r"^synthesized in \d+ s \(\d+ LUT4, .*\); placing and routing ...$",
                     text, re.MULTILINE), text
    # The int8 lanes' operand and product registers went into the DSP blocks; the
    # flip-flop count leaves them out.
    packed = report["packed"]
    assert packed["dsp_output_registers"] >= manifest["lanes"] // 2
    assert packed["dsp_input_registers"] >= manifest["lanes"]
    assert report["utilization"]["ff"]["used"] == (
        report["cells"]["TRELLIS_FF"] - packed["flip_flops"])
    assert f"{packed['flip_flops']} pipeline flip-flops moved into" in text


@pytest.mark.synth
def test_a_design_that_does_not_fit_fails_with_what_is_over(capsys, int8_design):
    # --force: past the estimate (24 int8 lanes on 8 DSP blocks), Yosys' count decides.
    status, _, err = run(capsys, "synth", int8_design, "--family", "ice40", "--force")
    assert status == 2
    assert err.startswith("hwnn: error: The design does not fit the ICE40-UP5K: it needs DSP ")
    assert err.count("\n") == 1


def no_tools(*args, **kwargs):
    raise AssertionError(f"a tool ran: {args}")


def test_a_design_estimated_far_over_the_device_is_refused_before_yosys(
        capsys, monkeypatch, int8_design):
    monkeypatch.setattr("hwnn.tools.synth.subprocess.run", no_tools)
    before = sorted(int8_design.rglob("*"))
    status, _, err = run(capsys, "synth", int8_design, "--family", "ice40")
    assert status == 2 and err.count("\n") == 1
    match = re.fullmatch(r"hwnn: error: The design does not fit the ICE40-UP5K: its estimate "
                         r"needs DSP (\d+) of 8 \(\d+\.\d times\), more than 2 times the "
                         r"device, so it was not synthesized \(--force tries anyway\)\n", err)
    assert match and int(match[1]) > 16, err
    assert sorted(int8_design.rglob("*")) == before        # nothing written


def test_a_design_estimated_a_little_over_is_left_to_yosys(tmp_path):
    network = random_network(np.random.default_rng(0), [16, 12, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], name="modest")
    design = load_design(generate(network, tmp_path / "d", max_lanes=12))
    guess = estimate(network, "ice40", fold=design.folding)
    assert CAPACITY["ice40-up5k"]["dsp"] < guess["dsp"] <= 2 * CAPACITY["ice40-up5k"]["dsp"]
    check_estimate(design, "ice40-up5k")      # over, but within the estimator's error


def test_fit_check_names_every_resource_over():
    report = SynthReport("ice40", "top", {"SB_LUT4": 6000, "SB_MAC16": 9, "SB_DFF": 10}, 1.0)
    assert utilization(report, "ice40-up5k")["dsp"] == (9, 8)
    with pytest.raises(DoesNotFit, match=r"needs LUT4 6000 of 5280 \(\+720\), DSP 9 of 8 "
                                         r"\(\+1\)$"):
        check_fit(report, "ice40-up5k")
    check_fit(SynthReport("ice40", "top", {"SB_LUT4": 10}, 1.0), "ice40-up5k")


@pytest.mark.parametrize("argv, message", [
    (["--family", "gowin"], "invalid choice: 'gowin'"),
    (["--family", "ice40", "--device", "ecp5-25f"], "--device ecp5-25f is not an ice40 device"),
])
def test_synth_refuses_bad_options(capsys, int8_design, argv, message):
    status, _, err = run(capsys, "synth", int8_design, *argv)
    assert status == 2 and message in err


def test_synth_needs_a_design_folder(capsys, tmp_path):
    status, _, err = run(capsys, "synth", tmp_path)
    assert status == 2 and "is not an hwnn design folder" in err
