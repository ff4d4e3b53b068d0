# amaranth: UnusedElaboratable=no
"""Automatic folding for a board (``--fold auto --target-fps F --board B``)."""

import dataclasses
import itertools
import json
import math
import re

import numpy as np
import pytest

from hwnn.cli import main
from hwnn.ir import Network
from hwnn.planning.estimate import estimate, host_link_cost, logic_cells
from hwnn.arch.systolic import ARRAYS
from hwnn.planning.planner import (BATCHES, LOGIC_CEILING, LOGIC_RESOURCES, NoFolding,
                                   logic_fallback, plan_array, plan_folding)
from hwnn.quant.synthetic import random_cnn, random_network, sample_cnn
from hwnn.rtl.folding import LayerFold, cycle_targets, folding_for_cycles, fully_parallel
from hwnn.rtl.overlay import OverlayParams, SystolicOverlay, schedule
from hwnn.tools.synth import spram_memories

ICEBREAKER_HZ = 12e6


@pytest.fixture(scope="module")
def int8_net():
    return random_network(np.random.default_rng(0), [64, 32, 10],
                          weight_formats=["int8", "int8"], act_formats=["uint8"],
                          stages=["requant"], name="mlp")


@pytest.fixture(scope="module")
def threshold_net():
    """An int8-weight MLP with threshold stages (no requantization multipliers), whose
    systolic overlay fits the UP5K's 8 DSP blocks as a 2x4 array."""
    return random_network(np.random.default_rng(0), [64, 32, 10],
                          weight_formats=["int8", "int8"], act_formats=["uint4"],
                          stages=["thresholds"], input_format="uint4", name="thr")


