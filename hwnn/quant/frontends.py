"""Frontends: trained float models into a :class:`~hwnn.quant.floatnet.FloatNetwork`.

* :func:`from_sklearn`: a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``. The output
  activation (softmax or logistic) is dropped: it is monotone, so the arg-max of the
  accumulators is the prediction.
* :func:`load_npz`: an ``.npz`` of per-layer float arrays, layer ``i`` (from 0) being

  ============================ =====================================================
  ``weight_<i>``               (out, in) float weights (``y = weight @ x + bias``)
  ``bias_<i>``                 (out,) float bias
  ``activation_<i>``           optional string: identity (default), relu, tanh,
                               logistic, hardtanh or sign
  ``bn_gamma_<i>``,            optional BatchNorm after the affine part (all four
  ``bn_beta_<i>``,             together), with optional scalar ``bn_eps_<i>``
  ``bn_mean_<i>``,             (default 1e-5)
  ``bn_var_<i>``
  ============================ =====================================================

* :func:`load_model`: either, by file suffix (``.npz``; ``.pkl``/``.joblib`` for a pickled
  scikit-learn model, which must come from a trusted source: unpickling runs code).
"""

import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .floatnet import ACTIVATIONS, BatchNorm, FloatDense, FloatNetwork

__all__ = ["from_sklearn", "load_model", "load_npz", "prune_sklearn", "save_npz"]

_SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "logistic": "logistic",
                        "identity": "identity"}


def from_sklearn(model) -> FloatNetwork:
    """Float network of a fitted scikit-learn multi-layer perceptron."""
    kind = type(model).__name__
    if kind not in ("MLPClassifier", "MLPRegressor"):
        raise TypeError(f"Expected a scikit-learn MLPClassifier or MLPRegressor, not {kind}")
    if not hasattr(model, "coefs_"):
        raise ValueError(f"The {kind} is not fitted")
    hidden = _SKLEARN_ACTIVATIONS.get(model.activation)
    if hidden is None:
        raise ValueError(f"Unsupported scikit-learn activation {model.activation!r}")
    count = len(model.coefs_)
    layers = [FloatDense(weight.T, bias, hidden if index < count - 1 else "identity")
              for index, (weight, bias)
              in enumerate(zip(model.coefs_, model.intercepts_, strict=True))]
    info = {"frontend": "sklearn", "model": kind, "output_activation": model.out_activation_}
    if hasattr(model, "classes_"):
        info["classes"] = [c.item() if hasattr(c, "item") else c for c in model.classes_]
    return FloatNetwork(tuple(layers), info)


# Reading a zip archive can also raise these (corrupt deflate data, encrypted members).
_ZIP_ERRORS = (OSError, ValueError, EOFError, RuntimeError, zipfile.BadZipFile, zlib.error)


def _read_npz(path):
    """Every array of an ``.npz`` file, by name."""
    # The file is opened here, not by np.load, which leaks it when the zip is unreadable.
    with path.open("rb") as file:
        try:
            archive = np.load(file, allow_pickle=False)
        except _ZIP_ERRORS as error:
            raise ValueError(f"{str(path)!r} is not a readable .npz file: {error}") from None
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError(f"{str(path)!r} is not a readable .npz file: it holds a single "
                             f"array")
        with archive:
            try:
                return {key: archive[key] for key in archive.files}
            except _ZIP_ERRORS as error:
                raise ValueError(f"{str(path)!r} is corrupt: {error}") from None


_KEY = re.compile(r"^(weight|bias|activation|bn_gamma|bn_beta|bn_mean|bn_var|bn_eps)_([0-9]+)$")


