"""Sparse designs as Verilog under cocotb (Verilator and Icarus) with random backpressure,
against the golden model; and the sparse design folder contract."""

import json

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.ir import Dense, Network
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_network
from hwnn.planning.sparse_cycles import estimate
from hwnn.rtl.sparse import SparseParams, plan_layers
from hwnn.sim.golden import layer_inputs
from hwnn.sim.simulate import simulate


@pytest.fixture(scope="module")
def digits_sparse(digits_mlp):
    """The digits MLP pruned to 90% (global, no retraining: bit-exactness is what counts here)
    with 4-bit weight sharing."""
    model, (x_train, x_test, _, _) = digits_mlp
    options = QuantOptions(weights="int8", acts="uint8", prune=0.9, prune_scope="global",
                           share=4)
    network = quantize_network(from_sklearn(model), x_train, options, name="digits_sparse")
    codes = network.quantize_input(x_test[:30])
    codes[[3, 17]] = 0                              # all-zero input vectors
    return network, codes


def edge_network():
    """A pruned network with all-zero columns, an all-zero row and long gaps."""
    network = random_network(np.random.default_rng(8), [40, 24, 6],
                             weight_formats=["int4", "ternary"], act_formats=["uint3"],
                             stages=["requant"], input_format="uint4", density=0.1,
                             name="edges")
    first, second = network.layers
    weights = first.weights.copy()
    weights[:, :3] = 0
    weights[4] = 0
    return Network("edges", (Dense(**{**first.__dict__, "weights": weights}), second))


@pytest.mark.cocotb
@pytest.mark.slow
def test_pruned_digits_mlp_on_8_pes_matches_golden(tmp_path, digits_sparse):
    network, codes = digits_sparse
    design = load_design(generate(network, tmp_path / "d", arch="sparse", pes=8,
                                  queue_depth=8))
    for simulator in ("icarus", "verilator"):
        result = simulate(design, codes, simulator=simulator, backpressure=True, seed=3)
        assert result.passed, [m.describe() for m in result.mismatches[:3]]
    steady = simulate(design, codes, simulator="verilator")
    assert steady.passed
    # Zero activations are skipped: real inputs beat the estimate for all-nonzero ones, and the
    # estimate for these very inputs holds within 10%.
    assert steady.cycles_per_inference < design.manifest["cycles_per_inference"]
    params = SparseParams(8, 8)
    per_input = estimate(network, params, layer_inputs(network, codes))["per_inference"]
    counted = sum(steady.counters[f"cycles__{i}"] for i in range(len(network.layers)))
    assert counted / len(codes) == pytest.approx(per_input, rel=0.1)


@pytest.mark.cocotb
def test_zero_columns_and_padding_on_both_simulators(tmp_path):
    network = edge_network()
    params = SparseParams(3, 2, 2)
    assert plan_layers(network, params)[0].csc.padding.sum() > 0
    design = load_design(generate(network, tmp_path / "d", arch="sparse", pes=3,
                                  queue_depth=2, index_bits=2))
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(1).integers(0, fmt.levels, size=(24, 40)))
    codes[np.random.default_rng(2).random(codes.shape) < 0.5] = 0
    codes[5] = 0
    for simulator in ("icarus", "verilator"):
        result = simulate(design, codes, simulator=simulator, backpressure=True, seed=11)
        assert result.passed, [m.describe() for m in result.mismatches[:3]]


def test_sparse_manifest_reports_the_compressed_weights(tmp_path):
    network = edge_network()
    path = generate(network, tmp_path / "d", arch="sparse", pes=4, queue_depth=4)
    manifest = json.loads((path / "manifest.json").read_text())
    assert (manifest["arch"], manifest["pes"], manifest["queue_depth"],
            manifest["index_bits"], manifest["lanes"]) == ("sparse", 4, 4, 4, 4)
    for layer, entry in zip(network.layers, manifest["layers"], strict=True):
        assert sum(entry["nonzeros_per_pe"]) == np.count_nonzero(layer.weights)
        assert [sum(layer.weights[pe::4].ravel() != 0) for pe in range(4)] == \
            entry["nonzeros_per_pe"]
        assert np.array_equal(np.array(entry["entries_per_pe"]),
                              np.array(entry["nonzeros_per_pe"]) + entry["padding_per_pe"])
        assert entry["ideal_cycles"] == max(entry["entries_per_pe"])
    assert manifest["cycles_per_inference"] == pytest.approx(
        estimate(network, SparseParams(4, 4))["per_inference"])
    assert len(manifest["memory_bits_per_pe"]) == 4
    assert manifest["memory_bits"]["entries"] == sum(
        pe["entries"] for pe in manifest["memory_bits_per_pe"])
    assert manifest["counters"]["cycles"] == ["cycles__0", "cycles__1"]
    # The same network and options give the same files.
    again = generate(network, tmp_path / "e", arch="sparse", pes=4, queue_depth=4)
    for name in ("edges.v", "manifest.json"):
        assert (again / name).read_bytes() == (path / name).read_bytes()
