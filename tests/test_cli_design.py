"""``hwnn compile``, ``hwnn simulate`` and ``hwnn demo`` from the command line."""

import json
import re

import numpy as np
import pytest
import pywellen

from hwnn.cli import main
from hwnn.flow.generate import generate
from hwnn.quant.synthetic import random_network, sample_cnn


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.fixture()
def net_file(tmp_path):
    network = random_network(np.random.default_rng(0), [8, 6, 4],
                             weight_formats=["int4", "ternary"], act_formats=["uint2"],
                             name="tiny")
    return network.save(tmp_path / "tiny.hwnn.npz")


def test_compile_systolic_then_simulate(capsys, net_file, tmp_path):
    out = tmp_path / "design"
    status, text, err = run(capsys, "compile", net_file, "--arch", "systolic", "--array",
                            "4x4", "--batch", "4", "-o", out)
    assert (status, err) == (0, "")
    assert "4x4 array, batch 4:" in text and "utilization" in text
    status, text, err = run(capsys, "simulate", out, "--simulator", "icarus", "--backpressure")
    assert (status, err) == (0, ""), text
    assert "icarus: 32/32 inputs match the golden model" in text


def test_compile_sparse_then_simulate(capsys, tmp_path):
    network = random_network(np.random.default_rng(1), [16, 12, 6],
                             weight_formats=["int8", "int8"], act_formats=["uint4"],
                             stages=["requant"], density=0.2, share=4, name="pruned")
    net_file = network.save(tmp_path / "pruned.hwnn.npz")
    out = tmp_path / "design"
    status, text, err = run(capsys, "compile", net_file, "--arch", "sparse", "--pes", "4",
                            "--queue-depth", "2", "-o", out)
    assert (status, err) == (0, "")
    assert "nonzeros/PE" in text and "4 PEs, queues of 2, 4-bit row indices" in text
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["arch"] == "sparse" and manifest["layers"][0]["codebook"] <= 15
    for simulator in ("amaranth", "icarus"):
        status, text, err = run(capsys, "simulate", out, "--simulator", simulator,
                                "--backpressure")
        assert (status, err) == (0, ""), text
        assert f"{simulator}: 32/32 inputs match the golden model" in text


def test_compile_then_simulate_on_amaranth_and_icarus(capsys, net_file, tmp_path):
    out = tmp_path / "design"
    status, text, err = run(capsys, "compile", net_file, "--max-lanes", "8", "-o", out)
    assert (status, err) == (0, "")
    assert "dense0" in text and "cycles per inference" in text
    assert json.loads((out / "manifest.json").read_text())["lanes"] <= 8
    for simulator in ("amaranth", "icarus"):
        status, text, err = run(capsys, "simulate", out, "--simulator", simulator,
                                "--backpressure")
        assert (status, err) == (0, ""), text
        assert f"{simulator}: 32/32 inputs match the golden model" in text


def test_recompiling_keeps_the_results_of_the_same_design_and_names_what_it_removes(
        capsys, net_file, tmp_path):
    out = tmp_path / "design"
    assert run(capsys, "compile", net_file, "--max-lanes", "8", "-o", out)[0] == 0
    status, text, _ = run(capsys, "simulate", out, "--simulator", "amaranth", "--waves")
    waves = out / "sim" / "amaranth" / "waves.vcd"
    assert status == 0 and waves.is_file()
    status, text, _ = run(capsys, "compile", net_file, "--max-lanes", "8", "-o", out)
    assert status == 0
    assert text.splitlines()[-1] == (f"replaced the earlier design in {out}/; kept its "
                                     f"results (the design is the same): sim/amaranth")
    assert waves.is_file()
    status, text, _ = run(capsys, "compile", net_file, "--max-lanes", "2", "-o", out)
    assert status == 0
    assert text.splitlines()[-1] == (f"replaced the earlier design in {out}/; removed its "
                                     f"results (the design changed): sim/amaranth")
    assert not (out / "sim").exists()


