# amaranth: UnusedElaboratable=no
"""Convolutional networks on the systolic overlay, in Amaranth's simulator, against the golden
model: kernels, strides, padding, max pools, depthwise layers and odd sizes; cycles against
the schedule; what the overlay cannot serve."""

import numpy as np
import pytest

from hwnn.quant.synthetic import random_cnn, sample_cnn
from hwnn.rtl import banked
from hwnn.rtl.banked import BankedMemory
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay, check_overlay, schedule
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_vectors


#: Small CNNs by name: (input shape, layers, input format, input zero point).
CNNS = {
    # A padded 3x3 convolution of odd sizes (5x5x3 -> 5x5x3), then dense.
    "padded": ((5, 5, 3), [
        ("conv2d", dict(out_channels=3, kernel=3, padding=1, weight_format="int4",
                        out_format="uint4", stage="requant")),
        ("dense", dict(out_features=3, weight_format="int3", stage="accumulator")),
    ], "uint4", 5),
    # A 2x3 kernel with stride 2x1 and uneven padding on 5 channels (more than a word of
    # 4), a 1x1 convolution, then dense.
    "strided": ((6, 5, 5), [
        ("conv2d", dict(out_channels=6, kernel=(2, 3), stride=(2, 1), padding=(0, 1, 1, 2),
                        weight_format="int4", out_format="uint3", stage="requant")),
        ("conv2d", dict(out_channels=5, kernel=1, weight_format="ternary",
                        out_format="uint2", stage="thresholds")),
        ("dense", dict(out_features=4, weight_format="int4", stage="accumulator")),
    ], "uint3", 2),
    # A convolution, a 2x2 max pool that leaves a row and a column of it out, a padded
    # convolution and a 1x2 pool, then dense; unsigned activations of 8 bits (pools compare
    # unsigned values).
    "pooled": ((7, 7, 2), [
        ("conv2d", dict(out_channels=3, kernel=2, weight_format="int4", out_format="uint8",
                        stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=5, kernel=3, padding=1, weight_format="int3",
                        out_format="uint3", stage="thresholds")),
        ("maxpool2d", dict(kernel=(1, 2))),
        ("dense", dict(out_features=3, weight_format="ternary", stage="accumulator")),
    ], "uint4", 0),
    # Padding wider than the 1x1 kernel, stride 2, on a one-channel 3x4 image.
    "wide_padding": ((3, 4, 1), [
        ("conv2d", dict(out_channels=2, kernel=1, stride=2, padding=(2, 1, 0, 3),
                        weight_format="int4", out_format="uint4", stage="requant")),
        ("dense", dict(out_features=2, weight_format="int4", stage="accumulator")),
    ], "uint4", 7),
    # Overlapping pools (3x3 stride 2, 2x3 stride 1x2) after padded convolutions.
    "overlapping": ((7, 6, 2), [
        ("conv2d", dict(out_channels=3, kernel=3, padding=(2, 1, 1, 2), weight_format="int4",
                        out_format="uint8", stage="thresholds")),
        ("maxpool2d", dict(kernel=3, stride=2)),
        ("conv2d", dict(out_channels=3, kernel=1, weight_format="int4", out_format="int4",
                        stage="requant")),
        ("maxpool2d", dict(kernel=(2, 3), stride=(1, 2))),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], "uint4", 3),
    # A depthwise 3x3 convolution of stride 2 with padding between pointwise ones.
    "depthwise": ((5, 6, 2), [
        ("conv2d", dict(out_channels=5, kernel=1, weight_format="int4", out_format="uint4",
                        stage="requant")),
        ("conv2d", dict(out_channels=5, kernel=3, stride=2, padding=1, depthwise=True,
                        weight_format="int4", out_format="uint3", stage="thresholds")),
        ("maxpool2d", dict(kernel=(1, 2))),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], "uint4", 1),
    # CNV in small: an 8-bit image, binary weights (the weight memory holds one bit each and
    # flags the tiles' rows of no input), bipolar activations pooled, channels that fill no
    # word evenly.
    "binary": ((6, 6, 3), [
        ("conv2d", dict(out_channels=5, kernel=3, weight_format="binary",
                        out_format="binary", stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=3, kernel=2, weight_format="binary",
                        out_format="binary", stage="thresholds")),
        ("dense", dict(out_features=3, weight_format="binary", stage="accumulator")),
    ], "uint8", 0),
}


def cnn(name, seed=1):
    shape, layers, input_format, zero_point = CNNS[name]
    return random_cnn(np.random.default_rng(seed), shape, layers, input_format=input_format,
                      in_zero_point=zero_point, name=name)


def check_golden(network, params, count, seed):
    dut = SystolicOverlay(network, params)
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(count).integers(
        0, fmt.levels, size=(count, network.in_features)))
    actual, cycles = run_vectors(dut, network, codes, seed=seed, timeout=200_000)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"
    return dut, cycles


@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 2), (3, 5, 3), (4, 2, 2), (1, 1, 1)])
def test_convolutional_networks_match_golden_with_stalls(name, rows, cols, batch):
    check_golden(cnn(name), OverlayParams(rows, cols, batch), 2 * batch + 1, seed=2)


@pytest.mark.parametrize("name", ["strided", "pooled", "overlapping", "depthwise"])
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 2), (3, 3, 3)])
def test_convolutional_batches_take_exactly_the_scheduled_cycles(name, rows, cols, batch):
    network, params = cnn(name, seed=2), OverlayParams(rows, cols, batch)
    dut, cycles = check_golden(network, params, 3 * batch, seed=None)
    per_batch = network.out_features // dut.out_count * batch
    total = schedule(network, params)["total"]
    assert list(np.diff(cycles[per_batch - 1::per_batch])) == [total] * 2


