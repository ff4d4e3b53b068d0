"""``hwnn quantize`` on ordinary classifiers: two classes (one logistic output), string labels,
degenerate calibration data and pruning, with the accuracies it reports checked against
scikit-learn's own."""

import re
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from hwnn.cli import main
from hwnn.quant import (FloatDense, FloatNetwork, QuantOptions, from_sklearn, quantize_network,
                        save_npz)
from hwnn.quant.convert import CalibrationWarning
from hwnn.flow.report import class_decisions, float_predictions, golden_predictions


def _fit(x, y, hidden=(12,)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return MLPClassifier(hidden, learning_rate_init=0.01, max_iter=400,
                             random_state=0).fit(x, y)


@pytest.fixture(scope="module")
def data():
    """Separable inputs; two classes (fewer of class 0) and three."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(400, 6))
    two = (x[:, 0] + x[:, 1] > x[:, 2] + 0.3).astype(np.int64)
    three = np.digitize(x[:, 0] + x[:, 1], [0.7, 1.3])
    return x, two, three


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    """Models (.joblib) and data files: a two-class model with integer labels, a three-class
    one with string labels, and test sets."""
    import joblib
    folder = tmp_path_factory.mktemp("quantize")
    x, two, three = data
    names = np.array(["low", "mid", "high"])[three]
    models = {"two": _fit(x[:300], two[:300]), "strings": _fit(x[:300], names[:300])}
    for name, model in models.items():
        joblib.dump(model, folder / f"{name}.joblib")
    np.save(folder / "calib.npy", x[:300])
    np.savez(folder / "two.npz", x=x[300:], y=two[300:])
    np.savez(folder / "strings.npz", x=x[300:], y=names[300:])
    np.savez(folder / "indices.npz", x=x[300:], y=three[300:])
    return folder, models


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _accuracies(out):
    """The reported accuracies, by model, as percentages."""
    line = next(line for line in out.splitlines() if line.startswith("accuracy on "))
    figures = [part.rsplit(" ", 1) for part in line.split(": ", 1)[1].split(", ")]
    return {name: float(value.removesuffix("%")) for name, value in figures}


def test_single_output_decides_by_the_sign_of_the_logit():
    # One output: class 1 where the logit is above 0 (scikit-learn: probability above 0.5).
    network = FloatNetwork((FloatDense([[1.0, -1.0]], [0.0]),))
    x = np.array([[2.0, 1.0], [1.0, 2.0], [1.0, 1.0], [0.0, 0.5]])
    assert float_predictions(network, x).tolist() == [1, 0, 0, 0]
    assert class_decisions([[0.5], [-0.5], [0.0]]).tolist() == [1, 0, 0]
    assert class_decisions([[0.5, 0.7, 0.1], [2.0, -1.0, 0.0]]).tolist() == [1, 0]


def test_two_class_accuracy_is_scikit_learns(capsys, files, data, tmp_path):
    folder, models = files
    x, two, _ = data
    assert np.mean(two[300:] == 0) < 0.45   # what an arg-max over one output would score
    status, out, err = run(capsys, "quantize", folder / "two.joblib", "--calib",
                           folder / "calib.npy", "--test", folder / "two.npz",
                           "-o", tmp_path / "two.hwnn.npz")
    assert (status, err) == (0, "")
    accuracies = _accuracies(out)
    assert accuracies["float"] == round(100 * models["two"].score(x[300:], two[300:]), 2)
    assert accuracies["float"] > 90
    assert abs(accuracies["golden model"] - accuracies["float"]) <= 2
    # The golden model's decisions are scikit-learn's on nearly every input.
    network = quantize_network(from_sklearn(models["two"]), x[:300])
    assert np.mean(golden_predictions(network, x) == models["two"].predict(x)) > 0.98


def test_string_labels_that_are_classes_are_accepted(capsys, files, data, tmp_path):
    folder, models = files
    x, _, three = data
    names = np.array(["low", "mid", "high"])[three]
    status, out, err = run(capsys, "quantize", folder / "strings.joblib", "--calib",
                           folder / "calib.npy", "--test", folder / "strings.npz",
                           "-o", tmp_path / "strings.hwnn.npz")
    assert (status, err) == (0, "")
    accuracies = _accuracies(out)
    assert accuracies["float"] == round(100 * models["strings"].score(x[300:], names[300:]), 2)
    assert accuracies["float"] > 80
    assert abs(accuracies["golden model"] - accuracies["float"]) <= 3


def test_labels_that_are_not_classes_are_refused(capsys, files, tmp_path):
    folder, _ = files
    # Integer indices are not the classes of a model trained on strings.
    status, out, err = run(capsys, "quantize", folder / "strings.joblib", "--calib",
                           folder / "calib.npy", "--test", folder / "indices.npz",
                           "-o", tmp_path / "net.hwnn.npz")
    assert (status, out) == (2, "")
    assert re.fullmatch(r"hwnn: error: Test labels \[0, 1, 2\] are not classes of the model "
                        r"\(\['high', 'low', 'mid'\]\)\n", err)
    # A model without a class list (.npz weights) needs output indices.
    save_npz(FloatNetwork((FloatDense(np.ones((3, 6)), np.zeros(3)),)), tmp_path / "plain.npz")
    status, out, err = run(capsys, "quantize", tmp_path / "plain.npz", "--calib",
                           folder / "calib.npy", "--test", folder / "strings.npz",
                           "-o", tmp_path / "net.hwnn.npz")
    assert (status, out) == (2, "")
    assert re.fullmatch(r"hwnn: error: Test labels must be output indices \(integers\) for a "
                        r"model without a class list, not <U4 values\n", err)
    assert not (tmp_path / "net.hwnn.npz").exists()


@pytest.mark.parametrize("calib, where", [
    ("zeros", ["the network input", "the output of layer 'dense0'"]),
    ("one sample", ["the network input", "the output of layer 'dense0'"]),
])
def test_degenerate_calibration_warns_naming_the_tensor(capsys, files, data, tmp_path, calib,
                                                         where):
    folder, _ = files
    x, _, _ = data
    samples = np.zeros((50, 6)) if calib == "zeros" else np.repeat(x[:1], 50, axis=0)
    np.save(tmp_path / "calib.npy", samples)
    status, out, err = run(capsys, "quantize", folder / "two.joblib", "--calib",
                           tmp_path / "calib.npy", "-o", tmp_path / "net.hwnn.npz")
    assert status == 0 and "wrote" in out
    lines = err.splitlines()
    assert len(lines) == len(where)
    for line, tensor in zip(lines, where, strict=True):
        assert line == (f"hwnn: warning: The calibrated range of {tensor} is degenerate: every "
                        f"calibration sample gives it the same values; calibrate on "
                        f"representative inputs")


def test_calibration_warnings_in_the_api(data):
    x, two, _ = data
    network = from_sklearn(_fit(x[:300], two[:300]))
    with pytest.warns(CalibrationWarning) as caught:
        quantize_network(network, np.zeros((10, 6)))
    assert [str(warning.message).split(" is degenerate: ")[0] for warning in caught] == [
        "The calibrated range of the network input",
        "The calibrated range of the output of layer 'dense0'"]
    # Signed calibration data with nothing above 0 says nothing to an unsigned input format.
    with pytest.warns(CalibrationWarning, match=r"^The calibrated range of the network input is "
                                                r"degenerate: uint8 keeps none of its values, as "
                                                r"none is above 0; "):
        quantize_network(network, -x[:50], QuantOptions(input_format="uint8"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        quantize_network(network, x[:300])


def test_pruned_accuracy_is_shown_beside_the_float_one(capsys, files, data, tmp_path):
    folder, models = files
    x, two, _ = data
    status, out, err = run(capsys, "quantize", folder / "two.joblib", "--calib",
                           folder / "calib.npy", "--test", folder / "two.npz", "--prune", "0.8",
                           "-o", tmp_path / "net.hwnn.npz")
    assert (status, err) == (0, "")
    # The pruned float model by hand: each layer loses its 80% smallest weights.
    import copy
    pruned = copy.deepcopy(models["two"])
    for coefs in pruned.coefs_:
        order = np.argsort(np.abs(coefs), axis=None, kind="stable")
        coefs.flat[order[:round(0.8 * coefs.size)]] = 0.0
    accuracies = _accuracies(out)
    assert list(accuracies) == ["float", "pruned float", "golden model"]
    assert accuracies["float"] == round(100 * models["two"].score(x[300:], two[300:]), 2)
    assert accuracies["pruned float"] == round(100 * pruned.score(x[300:], two[300:]), 2)
    assert accuracies["pruned float"] != accuracies["float"]
    assert abs(accuracies["golden model"] - accuracies["pruned float"]) <= 3