@pytest.mark.cocotb
def test_icarus_writes_waveforms_after_a_plain_run(capsys, tmp_path):
    network = random_network(np.random.default_rng(0), [8, 4], weight_formats=["int4"],
                             act_formats=[], name="waved")
    out = generate(network, tmp_path / "design", max_lanes=4)
    status, text, _ = run(capsys, "simulate", out, "--simulator", "icarus")
    assert status == 0 and "waveforms" not in text
    assert re.search(r"^  built in \d+ s; simulating ...$", text, re.MULTILINE), text
    # The build without waveforms must not be reused for a run with them.
    status, text, err = run(capsys, "simulate", out, "--simulator", "icarus", "--waves")
    assert (status, err) == (0, ""), text
    waves = out / "sim" / "icarus" / "waves.fst"
    assert text.splitlines()[-1] == f"waveforms in {waves}"
    assert "clk" in [var.name for var in pywellen.Waveform(str(waves)).all_vars()]


def test_simulate_exits_1_and_names_the_mismatch(capsys, net_file, tmp_path):
    from hwnn.ir import Network
    out = tmp_path / "design"
    assert run(capsys, "compile", net_file, "-o", out)[0] == 0
    expected = np.load(out / "vectors" / "expected.npy")
    np.save(out / "vectors" / "expected.npy", expected + 1)   # the golden vectors are not used
    network = Network.load(out / "network.hwnn.npz")
    layer = network.layers[1]
    bias = layer.bias.copy()
    bias[2] += -1 if bias[2] > 0 else 1       # toward 0: the accumulator range cannot grow
    changed = Network(network.name, (network.layers[0],
                                     type(layer)(**{**layer.__dict__, "bias": bias})))
    changed.save(out / "network.hwnn.npz")
    status, text, _ = run(capsys, "simulate", out, "--simulator", "icarus")
    assert status == 1
    assert "MISMATCH input 0, layer dense1 (output): expected" in text
    assert "channels [2] differ" in text
    assert "icarus: 0/32 inputs match the golden model, 32 MISMATCH" in text


@pytest.mark.parametrize("arguments, message", [
    (["--fold", "nofile.json"], "No fold file at 'nofile.json'"),
    (["--fold", "hardwired", "--max-lanes", "8"],
     "--max-lanes applies to --fold auto only, not to --fold hardwired"),
    (["--max-lanes", "1"], "--max-lanes must be at least 2 (one lane per layer), not 1"),
    (["--arch", "tpu"], "invalid choice: 'tpu'"),
    (["--array", "4x4"], "--array applies to --arch systolic only"),
    (["--arch", "systolic", "--max-lanes", "8"], "--max-lanes applies to --arch dataflow only"),
    (["--arch", "systolic", "--array", "0x2"], "--array must have sides of 1..64, not 0x2"),
    (["--arch", "systolic", "--array", "eight"], "--array must be given as RxC, like 8x8, not "),
    (["--arch", "systolic", "--array", "65x65"], "--array must have sides of 1..64, not 65x65"),
    (["--pes", "4"], "--pes applies to --arch sparse only"),
    (["--arch", "sparse", "--batch", "4"], "--batch applies to --arch systolic only"),
    (["--arch", "sparse", "--pes", "0"], "--pes must be 1..64, not 0"),
    (["--arch", "sparse", "--queue-depth", "100"], "--queue-depth must be 1..64, not 100"),
    (["--arch", "sparse", "--index-bits", "9"], "--index-bits must be 1..8, not 9"),
    (["--arch", "systolic", "--batch", "0"], "--batch must be 1..4096, not 0"),
    (["--arch", "systolic", "--batch", "5000"], "--batch must be 1..4096, not 5000"),
])
def test_compile_refuses_bad_options(capsys, net_file, tmp_path, arguments, message):
    out = tmp_path / "design"
    status, text, err = run(capsys, "compile", net_file, *arguments, "-o", out)
    assert status == 2 and text == ""
    assert message in err and err.count("\n") == 1
    assert not out.exists()


