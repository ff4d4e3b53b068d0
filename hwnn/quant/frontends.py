"""Frontends: trained float models into a :class:`~hwnn.quant.floatnet.FloatNetwork`.

* :func:`from_sklearn`: a fitted scikit-learn ``MLPClassifier`` or ``MLPRegressor``. The output
  activation (softmax or logistic) is dropped: it is monotone, so the arg-max of the
  accumulators is the prediction.
* :func:`load_npz`: an ``.npz`` of per-layer float arrays, layer ``i`` (from 0) being

  ============================ =====================================================
  ``weight_<i>``               (out, in) float weights of a dense layer (``y = weight
                               @ x + bias``), or (out, in / groups, kh, kw) of a
                               convolution (PyTorch's order)
  ``bias_<i>``                 (out,) float bias
  ``activation_<i>``           optional string: identity (default), relu, tanh,
                               logistic, hardtanh or sign
  ``bn_gamma_<i>``,            optional BatchNorm after the affine part (all four
  ``bn_beta_<i>``,             together), with optional scalar ``bn_eps_<i>``
  ``bn_mean_<i>``,             (default 1e-5)
  ``bn_var_<i>``
  ``stride_<i>``               convolution only, optional: an integer or (sh, sw);
                               default 1
  ``padding_<i>``              convolution only, optional: zeros on every side (an
                               integer), (rows, columns) as PyTorch's
                               ``padding=(ph, pw)``, or (top, bottom, left, right);
                               default 0
  ``groups_<i>``               convolution only, optional: 1 (default) or the input
                               channels (depthwise, one output channel per input
                               channel)
  ``pool_<i>``                 convolution only, optional: the kernel, an integer or
                               (kh, kw), of a max pool (stride = kernel) after the
                               layer's activation
  ============================ =====================================================

  and, when the network takes images, ``input_shape``, 3 integers (C, H, W). Such a file is
  channels first throughout, as PyTorch: inputs are given as (N, C, H, W) (or flattened in
  that order; the network's ``input_layout`` is ``"chw"``), and a dense layer after an image
  takes it flattened in (C, H, W) order, so its columns are permuted once to hwnn's (H, W, C)
  order (:func:`hwnn.ir.chw_to_hwc_columns`).
* :func:`hwnn.quant.onnx_frontend.load_onnx`: a float ONNX file (``.onnx``).
* :func:`load_model`: any of them, by file suffix (``.npz``; ``.onnx``; ``.pkl``/``.joblib``
  for a pickled scikit-learn model, which must come from a trusted source: unpickling runs
  code).
"""

import math
import re
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..ir.serialization import npz_bytes
from ..ir.tensors import chw_to_hwc_columns, hwc_to_chw_columns, shape_text
from .floatnet import (ACTIVATIONS, BatchNorm, FloatConv2d, FloatDense, FloatMaxPool2d,
                       FloatNetwork)

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


_LAYER_KEYS = ("weight", "bias", "activation", "bn_gamma", "bn_beta", "bn_mean", "bn_var",
               "bn_eps", "stride", "padding", "groups", "pool")
_KEY = re.compile(rf"^({'|'.join(_LAYER_KEYS)})_([0-9]+)$")
_CONV_KEYS = ("stride", "padding", "groups")


def _ints(parts, key, index, default=None):
    """The integer array ``<key>_<index>`` of a layer's ``parts`` as a Python int or list of
    ints (``default`` when it is absent)."""
    if key not in parts:
        return default
    value = parts[key]
    if value.dtype.kind not in "iu" or value.ndim > 1:
        raise ValueError(f"{key}_{index} must be an integer or a vector of integers, not "
                         f"{value.dtype} of shape {value.shape}")
    return value.tolist()


