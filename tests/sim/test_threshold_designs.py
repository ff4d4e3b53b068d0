"""Designs with many-level threshold stages as Verilog under cocotb, every engine, against the
golden model: an 8-6-4 network with uint8 activations from thresholds (255 per channel)."""

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.quant.synthetic import random_network
from hwnn.sim.simulate import simulate

#: Each engine's options: two lanes (a 2x2 array, 2 PEs, layers folded to 2 channels).
ENGINES = {"dataflow": {"fold": "auto", "max_lanes": 4}, "systolic": {"array": "2x2", "batch": 4},
           "sparse": {"pes": 2, "queue_depth": 4}}


@pytest.fixture(scope="module")
def uint8_thresholds():
    network = random_network(np.random.default_rng(0), [8, 6, 4],
                             weight_formats=["int8", "int8"], act_formats=["uint8"],
                             stages=["thresholds"], name="thresholds8")
    assert network.layers[0].stage.values.shape == (6, 255)
    assert network.layers[0].stage.descending.any()
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(1).integers(0, fmt.levels, size=(24, 8)))
    return network, codes


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("arch", ENGINES)
def test_uint8_thresholds_give_small_verilog_and_match_golden(tmp_path, uint8_thresholds,
                                                             arch):
    network, codes = uint8_thresholds
    path = generate(network, tmp_path / "d", arch=arch, **ENGINES[arch])
    # A comparator per threshold and lane made the sparse design 18.7 MB.
    assert (path / f"{network.name}.v").stat().st_size < 400_000
    design = load_design(path)
    simulators = ("icarus", "verilator") if arch == "sparse" else ("verilator",)
    for simulator in simulators:
        result = simulate(design, codes, simulator=simulator, backpressure=True, seed=5)
        assert result.passed, [m.describe() for m in result.mismatches[:3]]
    steady = simulate(design, codes, simulator="verilator")
    assert steady.passed
    if arch == "systolic":
        # The schedule waits for each layer's stage: its cycles are exact.
        assert steady.cycles_per_inference == pytest.approx(
            design.manifest["cycles_per_inference"])
