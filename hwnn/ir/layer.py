"""Layer kinds: the protocol every IR layer implements, and the registry the file loader uses.

A layer kind is a frozen dataclass that subclasses :class:`Layer` and is registered with
:func:`layer_kind` under the name a network file gives it (the ``kind`` of its layer entry)::

    @layer_kind("dense")
    @dataclass(frozen=True, eq=False)
    class Dense(Layer):
        ...

A layer maps an input tensor of ``input_shape``, codes of the ``input`` format, to an output
tensor of ``output_shape``, codes of the ``output`` format (channels on the last axis). It
computes a per-channel accumulator, bounded by ``acc_range``, and its output ``stage`` (a
:class:`~hwnn.ir.stages.Thresholds`, a :class:`~hwnn.ir.stages.Requant` or None) turns the
accumulator into output codes. A :class:`~hwnn.ir.network.Network` chains layers whose shapes
and formats meet (a layer taking a vector takes any tensor of its size, flattened); the golden
model runs each kind with its own function (:func:`hwnn.sim.golden.accumulate`).
"""

import re
from abc import ABC, abstractmethod
from types import MappingProxyType
from typing import ClassVar

import numpy as np

from .formats import signed_bits_for
from .stages import MAX_PRODUCT_BITS, Requant, Thresholds, stage_name
from .tensors import TensorFormat

__all__ = ["LAYER_KINDS", "Layer", "layer_kind"]

_KINDS: dict[str, type["Layer"]] = {}
#: The registered layer kinds, by name (read-only; register with :func:`layer_kind`).
LAYER_KINDS = MappingProxyType(_KINDS)
_KIND_NAME = re.compile(r"[a-z][a-z0-9_]*")