def _padding(value, index):
    """``padding_<index>`` as ``(top, bottom, left, right)``: one integer for every side, two
    for ``(rows, columns)`` as PyTorch's ``padding=(ph, pw)``, or four."""
    if isinstance(value, list) and len(value) == 2:
        return (value[0], value[0], value[1], value[1])
    if isinstance(value, list) and len(value) != 4:
        raise ValueError(f"padding_{index} must be 1, 2 (rows, columns) or 4 (top, bottom, "
                         f"left, right) integers, not {value}")
    return value


def _batchnorm(parts, index):
    bn_keys = {"bn_gamma", "bn_beta", "bn_mean", "bn_var"}
    present = bn_keys & set(parts)
    if not present:
        return None
    if present != bn_keys:
        missing = ", ".join(sorted(f"{key}_{index}" for key in bn_keys - present))
        raise ValueError(f"layer {index} has a partial BatchNorm: missing {missing}")
    return BatchNorm(parts["bn_gamma"], parts["bn_beta"], parts["bn_mean"], parts["bn_var"],
                     float(parts.get("bn_eps", 1e-5)))


def _npz_layers(parts, index, shape):
    """The float layers of layer ``index`` of an ``.npz`` (its arrays ``parts``) taking
    channels-last tensors of ``shape``: a dense or convolution layer and its optional pool."""
    activation = str(parts.get("activation", np.array("identity")))
    if activation not in ACTIVATIONS:
        raise ValueError(f"layer {index} has unknown activation {activation!r}; expected one "
                         f"of {', '.join(ACTIVATIONS)}")
    batchnorm = _batchnorm(parts, index)
    weight = parts["weight"]
    if weight.ndim == 4:
        if len(shape) != 3:
            raise ValueError(f"layer {index} is a convolution (4-d weight_{index}) but takes "
                             f"a vector of {shape[0]}: give input_shape (C, H, W)")
        layer = FloatConv2d(
            weight.transpose(0, 2, 3, 1), parts["bias"], activation, batchnorm,
            in_size=shape[:2], stride=_ints(parts, "stride", index, 1),
            padding=_padding(_ints(parts, "padding", index, 0), index),
            groups=_ints(parts, "groups", index, 1))
        if layer.input_shape != shape:
            raise ValueError(f"layer {index} takes {layer.input_shape[2]} channels but its "
                             f"input has {shape[2]}")
    else:
        extra = [f"{key}_{index}" for key in _CONV_KEYS if key in parts]
        if extra:
            raise ValueError(f"layer {index} is dense but has {', '.join(extra)}: only "
                             f"convolutions (4-d weights) have those")
        if len(shape) == 3 and weight.ndim == 2:
            # PyTorch flattens (C, H, W); hwnn flattens (H, W, C).
            if weight.shape[1:] != (math.prod(shape),):
                raise ValueError(f"layer {index} takes {weight.shape[1]} inputs but its input "
                                 f"image has {shape_text((shape[2], *shape[:2]))} = "
                                 f"{math.prod(shape)} values")
            weight = chw_to_hwc_columns(weight, shape)
        layer = FloatDense(weight, parts["bias"], activation, batchnorm)
    if "pool" not in parts:
        return [layer]
    if len(layer.output_shape) != 3:
        raise ValueError(f"layer {index} is dense but has pool_{index}: only convolutions "
                         f"have a pool")
    *size, channels = layer.output_shape
    return [layer, FloatMaxPool2d(size, channels, _ints(parts, "pool", index))]


