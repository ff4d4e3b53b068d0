"""Helpers the benchmarks share (the scripts import it as ``common``: Python puts a script's
folder on the import path)."""

import time

import numpy as np

from hwnn.quant.synthetic import random_cnn
from hwnn.sim.simulate import simulate

__all__ = ["cnv_network", "simulate_design"]


def simulate_design(design, count, simulator, label):
    """Stream ``count`` random input vectors (seed 1) back to back through ``design`` in
    ``simulator``; return the :class:`~hwnn.sim.simulate.SimulationResult` and the seconds the
    simulation took. A mismatch with the golden model is an AssertionError naming ``label``."""
    network = design.network
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(1).integers(
        0, fmt.levels, size=(count, network.in_features)))
    started = time.monotonic()
    result = simulate(design, codes, simulator=simulator)
    seconds = time.monotonic() - started
    assert result.passed, f"{label} ({design.top}) mismatches the golden model"
    return result, seconds


def cnv_network():
    """FINN's CNV topology with random binary weights and thresholds, uint8 input."""
    def conv(channels):
        return ("conv2d", dict(out_channels=channels, kernel=3, weight_format="binary",
                               out_format="binary", stage="thresholds"))

    def dense(features, last=False):
        return ("dense", dict(out_features=features, weight_format="binary",
                              out_format=None if last else "binary",
                              stage="accumulator" if last else "thresholds"))
    pool = ("maxpool2d", dict(kernel=2))
    return random_cnn(np.random.default_rng(0), (32, 32, 3), [
        conv(64), conv(64), pool, conv(128), conv(128), pool, conv(256), conv(256),
        dense(512), dense(512), dense(10, last=True),
    ], input_format="uint8", name="cnv")
