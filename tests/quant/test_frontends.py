"""Frontends (hwnn.quant.frontends): scikit-learn models and .npz files to float networks."""

import json
import pickle
import re
import zipfile

import joblib
import numpy as np
import pytest
from sklearn.neural_network import MLPClassifier, MLPRegressor

from hwnn.quant.convert import QuantOptions, quantize_network
from hwnn.quant.floatnet import BatchNorm, FloatDense, FloatNetwork
from hwnn.quant.frontends import from_sklearn, load_model, load_npz, save_npz
from hwnn.sim.golden import run_network

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def _data(seed=0, count=40, features=4):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (count, features))


def _classifier(classes=("cat", "dog", "eel"), activation="relu", hidden=(5,), seed=0):
    x = _data(seed)
    y = np.array(classes)[np.arange(len(x)) % len(classes)]
    return MLPClassifier(hidden_layer_sizes=hidden, activation=activation, max_iter=30,
                         random_state=seed).fit(x, y), x


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# scikit-learn -----------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("hidden", [(5,), (6, 3)])
def test_sklearn_classifier(activation, hidden):
    model, x = _classifier(activation=activation, hidden=hidden)
    network = from_sklearn(model)
    assert isinstance(network, FloatNetwork)
    assert [layer.activation for layer in network.layers] == [activation] * len(hidden) + \
        ["identity"]
    for layer, coef, intercept in zip(network.layers, model.coefs_, model.intercepts_,
                                      strict=True):
        assert np.array_equal(layer.weight, coef.T) and np.array_equal(layer.bias, intercept)
        assert layer.batchnorm is None
    logits = network.forward(x)
    # The dropped output activation is softmax: it gives back predict_proba.
    np.testing.assert_allclose(_softmax(logits), model.predict_proba(x), rtol=1e-9, atol=1e-12)
    assert np.array_equal(model.classes_[np.argmax(logits, axis=1)], model.predict(x))
    assert network.info == {"frontend": "sklearn", "model": "MLPClassifier",
                            "output_activation": "softmax", "classes": ["cat", "dog", "eel"]}
    json.dumps(network.info)


def test_sklearn_binary_classifier():
    model, x = _classifier(classes=(3, 7))
    network = from_sklearn(model)
    logits = network.forward(x)
    assert logits.shape == (len(x), 1)
    np.testing.assert_allclose(1 / (1 + np.exp(-logits[:, 0])), model.predict_proba(x)[:, 1],
                               rtol=1e-9)
    assert np.array_equal(np.where(logits[:, 0] > 0, 7, 3), model.predict(x))
    assert network.info["classes"] == [3, 7] and network.info["output_activation"] == "logistic"
    assert all(type(c) is int for c in network.info["classes"])


def test_sklearn_regressor():
    x = _data(1)
    y = np.stack([x.sum(axis=1), x[:, 0] - x[:, 1]], axis=1)
    model = MLPRegressor(hidden_layer_sizes=(4,), activation="tanh", max_iter=20,
                         random_state=1).fit(x, y)
    network = from_sklearn(model)
    np.testing.assert_allclose(network.forward(x), model.predict(x), rtol=1e-9, atol=1e-12)
    assert network.info == {"frontend": "sklearn", "model": "MLPRegressor",
                            "output_activation": "identity"}


def test_sklearn_model_quantizes_and_predicts():
    model, x = _classifier(hidden=(8,), seed=3)
    network = quantize_network(from_sklearn(model), x, QuantOptions())
    outputs = run_network(network, network.quantize_input(x))
    agree = np.mean(model.classes_[np.argmax(network.dequantize_output(outputs), axis=1)]
                    == model.predict(x))
    assert agree >= 0.9
    assert network.info["source"]["model"] == "MLPClassifier"


def test_sklearn_errors():
    with pytest.raises(ValueError, match=r"^The MLPClassifier is not fitted$"):
        from_sklearn(MLPClassifier())
    with pytest.raises(TypeError, match=r"^Expected a scikit-learn MLPClassifier or "
                                        r"MLPRegressor, not dict$"):
        from_sklearn({"coefs_": []})
    model, _ = _classifier()
    model.activation = "softplus"
    with pytest.raises(ValueError, match=r"^Unsupported scikit-learn activation 'softplus'$"):
        from_sklearn(model)


# .npz files ------------------------------------------------------------------------------------

def _float_network():
    rng = np.random.default_rng(4)
    norm = BatchNorm([1.5, -0.5, 0.0], [0.1, 0.2, 0.3], [0.0, -1.0, 2.0], [1.0, 0.5, 2.0],
                     eps=1e-3)
    return FloatNetwork((
        FloatDense(rng.normal(size=(3, 4)), rng.normal(size=3), "tanh", norm),
        FloatDense(rng.normal(size=(5, 3)), rng.normal(size=5), "hardtanh"),
        FloatDense(rng.normal(size=(2, 5)), rng.normal(size=2), "identity",
                   BatchNorm([1.0, 2.0], [0.0, 0.0], [0.5, 0.5], [1.0, 1.0])),
    ))