def load_npz(path) -> FloatNetwork:
    """Float network from an ``.npz`` of per-layer arrays (layout in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    arrays = _read_npz(path)
    input_shape = arrays.pop("input_shape", None)
    layers_found = {}
    for key in arrays:
        match = _KEY.match(key)
        if match is None:
            raise ValueError(f"{str(path)!r} has an unexpected array {key!r}; expected "
                             f"weight_<i>, bias_<i>, activation_<i>, bn_*_<i>, stride_<i>, "
                             f"padding_<i>, groups_<i>, pool_<i> and input_shape")
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
        if layers:
            shape = layers[-1].output_shape
        elif input_shape is not None:
            shape = _input_shape(input_shape, path)
        else:
            shape = parts["weight"].shape[1:2]
        try:
            layers.extend(_npz_layers(parts, index, shape))
        except (TypeError, ValueError) as error:
            # Messages of this module name the layer already; the layers' own do not.
            prefix = "" if str(error).startswith(f"layer {index} ") else f"layer {index}: "
            raise ValueError(f"{str(path)!r} {prefix}{error}") from None
    layout = "chw" if input_shape is not None else "hwc"
    return FloatNetwork(tuple(layers), {"frontend": "npz", "file": path.name}, layout)


def _input_shape(array, path) -> tuple[int, int, int]:
    """``input_shape`` ``(C, H, W)`` as the channels-last ``(H, W, C)``."""
    if array.dtype.kind not in "iu" or array.shape != (3,) or np.any(array < 1):
        raise ValueError(f"{str(path)!r} input_shape must be 3 positive integers (C, H, W), "
                         f"not {array.tolist()!r}")
    channels, height, width = array.tolist()
    return (height, width, channels)


def save_npz(network: FloatNetwork, path) -> Path:
    """Write a float network in the ``.npz`` layout that :func:`load_npz` reads; the same
    network always gives the same bytes. A network of images must take them channels first
    (``input_layout`` ``"chw"``, the format's), and each pool must follow a weighted layer
    with a stride equal to its kernel."""
    arrays = {}
    if len(network.input_shape) == 3:
        if network.input_layout != "chw":
            raise ValueError("The .npz format takes images channels first: save a network "
                             "whose input_layout is 'chw'")
        arrays["input_shape"] = np.array(network.source_shape)
    index, shape = -1, network.input_shape
    for layer in network.layers:
        if isinstance(layer, FloatMaxPool2d):
            if index < 0 or f"pool_{index}" in arrays or layer.stride != layer.kernel:
                raise ValueError("The .npz format holds a pool only after a dense or "
                                 "convolution layer, with a stride equal to its kernel")
            arrays[f"pool_{index}"] = np.array(layer.kernel)
            shape = layer.output_shape
            continue
        index += 1
        weight = layer.weight
        if isinstance(layer, FloatConv2d):
            weight = weight.transpose(0, 3, 1, 2)
            arrays |= {f"stride_{index}": np.array(layer.stride),
                       f"padding_{index}": np.array(layer.padding),
                       f"groups_{index}": np.array(layer.groups)}
        elif len(shape) == 3:
            weight = hwc_to_chw_columns(weight, shape)
        arrays[f"weight_{index}"] = weight
        arrays[f"bias_{index}"] = layer.bias
        arrays[f"activation_{index}"] = np.array(layer.activation)
        if layer.batchnorm is not None:
            for name in ("gamma", "beta", "mean", "var"):
                arrays[f"bn_{name}_{index}"] = getattr(layer.batchnorm, name)
            arrays[f"bn_eps_{index}"] = np.array(layer.batchnorm.eps)
        shape = layer.output_shape
    path = Path(path)
    path.write_bytes(npz_bytes(arrays))
    return path


def load_model(path) -> FloatNetwork:
    """Float network from a model file: ``.npz`` weights, a float ONNX model or a pickled
    scikit-learn MLP."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    if path.suffix == ".npz":
        return load_npz(path)
    if path.suffix == ".onnx":
        from .onnx_frontend import load_onnx
        return load_onnx(path)
    if path.suffix in (".pkl", ".pickle", ".joblib"):
        import joblib
        try:
            model = joblib.load(path)
        except Exception as error:  # unpickling can raise anything; report it as bad input
            raise ValueError(f"{str(path)!r} is not a readable pickled model: {error}") from None
        network = from_sklearn(model)
        return FloatNetwork(network.layers, network.info | {"file": path.name})
    raise ValueError(f"Unknown model file type {path.suffix!r} ({str(path)!r}); expected .npz, "
                     f".onnx, .pkl or .joblib")


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
