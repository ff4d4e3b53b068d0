"""Generated dataflow designs of convolutional networks: Verilog under cocotb (Icarus and
Verilator) against the golden model, and resets at any cycle."""

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.quant.synthetic import random_cnn
from hwnn.rtl.folding import LayerFold
from hwnn.sim.simulate import simulate, simulate_resets

#: Two small CNNs: int8 with a padded convolution (every border window), an overlapping
#: pool and a strided 1x1 convolution; binary with an OR pool and a depthwise-free chain.
NETWORKS = {
    "int8": lambda: random_cnn(np.random.default_rng(11), (7, 6, 2), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=(2, 1, 1, 2), weight_format="int8",
                        out_format="uint8", stage="requant")),
        ("maxpool2d", dict(kernel=3, stride=2)),
        ("conv2d", dict(out_channels=4, kernel=2, depthwise=True, weight_format="ternary",
                        out_format="uint2", stage="thresholds")),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], input_format="uint8", in_zero_point=4, name="cnn_int8"),
    "binary": lambda: random_cnn(np.random.default_rng(12), (8, 8, 2), [
        ("conv2d", dict(out_channels=4, kernel=3, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=4, kernel=3, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("dense", dict(out_features=2, weight_format="binary", stage="accumulator")),
    ], input_format="binary", name="cnn_binary"),
}


NETWORKS["hardwired"] = NETWORKS["int8"]

#: The int8 design's depthwise convolution takes two channels and two kernel positions a
#: beat (two line buffer copies in the window unit); the binary one is folded automatically;
#: the hardwired one is the int8 network with every weight in adder graphs (a convolution a
#: whole window a cycle).
OPTIONS = {
    "int8": {"fold": (LayerFold(4, 2), LayerFold(1, 1), LayerFold(2, 2), LayerFold(1, 1))},
    "binary": {"max_lanes": 16},
    "hardwired": {"fold": "hardwired"},
}


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    designs = {}

    def get(name):
        if name not in designs:
            path = tmp_path_factory.mktemp("designs") / name
            designs[name] = load_design(generate(NETWORKS[name](), path, **OPTIONS[name]))
        return designs[name]
    return get


def random_codes(network, count, seed=0):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


@pytest.mark.parametrize("name", ["int8", "hardwired"])
def test_amaranth_reset_at_any_cycle(design, name):
    chosen = design(name)
    result = simulate_resets(chosen, random_codes(chosen.network, 4), simulator="amaranth",
                             points=8)
    assert not result.mismatches, "\n".join(result.mismatches[:3])
    assert len(set(result.reset_points)) == 8
    assert max(result.reset_points) > result.span // 2


@pytest.mark.cocotb
@pytest.mark.parametrize("name", NETWORKS)
def test_icarus_matches_golden_with_backpressure(design, name):
    chosen = design(name)
    codes = random_codes(chosen.network, 6, seed=1)
    result = simulate(chosen, codes, simulator="icarus", backpressure=True, seed=3)
    assert result.passed, [m.describe() for m in result.mismatches[:3]]


@pytest.mark.cocotb
@pytest.mark.slow
def test_verilator_matches_golden_at_the_expected_rate(design):
    chosen = design("binary")
    codes = random_codes(chosen.network, 8, seed=2)
    steady = simulate(chosen, codes, simulator="verilator")
    assert steady.passed, [m.describe() for m in steady.mismatches[:3]]
    assert steady.cycles_per_inference <= 1.05 * steady.expected_cycles
    stalled = simulate(chosen, codes, simulator="verilator", backpressure=True, seed=5)
    assert stalled.passed, [m.describe() for m in stalled.mismatches[:3]]


@pytest.mark.cocotb
@pytest.mark.parametrize("name", ["int8", "hardwired"])
def test_icarus_without_stalls_counts_cycles_as_amaranth(design, name):
    # Without stalls the cocotb test sleeps through the cycles in which nothing can happen
    # (a convolution works many cycles per input beat); Amaranth's simulator steps every one.
    chosen = design(name)
    codes = random_codes(chosen.network, 4, seed=4)
    runs = [simulate(chosen, codes, simulator=simulator) for simulator in ("icarus", "amaranth")]
    assert all(run.passed for run in runs)
    icarus, amaranth = ((run.cycles_per_inference, run.latency, run.total_cycles) for run in runs)
    assert icarus == amaranth
    assert runs[0].cycles_per_inference <= 1.05 * runs[0].expected_cycles
