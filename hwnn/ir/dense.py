"""The fully connected layer kind."""

from dataclasses import dataclass

import numpy as np

from .checks import check_name, expect_keys, float_array, int_array
from .formats import Format
from .layer import Layer, layer_kind
from .stages import (Requant, Thresholds, accumulator_range, stage_array_keys, stage_from_file,
                     stage_header_keys, stage_to_file)
from .tensors import TensorFormat

__all__ = ["Dense"]


@layer_kind("dense")
@dataclass(frozen=True, eq=False)
class Dense(Layer):
    """Fully connected layer ``acc = weights @ x + bias`` followed by its output stage; it maps
    ``(in_features,)`` to ``(out_features,)``.

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
        if not isinstance(self.weight_format, Format):
            raise TypeError(f"{where} weight_format must be a Format, not "
                            f"{self.weight_format!r}")
        if not self.weight_format.contains(weights):
            raise ValueError(f"{where} weights are outside their format {self.weight_format}")
        out_features = weights.shape[0]
        weight_scale = float_array(self.weight_scale, f"{where} weight_scale")
        if weight_scale.shape != (out_features,):
            raise ValueError(f"{where} weight_scale must have {out_features} entries, not shape "
                             f"{weight_scale.shape}")
        bias = int_array(self.bias, f"{where} bias", 1)
        if bias.shape != (out_features,):
            raise ValueError(f"{where} bias must have {out_features} entries, not shape "
                             f"{bias.shape}")
        for port in ("input", "output"):
            if not isinstance(getattr(self, port), TensorFormat):
                raise TypeError(f"{where} {port} must be a TensorFormat, not "
                                f"{getattr(self, port)!r}")
        if self.input.scale.ndim != 0:
            raise ValueError(f"{where} input scale must be per tensor (a scalar)")
        if self.output.scale.ndim == 1 and self.output.scale.shape != (out_features,):
            raise ValueError(f"{where} output scale must have {out_features} entries")
        if not isinstance(self.activation, str):
            raise TypeError(f"{where} activation must be a string, not {self.activation!r}")
        object.__setattr__(self, "weights", weights)
        object.__setattr__(self, "weight_scale", weight_scale)
        object.__setattr__(self, "bias", bias)
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
        stage_header, stage_arrays = stage_to_file(self.stage)
        header = {"name": self.name, "activation": self.activation,
                  "weight_format": str(self.weight_format),
                  "input": self.input.to_header(), "output": self.output.to_header()}
        arrays = {"weights": self.weights, "weight_scale": self.weight_scale, "bias": self.bias,
                  "input_scale": self.input.scale, "output_scale": self.output.scale}
        if self.codebook is not None:
            arrays["codebook"] = self.codebook
        return header | stage_header, arrays | stage_arrays

    @classmethod
    def from_header_and_arrays(cls, header, arrays):
        expect_keys(header, {"name", "activation", "weight_format", "input", "output"}
                    | stage_header_keys(header), "layer header")
        expect_keys(arrays, {"weights", "weight_scale", "bias", "input_scale", "output_scale"}
                    | stage_array_keys(header) | ({"codebook"} & set(arrays)), "layer arrays")
        return cls(name=header["name"], weights=arrays["weights"],
                   weight_format=Format.parse(header["weight_format"]),
                   weight_scale=arrays["weight_scale"], bias=arrays["bias"],
                   input=TensorFormat.from_header(header["input"], arrays["input_scale"],
                                                  "input"),
                   output=TensorFormat.from_header(header["output"], arrays["output_scale"],
                                                   "output"),
                   stage=stage_from_file(header, arrays), activation=header["activation"],
                   codebook=arrays.get("codebook"))
