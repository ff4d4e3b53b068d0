"""Parameter checks shared by the generators' constructors and params dataclasses."""

from dataclasses import dataclass

from ..errors import ParameterError

__all__ = ["LayerFold", "check_divides", "check_positive_int", "divisors"]


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


@dataclass(frozen=True)
class LayerFold:
    """``pe`` output channels and ``simd`` input values per cycle for one layer of a dataflow
    design (what they mean for each layer kind: :mod:`hwnn.rtl.units`)."""
    pe:   int
    simd: int

    @property
    def lanes(self) -> int:
        return self.pe * self.simd


def divisors(n) -> list[int]:
    """The divisors of ``n``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def check_divides(layer, name, value, count, what):
    """Raise a ValueError unless ``value`` (the fold parameter ``name`` of ``layer``) divides
    ``count``, the layer's number of ``what`` (the message lists the divisors)."""
    if count % value:
        raise ValueError(f"Layer {layer.name!r}: {name} must divide its {count} {what} "
                         f"({', '.join(map(str, divisors(count)))}), not {value}")