def test_npz_round_trip(tmp_path):
    network = _float_network()
    path = save_npz(network, tmp_path / "model.npz")
    assert path == tmp_path / "model.npz"
    loaded = load_npz(path)
    assert loaded.info == {"frontend": "npz", "file": "model.npz"}
    for a, b in zip(network.layers, loaded.layers, strict=True):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert a.activation == b.activation
        assert (a.batchnorm is None) == (b.batchnorm is None)
        if a.batchnorm is not None:
            for key in ("gamma", "beta", "mean", "var"):
                assert np.array_equal(getattr(a.batchnorm, key), getattr(b.batchnorm, key))
            assert a.batchnorm.eps == b.batchnorm.eps
    x = _data(5)
    assert np.array_equal(network.forward(x), loaded.forward(x))
    assert np.array_equal(load_model(path).forward(x), network.forward(x))


def test_npz_defaults(tmp_path):
    path = tmp_path / "plain.npz"
    weight, bias = np.array([[1.0, -2.0], [0.5, 0.0]]), np.array([0.25, -1.0])
    np.savez(path, weight_0=weight, bias_0=bias, bn_gamma_0=np.array([2.0, 1.0]),
             bn_beta_0=np.zeros(2), bn_mean_0=np.zeros(2), bn_var_0=np.array([3.0, 1.0]))
    network = load_npz(path)
    (layer,) = network.layers
    assert layer.activation == "identity" and layer.batchnorm.eps == 1e-5
    # x = [1, 1]: z = [-1 + 0.25, 0.5 - 1] = [-0.75, -0.5]; BN: [2 * -0.75 / sqrt(3 + 1e-5),
    # -0.5 / sqrt(1 + 1e-5)]
    expected = [[-1.5 / np.sqrt(3 + 1e-5), -0.5 / np.sqrt(1 + 1e-5)]]
    np.testing.assert_allclose(network.forward([[1.0, 1.0]]), expected, rtol=1e-12)


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


GOOD = {"weight_0": np.ones((2, 4)), "bias_0": np.zeros(2),
        "weight_1": np.ones((3, 2)), "bias_1": np.zeros(3), "activation_1": np.array("relu")}


def _without(*keys, **changes):
    return {k: v for k, v in GOOD.items() if k not in keys} | changes


@pytest.mark.parametrize("arrays, message", [
    (_without(weights_0=np.ones(2)),
     (r"has an unexpected array 'weights_0'; expected weight_<i>, bias_<i>, activation_<i>, "
      r"bn_\*_<i>, stride_<i>, padding_<i>, groups_<i>, pool_<i> and input_shape$")),
    (_without(weight_x=np.ones(2)), r"has an unexpected array 'weight_x'"),
    ({}, r"holds no layers \(no weight_0 array\)$"),
    (_without("bias_1"), r"has no bias_1$"),
    (_without("weight_0"), r"has no weight_0$"),
    ({"weight_0": np.ones((2, 4)), "bias_0": np.zeros(2), "weight_2": np.ones((3, 2)),
      "bias_2": np.zeros(3)}, r"has layers \[0, 2\], not 0\.\.1$"),
    ({"weight_1": np.ones((2, 4)), "bias_1": np.zeros(2)}, r"has layers \[1\], not 0\.\.0$"),
    (_without(activation_0=np.array("gelu")),
     (r"layer 0 has unknown activation 'gelu'; expected one of identity, relu, tanh, logistic, "
      r"hardtanh, sign$")),
    (_without(activation_1=np.array(["relu"])), r"layer 1 has unknown activation \"\['relu'\]\""),
    (_without(bn_gamma_0=np.ones(2), bn_beta_0=np.zeros(2)),
     r"layer 0 has a partial BatchNorm: missing bn_mean_0, bn_var_0$"),
    (_without(bn_var_1=np.ones(3)),
     r"layer 1 has a partial BatchNorm: missing bn_beta_1, bn_gamma_1, bn_mean_1$"),
    (_without(weight_0=np.array([[1.0, np.nan, 0, 0], [0, 0, 0, 0]])),
     r"layer 0: Weights holds NaN or infinite values$"),
    (_without(bias_1=np.array([0.0, np.inf, 0.0])), (r"layer 1: Biases holds NaN or infinite "
                                                     r"values$")),
    (_without(weight_0=np.ones(4)), r"layer 0: Weights must be 2-dimensional, not shape \(4,\)$"),
    (_without(weight_0=np.full((2, 4), "a")),
     r"layer 0: Weights must hold real numbers, not <U1 values$"),
    (_without(bias_0=np.zeros(3)),
     r"layer 0: Bias of length 3 does not match weights of shape \(2, 4\) \(out, in\)$"),
    (_without(bn_gamma_0=np.ones(3), bn_beta_0=np.zeros(3), bn_mean_0=np.zeros(3),
              bn_var_0=np.ones(3)),
     r"layer 0: BatchNorm of 3 channels does not match a layer of 2 outputs$"),
    (_without(bn_gamma_0=np.ones(2), bn_beta_0=np.zeros(2), bn_mean_0=np.zeros(2),
              bn_var_0=np.array([1.0, -1.0])),
     r"layer 0: BatchNorm var \+ eps must be positive$"),
    (_without(bn_gamma_0=np.array([1.0, np.nan]), bn_beta_0=np.zeros(2), bn_mean_0=np.zeros(2),
              bn_var_0=np.ones(2)),
     r"layer 0: BatchNorm gamma holds NaN or infinite values$"),
    (_without(bn_gamma_0=np.ones(2), bn_beta_0=np.zeros(2), bn_mean_0=np.zeros(2),
              bn_var_0=np.ones(2), bn_eps_0=np.array(-1.0)),
     r"layer 0: BatchNorm eps must be a finite number >= 0, not -1\.0$"),
    (_without(weight_0=np.array([[None] * 4] * 2, dtype=object)),
     r"is corrupt: Object arrays cannot be loaded when allow_pickle=False$"),
])
def test_npz_rejects(tmp_path, arrays, message):
    path = _write_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=rf"^'{re.escape(str(path))}' {message}"):
        load_npz(path)


