"""The peer benchmark's da4ml side (``benchmarks/peers.py``): networks traced through da4ml's
tracer (every layer kind and output stage hwnn has) give Verilog that equals hwnn's golden
model in Icarus, and the check finds a difference when there is one. da4ml is optional (the
``peers`` extra, in ``dev``): without it only these tests skip, no test of hwnn itself."""

import runpy
from pathlib import Path

import numpy as np
import pytest

from hwnn.quant.synthetic import random_cnn, random_network
from hwnn.sim.golden import run_network

pytest.importorskip("da4ml", reason="da4ml (the peers extra) is not installed")

PEERS = runpy.run_path(str(Path(__file__).parent.parent / "benchmarks" / "peers.py"),
                       run_name="peers")

#: Small networks covering what the tracer maps: requantization (zero points, every shift),
#: thresholds (rising and falling, binary and multi-level outputs), binary inputs taken as
#: bits, convolutions with padding and a zero point, depthwise convolutions, max pools.
NETWORKS = {
    "requant": lambda: random_network(
        np.random.default_rng(1), [12, 8, 6, 4], weight_formats=["int8", "ternary", "int4"],
        act_formats=["uint8", "int4"], input_format="int8", stages=["requant", "requant"],
        name="requant"),
    "binary": lambda: random_network(
        np.random.default_rng(2), [16, 8, 4], weight_formats=["binary", "binary"],
        act_formats=["binary"], input_format="binary", stages=["thresholds"], name="binary"),
    "thresholds": lambda: random_network(
        np.random.default_rng(3), [10, 6, 3], weight_formats=["int4", "int8"],
        act_formats=["uint2"], input_format="uint4", stages=["thresholds"],
        name="thresholds"),
    "cnn": lambda: random_cnn(np.random.default_rng(4), (5, 5, 2), [
        ("conv2d", dict(out_channels=3, kernel=3, padding=1, weight_format="int4",
                        out_format="uint4", stage="requant")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=2, kernel=2, weight_format="ternary", out_format="int4",
                        stage="thresholds")),
        ("dense", dict(out_features=2, weight_format="int8", stage="accumulator")),
    ], input_format="uint8", in_zero_point=3, name="cnn"),
    "depthwise": lambda: random_cnn(np.random.default_rng(5), (4, 4, 2), [
        ("conv2d", dict(out_channels=2, kernel=3, padding=1, depthwise=True,
                        weight_format="int4", out_format="uint4", stage="thresholds")),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], input_format="uint4", in_zero_point=2, name="depthwise"),
}


@pytest.mark.parametrize("name", NETWORKS)
def test_da4ml_design_equals_the_golden_model(name, tmp_path):
    network = NETWORKS[name]()
    design = PEERS["Da4mlDesign"](network, tmp_path, 2.0)
    vectors = PEERS["input_vectors"](network, 24)
    PEERS["check_da4ml"](design, vectors, run_network(network, vectors), tmp_path)


def test_the_check_names_a_difference(tmp_path):
    network = NETWORKS["requant"]()
    design = PEERS["Da4mlDesign"](network, tmp_path, 2.0)
    vectors = PEERS["input_vectors"](network, 4)
    expected = run_network(network, vectors)
    expected[2, 1] += 1
    with pytest.raises(PEERS["NotBitExact"], match=rf"^input 2, output 1: expected "
                                                  rf"{expected[2, 1]}, got {expected[2, 1] - 1}$"):
        PEERS["check_da4ml"](design, vectors, expected, tmp_path)
