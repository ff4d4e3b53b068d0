"""Arithmetic building blocks: balanced adder trees and popcount.

Each ``+`` in Amaranth widens its result by one bit, so no partial sum of a tree can overflow.
"""

from amaranth import *

__all__ = ["adder_tree", "pipelined_sum", "popcount", "select", "tree_levels",
           "tree_register_bits"]


def adder_tree(values):
    """Sum of ``values`` as a balanced tree of two-input adders (``Const(0)`` if empty)."""
    values = list(values)
    if not values:
        return Const(0)
    while len(values) > 1:
        paired = [values[i] + values[i + 1] for i in range(0, len(values) - 1, 2)]
        values = paired + values[len(values) - len(values) % 2:]
    return values[0]


def tree_levels(count, levels_per_register=1) -> int:
    """Registers :func:`pipelined_sum` puts between ``count`` values and their sum."""
    return max(1, -(-(count - 1).bit_length() // levels_per_register))


def tree_register_bits(count, width, levels_per_register=1) -> int:
    """Register bits of :func:`pipelined_sum` over ``count`` values of ``width`` bits: the
    registered levels' sums, one bit wider a level."""
    if count <= 1:
        return width
    levels = (count - 1).bit_length()
    registered = sorted({*range(levels_per_register, levels, levels_per_register), levels})
    return sum(-(-count // 2 ** level) * (width + level) for level in registered)


def pipelined_sum(m, values, *, name, finish=None, levels_per_register=1):
    """The sum of ``values`` as a balanced tree of two-input adders with a register (no reset)
    after every ``levels_per_register`` levels and after the last, :func:`tree_levels`
    cycles later; ``finish`` (a function of the sum) is applied before the last register.
    Returns that register."""
    level = [Value.cast(value) for value in values]
    for depth in range(tree_levels(len(level), levels_per_register)):
        for _ in range(levels_per_register):
            if len(level) > 1:
                level = ([level[i] + level[i + 1] for i in range(0, len(level) - 1, 2)]
                         + level[len(level) - len(level) % 2:])
        if len(level) == 1 and finish is not None:
            level = [Value.cast(finish(level[0]))]
        registers = [Signal(value.shape(), name=f"{name}_{depth}_{i}", reset_less=True)
                     for i, value in enumerate(level)]
        m.d.sync += [register.eq(value) for register, value in zip(registers, level,
                                                                    strict=True)]
        level = registers
    return level[0]


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
