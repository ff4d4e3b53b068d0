"""Arithmetic building blocks: balanced adder trees, popcount and multipliers in logic.

Each ``+`` in Amaranth widens its result by one bit, so no partial sum of a tree can overflow.
"""

from amaranth import *

__all__ = ["adder_tree", "logic_product", "pipelined_sum", "popcount", "select",
           "signed_digits", "signed_partial_products", "tree_levels", "tree_register_bits"]


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


def _combine(first, second):
    """Two signed terms ``(value, sign)`` as one: a sum or a difference, never a negation
    (which would be a carry chain of its own)."""
    (a, a_sign), (b, b_sign) = first, second
    if a_sign == b_sign:
        return a + b, a_sign
    return (a - b, 1) if a_sign > 0 else (b - a, 1)


def pipelined_sum(m, values, *, name, finish=None, levels_per_register=1, signs=None):
    """The sum of ``values`` as a balanced tree of two-input adders with a register (no reset)
    after every ``levels_per_register`` levels and after the last, :func:`tree_levels`
    cycles later; ``finish`` (a function of the sum) is applied before the last register.
    ``signs`` (+-1 per value, default all +1) subtract values: an adder with a negative
    input is a subtractor, so no value is negated on its own (unless every one is negative).
    Returns that register."""
    signs = [1] * len(values) if signs is None else list(signs)
    level = [(Value.cast(value), sign) for value, sign in zip(values, signs, strict=True)]
    for depth in range(tree_levels(len(level), levels_per_register)):
        for _ in range(levels_per_register):
            if len(level) > 1:
                level = ([_combine(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
                         + level[len(level) - len(level) % 2:])
        if len(level) == 1:
            value, sign = level[0]
            value = value if sign > 0 else -value
            level = [(Value.cast(finish(value) if finish is not None else value), 1)]
        registers = [Signal(value.shape(), name=f"{name}_{depth}_{i}", reset_less=True)
                     for i, (value, _) in enumerate(level)]
        m.d.sync += [register.eq(value) for register, (value, _) in zip(registers, level,
                                                                          strict=True)]
        level = [(register, sign) for register, (_, sign) in zip(registers, level,
                                                                 strict=True)]
    return level[0][0]


def signed_digits(value: int) -> list[tuple[int, int]]:
    """The canonical signed-digit form of ``value``: ``[(shift, sign)]`` with
    ``value == sum(sign << shift)``, signs +-1 and no two shifts adjacent (the fewest nonzero
    digits of any signed binary form)."""
    digits, shift = [], 0
    while value:
        if value & 1:
            sign = 2 - (value & 3)              # +1 where value = 1 (mod 4), -1 where 3
            digits.append((shift, sign))
            value -= sign
        value >>= 1
        shift += 1
    return digits


def signed_partial_products(a, b) -> list[tuple]:
    """``(value, sign)`` pairs whose signed sum is ``a * b``, with no multiplication in them:
    for a signal ``b``, for each of its bits ``i``, ``a << i`` where the bit is set
    (subtracted for the sign bit of a signed ``b``); for a constant ``b`` (an int),
    ``a << shift`` with the sign of each of its :func:`signed_digits`. Synthesis builds their
    sum in logic, never in a DSP block, which only takes ``$mul``."""
    a = Value.cast(a)
    if isinstance(b, int):
        return [(a << shift if shift else a, sign) for shift, sign in signed_digits(b)] or [
            (Const(0), 1)]
    b = Value.cast(b)
    terms = []
    for i in range(len(b)):
        term = Mux(b[i], a, 0)
        terms.append((term << i if i else term,
                      -1 if b.shape().signed and i == len(b) - 1 else 1))
    return terms


def logic_product(m, a, b, *, name, cycles):
    """``a * b`` computed in logic (:func:`signed_partial_products` summed by
    :func:`pipelined_sum`, its levels spread over the registers), ``cycles`` (>= 1) registers
    later, with no reset; ``b`` a signal or a constant (int). Returns the last register, as
    wide as the product of ``a`` and ``b``."""
    a = Value.cast(a)
    terms = signed_partial_products(a, b)
    levels = max(1, (len(terms) - 1).bit_length())
    per_register = -(-levels // cycles)
    shape = (a * b).shape()

    def exact(value):
        """The sum at the product's width (its range fits it, the tree's carries may not)."""
        value = Value.cast(value)
        if len(value) < shape.width:
            fill = value[-1] if value.shape().signed else Const(0)
            value = Cat(value, fill.replicate(shape.width - len(value)))
        return value[:shape.width].as_signed() if shape.signed else value[:shape.width]

    total = pipelined_sum(m, [term for term, _ in terms], name=name, finish=exact,
                          levels_per_register=per_register, signs=[sign for _, sign in terms])
    for stage in range(cycles - tree_levels(len(terms), per_register)):
        later = Signal.like(total, name=f"{name}_late_{stage}", reset_less=True)
        m.d.sync += later.eq(total)
        total = later
    return total


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
