# amaranth: UnusedElaboratable=no
"""Whole dataflow designs in Amaranth's simulator against the golden model."""

import json

import numpy as np
import pytest

from hwnn.quant.synthetic import SAMPLE_NETWORKS, sample_network
from hwnn.rtl.dataflow import DataflowAccelerator
from hwnn.rtl.folding import (LayerFold, auto_folding, fold_from_file, fold_from_mapping,
                              fully_parallel, hardwired, unfolded)
from hwnn.rtl.stage import product_cycles
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_vectors


def simulate(network, folding, codes, seed):
    dut = DataflowAccelerator(network, folding)
    actual, cycles = run_vectors(dut, network, codes, seed=seed, timeout=5000)
    return dut, actual, cycles


@pytest.mark.parametrize("name", SAMPLE_NETWORKS)
@pytest.mark.parametrize("fold", ["unfolded", "auto", "parallel", "hardwired"])
@pytest.mark.parametrize("seed", [None, 3])
def test_matches_golden(name, fold, seed):
    rng = np.random.default_rng(11)
    network = sample_network(name, seed=11)
    folding = {"unfolded": unfolded, "parallel": fully_parallel, "hardwired": hardwired,
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


@pytest.mark.parametrize("name", SAMPLE_NETWORKS)
def test_hardwired_layers_take_a_vector_per_cycle(name):
    network = sample_network(name, seed=9)
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(9).integers(0, fmt.levels,
                                                              size=(8, network.in_features)))
    dut, _, cycles = simulate(network, hardwired(network), codes, None)
    assert dut.cycles == 1 and {fold.multipliers for fold in hardwired(network)} == {
        "hardwired"}
    assert list(np.diff(cycles)) == [1] * (len(codes) - 1)


@pytest.mark.parametrize("name, folding", [
    ("int8", (LayerFold(2, 4, "logic"), LayerFold(2, 3))),
    ("int8", (LayerFold(1, 2, "logic"), LayerFold(4, 6, "logic"))),
    ("int4", (LayerFold(8, 8, "logic"), LayerFold(1, 2, "logic"))),
    ("mixed", (LayerFold(2, 3, "logic"), LayerFold(2, 2, "logic"), LayerFold(1, 1))),
])
@pytest.mark.parametrize("seed", [None, 4])
def test_logic_multipliers_match_golden_at_the_same_rate(name, folding, seed):
    rng = np.random.default_rng(8)
    network = sample_network(name, seed=8)
    fmt = network.input.format
    codes = fmt.level_value(rng.integers(0, fmt.levels, size=(5, network.in_features)))
    dut, actual, cycles = simulate(network, folding, codes, seed)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"
    # The same cycles but for the registers after each level of a deep product's adder tree
    # in the logic stages (compared without random stalls, which would meet them on other
    # cycles).
    dsp = tuple(LayerFold(fold.pe, fold.simd) for fold in folding)
    later = sum(product_cycles(layer, True, fold.multipliers == "logic")
                - product_cycles(layer, True, False)
                for layer, fold in zip(network.layers, folding, strict=True))
    dsp_cycles = simulate(network, dsp, codes, seed)[2]
    if seed is None:
        assert cycles == [cycle + later for cycle in dsp_cycles]
    logic = [group for group in dut.structure().multipliers if group.logic]
    assert {group.use for group in logic} <= {"lanes", "requant"} and logic


def test_fold_files_say_where_multipliers_go(tmp_path):
    network = sample_network("int8")
    path = tmp_path / "fold.json"
    path.write_text(json.dumps({"dense0": {"pe": 2, "simd": 4, "multipliers": "logic"},
                                "dense1": {"pe": 1, "simd": 6, "multipliers": "dsp"}}))
    folding = fold_from_file(network, path)
    assert folding == (LayerFold(2, 4, "logic"), LayerFold(1, 6))
    assert [fold.as_dict() for fold in folding] == [
        {"pe": 2, "simd": 4, "multipliers": "logic"}, {"pe": 1, "simd": 6}]


@pytest.mark.parametrize("entry, message", [
    ({"pe": 2, "simd": 4, "multipliers": "lut"},
     (r"^Folding of layer 'dense0': multipliers must be one of 'dsp', 'logic', 'hardwired', "
      r"not 'lut'$")),
    ({"pe": 2, "simd": 4, "multipliers": True},
     (r"^Folding of layer 'dense0': multipliers must be one of 'dsp', 'logic', 'hardwired', "
      r"not True$")),
    ({"pe": 2, "simd": 4, "mult": "logic"},
     (r"^Folding of layer 'dense0' must be \{'pe': P, 'simd': S\} with an optional "
      r"'multipliers', not \{'pe': 2, 'simd': 4, 'mult': 'logic'\}$")),
])
def test_fold_files_with_bad_multipliers_are_refused(entry, message):
    network = sample_network("int8")
    with pytest.raises(ValueError, match=message):
        fold_from_mapping(network, {"dense0": entry, "dense1": {"pe": 1, "simd": 1}})


def test_layer_folds_refuse_bad_multipliers():
    with pytest.raises(ValueError, match=r"^multipliers must be one of 'dsp', 'logic', "
                                         r"'hardwired', not 'DSP'$"):
        LayerFold(1, 1, "DSP")
