"""The fully connected layer kind."""

from dataclasses import dataclass

import numpy as np

from .checks import check_name, int_array
from .formats import Format
from .layer import Layer, layer_kind
from .stages import Requant, Thresholds, accumulator_range
from .tensors import TensorFormat
from .weighted import check_weighted, weighted_fields, weighted_file

__all__ = ["Dense"]


@layer_kind("dense")
@dataclass(frozen=True, eq=False)
class Dense(Layer):
    """Fully connected layer ``acc = weights @ x + bias`` followed by its output stage; it maps
    ``(in_features,)`` to ``(out_features,)``. After a layer with images of ``in_features``
    codes it takes the image flattened, channels fastest (:mod:`hwnn.ir.tensors`).

    ``weights`` are codes of ``weight_format`` (out_features x in_features), with the real
    weight of row ``o`` being ``code * weight_scale[o]``; ``bias`` is in the accumulator
    domain, whose real scale per channel is ``weight_scale * input.scale``. ``stage`` is a
    :class:`Thresholds`, a :class:`Requant` or None (the accumulator is the output).
    ``activation`` names the real activation the stage implements (documentation only).
    ``codebook`` (weight sharing) lists the distinct nonzero weight codes, sorted; every
    nonzero weight is one of them, so a weight can be stored as a zero or a codebook index.
    """
    name:          str
    weights:       np.ndarray
    weight_format: Format
    weight_scale:  np.ndarray
    bias:          np.ndarray
    input:         TensorFormat
    output:        TensorFormat
    stage:         Thresholds | Requant | None
    activation:    str = "identity"
    codebook:      np.ndarray | None = None

    def __post_init__(self):
        check_name(self.name, "Layer name")
        where = f"Layer {self.name!r}"
        weights = int_array(self.weights, f"{where} weights", 2)
        if 0 in weights.shape:
            raise ValueError(f"{where} has an empty weight matrix of shape {weights.shape}")
        check_weighted(self, where, weights)
        if self.codebook is not None:
            codebook = int_array(self.codebook, f"{where} codebook", 1)
            if np.any(codebook == 0) or np.any(np.diff(codebook) <= 0):
                raise ValueError(f"{where} codebook must be sorted distinct nonzero codes")
            if not self.weight_format.contains(codebook):
                raise ValueError(f"{where} codebook is outside the weight format "
                                 f"{self.weight_format}")
            if not np.all(np.isin(weights[weights != 0], codebook)):
                raise ValueError(f"{where} has nonzero weights that are not in its codebook")
            object.__setattr__(self, "codebook", codebook)
        self._check_stage(where)

    @property
    def in_features(self) -> int:
        return self.weights.shape[1]

    @property
    def out_features(self) -> int:
        return self.weights.shape[0]

    @property
    def input_shape(self) -> tuple[int]:
        return (self.in_features,)

    @property
    def output_shape(self) -> tuple[int]:
        return (self.out_features,)

    @property
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel worst-case accumulator bounds (see :func:`accumulator_range`)."""
        return accumulator_range(self.weights, self.bias, self.input.format)

    @property
    def weight_bits(self) -> int:
        """Bits of weight memory (codes only)."""
        return self.weights.size * self.weight_format.width

    @property
    def sparsity(self) -> float:
        """Fraction of zero weights."""
        return float(np.mean(self.weights == 0))

    # Files ------------------------------------------------------------------------------------

    def header_and_arrays(self):
        header, arrays = weighted_file(self)
        if self.codebook is not None:
            arrays["codebook"] = self.codebook
        return header, arrays

    @classmethod
    def from_header_and_arrays(cls, header, arrays):
        return cls(**weighted_fields(header, arrays, array_keys={"codebook"} & set(arrays)),
                   codebook=arrays.get("codebook"))
