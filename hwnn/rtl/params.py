"""Parameter checks shared by the generators' constructors and params dataclasses."""

from ..errors import ParameterError

__all__ = ["check_positive_int"]


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
