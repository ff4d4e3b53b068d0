# amaranth: UnusedElaboratable=no
"""The systolic overlay in Amaranth's simulator against the golden model."""

import numpy as np
import pytest

from hwnn.quant.synthetic import SAMPLE_NETWORKS, random_network, sample_network
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay
from hwnn.sim.beats import beats_to_vectors, vectors_to_beats
from hwnn.sim.golden import run_network
from hwnn.sim.pysim import run_stream


def simulate(network, params, codes, seed):
    dut = SystolicOverlay(network, params)
    outputs, cycles = run_stream(
        dut, i_stream=dut.i_stream, o_stream=dut.o_stream,
        inputs=vectors_to_beats(codes, network.input.format, dut.in_count),
        n_outputs=len(codes) * network.out_features // dut.out_count, seed=seed,
        timeout=20_000)
    actual = beats_to_vectors([beat.data for beat in outputs], network.output.format,
                              dut.out_count, network.out_features)
    lasts = [int(beat.last) for beat in outputs]
    per_vector = network.out_features // dut.out_count
    assert lasts == ([0] * (per_vector - 1) + [1]) * len(codes)
    return dut, actual, cycles


def random_codes(network, count, seed=0):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


@pytest.mark.parametrize("kind", SAMPLE_NETWORKS)
@pytest.mark.parametrize("size, batch", [(1, 1), (2, 3), (4, 4), (3, 8)])
@pytest.mark.parametrize("seed", [None, 2])
def test_sample_networks_match_golden(kind, size, batch, seed):
    network = sample_network(kind, seed=4)
    codes = random_codes(network, 7)
    _, actual, _ = simulate(network, OverlayParams(size, batch), codes, seed)
    expected = run_network(network, codes)
    for index, (want, got) in enumerate(zip(expected, actual, strict=True)):
        assert list(got) == list(want), f"input {index}: expected {want}, got {got}"
