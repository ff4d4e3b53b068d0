# amaranth: UnusedElaboratable=no
"""The sparse PE array in Amaranth's simulator against the golden model, its compressed
memory images, and its cycle behaviour."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwnn.ir import Dense, Network
from hwnn.quant.csc import decode
from hwnn.quant.synthetic import SAMPLE_NETWORKS, random_network
from hwnn.planning.sparse_cycles import estimate, ideal_cycles
from hwnn.rtl.sparse import SparseAccelerator, SparseParams, plan_layers
from hwnn.sim.beats import vectors_to_beats
from hwnn.sim.golden import layer_inputs, run_network
from hwnn.sim.pysim import run_vectors, stream_get, stream_put


def sparse_network(kind, density, share=None, seed=3):
    """A sample network with pruned (and optionally shared) weights; binary weights have no
    zero, so the binary network's middle layer becomes ternary."""
    spec = dict(SAMPLE_NETWORKS[kind])
    if density < 1 or share is not None:
        spec["weight_formats"] = ["ternary" if fmt == "binary" else fmt
                                  for fmt in spec["weight_formats"]]
    return random_network(np.random.default_rng(seed), name=kind, density=density, share=share,
                          **spec)


def random_codes(network, count, seed=0, zeros=0.0):
    """Random input codes; a ``zeros`` fraction of them set to zero (where zero is a code),
    input 1 all zero."""
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    codes = fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))
    if fmt.contains(0):
        codes[rng.random(codes.shape) < zeros] = 0
        codes[min(1, count - 1)] = 0
    return codes


def simulate(network, params, codes, seed):
    return run_vectors(SparseAccelerator(network, params), network, codes, seed=seed)


def assert_matches(network, codes, actual):
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


@pytest.mark.parametrize("kind", SAMPLE_NETWORKS)
@pytest.mark.parametrize("density, share", [(1.0, None), (0.3, None), (0.3, 3)])
@pytest.mark.parametrize("pes, depth, index_bits, seed", [
    (1, 1, 4, None), (3, 2, 1, 5), (4, 4, 2, 2), (5, 1, 3, None)])
def test_sample_networks_match_golden(kind, density, share, pes, depth, index_bits, seed):
    network = sparse_network(kind, density, share)
    codes = random_codes(network, 5, zeros=0.4)
    actual, _ = simulate(network, SparseParams(pes, depth, index_bits), codes, seed)
    assert_matches(network, codes, actual)


def test_zero_columns_rows_layers_and_long_gaps():
    """All-zero weight columns and rows, a layer without any nonzero weight, and gaps that need
    padding entries with 1-bit row indices."""
    network = sparse_network("int8", 0.5, seed=1)
    first, second = network.layers
    weights = first.weights.copy()
    weights[:, 1] = 0                    # a column no PE has entries in
    weights[2, :] = 0                    # a row without entries
    weights[:, 3] = 0
    weights[5, 3] = 7                    # a column whose only entry is far down
    first = Dense(**{**first.__dict__, "weights": weights})
    empty = Dense(**{**second.__dict__, "weights": np.zeros_like(second.weights)})
    for layers in ((first, second), (first, empty)):
        net = Network("edges", layers)
        params = SparseParams(2, 2, 1)
        plans = plan_layers(net, params)
        assert plans[0].csc.padding.sum() > 0        # the test does exercise padding
        codes = random_codes(net, 6, seed=2, zeros=0.3)
        actual, _ = simulate(net, params, codes, 9)
        assert_matches(net, codes, actual)


def test_memory_images_hold_the_weights():
    """Entries, pointers and codebook of every PE, decoded, give back each layer's weights."""
    network = sparse_network("mixed", 0.4, share=2)
    params = SparseParams(3, 2, 2)
    dut = SparseAccelerator(network, params)
    for index, plan in enumerate(dut.plans):
        layer = plan.layer
        rebuilt = np.zeros_like(layer.weights)
        for pe in dut.pes:
            entries, _ = pe.entry_words()
            pointers, pointer_bases = pe.pointer_words()
            table, table_bases = pe.codebook_words()
            start = pointer_bases[index]
            for column in range(layer.in_features):
                row = -1
                for address in range(pointers[start + column], pointers[start + column + 1]):
                    field = entries[address] & ((1 << pe.field_bits) - 1)
                    row += (entries[address] >> pe.field_bits) + 1
                    if plan.table is not None:
                        pattern = table[table_bases[index] + field]
                        weight = pattern - (1 << dut.w_format.bits) * (pattern >> (
                            dut.w_format.bits - 1))
                    else:
                        weight = int(layer.weight_format.decode(np.array(field)))
                    if weight:
                        rebuilt[row * params.pes + pe.pe, column] = weight
        assert np.array_equal(rebuilt, layer.weights), layer.name
        assert np.array_equal(decode(plan.csc) != 0, layer.weights != 0)


