"""Helpers the benchmarks share (the scripts import it as ``common``: Python puts a script's
folder on the import path)."""

import time

import numpy as np

from hwnn.sim.simulate import simulate

__all__ = ["simulate_design"]


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
