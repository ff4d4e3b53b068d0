# amaranth: UnusedElaboratable=no
"""The systolic overlay in Amaranth's simulator against the golden model."""

import math

import numpy as np
import pytest

from hwnn.ir import Network
from hwnn.quant.synthetic import SAMPLE_NETWORKS, random_dense, sample_network
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay, schedule
from hwnn.rtl.systolic import max_pack
from hwnn.sim.beats import vectors_to_beats
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_vectors


def simulate(network, params, codes, seed):
    dut = SystolicOverlay(network, params)
    actual, cycles = run_vectors(dut, network, codes, seed=seed)
    return dut, actual, cycles


def random_codes(network, count, seed=0):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


#: Rows, columns, batch and stall seed: square arrays with and without stalls; wide arrays
#: (rows dividing columns or not) and a tall one with stalls.
ARRAYS = [(size, size, batch, seed) for size, batch in [(1, 1), (2, 3), (4, 4), (3, 8)]
          for seed in (None, 2)] + [(1, 2, 3, 2), (2, 4, 2, 2), (4, 2, 3, 2), (3, 5, 4, 2),
                                    (4, 8, 2, 2)]


@pytest.mark.parametrize("kind", SAMPLE_NETWORKS)
@pytest.mark.parametrize("rows, cols, batch, seed", ARRAYS)
def test_sample_networks_match_golden(kind, rows, cols, batch, seed):
    network = sample_network(kind, seed=4)
    codes = random_codes(network, 7)
    _, actual, _ = simulate(network, OverlayParams(rows, cols, batch), codes, seed)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"


def check_three_batches(network, params):
    """Three batches match the golden model with stalls, and take the scheduled cycles
    back to back without; returns the design."""
    codes = random_codes(network, 3 * params.batch, seed=1)
    _, actual, _ = simulate(network, params, codes, 2)
    for index, (want, got) in enumerate(zip(run_network(network, codes), actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"
    dut, _, cycles = simulate(network, params, codes, None)
    per_batch = network.out_features // dut.out_count * params.batch
    total = schedule(network, params)["total"]
    assert list(np.diff(cycles[per_batch - 1::per_batch])) == [total] * 2
    return dut


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 3), (3, 5, 2)])
def test_requantization_in_logic_matches_golden_in_the_same_cycles(kind, rows, cols, batch):
    dut = check_three_batches(sample_network(kind, seed=5),
                              OverlayParams(rows, cols, batch, requant="logic"))
    assert not [group for group in dut.structure().multipliers
                if group.use == "requant" and not group.logic]


@pytest.mark.parametrize("kind", ["int4", "binary", "ternary"])
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 3), (3, 5, 2), (4, 4, 2), (2, 6, 2)])
def test_packed_arrays_match_golden_in_the_same_cycles(kind, rows, cols, batch):
    dut = check_three_batches(sample_network(kind, seed=5),
                              OverlayParams(rows, cols, batch, pack="auto"))
    array = dut.array_params
    assert array.pack == max_pack(dut.a_format, dut.w_format, rows, cols=cols) > 1
    # One multiplier per group of pack columns, of the packed weights.
    lanes = [group for group in dut.structure().multipliers if group.use == "lanes"]
    assert [(group.count, group.b) for group in lanes] == \
        [(rows * math.ceil(cols / array.pack), array.packed_w_format)]


@pytest.mark.parametrize("kind", ["int8", "binary", "ternary"])
@pytest.mark.parametrize("rows, cols, batch, lanes, requant", [
    (2, 4, 3, 1, "logic"), (2, 4, 2, 2, "dsp"), (3, 5, 2, 1, "logic"), (1, 2, 1, 1, "dsp"),
    (4, 4, 1, 2, "logic")])
def test_narrow_output_stages_match_golden_in_the_scheduled_cycles(kind, rows, cols, batch,
                                                                   lanes, requant):
    params = OverlayParams(rows, cols, batch, requant=requant, stage_lanes=lanes)
    dut = check_three_batches(sample_network(kind, seed=5), params)
    # The stages have lanes / cols of a full-width stage's requantization multipliers, and
    # take more cycles.
    wide = OverlayParams(rows, cols, batch, requant=requant)

    def requant_multipliers(top):
        return sum(group.count for group in top.structure().multipliers
                   if group.use == "requant")
    assert requant_multipliers(dut) * cols == \
        requant_multipliers(SystolicOverlay(dut.network, wide)) * lanes
    assert schedule(dut.network, params)["total"] > schedule(dut.network, wide)["total"]


@pytest.mark.parametrize("kind", SAMPLE_NETWORKS)
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 3), (3, 3, 2), (1, 2, 2), (4, 8, 1)])
def test_loaded_weights_match_golden_in_the_scheduled_cycles(kind, rows, cols, batch):
    """With ``weights="loaded"`` the weight memory starts empty and takes the ROM's words on
    ``w_stream`` (fed with random idling); then the design computes as with the ROM."""
    network = sample_network(kind, seed=4)
    dut = check_three_batches(network, OverlayParams(rows, cols, batch, weights="loaded"))
    rom = SystolicOverlay(network, OverlayParams(rows, cols, batch))
    assert dut.load_words == rom.weight_words()[0] and rom.load_words is None
    weights = {memory.use: memory for memory in dut.structure().memories}["weights"]
    assert weights.contents is None and weights.single_port and weights.name == "weights"