def measure_layer_cycles(network, params, codes):
    """Each layer's cycle counter after running ``codes`` one vector at a time."""
    dut = SparseAccelerator(network, params)
    beats = vectors_to_beats(codes, network.input.format, dut.in_count)
    per_vector = network.out_features // dut.out_count
    counts = []

    async def bench(ctx):
        for vector in range(len(codes)):
            before = [ctx.get(counter) for counter in dut.cycles]
            for beat in beats[vector * len(beats) // len(codes):
                              (vector + 1) * len(beats) // len(codes)]:
                await stream_put(ctx, dut.i_stream, beat)
            for _ in range(per_vector):
                await stream_get(ctx, dut.o_stream)
            await ctx.tick().repeat(30)
            counts.append([ctx.get(c) - b for c, b in zip(dut.cycles, before, strict=True)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(counts)


def test_cycles_follow_the_work_and_the_estimate():
    network = random_network(np.random.default_rng(5), [48, 40, 10],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], density=0.25)
    params = SparseParams(4, 8)
    codes = random_codes(network, 3, zeros=0.0)
    codes[0] = np.maximum(codes[0], 1)        # no zero activation in the first layer
    codes[2, ::2] = 0                         # half of them zero
    counts = measure_layer_cycles(network, params, codes)
    ideal = ideal_cycles(network, params, layer_inputs(network, codes))
    # Never faster than the busiest PE's entries; the first layer of the all-zero input (1)
    # only scans; zero activations save cycles.
    assert np.all(counts[:, 1:] >= ideal[:, 1:])
    assert counts[1, 0] < counts[2, 0] < counts[0, 0]
    # Within 10% of the estimate with deep queues.
    for vector in range(3):
        estimated = estimate(network, params,
                             layer_inputs(network, codes[vector:vector + 1]))["layers"]
        assert counts[vector, 1:].tolist() == pytest.approx(estimated[1:], rel=0.1)


def test_a_layer_waits_for_its_threshold_search():
    """The same first layer with 255 thresholds per channel (a 9-cycle stage) and with 3 (a
    3-cycle stage): it takes 6 cycles more, in the design and in the estimate."""
    networks = [random_network(np.random.default_rng(0), [8, 6, 4],
                               weight_formats=["int8", "int8"], act_formats=[acts],
                               stages=["thresholds"]) for acts in ("uint8", "uint2")]
    assert np.array_equal(networks[0].layers[0].weights, networks[1].layers[0].weights)
    params = SparseParams(2, 4)
    codes = random_codes(networks[0], 2)
    counts = [measure_layer_cycles(network, params, codes)[:, 0] for network in networks]
    assert (counts[0] - counts[1]).tolist() == [6, 6]
    estimated = [estimate(network, params, layer_inputs(network, codes))["layers"][0]
                 for network in networks]
    assert estimated[0] - estimated[1] == 6
    assert_matches(networks[0], codes, simulate(networks[0], params, codes, 3)[0])


def test_deeper_queues_balance_the_load():
    network = random_network(np.random.default_rng(6), [64, 64, 8],
                             weight_formats=["int4", "int4"], act_formats=["int4"],
                             stages=["requant"], input_format="int4", density=0.2)
    codes = random_codes(network, 1, zeros=0.0)
    totals = [measure_layer_cycles(network, SparseParams(8, depth), codes).sum()
              for depth in (1, 8)]
    assert totals[1] < totals[0]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"pes": 0}, ValueError, "SparseParams pes must be 1..64, not 0"),
    ({"pes": True}, TypeError, "SparseParams pes must be a positive integer, not True"),
    ({"queue_depth": 65}, ValueError, "SparseParams queue_depth must be 1..64, not 65"),
    ({"index_bits": 0}, ValueError, "SparseParams index_bits must be 1..8, not 0"),
    ({"index_bits": 2.0}, TypeError, "SparseParams index_bits must be a positive integer"),
])
def test_params_are_checked(kwargs, error, message):
    with pytest.raises(error, match=message):
        SparseParams(**kwargs)


def test_the_cycle_model_refuses_activations_of_another_network():
    network = random_network(np.random.default_rng(0), [8, 6, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], name="net")
    inputs = layer_inputs(network, random_codes(network, 3))
    params = SparseParams(2, 4)
    with pytest.raises(ValueError, match=r"^activations must hold one array per layer \(2\), "
                                         r"not 1$"):
        estimate(network, params, inputs[:1])
    with pytest.raises(ValueError, match=r"^activations of layer 'dense1' must have shape "
                                         r"\(3, 6\), not \(3, 5\)$"):
        ideal_cycles(network, params, [inputs[0], inputs[1][:, :5]])


def test_accelerator_refuses_wrong_types():
    with pytest.raises(TypeError, match="network must be a Network"):
        SparseAccelerator("net", SparseParams())
    with pytest.raises(TypeError, match="params must be a SparseParams"):
        SparseAccelerator(sparse_network("int8", 0.5), 8)


def test_the_bias_load_after_reset_is_no_layer_cycle():
    """The first vector after power-on counts as many cycles as the same vector again: the
    first layer's biases are loaded before it, outside the layer's counter."""
    network = random_network(np.random.default_rng(4), [12, 10, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["requant"], density=0.5)
    codes = random_codes(network, 1, zeros=0.0)
    counts = measure_layer_cycles(network, SparseParams(2, 4), np.repeat(codes, 2, axis=0))
    assert counts[0].tolist() == counts[1].tolist()


@pytest.mark.parametrize("pes, in_count, out_count", [(8, 8, 2), (6, 2, 2), (5, 1, 5)])
def test_beats_carry_the_gcd_of_features_and_pes(pes, in_count, out_count):
    network = random_network(np.random.default_rng(0), [64, 10], weight_formats=["int8"],
                             act_formats=[], density=0.5)
    dut = SparseAccelerator(network, SparseParams(pes))
    assert (dut.in_count, dut.out_count) == (in_count, out_count)
