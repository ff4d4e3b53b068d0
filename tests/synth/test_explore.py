"""``hwnn explore``: sweeps, parallel synthesis (local processes and Dask), table, Pareto plot."""

import csv
import json
import re
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from hwnn.planning import explore as explore_module
from hwnn.cli import main
from hwnn.planning.estimate import estimate
from hwnn.planning.explore import Point, explore, measure_point, pareto, sweep, write_results
from hwnn.quant.synthetic import random_network, sample_network
from hwnn.rtl.folding import fully_parallel, unfolded


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_dataflow_sweep_runs_from_one_lane_per_layer_to_fully_parallel():
    network = sample_network("binary")
    points = sweep(network, "dataflow")
    assert points[0].options["fold"] == unfolded(network)
    assert points[-1].options["fold"] == fully_parallel(network)
    lanes = [sum(fold.lanes for fold in point.options["fold"]) for point in points]
    assert lanes == sorted(lanes) and len(set(lanes)) == len(lanes)
    assert [p.label for p in sweep(network, "systolic")] == [
        "1x2", "2x2", "2x4", "4x4", "4x8", "8x8", "8x16", "16x16"]
    assert [p.options["pes"] for p in sweep(network, "sparse")] == [1, 2, 4, 8]   # 12 rows
    with pytest.raises(ValueError, match="Unknown architecture 'gpu'"):
        sweep(network, "gpu")


def test_a_sweep_for_a_device_builds_multipliers_in_logic_where_dsp_blocks_run_out():
    """Where DSP blocks run out, layers take their multipliers into logic (``L``), or when
    fully parallel are hardwired (``H``) where the estimate says that is cheaper."""
    network = sample_network("int8")
    plain, fitted = sweep(network, "dataflow"), sweep(network, "dataflow", "ice40-up5k")
    assert [re.sub("[LH]", "", point.label) for point in fitted] == [p.label for p in plain]
    assert any("L" in point.label for point in fitted)
    assert "H" in fitted[-1].label                       # the fully parallel point
    for before, after in zip(plain, fitted, strict=True):
        dsp = estimate(network, "ice40", fold=before.options["fold"])["dsp"]
        assert estimate(network, "ice40", fold=after.options["fold"])["dsp"] <= 8
        assert bool(re.search("[LH]", after.label)) == (dsp > 8), (after.label, dsp)
    # Systolic points change only where their weight ROM is over the block RAMs.
    for before, after in zip(sweep(network, "systolic"), sweep(network, "systolic",
                                                               "ice40-up5k"), strict=True):
        over = estimate(network, "ice40", "systolic", **before.options)["bram"] > 30
        assert (after.label == before.label) == (not over), after.label
        assert after.label.startswith(before.label) and after.label.endswith(
            " loaded" if over else before.label)


def test_a_systolic_sweep_on_an_up5k_loads_weights_the_block_rams_do_not_hold():
    """784-128-10 int8 (794 kbit of weights): on the UP5K each array loads its weights at
    start-up (into SPRAM) and takes the largest batch whose activations the block RAMs hold;
    on the ECP5-85F (no SPRAM, 208 block RAMs) the points stay as they are."""
    mnist = random_network(np.random.default_rng(1), [784, 128, 10],
                           weight_formats=["int8", "int8"], act_formats=["uint8"],
                           stages=["requant"], name="mnist")
    points = sweep(mnist, "systolic", "ice40-up5k")
    assert [p.label for p in points[:3]] == ["1x2 b4 loaded", "2x2 b4 loaded", "2x4 b4 loaded"]
    for point in points[:6]:
        assert point.options["weights"] == "loaded" and point.options["batch"] == 4
        assert estimate(mnist, "ice40", "systolic", **point.options)["bram"] <= 30
        assert estimate(mnist, "ice40", "systolic",
                        **point.options | {"batch": 8})["bram"] > 30
    assert [p.label for p in sweep(mnist, "systolic", "ecp5-85f")] == [
        p.label for p in sweep(mnist, "systolic")]