def test_compile_refuses_bad_fold_files(capsys, net_file, tmp_path):
    cases = {
        "not json": "is not valid JSON",
        json.dumps({"dense0": {"pe": 4, "simd": 1}, "dense1": {"pe": 1, "simd": 1}}):
            "Layer 'dense0': pe must divide its 6 outputs (1, 2, 3, 6), not 4",
        json.dumps({"dense0": {"pe": 1, "simd": 1}}): "Folding is missing layers 'dense1'",
        json.dumps({"dense0": {"pe": 1, "simd": 1}, "dense1": {"pe": 1, "simd": 1},
                    "dense9": {"pe": 1, "simd": 1}}): "Folding names unknown layers 'dense9'",
        json.dumps({"dense0": {"pe": 1}, "dense1": {"pe": 1, "simd": 1}}):
            "Folding of layer 'dense0' must be {'pe': P, 'simd': S}",
    }
    for text, message in cases.items():
        fold = tmp_path / "fold.json"
        fold.write_text(text)
        status, _, err = run(capsys, "compile", net_file, "--fold", fold, "-o",
                             tmp_path / "design")
        assert status == 2 and message in err and err.count("\n") == 1, (text, err)
        assert not (tmp_path / "design").exists()


def test_compile_with_a_fold_file(capsys, net_file, tmp_path):
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"dense0": {"pe": 3, "simd": 2}, "dense1": {"pe": 2, "simd": 3}}))
    assert run(capsys, "compile", net_file, "--fold", fold, "-o", tmp_path / "d")[0] == 0
    layers = json.loads((tmp_path / "d" / "manifest.json").read_text())["layers"]
    assert [(layer["pe"], layer["simd"], layer["cycles"]) for layer in layers] == \
        [(3, 2, 8), (2, 3, 4)]


def test_compile_hardwired_then_simulate(capsys, net_file, tmp_path):
    """``--fold hardwired``: every layer fully parallel with its weights as adder graphs, one
    vector per cycle, no weight memory; bit-exact in Icarus. A fold file may hardwire one
    layer, and refuses to hardwire a folded one."""
    out = tmp_path / "d"
    assert run(capsys, "compile", net_file, "--fold", "hardwired", "-o", out)[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert [(layer["pe"], layer["simd"], layer["multipliers"], layer["cycles"])
            for layer in manifest["layers"]] == [(6, 8, "hardwired", 1), (4, 6, "hardwired", 1)]
    assert [layer["memory_bits"]["weights"] for layer in manifest["layers"]] == [0, 0]
    status, text, _ = run(capsys, "simulate", out, "--simulator", "icarus")
    assert status == 0 and "MISMATCH" not in text
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"dense0": {"pe": 2, "simd": 8, "multipliers": "hardwired"},
                                "dense1": {"pe": 1, "simd": 1}}))
    status, _, err = run(capsys, "compile", net_file, "--fold", fold, "-o", tmp_path / "e")
    assert status == 2 and err.count("\n") == 1
    assert ("Layer 'dense0': hardwired multipliers need the layer fully parallel (pe 6, "
            "simd 8), not pe 2, simd 8") in err
    assert not (tmp_path / "e").exists()


def test_simulate_refuses_bad_inputs(capsys, net_file, tmp_path):
    out = tmp_path / "design"
    assert run(capsys, "compile", net_file, "-o", out)[0] == 0
    np.save(tmp_path / "shape.npy", np.zeros((3, 5), dtype=np.int64))
    np.save(tmp_path / "range.npy", np.full((3, 8), 300, dtype=np.int64))
    cases = [
        ([out, "--inputs", tmp_path / "shape.npy"], "must have shape (N, 8) for this design"),
        ([out, "--inputs", tmp_path / "range.npy"],
         "Input 0 holds codes outside the design's input format uint8 (0..255)"),
        ([out, "--inputs", tmp_path / "none.npy"], "No data file at"),
        ([tmp_path, "--simulator", "amaranth"], "is not an hwnn design folder"),
    ]
    for arguments, message in cases:
        status, _, err = run(capsys, "simulate", *arguments)
        assert status == 2 and message in err and err.count("\n") == 1, (arguments, err)