@pytest.mark.parametrize("kind, code_bits, zero_flag", [
    ("binary", 1, True), ("ternary", 2, False), ("int8", 8, False), ("mixed", 8, False)])
@pytest.mark.parametrize("rows, cols", [(3, 5), (4, 2)])
def test_weight_words_hold_codes_of_the_layers_common_format(kind, code_bits, zero_flag,
                                                              rows, cols):
    """The weight memory's words: ``cols`` codes of the layers' common weight format (binary
    weights one bit each; mixed formats at the array's operand width), with a flag bit over
    them that marks a tile row of no input where that format has no zero. Read back as the
    contract says, the words give every layer's weights at their tile places and zero
    elsewhere."""
    network = sample_network(kind, seed=4)
    dut = SystolicOverlay(network, OverlayParams(rows, cols, 2, weights="loaded"))
    storage = dut.weight_storage
    assert (storage.fmt.width, storage.zero_flag) == (code_bits, zero_flag)
    assert storage.word_bits == cols * code_bits + zero_flag == len(dut.w_stream.payload)
    weights = {memory.use: memory for memory in dut.structure().memories}["weights"]
    assert weights.width == storage.word_bits
    words, bases = dut.weight_words()
    codes = np.array([[word >> (c * code_bits) & ((1 << code_bits) - 1) for c in range(cols)]
                      for word in words])
    values = storage.fmt.decode(codes)
    if zero_flag:
        values[[word >> (cols * code_bits) == 1 for word in words]] = 0
    for step, tiles, base in zip(dut.steps, dut.tiles, bases, strict=True):
        expected = np.zeros((tiles.nt * cols, tiles.kt * rows), dtype=np.int64)
        for kt, tile in enumerate(tiles.input_tiles(step, dut.params)):
            for row in range(rows):
                column = tiles.input_column(step, dut.params, tile, row)
                if column is not None:
                    expected[:step.layer.out_features, kt * rows + row] = \
                        step.layer.weights[:, column]
        got = values[base:base + tiles.nt * tiles.kt * rows].reshape(tiles.nt, -1, cols)
        got = got.transpose(0, 2, 1).reshape(tiles.nt * cols, -1)
        # Columns past the layer's outputs are discarded: any code may stand there.
        out = step.layer.out_features
        assert np.array_equal(got[:out], expected[:out]), f"step {step.index}"


def test_inputs_wait_until_the_last_weight_word_is_taken():
    """The input is not ready before the last weight word has been taken, and ``w_stream``
    takes no word after it; a reset in the middle of the load starts it again."""
    from amaranth import ClockDomain, Module
    from amaranth.sim import Simulator

    network = sample_network("int4", seed=4)
    dut = SystolicOverlay(network, OverlayParams(2, 4, 2, weights="loaded"))
    words = dut.load_words
    top = Module()
    top.domains.sync = domain = ClockDomain("sync")
    top.submodules.dut = dut
    taken, ready_cycles, marks = [], [], {}

    async def bench(ctx):
        ctx.set(dut.i_stream.valid, 1)          # an input on offer all along (never taken)
        index = 0
        for cycle in range(4 * len(words) + 40):
            reset = cycle == len(words) // 2 + 3
            ctx.set(domain.rst, reset)
            ctx.set(dut.w_stream.valid, cycle % 3 != 1)
            ctx.set(dut.w_stream.payload, words[index % len(words)])
            _, _, w_ready, i_ready = await ctx.tick().sample(dut.w_stream.ready,
                                                             dut.i_stream.ready)
            if reset:
                index = 0
                taken.append("reset")
            elif w_ready and cycle % 3 != 1:
                taken.append(index)
                index += 1
                marks["last"] = cycle
            if i_ready and not reset:
                ready_cycles.append((cycle, index))
            if len(ready_cycles) == 3:
                break

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    cut = taken.index("reset")
    assert 0 < cut < len(words)
    assert taken[:cut] == list(range(cut)) and taken[cut + 1:] == list(range(len(words)))
    # Ready two edges after the last word is taken (written at the next, then ready), and
    # from then on.
    assert [index for _, index in ready_cycles] == [len(words)] * 3
    assert [cycle for cycle, _ in ready_cycles] == [marks["last"] + 2 + i for i in range(3)]


def test_rejects_an_unknown_weight_source():
    with pytest.raises(ValueError, match=r"^OverlayParams weights must be one of rom, loaded, "
                                         r"not 'flash'$"):
        OverlayParams(2, 4, 2, weights="flash")