class Layer(ABC):
    """The protocol of an IR layer kind.

    Members every kind has (usually as dataclass fields; a pool derives ``output`` and
    ``stage`` as properties): ``name`` (a string, see :func:`~hwnn.ir.checks.check_name`),
    ``input`` and ``output`` (:class:`~hwnn.ir.tensors.TensorFormat`) and ``stage``
    (``Thresholds``, ``Requant`` or None). :func:`layer_kind` sets the class attribute
    ``kind``. A kind implements the abstract members below and calls :meth:`_check_stage` last
    in its ``__post_init__``; a kind whose accumulator is not a raw sum of products overrides
    :meth:`_check_unstaged_output`.
    """
    kind: ClassVar[str]

    name:   str
    input:  TensorFormat
    output: TensorFormat
    stage:  Thresholds | Requant | None

    @property
    @abstractmethod
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input tensor (one inference), channels last."""

    @property
    @abstractmethod
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output tensor (one inference), channels last."""

    @property
    @abstractmethod
    def acc_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel bounds ``(lo, hi)`` of every partial sum of the accumulator; a
        ValueError if they reach ``MAX_PRODUCT_BITS - 1`` bits."""

    @property
    @abstractmethod
    def weight_bits(self) -> int:
        """Bits of weight memory (codes only)."""

    @abstractmethod
    def header_and_arrays(self) -> tuple[dict, dict[str, np.ndarray]]:
        """This layer's entry in a network file: a JSON-serializable header (without ``kind``,
        which the file adds) and named arrays."""

    @classmethod
    @abstractmethod
    def from_header_and_arrays(cls, header: dict, arrays: dict[str, np.ndarray]) -> "Layer":
        """Inverse of :meth:`header_and_arrays`: a ValueError or TypeError unless ``header``
        and ``arrays`` hold exactly the expected keys and values."""

    # Derived from the protocol ------------------------------------------------------------------

    @property
    def channels(self) -> int:
        """Output channels: the size of the output shape's last axis."""
        return self.output_shape[-1]

    @property
    def acc_bits(self) -> int:
        """Width of a signed accumulator that can never overflow in this layer."""
        lo, hi = self.acc_range
        return signed_bits_for(lo.min(), hi.max())

    @property
    def threshold_bits(self) -> int:
        """Width of a signed threshold (accumulator bounds widened by one on each side)."""
        lo, hi = self.acc_range
        return signed_bits_for(lo.min() - 1, hi.max() + 1)

    @property
    def stage_name(self) -> str:
        """``"thresholds"``, ``"requant"`` or ``"accumulator"`` (no stage)."""
        return stage_name(self.stage)

    def _check_stage(self, where):
        """Raise unless the accumulator fits the golden model and the output stage fits the
        accumulator and the output format; ``where`` names the layer in messages."""
        out_format = self.output.format
        try:
            lo, hi = self.acc_range
        except ValueError:
            lo, hi = None, None
        if lo is None or signed_bits_for(lo.min(), hi.max()) > MAX_PRODUCT_BITS - 1:
            raise ValueError(f"{where} accumulator needs more than {MAX_PRODUCT_BITS - 1} bits")
        stage = self.stage
        if isinstance(stage, Thresholds):
            if stage.values.shape != (self.channels, out_format.levels - 1):
                raise ValueError(f"{where} needs {self.channels} x {out_format.levels - 1} "
                                 f"thresholds for {out_format} outputs, not "
                                 f"{stage.values.shape[0]} x {stage.values.shape[1]}")
            if np.any((stage.values < lo[:, None] - 1) | (stage.values > hi[:, None] + 1)):
                raise ValueError(f"{where} thresholds lie outside the accumulator range")
        elif isinstance(stage, Requant):
            if stage.multiplier.shape != (self.channels,):
                raise ValueError(f"{where} needs {self.channels} requantization multipliers")
            if out_format.kind != "int":
                raise ValueError(f"{where} requantization needs an int output format, not "
                                 f"{out_format}")
            if stage.zero_point != self.output.zero_point:
                raise ValueError(f"{where} requantization zero point {stage.zero_point} is not "
                                 f"its output's zero point {self.output.zero_point}")
            if not (out_format.min_value <= stage.lo and stage.hi <= out_format.max_value):
                raise ValueError(f"{where} requantization clamp [{stage.lo}, {stage.hi}] "
                                 f"exceeds the output format {out_format}")
            if self.acc_bits + stage.mult_bits > MAX_PRODUCT_BITS:
                raise ValueError(f"{where} accumulator x multiplier needs "
                                 f"{self.acc_bits + stage.mult_bits} bits, more than "
                                 f"{MAX_PRODUCT_BITS}")
        elif stage is None:
            self._check_unstaged_output(where)
        else:
            raise TypeError(f"{where} stage must be Thresholds, Requant or None, not {stage!r}")

    def _check_unstaged_output(self, where):
        """Raise unless the output format holds the accumulator, which a layer without a stage
        outputs as it is: by default a signed int format of :attr:`acc_bits` or more (the raw
        sum of products). A kind whose accumulator is already a code of its output format (a
        pool's) overrides this."""
        out_format = self.output.format
        if out_format.kind != "int" or not out_format.signed or out_format.bits < self.acc_bits:
            raise ValueError(f"{where} outputs its accumulator, so its output format must be "
                             f"int{self.acc_bits} or wider, not {out_format}")


def layer_kind(kind):
    """Class decorator: register a :class:`Layer` subclass as the layer kind ``kind`` (a
    lower-case identifier), which its entries in a network file name. Sets ``cls.kind``.

    Raises ValueError for a malformed or already registered name, TypeError for a class that
    is not a concrete ``Layer``.
    """
    if not isinstance(kind, str) or not _KIND_NAME.fullmatch(kind):
        raise ValueError(f"Layer kind must be a lower-case identifier, not {kind!r}")
    if kind in _KINDS:
        raise ValueError(f"Layer kind {kind!r} is already registered to "
                         f"{_KINDS[kind].__qualname__}")

    def register(cls):
        if not isinstance(cls, type) or not issubclass(cls, Layer) or cls.__abstractmethods__:
            raise TypeError(f"Layer kind {kind!r} must be a class implementing Layer, not "
                            f"{cls!r}")
        cls.kind = kind
        _KINDS[kind] = cls
        return cls
    return register