def test_npz_rejects_shapes_that_do_not_chain(tmp_path):
    path = _write_npz(tmp_path / "chain.npz", **_without(weight_1=np.ones((3, 5))))
    with pytest.raises(ValueError, match=r"^Layer 1 takes 5 inputs but layer 0 gives 2: shapes "
                                         r"do not chain$"):
        load_npz(path)


def test_npz_rejects_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^No model file at '.*nope\.npz'$"):
        load_npz(tmp_path / "nope.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"garbage bytes, not an npz at all")
    with pytest.raises(ValueError, match=r"^'.*garbage\.npz' is not a readable \.npz file: "):
        load_npz(garbage)
    single = tmp_path / "single.npz"
    with single.open("wb") as file:
        np.save(file, np.ones(3))
    with pytest.raises(ValueError, match=r"^'.*single\.npz' is not a readable \.npz file: it "
                                         r"holds a single array$"):
        load_npz(single)
    data = _write_npz(tmp_path / "good.npz", **GOOD).read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"^'.*truncated\.npz' is not a readable \.npz file: "
                                         r"File is not a zip file$"):
        load_npz(truncated)
    corrupt = bytearray(data)
    with zipfile.ZipFile(tmp_path / "good.npz") as archive:
        member = archive.read("weight_1.npy")
    corrupt[bytes(corrupt).index(member) + len(member) - 2] ^= 0xFF
    (tmp_path / "corrupt.npz").write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match=r"^'.*corrupt\.npz' is corrupt: Bad CRC-32 for file "
                                         r"'weight_1\.npy'$"):
        load_npz(tmp_path / "corrupt.npz")
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **GOOD)
    assert len(load_npz(compressed).layers) == 2
    raw = bytearray(compressed.read_bytes())
    for offset in range(40, len(raw) - 200, 7):            # inside the deflate streams
        broken = bytearray(raw)
        broken[offset] ^= 0xFF
        compressed.write_bytes(bytes(broken))
        try:
            loaded = load_npz(compressed)
        except ValueError:
            continue
        assert all(np.array_equal(layer.weight, GOOD[f"weight_{i}"])
                   for i, layer in enumerate(loaded.layers))


# load_model ------------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix, dump", [(".joblib", joblib.dump), (".pkl", joblib.dump),
                                          (".pickle", None)])
def test_load_model_pickled_sklearn(tmp_path, suffix, dump):
    model, x = _classifier()
    path = tmp_path / f"model{suffix}"
    if dump is None:
        with path.open("wb") as file:
            pickle.dump(model, file)
    else:
        dump(model, path)
    network = load_model(path)
    assert network.info["file"] == f"model{suffix}" and network.info["frontend"] == "sklearn"
    np.testing.assert_allclose(network.forward(x), from_sklearn(model).forward(x), rtol=0)


def test_load_model_dispatches_npz(tmp_path):
    path = save_npz(_float_network(), tmp_path / "net.npz")
    assert load_model(path).info == {"frontend": "npz", "file": "net.npz"}


def test_load_model_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"^No model file at '.*missing\.joblib'$"):
        load_model(tmp_path / "missing.joblib")
    text = tmp_path / "model.txt"
    text.write_text("weights")
    with pytest.raises(ValueError, match=r"^Unknown model file type '\.txt' \('.*model\.txt'\); "
                                         r"expected \.npz, \.onnx, \.pkl or \.joblib$"):
        load_model(text)
    bare = tmp_path / "model"
    bare.write_text("weights")
    with pytest.raises(ValueError, match=r"^Unknown model file type '' "):
        load_model(bare)
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match=r"^'.*garbage\.joblib' is not a readable pickled "
                                         r"model: "):
        load_model(garbage)
    other = tmp_path / "other.pkl"
    joblib.dump({"coefs_": []}, other)
    with pytest.raises(TypeError, match=r"^Expected a scikit-learn MLPClassifier or "
                                        r"MLPRegressor, not dict$"):
        load_model(other)
