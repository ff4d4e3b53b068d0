"""A reset at any cycle leaves every architecture as at power-on: vectors stream with random
stalls, ``rst`` rises at cycles swept across their processing, and every output after the
reset equals the golden model's, in Amaranth's simulator and as Verilog under cocotb."""

import re

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.quant.synthetic import random_network, sample_cnn, sample_network
from hwnn.rtl.folding import LayerFold
from hwnn.sim.golden import run_network
from hwnn.sim.resets import check_trials, stream_words
from hwnn.sim.simulate import simulate_resets


def one_layer():
    """A single uint8 8 -> 4 layer with int8 weights (where the sparse engine once kept the
    interrupted vector's partial sums)."""
    return random_network(np.random.default_rng(1), [8, 4], weight_formats=["int8"],
                          act_formats=[], name="one_layer")


def pruned():
    return random_network(np.random.default_rng(3), [8, 6, 4], weight_formats=["int8", "int8"],
                          act_formats=["uint8"], stages=["requant"], density=0.5,
                          name="pruned")


#: Design name: (network, generate() options).
DESIGNS = {
    "sparse_one_layer": (one_layer, {"arch": "sparse", "pes": 2}),
    "sparse": (pruned, {"arch": "sparse", "pes": 3, "queue_depth": 2}),
    "dataflow_one_layer": (one_layer, {"arch": "dataflow"}),
    "dataflow": (lambda: sample_network("mixed", seed=4),
                 {"arch": "dataflow", "fold": (LayerFold(2, 2),) * 3}),
    "dataflow_hardwired": (lambda: sample_network("mixed", seed=4),
                           {"arch": "dataflow", "fold": "hardwired"}),
    "systolic_one_layer": (one_layer, {"arch": "systolic", "array": "4x4", "batch": 4}),
    "systolic": (lambda: sample_network("int4", seed=2),
                 {"arch": "systolic", "array": "2x4", "batch": 4}),
    "systolic_cnn": (sample_cnn, {"arch": "systolic", "array": "2x4", "batch": 2}),
    "systolic_narrow_stages": (lambda: sample_network("int8", seed=2),
                               {"arch": "systolic", "array": "2x4", "batch": 3,
                                "requant": "logic", "stage_lanes": 1}),
    # Weights loaded after every reset (a reset during the load starts it again).
    "systolic_loaded": (lambda: sample_network("ternary", seed=2),
                        {"arch": "systolic", "array": "2x4", "batch": 2, "weights": "loaded"}),
}


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """The design of a :data:`DESIGNS` name, generated once per module (so the simulators'
    builds are shared between tests)."""
    folder = tmp_path_factory.mktemp("reset_designs")
    made = {}

    def get(name):
        if name not in made:
            network, options = DESIGNS[name]
            made[name] = load_design(generate(network(), folder / name, **options))
        return made[name]
    return get


def random_codes(network, count=16, seed=2):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


@pytest.mark.parametrize("name", DESIGNS)
def test_amaranth_simulator_reset_at_any_cycle(design, name):
    chosen = design(name)
    result = simulate_resets(chosen, random_codes(chosen.network), simulator="amaranth",
                             points=10)
    assert not result.mismatches, "\n".join(result.mismatches[:3])
    assert len(set(result.reset_points)) == 10
    assert max(result.reset_points) > result.span // 2


#: Every architecture on Icarus (quick to build), multi-layer and the one-layer sparse design;
#: Verilator (10-50 s per build) on the multi-layer sparse design.
VERILOG_RUNS = [pytest.param(name, "icarus", marks=pytest.mark.cocotb)
                for name in ("sparse_one_layer", "sparse", "dataflow", "dataflow_hardwired",
                             "systolic", "systolic_cnn", "systolic_narrow_stages",
                             "systolic_loaded")] + [
    pytest.param("sparse", "verilator", marks=[pytest.mark.cocotb, pytest.mark.slow])]


@pytest.mark.parametrize("name, simulator", VERILOG_RUNS)
def test_verilog_reset_at_any_cycle(design, name, simulator):
    chosen = design(name)
    result = simulate_resets(chosen, random_codes(chosen.network), simulator=simulator,
                             points=32, seed=5)
    assert not result.mismatches, "\n".join(result.mismatches[:3])
    # The sweep covered the whole span: 32 distinct cycles of it, the first and the last third.
    assert len(set(result.reset_points)) == 32
    assert min(result.reset_points) < result.span // 3 < 2 * result.span // 3 \
        < max(result.reset_points)
    # A design with a load stream had resets while it took its words.
    if (words := chosen.load_words()) is not None:
        assert min(result.reset_points) < len(words) < result.span


def test_a_wrong_output_after_a_reset_names_the_input_and_both_codes():
    network = one_layer()
    codes = random_codes(network, 4)
    expected = run_network(network, codes)
    words = [stream_words(expected[i], network.output.format, 4)[0][0] for i in range(4)]
    trial = {"reset_at": 7, "reset_cycles": 2, "before": [0, 1], "after": [2, 3],
             "outputs_before": [words[0]], "outputs_after": [words[2], words[3] ^ 1],
             "timed_out": None}
    wrong = expected[3].copy()
    wrong[0] ^= 1
    message = (f"trial 0 (rst high at cycle 7 for 2), input 3 {codes[3].tolist()} (after the "
               f"reset): expected {expected[3].tolist()}, got {wrong.tolist()}")
    assert check_trials(network, codes, [trial], 4) == [message]
    # Outputs cut short by the reset are fine; too few after it are not.
    trial |= {"outputs_after": [words[2]], "timed_out": "after"}
    messages = check_trials(network, codes, [trial], 4)
    assert len(messages) == 1
    assert re.fullmatch(r"trial 0 \(rst high at cycle 7 for 2\): only 1 output beats of the "
                        r"vectors streamed after the reset came in time", messages[0])
