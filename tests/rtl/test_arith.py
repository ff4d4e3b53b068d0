"""Products in logic (:func:`hwnn.rtl.arith.logic_product`) against Python's integers."""

import itertools
import random

import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from hwnn.rtl.arith import logic_product, signed_digits, signed_partial_products


def _ends(shape):
    width = shape.width
    return ((-(1 << (width - 1)), (1 << (width - 1)) - 1) if shape.signed
            else (0, (1 << width) - 1))


@pytest.mark.parametrize("a_shape, b_shape, cycles", [
    (signed(20), unsigned(16), 2),      # a requantization: accumulator by multiplier
    (signed(8), signed(8), 2),
    (unsigned(4), signed(5), 1),
    (unsigned(3), unsigned(1), 2),      # one partial product
    (signed(2), signed(2), 3),          # more registers than levels
])
def test_product_in_logic_is_exact_at_its_latency(a_shape, b_shape, cycles):
    m = Module()
    a, b = Signal(a_shape), Signal(b_shape)
    product = logic_product(m, a, b, name="product", cycles=cycles)
    assert len(product) == len(a * b)
    rng = random.Random(f"{a_shape}{b_shape}")
    pairs = list(itertools.product(_ends(a_shape), _ends(b_shape)))
    pairs += [(rng.randint(*_ends(a_shape)), rng.randint(*_ends(b_shape))) for _ in range(200)]
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for index, (x, y) in enumerate(pairs + [(0, 0)] * cycles):
            ctx.set(a, x)
            ctx.set(b, y)
            await ctx.tick()
            if 0 <= index - cycles + 1 < len(pairs):
                x0, y0 = pairs[index - cycles + 1]
                assert ctx.get(product) == x0 * y0, f"{x0} * {y0}"

    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("constant", [0, 1, 3, 34014, 2**16 - 1, -7])
def test_product_by_a_constant_in_logic_is_exact(constant):
    m = Module()
    a = Signal(signed(12))
    product = logic_product(m, a, constant, name="product", cycles=2)
    values = [-(1 << 11), (1 << 11) - 1, 0, -1, *random.Random(constant).sample(range(-2048, 2048),
                                                                                 100)]
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for index, value in enumerate([*values, 0, 0]):
            ctx.set(a, value)
            await ctx.tick()
            if 0 <= index - 1 < len(values):
                assert ctx.get(product) == values[index - 1] * constant

    sim.add_testbench(bench)
    sim.run()


def test_signed_digits_are_canonical():
    rng = random.Random(3)
    for value in [0, 1, 2, 3, 7, 0b1010101010101011, *(rng.randrange(1 << 24) for _ in range(500))]:
        digits = signed_digits(value)
        assert sum(sign << shift for shift, sign in digits) == value
        shifts = [shift for shift, _ in digits]
        assert all(later - earlier >= 2 for earlier, later in itertools.pairwise(shifts))
        assert {sign for _, sign in digits} <= {1, -1}
    assert len(signed_digits(2**16 - 1)) == 2                       # 2**16 - 1
    assert signed_digits(-7) == [(0, 1), (3, -1)]


def test_partial_products_have_no_multiplication_and_no_negation():
    """A term per bit of a signal, the sign bit's subtracted; a term per signed digit of a
    constant; signs are kept apart (the adder tree subtracts), never a negation."""
    terms = signed_partial_products(Signal(signed(6)), Signal(signed(4)))
    assert [sign for _, sign in terms] == [1, 1, 1, -1]
    constant = signed_partial_products(Signal(signed(6)), 0b0111_0111)   # 128 - 8 + 8 - 1
    assert [sign for _, sign in constant] == [sign for _, sign in signed_digits(0b0111_0111)]
    assert -1 in [sign for _, sign in constant]
    text = "".join(repr(term) for term, _ in terms + constant)
    assert "*" not in text and "neg" not in text
