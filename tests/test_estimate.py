# amaranth: UnusedElaboratable=no
"""The resource estimator: structural features, the fit, the shipped coefficients."""

import numpy as np
import pytest

from hwnn.planning import estimate as estimate_module
from hwnn.planning.estimate import (TARGETS, block_count, design_features, estimate, fit, held_out,
                           load_coefficients, measured, predict, spram_placement)
from hwnn.quant.synthetic import random_network, sample_network
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay
from hwnn.tools.synth import spram_memories
from hwnn.rtl.folding import LayerFold


def network(weights, acts, sizes=(32, 16, 8), input_format="uint8", stages=None):
    count = len(sizes) - 1
    return random_network(np.random.default_rng(3), list(sizes),
                          weight_formats=[weights] * count, act_formats=[acts] * (count - 1),
                          input_format=input_format, stages=stages, name="n")


def test_block_ram_counts_follow_the_block_shapes():
    assert block_count(512, 36, "ecp5") == 1
    assert block_count(1024, 36, "ecp5") == 2
    assert block_count(2048, 9, "ecp5") == 1
    assert block_count(40, 100, "ecp5") == 3        # 512 x 36 blocks side by side
    assert block_count(256, 16, "ice40") == 1
    assert block_count(256, 32, "ice40") == 2
    assert block_count(4096, 1, "ice40") == 2


def test_lanes_are_counted_by_their_arithmetic():
    binary = network("binary", "binary", input_format="binary")
    fold = (LayerFold(4, 8), LayerFold(2, 4))
    features = design_features(binary, "ecp5", "dataflow", fold=fold)
    assert features["xnor_lanes"] == 32 + 8
    assert features["dsp_lanes"] == features["addsub_bits"] == 0

    ternary = network("ternary", "uint4", stages=["thresholds"])
    features = design_features(ternary, "ecp5", "dataflow", fold=fold)
    assert features["addsub_bits"] == 32 * 9 + 8 * 5       # uint8 (+ sign), then uint4
    assert features["xnor_lanes"] == 0


def test_threshold_comparator_bits_count_half_where_the_threshold_bit_never_changes():
    from dataclasses import replace

    from hwnn.ir import Thresholds
    from hwnn.rtl.stage import stage_structure
    layer = network("binary", "binary", sizes=(16, 8, 4), input_format="binary").layers[0]
    # One threshold per neuron (binary outputs): 8 neurons on 2 lanes are 4 groups.
    width = 2 * layer.threshold_bits

    def compare_bits(values):
        stage = Thresholds(np.asarray(values).reshape(8, 1), np.zeros(8, dtype=bool))
        return stage_structure(replace(layer, stage=stage), 2).counts["compare_bits"]

    assert compare_bits([3] * 8) == width / 2                  # the same in every group
    # Thresholds 0 and 1 alternate between groups in the lanes' lowest bits: 2 bits vary.
    assert compare_bits([0, 0, 1, 1, 0, 0, 1, 1]) == 2 + (width - 2) / 2


