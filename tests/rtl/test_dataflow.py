# amaranth: UnusedElaboratable=no
"""Whole dataflow designs in Amaranth's simulator against the golden model."""

import numpy as np
import pytest

from hwnn.quant.synthetic import SAMPLE_NETWORKS, sample_network
from hwnn.rtl.dataflow import DataflowAccelerator
from hwnn.rtl.folding import LayerFold, auto_folding, fully_parallel, unfolded
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_vectors


def simulate(network, folding, codes, seed):
    dut = DataflowAccelerator(network, folding)
    actual, cycles = run_vectors(dut, network, codes, seed=seed, timeout=5000)
    return dut, actual, cycles


@pytest.mark.parametrize("name", SAMPLE_NETWORKS)
@pytest.mark.parametrize("fold", ["unfolded", "auto", "parallel"])
@pytest.mark.parametrize("seed", [None, 3])
def test_matches_golden(name, fold, seed):
    rng = np.random.default_rng(11)
    network = sample_network(name, seed=11)
    folding = {"unfolded": unfolded, "parallel": fully_parallel,
               "auto": lambda n: auto_folding(n, 24)}[fold](network)
    fmt = network.input.format
    codes = fmt.level_value(rng.integers(0, fmt.levels, size=(5, network.in_features)))
    _, actual, _ = simulate(network, folding, codes, seed)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


@pytest.mark.parametrize("folding", [
    (LayerFold(1, 1), LayerFold(1, 1), LayerFold(1, 1)),
    (LayerFold(2, 4), LayerFold(1, 2), LayerFold(2, 2)),
    (LayerFold(4, 2), LayerFold(2, 4), LayerFold(1, 1)),
])
def test_steady_state_throughput_is_the_slowest_layer(folding):
    rng = np.random.default_rng(5)
    network = sample_network("ternary", seed=5)
    codes = rng.integers(0, 256, size=(10, network.in_features))
    dut, _, cycles = simulate(network, folding, codes, None)
    per_vector = cycles[dut.units[-1].neuron_folds - 1::dut.units[-1].neuron_folds]
    steady = np.diff(per_vector[4:])
    assert max(steady) <= 1.05 * dut.cycles, (list(steady), dut.cycles)