def load_npz(path) -> FloatNetwork:
    """Float network from an ``.npz`` of per-layer arrays (layout in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    arrays = _read_npz(path)
    layers_found = {}
    for key in arrays:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"{str(path)!r} has an unexpected array {key!r}; expected "
                             f"weight_<i>, bias_<i>, activation_<i> and bn_*_<i>")
        layers_found.setdefault(int(match.group(2)), {})[match.group(1)] = arrays[key]
    if not layers_found:
        raise ValueError(f"{str(path)!r} holds no layers (no weight_0 array)")
    if sorted(layers_found) != list(range(len(layers_found))):
        raise ValueError(f"{str(path)!r} has layers {sorted(layers_found)}, not 0.."
                         f"{len(layers_found) - 1}")
    layers = []
    for index in range(len(layers_found)):
        parts = layers_found[index]
        for required in ("weight", "bias"):
            if required not in parts:
                raise ValueError(f"{str(path)!r} has no {required}_{index}")
        activation = str(parts.get("activation", np.array("identity")))
        if activation not in ACTIVATIONS:
            raise ValueError(f"{str(path)!r} layer {index} has unknown activation "
                             f"{activation!r}; expected one of {', '.join(ACTIVATIONS)}")
        bn_keys = {"bn_gamma", "bn_beta", "bn_mean", "bn_var"}
        present = bn_keys & set(parts)
        batchnorm = None
        if present:
            if present != bn_keys:
                missing = ", ".join(sorted(f"{key}_{index}" for key in bn_keys - present))
                raise ValueError(f"{str(path)!r} layer {index} has a partial BatchNorm: "
                                 f"missing {missing}")
        try:
            if present:
                batchnorm = BatchNorm(parts["bn_gamma"], parts["bn_beta"], parts["bn_mean"],
                                      parts["bn_var"], float(parts.get("bn_eps", 1e-5)))
            layers.append(FloatDense(parts["weight"], parts["bias"], activation, batchnorm))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{str(path)!r} layer {index}: {error}") from None
    return FloatNetwork(tuple(layers), {"frontend": "npz", "file": path.name})


def save_npz(network: FloatNetwork, path) -> Path:
    """Write a float network in the ``.npz`` layout that :func:`load_npz` reads."""
    arrays = {}
    for index, layer in enumerate(network.layers):
        arrays[f"weight_{index}"] = layer.weight
        arrays[f"bias_{index}"] = layer.bias
        arrays[f"activation_{index}"] = np.array(layer.activation)
        if layer.batchnorm is not None:
            for name in ("gamma", "beta", "mean", "var"):
                arrays[f"bn_{name}_{index}"] = getattr(layer.batchnorm, name)
            arrays[f"bn_eps_{index}"] = np.array(layer.batchnorm.eps)
    path = Path(path)
    np.savez(path, **arrays)
    return path


def load_model(path) -> FloatNetwork:
    """Float network from a model file: ``.npz`` weights or a pickled scikit-learn MLP."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix in (".pkl", ".pickle", ".joblib"):
        import joblib
        try:
            model = joblib.load(path)
        except Exception as error:  # unpickling can raise anything; report it as bad input
            raise ValueError(f"{str(path)!r} is not a readable pickled model: {error}") from None
        network = from_sklearn(model)
        return FloatNetwork(network.layers, network.info | {"file": path.name})
    raise ValueError(f"Unknown model file type {path.suffix!r} ({str(path)!r}); expected .npz, "
                     f".pkl or .joblib")


def prune_sklearn(model, x, y, sparsity, *, scope="layer", steps=3, epochs=200):
    """A copy of a fitted scikit-learn MLP with the ``sparsity`` fraction of its weights
    pruned by magnitude and the rest retrained on ``(x, y)`` with the pruned weights held at
    zero (Deep Compression's iterative prune-and-retrain): ``steps`` rounds whose kept
    fraction shrinks geometrically to ``1 - sparsity``, each ``epochs`` passes of
    ``partial_fit``."""
    pruned = model
    for step in range(1, steps + 1):
        fraction = 1 - (1 - sparsity) ** (step / steps)
        pruned = _prune_and_retrain(pruned, x, y, fraction, scope, epochs)
    return pruned


def _prune_and_retrain(model, x, y, sparsity, scope, epochs):
    import copy
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    from .compress import prune_masks

    if not hasattr(model, "coefs_"):
        raise ValueError("The model is not fitted")
    pruned = copy.deepcopy(model)
    masks = prune_masks(pruned.coefs_, sparsity, scope=scope)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):
            for coefs, mask in zip(pruned.coefs_, masks, strict=True):
                coefs *= mask
            pruned.partial_fit(x, y)
    for coefs, mask in zip(pruned.coefs_, masks, strict=True):
        coefs *= mask
    return pruned