def test_simulate_quantizes_real_inputs(capsys, net_file, tmp_path):
    out = tmp_path / "design"
    assert run(capsys, "compile", net_file, "-o", out)[0] == 0
    np.save(tmp_path / "real.npy", np.random.default_rng(1).uniform(0, 255, size=(6, 8)))
    status, text, _ = run(capsys, "simulate", out, "--inputs", tmp_path / "real.npy",
                          "--simulator", "amaranth")
    assert status == 0 and "6/6 inputs match" in text


@pytest.mark.slow
@pytest.mark.cocotb
def test_demo_runs_the_digits_test_set_through_the_rtl(capsys, tmp_path):
    status, text, err = run(capsys, "demo", "-o", tmp_path / "demo")
    assert (status, err) == (0, ""), text
    assert "golden == RTL on every test image" in text
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in text.splitlines()
            if line.startswith(("MLP ", "CNN ", "MLP-QAT ")) and "%" in line}
    assert list(rows) == [("MLP", "int8/uint8"), ("CNN", "int8/uint8"),
                          ("MLP-QAT", "binary/binary")]
    for row in rows.values():
        golden, rtl, mismatches, cycles, ideal = row[1], row[2], row[3], row[4], row[5]
        assert golden == rtl and mismatches == "0"
        assert float(cycles) <= 1.05 * int(ideal)
    for int8 in rows[("MLP", "int8/uint8")], rows[("CNN", "int8/uint8")]:
        assert abs(float(int8[0].rstrip("%")) - float(int8[1].rstrip("%"))) <= 1.0
    # The shipped CNN: 530 of the 540 test digits right in float (its training script's figure).
    assert rows[("CNN", "int8/uint8")][0] == f"{100 * 530 / 540:.2f}%"
    # The QAT binary MLP has no float model; 530 of 540 right (Brevitas' own figure).
    assert rows[("MLP-QAT", "binary/binary")][:2] == ["-", f"{100 * 530 / 540:.2f}%"]
    # The simulations' logs stay, the simulator builds (150 MB each) do not.
    sims = sorted((tmp_path / "demo").glob("*/sim/verilator"))
    assert len(sims) == 3 and all((sim / "sim.log").is_file() for sim in sims)
    size = sum(path.stat().st_size for path in (tmp_path / "demo").rglob("*"))
    assert size < 10_000_000, size


def test_compile_then_simulate_a_cnn(capsys, tmp_path):
    network = sample_cnn()
    net_file = network.save(tmp_path / "cnn.hwnn.npz")
    out = tmp_path / "design"
    status, text, err = run(capsys, "compile", net_file, "--max-lanes", "8", "-o", out)
    assert (status, err) == (0, "")
    assert "6x6x2->6x6x4" in text and "6x6x4->3x3x4" in text and "36->3" in text
    assert json.loads((out / "manifest.json").read_text())["lanes"] <= 8
    status, text, err = run(capsys, "simulate", out, "--simulator", "amaranth",
                            "--backpressure")
    assert (status, err) == (0, ""), text
    assert "amaranth: 32/32 inputs match the golden model" in text
    # Real images of the input shape are quantized and flattened.
    np.save(tmp_path / "images.npy", np.random.default_rng(0).uniform(0, 15, (3, 6, 6, 2)))
    status, text, err = run(capsys, "simulate", out, "--simulator", "amaranth", "--inputs",
                            tmp_path / "images.npy")
    assert (status, err) == (0, ""), text
    assert "amaranth: 3/3 inputs match the golden model" in text
    # A fold that does not divide is one line and exit 2.
    fold = tmp_path / "fold.json"
    fold.write_text(json.dumps({"conv0": {"pe": 2, "simd": 4}, "maxpool1": {"pe": 1, "simd": 1},
                                "dense2": {"pe": 1, "simd": 1}}))
    status, text, err = run(capsys, "compile", net_file, "--fold", fold, "-o", tmp_path / "d")
    assert (status, text) == (2, "")
    assert err == ("hwnn: error: Layer 'conv0': simd must divide its 2 input channels (1, 2), "
                   "not 4\n")
