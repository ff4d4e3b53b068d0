"""The estimator against Yosys on designs it was not fitted on."""

import pytest

from hwnn.planning.estimate import estimate, measured
from hwnn.flow.generate import generate, load_design
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.tools.synth import synthesize

#: The tolerance of this test; ``benchmarks/estimator.py`` reports the errors themselves.
TOLERANCE = 0.25


@pytest.fixture(scope="module")
def digits_design(tmp_path_factory, digits_mlp):
    """The digits int8 MLP at a 32-lane budget (held out of the calibration)."""
    model, (x_train, *_rest) = digits_mlp
    network = quantize_network(from_sklearn(model), x_train,
                               QuantOptions(weights="int8", acts="uint8"), name="digits_int8")
    return load_design(generate(network, tmp_path_factory.mktemp("est") / "d", max_lanes=32))


@pytest.mark.synth
@pytest.mark.slow
@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_estimates_are_close_to_yosys_on_a_held_out_design(digits_design, family):
    truth = measured(synthesize(digits_design.verilog, digits_design.top, family).cells, family)
    guess = estimate(digits_design.network, family, "dataflow", max_lanes=32)
    for resource in ("lut4", "ff"):
        assert abs(guess[resource] / truth[resource] - 1) <= TOLERANCE, (resource, guess, truth)
    # DSP blocks follow Yosys' mapping rules: the int8 lanes and requantization multipliers.
    assert abs(guess["dsp"] - truth["dsp"]) <= max(2, 0.1 * truth["dsp"]), (guess, truth)
