# amaranth: UnusedElaboratable=no
"""Yosys synthesis of generated units: binary lanes use no DSPs, int8 lanes do."""

import numpy as np
import pytest
from amaranth.back import verilog

from hwnn.quant.synthetic import random_dense
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.synth import synthesize


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