@pytest.mark.parametrize("lanes, error, message", [
    (3, ValueError, r"^OverlayParams stage_lanes must divide the 4 columns \(1, 2, 4\), not 3$"),
    (0, ValueError, r"^OverlayParams stage_lanes must be 1..4, not 0$"),
    (2.0, TypeError, r"^OverlayParams stage_lanes must be a positive integer, not 2.0$"),
])
def test_rejects_stage_lanes_that_do_not_divide_the_columns(lanes, error, message):
    with pytest.raises(error, match=message):
        OverlayParams(2, 4, 2, stage_lanes=lanes)


@pytest.mark.parametrize("pack, error, message", [
    (0, ValueError, r"^OverlayParams pack must be 1..4, not 0$"),
    (5, ValueError, r"^OverlayParams pack must be 1..4, not 5$"),
    ("max", ValueError, r"^OverlayParams pack must be 1..4 or 'auto', not 'max'$"),
    (2.0, TypeError, r"^OverlayParams pack must be a positive integer, not 2.0$"),
])
def test_rejects_bad_packs(pack, error, message):
    with pytest.raises(error, match=message):
        OverlayParams(2, 4, 2, pack=pack)


def test_rejects_a_pack_the_formats_do_not_allow():
    with pytest.raises(ValueError, match=r"^SystolicParams pack must be at most 1 for uint8 x "
                                         r"int8 sums of 2 terms"):
        SystolicOverlay(sample_network("int8", seed=1), OverlayParams(2, 4, 2, pack=2))


def test_rejects_an_unknown_place_for_the_requantization_multipliers():
    with pytest.raises(ValueError, match=r"^OverlayParams requant must be one of dsp, logic, "
                                         r"not 'lut'$"):
        OverlayParams(2, 4, 2, requant="lut")


@pytest.mark.parametrize("kind", ["int8", "binary"])
@pytest.mark.parametrize("rows, cols, batch", [(2, 2, 4), (4, 4, 3), (3, 3, 1), (2, 4, 3),
                                               (4, 2, 2), (3, 5, 2)])
def test_batches_take_exactly_the_scheduled_cycles(kind, rows, cols, batch):
    network = sample_network(kind, seed=1)
    params = OverlayParams(rows, cols, batch)
    plan = schedule(network, params)
    codes = random_codes(network, 3 * batch)
    dut, _, cycles = simulate(network, params, codes, None)
    per_vector = network.out_features // dut.out_count
    batch_ends = cycles[per_vector * batch - 1::per_vector * batch]
    # Back to back, each batch after the first takes the scheduled cycles exactly.
    assert list(np.diff(batch_ends)) == [plan["total"]] * 2


def test_performance_counters_count_each_layers_cycles_and_busy_cycles():
    from amaranth.sim import Simulator

    from hwnn.sim.pysim import stream_get, stream_put

    network = sample_network("ternary", seed=2)
    params = OverlayParams(2, 4, 2)
    dut = SystolicOverlay(network, params)
    plan = schedule(network, params)
    beats = vectors_to_beats(random_codes(network, 2), network.input.format, dut.in_count)
    per_vector = network.out_features // dut.out_count

    async def bench(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i_stream, beat)
        for _ in range(2 * per_vector):
            await stream_get(ctx, dut.o_stream)
        assert [ctx.get(counter) for counter in dut.cycles] == \
            [layer["cycles"] for layer in plan["layers"]]
        assert [ctx.get(counter) for counter in dut.busy] == \
            [layer["busy"] for layer in plan["layers"]]

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


GEMMS = [
    # (M, K, N, inputs, weights): K and N multiples of the array or not, M = 1, 2..16 bits.
    (1, 5, 3, "int8", "int8"),
    (6, 8, 8, "uint16", "int2"),
    (3, 9, 7, "int16", "uint3"),
    (5, 4, 10, "uint2", "int16"),
    (2, 13, 2, "int3", "int5"),
]


@pytest.mark.parametrize("m, k, n, inputs, weights", GEMMS)
@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 3), (4, 4), (2, 4), (4, 2), (3, 5)])
def test_tiled_gemm_matches_golden(m, k, n, inputs, weights, rows, cols):
    # A one-layer network whose output is its accumulator is the GEMM A @ W.T + bias.
    rng = np.random.default_rng(k * n + rows * cols)
    layer = random_dense(rng, k, n, in_format=inputs, weight_format=weights,
                         stage="accumulator")
    network = Network("gemm", (layer,))
    codes = random_codes(network, m, seed=rows)
    _, actual, _ = simulate(network, OverlayParams(rows, cols, max(m, 2)), codes, 3)
    expected = codes @ layer.weights.T + layer.bias
    assert actual.tolist() == expected.tolist()


@pytest.mark.parametrize("rows, cols, in_count, out_count",
                         [(8, 8, 8, 2), (6, 6, 2, 2), (5, 5, 1, 5), (3, 8, 8, 2), (8, 5, 1, 5)])
def test_beats_carry_the_gcd_of_features_and_array_columns(rows, cols, in_count, out_count):
    network = Network("wide", (random_dense(np.random.default_rng(0), 64, 10, in_format="uint8",
                                            weight_format="int8", stage="accumulator"),))
    dut = SystolicOverlay(network, OverlayParams(rows, cols, 2))
    assert (dut.in_count, dut.out_count) == (in_count, out_count)