def layer_cycles(network, folding):
    return max((layer.out_features // fold.pe) * (layer.in_features // fold.simd)
               for layer, fold in zip(network.layers, folding, strict=True))


def within_budget(plan):
    for name, (used, available) in plan.resources.items():
        limit = available * LOGIC_CEILING[name] if name in LOGIC_RESOURCES else available
        if used > limit:
            return False
    return True


def test_without_a_target_the_fastest_fitting_folding_is_chosen(int8_net):
    plan = plan_folding(int8_net, "icebreaker")
    assert within_budget(plan)
    assert plan.cycles == layer_cycles(int8_net, plan.folding)
    assert plan.inferences_per_second == ICEBREAKER_HZ / plan.cycles
    # The UP5K's 8 DSP blocks bound the int8 lanes.
    assert plan.resources["dsp"][0] <= 8
    assert plan.resources["dsp"][1] == 8


def test_the_plan_counts_the_accelerator_and_the_host_link(int8_net):
    plan = plan_folding(int8_net, "ulx3s-85f")
    alone = estimate(int8_net, "ecp5", "dataflow", fold=plan.folding)
    link = host_link_cost(int8_net, "ecp5", in_count=plan.folding[0].simd)
    assert link["lut4"] > 0 and link["ff"] > 0
    for name in ("lut4", "ff", "bram"):
        assert plan.resources[name][0] == alone[name] + link[name]
    assert plan.resources["dsp"][0] == alone["dsp"]


def test_a_large_input_costs_the_host_link_block_ram_not_a_register_per_bit():
    image = random_cnn(np.random.default_rng(0), (32, 32, 3), [
        ("conv2d", dict(out_channels=4, kernel=3, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("dense", dict(out_features=10, weight_format="binary", stage="accumulator"))],
        input_format="uint8")
    for family in ("ecp5", "ice40"):
        cost = host_link_cost(image, family, in_count=3)
        assert cost["bram"] * {"ecp5": 18432, "ice40": 4096}[family] >= 32 * 32 * 3 * 8
        assert cost["ff"] < 1000


def test_a_target_gets_the_cheapest_folding_that_meets_it(int8_net):
    target = 10_000
    plan = plan_folding(int8_net, "icebreaker", target)
    assert plan.inferences_per_second >= target
    assert plan.cycles <= math.floor(ICEBREAKER_HZ / target)
    assert within_budget(plan)
    # Cheapest: a looser target never needs more lanes, a tighter one never fewer.
    looser = plan_folding(int8_net, "icebreaker", target / 4)
    lanes = sum(fold.lanes for fold in plan.folding)
    assert sum(fold.lanes for fold in looser.folding) <= lanes
    assert sum(fold.lanes for fold in plan_folding(int8_net, "ulx3s-85f", 400_000).folding) \
        >= lanes


def test_a_pll_clock_allows_more_cycles_per_inference(int8_net):
    board_clock = plan_folding(int8_net, "icebreaker", 5_000)
    pll = plan_folding(int8_net, "icebreaker", 5_000, clock_mhz=48)
    assert pll.clock_hz == 48e6
    assert pll.cycles <= math.floor(48e6 / 5_000)
    assert sum(f.lanes for f in pll.folding) <= sum(f.lanes for f in board_clock.folding)


def test_a_target_faster_than_the_fully_parallel_design_says_so(int8_net):
    with pytest.raises(NoFolding, match=r"allows 0 cycles per inference; the fastest folding "
                                        r"of 'mlp' \(every weight its own lane\) takes 1"):
        plan_folding(int8_net, "icebreaker", 5e7)


def test_a_target_over_the_device_names_what_is_over_and_what_fits(int8_net):
    with pytest.raises(NoFolding) as caught:
        plan_folding(int8_net, "icebreaker", 400_000)
    message = str(caught.value)
    assert "needs at most 30 cycles per inference" in message
    # Its multipliers moved to logic (PxSL) where the 8 DSP blocks ran out: LUT4s are over.
    assert re.search(r"the cheapest such folding \([^)]*L[ )]", message)
    assert "LUT4 " in message and f"of {math.floor(5280 * LOGIC_CEILING['lut4'])} (" in message
    assert "the fastest folding that fits takes" in message


@pytest.mark.parametrize("target, error", [(0, ValueError), (-5, ValueError),
                                           (float("inf"), ValueError), ("fast", TypeError),
                                           (True, TypeError)])
def test_bad_targets_are_refused(int8_net, target, error):
    with pytest.raises(error, match="target_fps must be"):
        plan_folding(int8_net, "icebreaker", target)


def test_unknown_boards_are_refused(int8_net):
    with pytest.raises(ValueError, match="Unknown board 'de10'; available: icebreaker"):
        plan_folding(int8_net, "de10")


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_compile_with_a_board_and_a_target_uses_the_planned_folding(capsys, tmp_path, int8_net):
    path = int8_net.save(tmp_path / "mlp.hwnn.npz")
    status, text, err = run(capsys, "compile", path, "--board", "icebreaker",
                            "--target-fps", 10000, "-o", tmp_path / "out")
    assert (status, err) == (0, ""), err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    plan = plan_folding(int8_net, "icebreaker", 10000)
    assert manifest["folding"] == {layer.name: {"pe": fold.pe, "simd": fold.simd}
                                   for layer, fold in zip(int8_net.layers, plan.folding,
                                                          strict=True)}
    assert manifest["cycles_per_inference"] == plan.cycles
    assert "inferences/s (target 10,000); estimated LUT4" in text


@pytest.mark.parametrize("argv, message", [
    (["--target-fps", "100"], "--target-fps and --clock-mhz need --board"),
    (["--board", "icebreaker", "--clock-mhz", "900"], "The ice40 PLL cannot make 900 MHz"),
    (["--board", "icebreaker", "--max-lanes", "8"], "--board chooses the folding itself"),
    (["--board", "icebreaker", "--arch", "sparse"],
     "--board applies to --arch dataflow or systolic only"),
    (["--board", "icebreaker", "--target-fps", "400000"], "is estimated over the device"),
    (["--board", "nexys"], "invalid choice: 'nexys'"),
])
def test_compile_refuses_impossible_board_requests_in_one_line(capsys, tmp_path, int8_net,
                                                               argv, message):
    path = int8_net.save(tmp_path / "mlp.hwnn.npz")
    status, _, err = run(capsys, "compile", path, *argv, "-o", tmp_path / "out")
    assert status == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def _with(folding, logic):
    return tuple(dataclasses.replace(fold, multipliers="logic" if index in logic else "dsp")
                 for index, fold in enumerate(folding))


def test_the_icebreaker_plan_builds_multipliers_in_logic_where_dsp_blocks_run_out(int8_net):
    """The int8 MLP's fastest folding that fits the UP5K's 8 DSP blocks with every multiplier
    in one is slower than the plan, which moves some layers' multipliers into logic."""
    plan = plan_folding(int8_net, "icebreaker")
    assert within_budget(plan) and plan.resources["dsp"][0] <= 8
    assert any(fold.multipliers == "logic" for fold in plan.folding)
    assert estimate(int8_net, "ice40", fold=_with(plan.folding, ()))["dsp"] > 8
    dsp_only = next(cycles for cycles in cycle_targets(int8_net)
                    if estimate(int8_net, "ice40", host_link=True,
                                fold=folding_for_cycles(int8_net, cycles))["dsp"] <= 8)
    assert plan.cycles < dsp_only


def test_logic_fallback_keeps_dsp_blocks_where_they_save_the_most_lut4(int8_net):
    folding = (LayerFold(2, 2), LayerFold(2, 4))
    chosen = logic_fallback(int8_net, folding, "ice40-up5k")
    options = [_with(folding, logic) for size in range(3)
               for logic in itertools.combinations(range(2), size)]
    fitting = [option for option in options
               if estimate(int8_net, "ice40", fold=option)["dsp"] <= 8]
    assert chosen in fitting
    assert estimate(int8_net, "ice40", fold=chosen)["lut4"] == min(
        estimate(int8_net, "ice40", fold=option)["lut4"] for option in fitting)
    # Within the DSP blocks: unchanged, and a folding with logic multipliers is reset to DSP.
    assert logic_fallback(int8_net, folding, "ecp5-85f") == folding
    assert logic_fallback(int8_net, _with(folding, (0, 1)), "ecp5-85f") == folding


def test_logic_fallback_hardwires_fully_parallel_layers_where_that_is_cheaper(int8_net):
    """Fully parallel, the MLP needs 2,368 multipliers (an ECP5-85F has 156 DSP blocks): the
    layers moved out of DSP blocks are hardwired (adder graphs), which the estimate puts below
    the same layers' multipliers in logic; a folded layer can only go to logic."""
    folding = fully_parallel(int8_net)
    chosen = logic_fallback(int8_net, folding, "ecp5-85f")
    assert estimate(int8_net, "ecp5", fold=chosen)["dsp"] <= 156
    moved = [index for index, fold in enumerate(chosen) if fold.multipliers != "dsp"]
    assert moved and all(chosen[index].multipliers == "hardwired" for index in moved)
    logic = _with(folding, moved)
    assert estimate(int8_net, "ecp5", fold=chosen)["lut4"] < \
        estimate(int8_net, "ecp5", fold=logic)["lut4"]
    folded = (LayerFold(32, 32), LayerFold(10, 16))
    assert {fold.multipliers for fold in logic_fallback(int8_net, folded, "ice40-up5k")} <= \
        {"dsp", "logic"}


def test_logic_fallback_of_many_layers_keeps_the_most_lut4_per_dsp_block(monkeypatch, int8_net):
    monkeypatch.setattr("hwnn.planning.planner.EXHAUSTIVE_LAYERS", 1)     # greedy beyond
    folding = (LayerFold(2, 2), LayerFold(2, 4))
    chosen = logic_fallback(int8_net, folding, "ice40-up5k")
    assert estimate(int8_net, "ice40", fold=chosen)["dsp"] <= 8
    assert any(fold.multipliers == "dsp" for fold in chosen)
    assert any(fold.multipliers == "logic" for fold in chosen)


def test_plans_are_folds_of_the_network(int8_net):
    plan = plan_folding(int8_net, "orangecrab-85f")
    for layer, fold in zip(int8_net.layers, plan.folding, strict=True):
        assert isinstance(fold, LayerFold)
        assert layer.out_features % fold.pe == 0 and layer.in_features % fold.simd == 0


def test_a_cnn_is_planned_through_its_units_cycles():
    network = sample_cnn()                  # conv 3x3 on 6x6x2 (padded: 36 windows), pool, dense
    # Fastest: the convolution hardwired, a window a cycle, 36 cycles (on DSP blocks at its
    # fastest fold, pe 4 and simd 2, 36 windows x 9 taps = 324).
    with pytest.raises(NoFolding, match=r"allows 12 cycles per inference; the fastest folding "
                                        r"of 'cnn' \(every layer at its fastest fold, "
                                        r"convolutions hardwired\) takes 36 "):
        plan_folding(network, "icebreaker", 1_000_000)
    plan = plan_folding(network, "icebreaker", 100_000)           # at most 120 cycles
    conv, pool, dense = plan.folding
    assert conv == LayerFold(4, 2, "hardwired") and plan.resources["dsp"][0] == 0
    assert plan.cycles <= 120 and plan.cycles == max(36, 6 * 6 * 4 // pool.pe,
                                                     3 // dense.pe * (36 // dense.simd))
    plan = plan_folding(network, "icebreaker", 12_000)            # at most 1000 cycles
    conv, pool, dense = plan.folding
    assert conv.multipliers == "dsp"                              # fewer lanes suffice
    assert plan.cycles <= 1000 and plan.cycles == max(
        36 * (4 // conv.pe) * (18 // conv.simd), 36 * 2 // conv.simd,
        6 * 6 * 4 // pool.pe, 3 // dense.pe * (36 // dense.simd))


def systolic_candidates(network):
    """``(cycles per inference, rows, cols, batch, output stage lanes)`` of every array, batch
    and output stage width a plan tries."""
    return [(schedule(network, OverlayParams(rows, cols, batch, stage_lanes=lanes))[
        "per_inference"], rows, cols, batch, lanes)
        for rows, cols in ARRAYS for batch in BATCHES
        for lanes in range(1, cols + 1) if cols % lanes == 0]


def systolic_fits(network, family, capacity, rows, cols, batch, lanes):
    guess = estimate(network, family, "systolic", host_link=True, array=f"{rows}x{cols}",
                     batch=batch, stage_lanes=lanes)
    return all(guess[name] <= (available * LOGIC_CEILING[name] if name in LOGIC_RESOURCES
                               else available)
               for name, available in capacity.items())


def test_the_systolic_plan_is_the_fastest_array_and_batch_that_fits(threshold_net):
    plan = plan_array(threshold_net, "icebreaker")
    rows, cols = map(int, plan.options["array"].split("x"))
    assert within_budget(plan) and plan.resources["dsp"] == (rows * cols, 8)
    assert plan.cycles == schedule(threshold_net, OverlayParams(
        rows, cols, plan.options["batch"], stage_lanes=plan.options["stage_lanes"] or None))[
        "per_inference"]
    capacity = {name: available for name, (_, available) in plan.resources.items()}
    faster = [c for c in systolic_candidates(threshold_net) if c[0] < plan.cycles]
    assert faster and not any(systolic_fits(threshold_net, "ice40", capacity, *c[1:])
                              for c in faster)


def test_a_systolic_target_gets_the_fewest_multipliers_that_meet_it(threshold_net):
    plan = plan_array(threshold_net, "ulx3s-85f", 200_000)
    rows, cols = map(int, plan.options["array"].split("x"))
    allowed = plan.clock_hz / 200_000
    assert plan.cycles <= allowed and within_budget(plan)
    assert all(r * c >= rows * cols for cycles, r, c, *_ in systolic_candidates(threshold_net)
               if cycles <= allowed)


def test_compile_for_a_board_builds_the_planned_array(capsys, tmp_path, threshold_net):
    path = threshold_net.save(tmp_path / "thr.hwnn.npz")
    status, text, err = run(capsys, "compile", path, "--arch", "systolic", "--board",
                            "icebreaker", "-o", tmp_path / "out")
    assert (status, err) == (0, ""), err
    plan = plan_array(threshold_net, "icebreaker")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    array = manifest["array"]
    assert (f"{array['rows']}x{array['cols']}", manifest["batch"]) == \
        (plan.options["array"], plan.options["batch"])
    assert manifest["cycles_per_inference"] == plan.cycles
    assert manifest["stage_lanes"] == plan.options["stage_lanes"]
    assert text.startswith(f"{plan.choice} for icebreaker (ICE40-UP5K, 12 MHz): ")
    assert text.startswith(f"array {plan.options['array']}, batch {plan.options['batch']}")


def test_requantization_goes_to_logic_when_the_dsp_blocks_run_out():
    """Two requantizing layers take a multiplier per column each, of two SB_MAC16 blocks
    (accumulators wider than 16 bits): 8 blocks beside a 2x2 array's 4, more than the UP5K's
    8. The plan puts them in logic (per-tensor scales: constants, as the quantizer makes by
    default; per-channel multipliers in logic would not fit the UP5K's logic cells); where
    the DSP blocks suffice it keeps them there."""
    deep = random_network(np.random.default_rng(2), [64, 64, 32, 10],
                          weight_formats=["int8"] * 3, act_formats=["uint8"] * 2,
                          stages=["requant"] * 2, name="deep")
    deep = Network(deep.name, tuple(
        layer if layer.stage is None else dataclasses.replace(layer, stage=dataclasses.replace(
            layer.stage, multiplier=np.full(layer.out_features, layer.stage.multiplier[0])))
        for layer in deep.layers))
    plan = plan_array(deep, "icebreaker")
    assert plan.options["requant"] == "logic" and ", requantization in logic" in plan.choice
    assert within_budget(plan) and plan.resources["dsp"][0] <= 8
    in_dsp = estimate(deep, "ice40", "systolic", array=plan.options["array"],
                      batch=plan.options["batch"], stage_lanes=plan.options["stage_lanes"])
    assert in_dsp["dsp"] > 8
    assert plan_array(deep, "ulx3s-85f", 20_000).options["requant"] == "dsp"


def test_a_systolic_plan_packs_products_where_unpacked_multipliers_do_not_fit():
    """Ternary weights and uint4 activations: a 16x16 array needs 256 multipliers, more than an
    ECP5-85F's 156, but two products share one exactly (sums of 16 terms take 9 bits), so the
    fastest plan is the packed 16x16; a design whose unpacked multipliers fit stays
    unpacked."""
    wide = random_network(np.random.default_rng(3), [256, 256, 64],
                          weight_formats=["ternary"] * 2, act_formats=["uint4"],
                          input_format="uint4", name="wide")
    plan = plan_array(wide, "ulx3s-85f")
    assert (plan.options["array"], plan.options["pack"]) == ("16x16", "2")
    assert "2 products per multiplier" in plan.choice and within_budget(plan)
    unpacked = estimate(wide, "ecp5", "systolic", host_link=True, array="16x16",
                        batch=plan.options["batch"])
    assert unpacked["dsp"] > 156 >= plan.resources["dsp"][0]
    assert plan_array(wide, "ulx3s-85f", 10_000).options["pack"] == "1"


def test_ice40_logic_cells_bound_a_plan_whose_lut4s_and_flip_flops_fit():
    """nextpnr packs a flip-flop with its LUT4 only when that LUT4 drives nothing else, so an
    iCE40 design takes more logic cells than it has LUT4s or flip-flops: per-channel
    requantization multipliers in logic fit the UP5K's LUT4s and flip-flops but not its
    logic cells; the plan narrows the output stages until the cells fit, and says so where
    nothing fits."""
    deep = random_network(np.random.default_rng(2), [64, 64, 32, 10],
                          weight_formats=["int8"] * 3, act_formats=["uint8"] * 2,
                          stages=["requant"] * 2, name="deep")
    guess = estimate(deep, "ice40", "systolic", host_link=True, array="1x2", batch=1,
                     requant="logic")
    assert guess["lc"] == logic_cells(guess["lut4"], guess["ff"], "systolic") > max(
        guess["lut4"], guess["ff"])
    assert max(guess["lut4"], guess["ff"]) <= 5280 * LOGIC_CEILING["lut4"]
    assert guess["lc"] > 5280 * LOGIC_CEILING["lc"]
    plan = plan_array(deep, "icebreaker")
    assert within_budget(plan) and plan.options["stage_lanes"] == 1
    assert "output stages 1 lane wide" in plan.choice
    # Full-width stages of the planned array and batch: over the cells in logic, over the
    # DSP blocks in them.
    for requant in ("logic", "dsp"):
        full = estimate(deep, "ice40", "systolic", host_link=True,
                        **dict(plan.options, requant=requant, stage_lanes=0))
        assert full["lc"] > 5280 * LOGIC_CEILING["lc"] or full["dsp"] > 8
    # Four requantizing layers: even one-lane stages take too many cells, and only cells.
    deeper = random_network(np.random.default_rng(2), [32, 48, 48, 48, 48, 10],
                            weight_formats=["int8"] * 5, act_formats=["uint8"] * 4,
                            stages=["requant"] * 4, name="deeper")
    ceiling = LOGIC_CEILING["lc"]
    with pytest.raises(NoFolding, match=rf"\(array 1x2, batch 1, requantization in logic, "
                                        rf"output stages 1 lane wide\) needs LC \d+ of "
                                        rf"{int(5280 * ceiling)} \({ceiling:.0%} of 5280\) "
                                        rf"\(\+\d+\)$"):
        plan_array(deeper, "icebreaker")


def test_systolic_board_requests_that_cannot_be_met_say_why_in_one_line(capsys, tmp_path,
                                                                         threshold_net):
    wide = random_network(np.random.default_rng(1), [784, 256, 10],
                          weight_formats=["int8", "int8"], act_formats=["uint8"],
                          stages=["requant"], name="wide")
    cases = [
        # (784 * 256 + 256 * 10) int8 weights = 1,588 kbit.
        (wide, [], ("No systolic array of 'wide' fits the icebreaker (ICE40-UP5K, 12 MHz): "
                    "its weights alone take 1,588.0 kbit, more than the 30 block RAMs and 4 "
                    "SPRAM blocks of the ICE40-UP5K hold (1,144 kbit); the overlay keeps every "
                    "weight on chip")),
        (threshold_net, ["--target-fps", "1000000"],
         ("1,000,000 inferences/s on the icebreaker (ICE40-UP5K, 12 MHz) allows 12 cycles "
          "per inference; the fastest systolic design of 'thr' (array 16x16, batch 64) "
          "takes")),
        (threshold_net, ["--array", "2x4"], "--board chooses the array and batch itself"),
    ]
    for network, argv, message in cases:
        path = network.save(tmp_path / f"{network.name}.hwnn.npz")
        status, _, err = run(capsys, "compile", path, "--arch", "systolic", "--board",
                             "icebreaker", *argv, "-o", tmp_path / "out")
        assert status == 2 and message in err and err.count("\n") == 1, err
        assert not (tmp_path / "out").exists()


def test_an_mnist_size_mlp_plans_for_the_icebreaker_with_its_weights_in_spram():
    """784-128-10 int8 (794 kbit of weights, the UP5K's block RAMs hold 120): the weights are
    loaded at start-up into SPRAM; a smaller network keeps them in a ROM."""
    mnist = random_network(np.random.default_rng(1), [784, 128, 10],
                           weight_formats=["int8", "int8"], act_formats=["uint8"],
                           stages=["requant"], name="mnist")
    plan = plan_array(mnist, "icebreaker")
    assert plan.options["weights"] == "loaded" and "weights loaded at start-up" in plan.choice
    assert plan.resources["spram"] == (4, 4) and plan.resources["bram"][0] <= 30
    # Every weight word is in the SPRAM blocks (16,384 words of 16 bits each).
    top = SystolicOverlay(mnist, OverlayParams(*map(int, plan.options["array"].split("x")),
                                               plan.options["batch"], weights="loaded"))
    weights = {memory.use: memory for memory in top.structure().memories}["weights"]
    assert spram_memories(top.structure().memories, "ice40")[0] == weights
    assert weights.bits >= 784 * 128 * 8
    small = random_network(np.random.default_rng(1), [64, 32, 10],
                           weight_formats=["int8", "int8"], act_formats=["uint8"],
                           stages=["requant"], name="tiny")
    assert plan_array(small, "icebreaker").options["weights"] == "rom"


def test_compile_for_the_icebreaker_writes_logic_multipliers_to_the_manifest(capsys, tmp_path,
                                                                             int8_net):
    path = int8_net.save(tmp_path / "mlp.hwnn.npz")
    status, text, err = run(capsys, "compile", path, "--board", "icebreaker", "-o",
                            tmp_path / "out")
    assert (status, err) == (0, ""), err
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    plan = plan_folding(int8_net, "icebreaker")
    logic = [layer.name for layer, fold in zip(int8_net.layers, plan.folding, strict=True)
             if fold.multipliers == "logic"]
    assert logic
    assert [name for name, entry in manifest["folding"].items()
            if entry.get("multipliers") == "logic"] == logic
    assert [layer["multipliers"] for layer in manifest["layers"]] == [
        fold.multipliers for fold in plan.folding]
    assert "multipliers" in text and "logic" in text
