"""Arithmetic building blocks: balanced adder trees and popcount.

Each ``+`` in Amaranth widens its result by one bit, so no partial sum of a tree can overflow.
"""

from amaranth import *

__all__ = ["adder_tree", "popcount", "select"]


def adder_tree(values):
    """Sum of ``values`` as a balanced tree of two-input adders (``Const(0)`` if empty)."""
    values = list(values)
    if not values:
        return Const(0)
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = paired + values[len(values) - len(values) % 2:]
    return values[0]


def popcount(bits):
    """Number of set bits of ``bits`` (a Value), as an unsigned sum."""
    bits = Value.cast(bits)
    return adder_tree(bits[i] for i in range(len(bits)))


def select(index, values):
    """``values[index]`` as a chain of multiplexers (``values[-1]`` past the end).

    Unlike ``Array`` or ``Switch``, which become a ``case`` in a combinational ``always``
    block, multiplexers become continuous assignments, which every Verilog simulator evaluates
    at time 0: a ``case`` on a register that never changes stays undefined in Icarus.
    """
    values = [Value.cast(value) for value in values]
    result = values[-1]
    for position in range(len(values) - 2, -1, -1):
        result = Mux(index == position, values[position], result)
    return result
