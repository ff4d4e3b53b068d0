# amaranth: UnusedElaboratable=no
"""Yosys synthesis of generated units: binary lanes use no DSPs, int8 lanes do."""

import numpy as np
import pytest
from amaranth.back import verilog

from hwnn.quant.synthetic import random_dense
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.synth import synthesize


def unit_verilog(tmp_path, weight_format, in_format, out_format, stage, pe, simd):
    layer = random_dense(np.random.default_rng(0), 16, 4, in_format=in_format,
                         weight_format=weight_format, out_format=out_format, stage=stage)
    path = tmp_path / "unit.v"
    path.write_text(verilog.convert(MatrixVectorUnit(layer, pe=pe, simd=simd), name="unit"))
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


def test_synthesize_refuses_unknown_family(tmp_path):
    with pytest.raises(ValueError, match=r"^Unknown FPGA family 'xc7'; available: ecp5, ice40$"):
        synthesize(tmp_path / "x.v", "x", "xc7")
