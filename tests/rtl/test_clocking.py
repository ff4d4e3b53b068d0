# amaranth: UnusedElaboratable=no
"""PLL settings for a faster clock than the board's."""

import pytest

from hwnn.rtl.clocking import PllDomain, pll_settings


def ice40_output(reference, p):
    return reference / (p["DIVR"] + 1) * (p["DIVF"] + 1) / 2 ** p["DIVQ"]


@pytest.mark.parametrize("target", [16e6, 24e6, 30e6, 39.75e6, 48e6, 100e6, 250e6])
def test_ice40_settings_stay_within_the_pll_ranges(target):
    settings = pll_settings("ice40", 12e6, target)
    p = settings.parameters
    pfd = 12e6 / (p["DIVR"] + 1)
    assert 10e6 <= pfd <= 133e6
    assert 533e6 <= pfd * (p["DIVF"] + 1) <= 1066e6
    assert settings.output == pytest.approx(ice40_output(12e6, p))
    assert abs(settings.output - target) <= 0.01 * target


def test_ice40_48_mhz_from_12_is_the_well_known_setting():
    # DIVR 0, DIVF 63, DIVQ 4: 12 MHz x 64 / 16 (the setting icepll prints for 12 -> 48 MHz).
    assert pll_settings("ice40", 12e6, 48e6).parameters == {
        "DIVR": 0, "DIVF": 63, "DIVQ": 4, "FILTER_RANGE": 1}


@pytest.mark.parametrize("reference, target", [(25e6, 75e6), (25e6, 150e6), (48e6, 100e6),
                                               (25e6, 133.33e6)])
def test_ecp5_settings_stay_within_the_pll_ranges(reference, target):
    settings = pll_settings("ecp5", reference, target)
    p = settings.parameters
    assert reference / p["CLKI_DIV"] >= 3.125e6
    assert settings.output == pytest.approx(reference / p["CLKI_DIV"] * p["CLKFB_DIV"])
    assert 400e6 <= settings.output * p["CLKOP_DIV"] <= 800e6
    assert p["CLKOP_CPHASE"] == p["CLKOP_DIV"] - 1
    assert abs(settings.output - target) <= 0.01 * target


@pytest.mark.parametrize("family, target, error, message", [
    ("ice40", 500e6, ValueError, "The ice40 PLL cannot make 500 MHz from 12 MHz"),
    ("ice40", 5e6, ValueError, "The ice40 PLL cannot make 5 MHz"),
    ("ice40", -1, ValueError, "The clock must be a positive frequency, not -1"),
    ("ice40", "fast", ValueError, "The clock must be a positive frequency, not 'fast'"),
    ("gowin", 50e6, ValueError, "No PLL for FPGA family 'gowin'"),
])
def test_impossible_clocks_are_refused(family, target, error, message):
    with pytest.raises(error, match=message):
        pll_settings(family, 12e6, target)


def test_the_domain_needs_settings():
    with pytest.raises(TypeError, match="settings must be a PllSettings"):
        PllDomain({"DIVR": 0}, None)