def test_multipliers_go_to_dsp_blocks_as_yosys_maps_them():
    int8 = network("int8", "uint8", stages=["requant"])
    fold = (LayerFold(4, 8), LayerFold(2, 4))
    ecp5 = design_features(int8, "ecp5", "dataflow", fold=fold)
    # 40 lanes, plus one requantization multiplier (acc x uint16) per PE of the first layer.
    acc_bits = int8.layers[0].acc_bits
    assert ecp5["dsp_lanes"] == 40
    assert ecp5["dsp_requant"] == 4 * -(-max(acc_bits, 16) // 18)
    assert ecp5["lut_mult_bits"] == 0
    # iCE40 maps products of 11 bits or more: int4 x int4 (8 bits) stays in LUTs, and so does
    # int2 x uint8 (its products fit 10 bits once Yosys trims them).
    int4 = network("int4", "int4", input_format="int4", stages=["requant"])
    ice40 = design_features(int4, "ice40", "dataflow", fold=fold)
    assert ice40["lut_mult_bits"] == 40 * 4 * 4 and ice40["dsp_lanes"] == 0
    assert ice40["dsp_requant"] == 4 * -(-max(int4.layers[0].acc_bits, 16) // 16)
    int2 = network("int2", "uint8", stages=["requant"])
    assert design_features(int2, "ice40", "dataflow", fold=fold)["dsp_lanes"] == 0
    assert design_features(int2, "ecp5", "dataflow", fold=fold)["dsp_lanes"] == 40
    assert design_features(network("int4", "uint8", stages=["requant"]), "ice40", "dataflow",
                           fold=fold)["dsp_lanes"] == 40      # int4 x uint8: 12-bit products


def test_more_lanes_estimate_more_logic_on_every_engine():
    net = network("int8", "uint8", sizes=(64, 32, 16), stages=["requant"])
    for family in ("ecp5", "ice40"):
        small = estimate(net, family, "dataflow", max_lanes=4)
        large = estimate(net, family, "dataflow", max_lanes=128)
        assert large["lut4"] > small["lut4"] and large["dsp"] > small["dsp"]
        assert estimate(net, family, "systolic", array="8x8")["dsp"] > \
            estimate(net, family, "systolic", array="2x2")["dsp"]
        assert estimate(net, family, "sparse", pes=8)["ff"] > \
            estimate(net, family, "sparse", pes=2)["ff"]
        for value in small.values():
            assert isinstance(value, int) and value >= 0


def test_the_fit_recovers_known_coefficients(monkeypatch):
    """Samples made from known per-feature costs: without the prior the fit finds them again;
    with it, features the samples never exercise take their structural prior."""
    rng = np.random.default_rng(0)
    truth = {"unit": 40.0, "xnor_lanes": 3.0, "acc_bits": 2.0, "register_bits": 0.5}
    samples = []
    for index in range(24):
        features = dict.fromkeys(design_features(sample_network("binary"), "ecp5"), 0.0)
        features |= {"unit": float(rng.integers(2, 5)), "xnor_lanes": float(rng.integers(8, 500)),
                     "acc_bits": float(rng.integers(10, 200)),
                     "register_bits": float(rng.integers(100, 900))}
        lut = round(sum(truth[name] * features[name] for name in truth))
        cells = {"LUT4": lut, "TRELLIS_FF": round(features["register_bits"]),
                 "MULT18X18D": 0, "DP16KD": 1}
        samples.append({"config": {"name": f"s{index}", "seed": 4 * index, "arch": "dataflow"},
                        "features": {"ecp5": features, "ice40": features},
                        "ecp5": {"cells": cells},
                        "ice40": {"cells": {"SB_LUT4": lut, "SB_DFF": 7}}})
    monkeypatch.setattr(estimate_module, "PRIOR_WEIGHT", 0.0)
    coefficients = fit(samples)
    for name, value in truth.items():
        assert coefficients["ecp5"]["dataflow"]["lut4"][name] == pytest.approx(value, rel=0.02)
    guess = predict(samples[0]["features"]["ecp5"], coefficients, "ecp5", "dataflow")
    assert guess["lut4"] == pytest.approx(measured(samples[0]["ecp5"]["cells"], "ecp5")["lut4"],
                                          rel=0.01)
    monkeypatch.setattr(estimate_module, "PRIOR_WEIGHT", 0.1)
    pulled = fit(samples)["ecp5"]["dataflow"]["lut4"]
    assert pulled["compare_bits"] == pytest.approx(estimate_module.PRIORS["ecp5"]["lut4"]
                                                   ["compare_bits"])
    for name, value in truth.items():
        assert pulled[name] == pytest.approx(value, rel=0.1)


def test_measured_counts_carry_and_lut_ram_cells_as_lut4s():
    cells = {"LUT4": 100, "CCU2C": 10, "TRELLIS_DPR16X4": 3, "TRELLIS_FF": 50,
             "MULT18X18D": 2, "DP16KD": 4}
    assert measured(cells, "ecp5") == {"lut4": 126, "ff": 50, "dsp": 2, "bram": 4}


def test_held_out_designs_are_every_fourth_random_one_and_the_real_networks():
    assert held_out({"name": "df3", "seed": 3}) and held_out({"name": "digits_int8_8"})
    assert not held_out({"name": "df4", "seed": 4})


def test_the_shipped_coefficients_cover_every_family_engine_and_resource():
    coefficients = load_coefficients()
    for family in ("ecp5", "ice40"):
        for arch in ("dataflow", "systolic", "sparse"):
            assert set(coefficients[family][arch]) == set(TARGETS)


@pytest.mark.parametrize("call, error, message", [
    (lambda: estimate("net", "ecp5"), TypeError, "network must be a Network"),
    (lambda: estimate(sample_network("int8"), "gowin"), ValueError, "Unknown FPGA family"),
    (lambda: estimate(sample_network("int8"), "ecp5", "tpu"), ValueError,
     "Unknown architecture 'tpu'"),
])
def test_bad_arguments_are_refused(call, error, message):
    with pytest.raises(error, match=message):
        call()


@pytest.mark.parametrize("family", ["ecp5", "ice40"])
def test_packed_arrays_take_a_dsp_block_per_pack_columns(family):
    # Yosys maps the int4 digits overlay (uint4 pixels) on an 8x8 array, pairs of columns
    # packed, to 32 MULT18X18D and 32 SB_MAC16 (benchmarks/systolic.py); unpacked to 64
    # MULT18X18D, and on the iCE40 to LUTs (8-bit products).
    int4 = network("int4", "uint4", input_format="uint4", stages=["requant"])
    packed = design_features(int4, family, "systolic", array="8x8", pack="auto",
                             requant="logic")
    unpacked = design_features(int4, family, "systolic", array="8x8", requant="logic")
    assert packed["dsp_lanes"] == 32
    assert unpacked["dsp_lanes"] == (64 if family == "ecp5" else 0)
    # The LUT multiplier bits left are the requantization's, in logic.
    assert unpacked["lut_mult_bits"] - packed["lut_mult_bits"] == \
        (0 if family == "ecp5" else 64 * 4 * 4)


def test_ice40_estimate_counts_the_spram_the_overlay_activations_take():
    """The activation memories go to an UP5K's SPRAM only when the block RAMs would not hold
    the design, as many as fit its four blocks: the estimate then counts them there and not
    in block RAM."""
    net = random_network(np.random.default_rng(1), [32, 32, 10], weight_formats=["int8"] * 2,
                         act_formats=["uint8"], stages=["requant"], name="mlp")
    small, large = (estimate(net, "ice40", "systolic", array="2x4", batch=batch,
                             requant="logic") for batch in (16, 256))
    assert (small["spram"], large["spram"]) == (0, 4) and small["bram"] <= 30 >= large["bram"]
    # 64-bit words: one of the two fits the four blocks.
    assert estimate(net, "ice40", "systolic", array="8x8", batch=256)["spram"] == 4
    assert spram_placement(net, "ice40", "systolic", array="2x4", batch=256,
                           requant="logic") == spram_memories(
        SystolicOverlay(net, OverlayParams(2, 4, 256, requant="logic")).structure().memories,
        "ice40") != []
    assert "spram" not in estimate(net, "ecp5", "systolic", array="2x4", batch=16)
