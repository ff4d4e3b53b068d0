"""Parameter checks shared by the generators' constructors and params dataclasses."""

from dataclasses import dataclass

from ..errors import ParameterError

__all__ = ["MULTIPLIERS", "LayerFold", "check_divides", "check_multipliers",
           "check_positive_int", "divisors"]

#: Where a dataflow layer's multipliers (its int-k lanes and its requantization) are built:
#: DSP blocks (Yosys maps ``*`` to them), logic (:func:`~hwnn.rtl.arith.logic_product`:
#: shifts and adds, never a DSP block) at the same rate, or ``"hardwired"``: a fully parallel
#: layer's constant weights as a shared graph of adders (:mod:`hwnn.rtl.cmvm`), with no
#: weight memory.
MULTIPLIERS = ("dsp", "logic", "hardwired")

#: The suffix of a fold's label for where its multipliers go.
_LABEL_SUFFIX = {"dsp": "", "logic": "L", "hardwired": "H"}


def check_positive_int(owner, name, value, limit=None):
    """Raise unless ``value`` is an int in ``1..limit`` (``bool`` is refused: ``True`` is not
    silently 1): TypeError for another type, :class:`~hwnn.errors.ParameterError` (a
    ValueError) out of range."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{owner} {name} must be a positive integer, not {value!r}")
    if limit is not None and not 1 <= value <= limit:
        raise ParameterError(name, f"{owner} {name}", f"must be 1..{limit}, not {value!r}")
    if value < 1:
        raise ParameterError(name, f"{owner} {name}", f"must be a positive integer, not "
                                                      f"{value!r}")


def check_multipliers(value):
    """Raise a ValueError unless ``value`` is one of :data:`MULTIPLIERS`."""
    if not isinstance(value, str) or value not in MULTIPLIERS:
        raise ValueError(f"multipliers must be one of {', '.join(map(repr, MULTIPLIERS))}, "
                         f"not {value!r}")


@dataclass(frozen=True)
class LayerFold:
    """``pe`` output channels and ``simd`` input values per cycle for one layer of a dataflow
    design (what they mean for each layer kind: :mod:`hwnn.rtl.units`), and where its
    ``multipliers`` go (:data:`MULTIPLIERS`; a layer without multipliers ignores it)."""
    pe:          int
    simd:        int
    multipliers: str = "dsp"

    def __post_init__(self):
        check_multipliers(self.multipliers)

    @property
    def lanes(self) -> int:
        return self.pe * self.simd

    @property
    def label(self) -> str:
        """``PxS``, and ``L`` after it for multipliers in logic, ``H`` for hardwired ones."""
        return f"{self.pe}x{self.simd}" + _LABEL_SUFFIX[self.multipliers]

    def as_dict(self) -> dict:
        """The fold as a fold file holds it: ``{"pe": P, "simd": S}``, with ``"multipliers":
        "logic"`` or ``"hardwired"`` where they are not in DSP blocks."""
        return ({"pe": self.pe, "simd": self.simd}
                | ({"multipliers": self.multipliers} if self.multipliers != "dsp" else {}))


def divisors(n) -> list[int]:
    """The divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def check_divides(layer, name, value, count, what):
    """Raise a ValueError unless ``value`` (the fold parameter ``name`` of ``layer``) divides
    ``count``, the layer's number of ``what`` (the message lists the divisors)."""
    if count % value:
        raise ValueError(f"Layer {layer.name!r}: {name} must divide its {count} {what} "
                         f"({', '.join(map(str, divisors(count)))}), not {value}")