def test_pareto_keeps_the_points_nothing_beats_on_both_area_and_speed():
    rows = [{"fits": True, "lut4": 100, "inferences_per_second": 10},
            {"fits": True, "lut4": 200, "inferences_per_second": 5},     # beaten by row 0
            {"fits": True, "lut4": 300, "inferences_per_second": 50},
            {"fits": False, "lut4": 50, "inferences_per_second": ""},    # does not fit
            {"fits": True, "lut4": 100, "inferences_per_second": 10},    # a tie: both kept
            {"fits": "", "lut4": "", "inferences_per_second": ""}]       # tools failed
    assert pareto(rows) == [0, 2, 4]


@pytest.mark.synth
@pytest.mark.slow
def test_points_are_placed_and_routed_in_parallel_processes(tmp_path):
    network = sample_network("int4")
    points = sweep(network, "dataflow")[:3]
    seen = []
    with ProcessPoolExecutor(2) as executor:
        rows = explore(network, points, "ice40-up5k", 12.0, executor,
                       progress=lambda done, total, row: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert [row["point"] for row in rows] == [point.label for point in points]
    for row in rows:
        assert row["fits"] is True and row["error"] == ""
        assert 10 < row["fmax_mhz"] < 500 and row["lut4"] > 0 and row["ff"] > 0
        assert row["inferences_per_second"] == pytest.approx(
            min(row["fmax_mhz"], 12.0) * 1e6 / row["cycles"], rel=1e-3)
        assert row["est_lut4"] > 0 and row["est_ff"] > 0
    assert [row["pareto"] for row in rows] == [i in pareto(rows) for i in range(3)]

    out = write_results(rows, tmp_path / "sweep", title="int4", meta={"board": "icebreaker"})
    data = json.loads((out / "explore.json").read_text())
    assert data["board"] == "icebreaker" and len(data["points"]) == 3
    with open(out / "explore.csv") as handle:
        table = list(csv.DictReader(handle))
    assert [entry["point"] for entry in table] == [row["point"] for row in rows]
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.synth
def test_a_point_that_does_not_fit_is_a_row_saying_what_is_over():
    network = sample_network("int8")
    row = measure_point(network, Point("all", "dataflow", {"fold": fully_parallel(network)}),
                        "ice40-up5k", 12.0, place=False)
    assert row["fits"] is False
    assert row["error"].startswith("The design does not fit the ICE40-UP5K: it needs DSP ")
    assert row["dsp"] > 8 and row["lut4"] > 0 and row["inferences_per_second"] == ""
    assert pareto([row]) == []


def test_a_point_whose_tools_fail_becomes_a_row_with_the_error(monkeypatch):
    def measure(network, point, device, clock_mhz, place):
        if point.label == "bad":
            raise RuntimeError("yosys crashed")
        return {"point": point.label, "arch": "dataflow", "fits": True, "lut4": 10,
                "inferences_per_second": 5.0, "pareto": False, "error": ""}
    monkeypatch.setattr(explore_module, "measure_point", measure)
    with ThreadPoolExecutor(2) as executor:
        rows = explore(sample_network("int4"), [Point("good", "dataflow"),
                                               Point("bad", "dataflow")],
                       "ecp5-85f", 25.0, executor)
    assert rows[0]["pareto"] is True
    assert rows[1]["error"] == "RuntimeError: yosys crashed" and rows[1]["pareto"] is False


def test_an_interrupted_exploration_resumes_from_its_finished_points(capsys, monkeypatch,
                                                                     tmp_path):
    network = sample_network("int4")
    path = network.save(tmp_path / "int4.hwnn.npz")
    labels = [point.label for point in sweep(network, "dataflow", "ice40-up5k")]
    assert len(labels) >= 4
    measured = []

    def measure(network, point, device, clock_mhz, place):
        if len(measured) == 2 and interrupt:
            raise KeyboardInterrupt
        measured.append(point.label)
        return dict.fromkeys(explore_module.COLUMNS, "") | {
            "point": point.label, "arch": point.arch, "fits": True, "pareto": False,
            "cycles": 10, "lut4": 100 * len(measured), "inferences_per_second": 1e3}

    monkeypatch.setattr(explore_module, "measure_point", measure)
    monkeypatch.setattr("concurrent.futures.ProcessPoolExecutor", ThreadPoolExecutor)
    argv = ["explore", path, "--board", "icebreaker", "--jobs", "1", "-o", tmp_path / "sweep"]
    interrupt = True
    assert run(capsys, *argv)[0] == 130
    assert measured == labels[:2]
    assert (tmp_path / "sweep" / "explore.partial.json").is_file()

    interrupt, measured[:] = False, []
    status, text, _ = run(capsys, *argv)
    assert status == 0
    assert (f"reusing 2 of {len(labels)} points finished by an interrupted run with the same "
            f"arguments in {tmp_path / 'sweep'}/") in text
    assert measured == labels[2:]
    rows = json.loads((tmp_path / "sweep" / "explore.json").read_text())["points"]
    assert [row["point"] for row in rows] == labels
    assert not (tmp_path / "sweep" / "explore.partial.json").exists()

    # Interrupted again, then run with other arguments: nothing is reused.
    interrupt, measured[:] = True, []
    assert run(capsys, *argv)[0] == 130
    interrupt, measured[:] = False, []
    status, text, _ = run(capsys, *argv, "--no-place")
    assert status == 0 and measured == labels
    assert "starting over: the 2 finished points" in text and "reusing" not in text


def test_results_never_overwrite_a_folder_that_is_not_an_exploration(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="is not an hwnn exploration folder"):
        write_results([], tmp_path / "precious", title="t", meta={})
    assert (tmp_path / "precious" / "thesis.tex").read_text() == "x"


@pytest.mark.synth
@pytest.mark.slow
def test_explore_runs_on_a_dask_cluster(capsys, tmp_path):
    distributed = pytest.importorskip("distributed", reason="Dask is the cluster extra")
    network = sample_network("int4")
    path = network.save(tmp_path / "int4.hwnn.npz")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        status, text, err = run(capsys, "explore", path, "--board", "ulx3s-85f",
                                "--no-place", "--scheduler", cluster.scheduler_address,
                                "-o", tmp_path / "sweep")
    assert status == 0, err
    points = sweep(network, "dataflow")
    assert f"exploring {len(points)} dataflow designs of int4 for the ulx3s-85f" in text
    assert f"[{len(points)}/{len(points)}]" in text
    data = json.loads((tmp_path / "sweep" / "explore.json").read_text())
    assert [row["point"] for row in data["points"]] == [point.label for point in points]
    assert data["placed"] is False
    for row in data["points"]:
        assert row["fits"] is True and row["fmax_mhz"] == ""
        # Not placed: the rate is the board clock's.
        assert row["inferences_per_second"] == pytest.approx(25e6 / row["cycles"], rel=1e-3)
    assert any(row["pareto"] for row in data["points"])


@pytest.mark.parametrize("argv, message", [
    (["--board", "arty"], "invalid choice: 'arty'"),
    (["--board", "icebreaker", "--jobs", "0"], "--jobs must be at least 1, not 0"),
    (["--board", "icebreaker", "--jobs", "2", "--scheduler", "tcp://x:1"],
     "--jobs applies to local runs only"),
    (["--board", "icebreaker", "--arch", "tpu"], "invalid choice: 'tpu'"),
])
def test_explore_refuses_bad_options_in_one_line(capsys, tmp_path, argv, message):
    path = sample_network("int4").save(tmp_path / "int4.hwnn.npz")
    status, _, err = run(capsys, "explore", path, *argv, "-o", tmp_path / "sweep")
    assert status == 2
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "sweep").exists()
