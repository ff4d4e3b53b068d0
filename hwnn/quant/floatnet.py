"""Float networks as trained: the frontends' common form and the quantizer's reference.

A :class:`FloatNetwork` is a chain of :class:`FloatDense` layers, each
``activation(batchnorm(weight @ x + bias))``. Activations are named (:data:`ACTIVATIONS`); all
are monotone non-decreasing, which is what lets a threshold stage replace them exactly.
"""

from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np

__all__ = ["ACTIVATIONS", "BatchNorm", "FloatDense", "FloatNetwork"]


def _sign(z):
    return np.where(z >= 0, 1.0, -1.0)


#: Monotone non-decreasing activations, by name.
ACTIVATIONS = {
    "identity": lambda z: z,
    "relu":     lambda z: np.maximum(z, 0.0),
    "tanh":     np.tanh,
    "logistic": lambda z: 0.5 * (1.0 + np.tanh(0.5 * z)),   # monotone and overflow-free
    "hardtanh": lambda z: np.clip(z, -1.0, 1.0),
    "sign":     _sign,
}


def _finite(value, name, ndim):
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, not {array.dtype} values")
    array = array.astype(np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, not shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return array


@dataclass(frozen=True, eq=False)
class BatchNorm:
    """Inference-time batch normalization ``gamma * (z - mean) / sqrt(var + eps) + beta``."""
    gamma: np.ndarray
    beta:  np.ndarray
    mean:  np.ndarray
    var:   np.ndarray
    eps:   float = 1e-5

    def __post_init__(self):
        for name in ("gamma", "beta", "mean", "var"):
            object.__setattr__(self, name, _finite(getattr(self, name), f"BatchNorm {name}", 1))
        if len({getattr(self, name).shape for name in ("gamma", "beta", "mean", "var")}) != 1:
            raise ValueError("BatchNorm gamma, beta, mean and var must have the same length")
        if isinstance(self.eps, bool) or not isinstance(self.eps, int | float) \
                or not np.isfinite(self.eps) or self.eps < 0:
            raise ValueError(f"BatchNorm eps must be a finite number >= 0, not {self.eps!r}")
        if np.any(self.var + self.eps <= 0):
            raise ValueError("BatchNorm var + eps must be positive")

    @property
    def gain(self) -> np.ndarray:
        """Per-channel factor ``gamma / sqrt(var + eps)``."""
        return self.gamma / np.sqrt(self.var + self.eps)

    def __call__(self, z):
        return (z - self.mean) * self.gain + self.beta


@dataclass(frozen=True, eq=False)
class FloatDense:
    """``activation(batchnorm(weight @ x + bias))`` with ``weight`` of shape (out, in)."""
    weight:     np.ndarray
    bias:       np.ndarray
    activation: str = "identity"
    batchnorm:  BatchNorm | None = None

    def __post_init__(self):
        weight = _finite(self.weight, "Weights", 2)
        bias = _finite(self.bias, "Biases", 1)
        if bias.shape != weight.shape[:1]:
            raise ValueError(f"Bias of length {bias.shape[0]} does not match weights of shape "
                             f"{weight.shape} (out, in)")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"Unknown activation {self.activation!r}; expected one of "
                             f"{', '.join(ACTIVATIONS)}")
        if self.batchnorm is not None:
            if not isinstance(self.batchnorm, BatchNorm):
                raise TypeError(f"batchnorm must be a BatchNorm, not {self.batchnorm!r}")
            if self.batchnorm.gamma.shape != bias.shape:
                raise ValueError(f"BatchNorm of {self.batchnorm.gamma.shape[0]} channels does "
                                 f"not match a layer of {bias.shape[0]} outputs")
        object.__setattr__(self, "weight", weight)
        object.__setattr__(self, "bias", bias)

    def preactivation(self, x):
        z = x @ self.weight.T + self.bias
        return self.batchnorm(z) if self.batchnorm is not None else z

    def __call__(self, x):
        return ACTIVATIONS[self.activation](self.preactivation(x))

    def folded(self) -> "FloatDense":
        """The same layer with its batch normalization folded into weight and bias."""
        if self.batchnorm is None:
            return self
        gain = self.batchnorm.gain
        return FloatDense(self.weight * gain[:, None],
                          (self.bias - self.batchnorm.mean) * gain + self.batchnorm.beta,
                          self.activation)


@dataclass(frozen=True, eq=False)
class FloatNetwork:
    """A chain of float dense layers, with JSON-serializable ``info`` about its origin."""
    layers: tuple
    info:   dict = field(default_factory=dict)

    def __post_init__(self):
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("A network needs at least one layer")
        for layer in layers:
            if not isinstance(layer, FloatDense):
                raise TypeError(f"Float network layers must be FloatDense, not {layer!r}")
        for index, (before, after) in enumerate(pairwise(layers), start=1):
            if after.weight.shape[1] != before.weight.shape[0]:
                raise ValueError(f"Layer {index} takes {after.weight.shape[1]} inputs but layer "
                                 f"{index - 1} gives {before.weight.shape[0]}: shapes do not "
                                 f"chain")
        object.__setattr__(self, "layers", layers)

    @property
    def in_features(self) -> int:
        return self.layers[0].weight.shape[1]

    def check_inputs(self, x) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype.kind not in "iuf":
            raise TypeError(f"Inputs must be real numbers, not {x.dtype} values")
        x = x.astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"Inputs must have shape (N, {self.in_features}), not {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError("Inputs hold NaN or infinite values")
        return x

    def forward(self, x, *, trace=False):
        """Outputs of the network for inputs ``x`` (N x in); with ``trace`` every layer's."""
        x = self.check_inputs(x)
        outputs = []
        for layer in self.layers:
            x = layer(x)
            outputs.append(x)
        return outputs if trace else x