@pytest.mark.parametrize("name", CNNS)
@pytest.mark.parametrize("rows, cols, batch, lanes", [(2, 4, 2, 1), (3, 3, 2, 1), (4, 2, 1, 1)])
def test_narrow_output_stages_serve_convolutions_in_the_scheduled_cycles(name, rows, cols,
                                                                        batch, lanes):
    network = cnn(name, seed=2)
    params = OverlayParams(rows, cols, batch, requant="logic", stage_lanes=lanes)
    check_golden(network, params, 2 * batch + 1, seed=2)
    dut, cycles = check_golden(network, params, 3 * batch, seed=None)
    per_batch = network.out_features // dut.out_count * batch
    total = schedule(network, params)["total"]
    assert list(np.diff(cycles[per_batch - 1::per_batch])) == [total] * 2


@pytest.mark.parametrize("name", ["binary", "pooled", "depthwise"])
@pytest.mark.parametrize("rows, cols, batch", [(2, 4, 2), (3, 5, 1)])
def test_weight_roms_of_many_banks_give_the_same_results_in_the_same_cycles(
        monkeypatch, name, rows, cols, batch):
    """Banks of 4 words, whatever their width (a CNV-size ROM's are 2048): the weights come
    from many banks, chosen in two registered steps, as from one."""
    monkeypatch.setattr(banked, "MIN_BANK_DEPTH", 4)
    monkeypatch.setattr(banked, "BANK_BITS", 1)
    network, params = cnn(name, seed=3), OverlayParams(rows, cols, batch)
    dut = SystolicOverlay(network, params)
    assert BankedMemory(dut.weight_storage.word_bits, len(dut.weight_words()[0])).banks >= 5
    check_golden(network, params, 2 * batch + 1, seed=4)
    dut, cycles = check_golden(network, params, 3 * batch, seed=None)
    per_batch = network.out_features // dut.out_count * batch
    total = schedule(network, params)["total"]
    assert list(np.diff(cycles[per_batch - 1::per_batch])) == [total] * 2


def test_schedule_and_counters_cover_a_folded_pool():
    network, params = sample_cnn(), OverlayParams(2, 4, 2)
    plan = schedule(network, params)
    conv, pool, dense = plan["layers"]
    assert (pool["cycles"], pool["busy"], pool["folded_into"]) == (0, 0, conv["name"])
    # The convolution computes the pool's 3x3 windows of 2x2 pixels of each image: 36 rows
    # per tile, kh * kw = 9 taps of one slice of 2 channels, one output tile.
    assert (conv["rows"], conv["input_tiles"], conv["output_tiles"]) == (2 * 36, 9, 1)
    assert conv["busy"] == 9 * 2 * 36 and conv["macs"] == 2 * 36 * 4 * 9 * 2
    # 9 pooled pixels of one word of 4 channels, each word two slices of 2 rows.
    assert dense["input_tiles"] == 9 * 2
    counters = run_counters(network, params)
    assert counters == {name: [layer[name] for layer in plan["layers"]]
                        for name in ("cycles", "busy")}


def run_counters(network, params):
    """The performance counters after one full batch."""
    from amaranth.sim import Simulator

    from hwnn.sim.beats import vectors_to_beats
    from hwnn.sim.pysim import stream_get, stream_put

    dut = SystolicOverlay(network, params)
    fmt = network.input.format
    codes = fmt.level_value(np.zeros((params.batch, network.in_features), dtype=np.int64))
    beats = vectors_to_beats(codes, fmt, dut.in_count)
    counters = {}

    async def bench(ctx):
        for beat in beats:
            await stream_put(ctx, dut.i_stream, beat)
        for _ in range(params.batch * network.out_features // dut.out_count):
            await stream_get(ctx, dut.o_stream)
        counters.update({name: [ctx.get(counter) for counter in getattr(dut, name)]
                         for name in ("cycles", "busy")})

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return counters


@pytest.mark.parametrize("layers, message", [
    ([("conv2d", dict(out_channels=2, kernel=2, weight_format="int4", out_format="uint4",
                      stage="requant")),
      ("maxpool2d", dict(kernel=2)),
      ("maxpool2d", dict(kernel=1)),
      ("dense", dict(out_features=2, weight_format="int4", stage="accumulator"))],
     (r"^The systolic overlay pools only right after a convolution, not layer 'maxpool2' "
      r"after layer 'maxpool1'$")),
    ([("conv2d", dict(out_channels=2, kernel=2, weight_format="int4", out_format="uint4",
                      stage="requant"))],
     (r"^The systolic overlay ends a network with a dense layer, not layer 'conv0' of kind "
     r"'conv2d'$")),
    ([("maxpool2d", dict(kernel=2)),
      ("dense", dict(out_features=2, weight_format="int4", stage="accumulator"))],
     (r"^The systolic overlay pools only after a convolution, not layer 'maxpool0' at the "
     r"network's input$")),
])
def test_refuses_what_it_cannot_serve_in_one_line(layers, message):
    network = random_cnn(np.random.default_rng(0), (4, 4, 2), layers, input_format="uint4")
    with pytest.raises(ValueError, match=message):
        check_overlay(network, OverlayParams(2, 2, 2))
