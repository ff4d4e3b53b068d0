"""Registered copies of a control bit that synthesis keeps apart.

A bit that steers many wide paths (a multiplexer's select in every lane of an array) fans out
from one flip-flop across the device: a route of several nanoseconds before the first LUT.
Copies registered beside their loads shorten it, but copies with the same input, initial
value and reset are one flip-flop to Yosys (``opt_merge`` merges them, whatever their names
or ``keep`` attributes). Copies that differ in their initial value, their reset or the
polarity they hold are not merged: :func:`flavor` gives eight such variants, and
:func:`registered_copies` builds copies with them. A copy's initial value and reset only
matter where the bit is used without valid data beside it; every use here is gated by a
valid bit, so a copy's flavor never changes what a design computes.
"""

from amaranth import *

__all__ = ["flavor", "registered_copies"]


def flavor(index: int) -> tuple[int, bool, bool]:
    """The variant of copy ``index``: ``(init, reset_less, inverted)``, different for eight
    consecutive indices (a copy ``inverted`` holds the complement of the bit)."""
    return index & 1, bool(index & 2), bool(index & 4)


def registered_copies(m, value, count: int, *, name: str) -> list:
    """``count`` copies of the 1-bit ``value``, each registered (a cycle later) in its own
    flip-flop (:func:`flavor`); returns the copies' values (an inverted copy read through a
    NOT, which synthesis folds into the LUT that uses it)."""
    copies = []
    for index in range(count):
        init, reset_less, inverted = flavor(index)
        register = Signal(name=f"{name}_{index}", init=init, reset_less=reset_less)
        m.d.sync += register.eq(~value if inverted else value)
        copies.append(~register if inverted else register)
    return copies
