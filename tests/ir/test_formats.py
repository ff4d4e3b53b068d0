"""Number formats: names, value ranges, bit patterns, overflow, rounding and width inference.

Every expected value is worked out by hand (two's complement tables, rounding tables); the
properties check the invariants that the hardware relies on over whole formats or random values.
"""

import dataclasses
import re

import numpy as np
import pytest
from amaranth.hdl import signed, unsigned
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnn.ir.formats import Format, Overflow, Rounding, round_values, signed_bits_for

pytestmark = pytest.mark.filterwarnings("error")

CANONICAL_NAMES = ([f"int{k}" for k in range(1, 33)]
                   + [f"uint{k}" for k in range(1, 33)]
                   + [f"int{k}n" for k in range(3, 33)]  # int2n is spelled "ternary"
                   + ["ternary", "binary"])

# Every format small enough to enumerate all its values and bit patterns.
SMALL_NAMES = ([f"int{k}" for k in range(1, 9)] + [f"uint{k}" for k in range(1, 9)]
               + [f"int{k}n" for k in range(3, 9)] + ["ternary", "binary"])

UNKNOWN_MESSAGE = ("Unknown number format {!r}; expected int<k>, uint<k>, int<k>n (narrow), "
                   "ternary or binary, with k in 1..32")


def all_values(fmt):
    """Every value of ``fmt``, written out from its definition (not from ``level_value``)."""
    if fmt.kind == "bipolar":
        return np.array([-1, 1])
    if fmt.signed:
        lo = -(2 ** (fmt.bits - 1)) + (1 if fmt.narrow else 0)
        return np.arange(lo, 2 ** (fmt.bits - 1))
    return np.arange(0, 2 ** fmt.bits)


def anchored(message):
    return f"^{re.escape(message)}$"


# Names ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", CANONICAL_NAMES)
def test_name_round_trip(name):
    fmt = Format.parse(name)
    assert str(fmt) == name
    assert Format.parse(str(fmt)) == fmt
    assert Format.from_dict(fmt.to_dict()) == fmt
    assert fmt.to_dict() == {"name": name}


@pytest.mark.parametrize("name, expected", [
    ("int8",    Format("int", 8, True, False)),
    ("int1",    Format("int", 1, True, False)),
    ("int32",   Format("int", 32, True, False)),
    ("uint4",   Format("int", 4, False, False)),
    ("uint1",   Format("int", 1, False, False)),
    ("uint32",  Format("int", 32, False, False)),
    ("int8n",   Format("int", 8, True, True)),
    ("int2n",   Format("int", 2, True, True)),
    ("ternary", Format("int", 2, True, True)),
    ("binary",  Format("bipolar", 1, True, False)),
])
def test_parse_fields(name, expected):
    assert Format.parse(name) == expected


def test_constructors_match_parse():
    assert Format.int(8) == Format.parse("int8")
    assert Format.int(8, narrow=True) == Format.parse("int8n")
    assert Format.uint(4) == Format.parse("uint4")
    assert Format.ternary() == Format.parse("ternary") == Format.int(2, narrow=True)
    assert Format.binary() == Format.parse("binary")
    assert str(Format.int(2, narrow=True)) == "ternary"


def test_parse_passes_formats_through():
    fmt = Format.uint(3)
    assert Format.parse(fmt) is fmt


def test_formats_are_frozen_and_hashable():
    fmt = Format.int(8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fmt.bits = 4
    assert {Format.int(8), Format.parse("int8"), Format.uint(8)} == {Format.int(8), Format.uint(8)}


@pytest.mark.parametrize("name, bits", [("int0", 0), ("int33", 33), ("uint0", 0),
                                        ("uint33", 33), ("int0n", 0), ("int64", 64)])
def test_parse_rejects_width(name, bits):
    with pytest.raises(ValueError, match=anchored(f"Format bits must be 1..32, not {bits} "
                                                  f"(in {name!r})")):
        Format.parse(name)


@pytest.mark.parametrize("make, bits", [(Format.int, 0), (Format.int, 33), (Format.uint, 0),
                                        (Format.uint, 33), (Format.int, -1)])
def test_constructor_rejects_width(make, bits):
    with pytest.raises(ValueError, match=anchored(f"Format bits must be 1..32, not {bits}")):
        make(bits)


def test_parse_rejects_unsigned_narrow():
    with pytest.raises(ValueError, match=r"^Only signed formats have a narrow range, "
                                         r"not 'uint4n'$"):
        Format.parse("uint4n")


@pytest.mark.parametrize("name", ["float8", "", "int", "uint", "INT8", "Int8", " int8", "int8 ",
                                  "int8\n", "int-1", "int+8", "int8nn", "bipolar", "int 8",
                                  "sint8", "fixed8", "ternary2", "Binary", "q1.7"])
def test_parse_rejects_unknown_names(name):
    with pytest.raises(ValueError, match=anchored(UNKNOWN_MESSAGE.format(name))):
        Format.parse(name)


@pytest.mark.parametrize("name", [8, None, b"int8", ["int8"], 8.0, {"name": "int8"}])
def test_parse_rejects_non_strings(name):
    with pytest.raises(TypeError, match=anchored(f"Format name must be a string, not {name!r}")):
        Format.parse(name)


def test_parse_rejects_narrow_one_bit():
    with pytest.raises(ValueError, match=r"^A narrow signed format needs at least 2 bits$"):
        Format.parse("int1n")


@pytest.mark.parametrize("bits", [True, False, 8.0, "8", None])
def test_rejects_non_integer_bits(bits):
    with pytest.raises(TypeError, match=anchored(f"Format bits must be an integer, not "
                                                 f"{bits!r}")):
        Format.int(bits)


@pytest.mark.parametrize("field", ["signed", "narrow"])
def test_rejects_non_bool_flags(field):
    with pytest.raises(TypeError, match=anchored(f"Format {field} must be a bool, not 1")):
        Format(kind="int", bits=8, **{field: 1})


def test_rejects_bad_kind_and_combinations():
    with pytest.raises(ValueError, match=r"^Format kind must be 'int' or 'bipolar', "
                                         r"not 'float'$"):
        Format("float", 8)
    with pytest.raises(ValueError, match=r"^A bipolar format is 1 bit, signed, not narrow$"):
        Format("bipolar", 2)
    with pytest.raises(ValueError, match=r"^A bipolar format is 1 bit, signed, not narrow$"):
        Format("bipolar", 1, signed=False)
    with pytest.raises(ValueError, match=r"^Only signed formats have a narrow range$"):
        Format("int", 4, signed=False, narrow=True)
    with pytest.raises(ValueError, match=r"^A narrow signed format needs at least 2 bits$"):
        Format.int(1, narrow=True)


@pytest.mark.parametrize("data", ["int8", {"name": "int8", "bits": 8}, {}, None, ["int8"]])
def test_from_dict_rejects_bad_mappings(data):
    with pytest.raises(ValueError, match=anchored(f"A format must be a {{'name': ...}} mapping, "
                                                  f"not {data!r}")):
        Format.from_dict(data)


# Value range ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, lo, hi, levels, step, width", [
    ("int8",    -128,        127,         256,         1, 8),
    ("int8n",   -127,        127,         255,         1, 8),
    ("int4",    -8,          7,           16,          1, 4),
    ("int4n",   -7,          7,           15,          1, 4),
    ("uint4",   0,           15,          16,          1, 4),
    ("uint8",   0,           255,         256,         1, 8),
    ("int1",    -1,          0,           2,           1, 1),
    ("uint1",   0,           1,           2,           1, 1),
    ("ternary", -1,          1,           3,           1, 2),
    ("binary",  -1,          1,           2,           2, 1),
    ("int32",   -2147483648, 2147483647,  4294967296,  1, 32),
    ("int32n",  -2147483647, 2147483647,  4294967295,  1, 32),
    ("uint32",  0,           4294967295,  4294967296,  1, 32),
])
def test_range(name, lo, hi, levels, step, width):
    fmt = Format.parse(name)
    assert (fmt.min_value, fmt.max_value, fmt.levels, fmt.step, fmt.width) == \
        (lo, hi, levels, step, width)


@pytest.mark.parametrize("name", CANONICAL_NAMES)
def test_levels_span_the_range(name):
    fmt = Format.parse(name)
    assert fmt.min_value + fmt.step * (fmt.levels - 1) == fmt.max_value
    assert fmt.levels <= 2 ** fmt.width


@pytest.mark.parametrize("name, shape", [("int8", signed(8)), ("int8n", signed(8)),
                                         ("uint4", unsigned(4)), ("ternary", signed(2)),
                                         ("binary", unsigned(1))])
def test_shape(name, shape):
    assert Format.parse(name).shape() == shape


@pytest.mark.parametrize("name, inside, outside", [
    ("int8",    [-128, 0, 127],  [128, -129, 0.5, np.nan, np.inf]),
    ("int8n",   [-127, 127],     [-128]),
    ("uint4",   [0, 15],         [-1, 16]),
    ("ternary", [-1, 0, 1],      [2, -2]),
    ("binary",  [-1, 1],         [0, 2, -2, 0.5]),
])
def test_contains(name, inside, outside):
    fmt = Format.parse(name)
    assert fmt.contains(inside)
    assert fmt.contains(np.array(inside).reshape(1, -1))
    for value in inside:
        assert fmt.contains(value)
    for value in outside:
        assert not fmt.contains(value)
        assert not fmt.contains([*inside, value])
    assert fmt.contains([])


# Levels -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, levels, values", [
    ("int8",    [0, 1, 128, 255],  [-128, -127, 0, 127]),
    ("int8n",   [0, 127, 254],     [-127, 0, 127]),
    ("uint4",   [0, 7, 15],        [0, 7, 15]),
    ("ternary", [0, 1, 2],         [-1, 0, 1]),
    ("binary",  [0, 1],            [-1, 1]),
])
def test_level_value_hand_cases(name, levels, values):
    fmt = Format.parse(name)
    np.testing.assert_array_equal(fmt.level_value(levels), values)
    np.testing.assert_array_equal(fmt.value_level(values), levels)


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_levels_enumerate_values_in_order(name):
    fmt = Format.parse(name)
    levels = np.arange(fmt.levels)
    values = fmt.level_value(levels)
    np.testing.assert_array_equal(values, all_values(fmt))
    np.testing.assert_array_equal(fmt.value_level(values), levels)
    assert values.dtype == np.int64


# Bit patterns -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, values, patterns", [
    ("int4",    [-8, -1, 0, 1, 7],           [8, 15, 0, 1, 7]),
    ("int4n",   [-7, -1, 7],                 [9, 15, 7]),
    ("int8",    [-128, -1, 127, -2],         [128, 255, 127, 254]),
    ("int8n",   [-127],                      [129]),
    ("uint4",   [0, 9, 15],                  [0, 9, 15]),
    ("int1",    [-1, 0],                     [1, 0]),
    ("ternary", [-1, 0, 1],                  [3, 0, 1]),
    ("binary",  [-1, 1],                     [0, 1]),
    ("int32",   [-1, -2147483648, 5],        [0xFFFFFFFF, 0x80000000, 5]),
    ("uint32",  [4294967295],                [0xFFFFFFFF]),
])
def test_encode_decode_hand_cases(name, values, patterns):
    fmt = Format.parse(name)
    encoded = fmt.encode(values)
    np.testing.assert_array_equal(encoded, patterns)
    assert encoded.dtype == np.int64
    np.testing.assert_array_equal(fmt.decode(patterns), values)


def test_decode_int3_table():
    np.testing.assert_array_equal(Format.int(3).decode(range(8)), [0, 1, 2, 3, -4, -3, -2, -1])


def test_encode_keeps_shape():
    values = np.array([[-1, 0], [1, -1]])
    np.testing.assert_array_equal(Format.ternary().encode(values), [[3, 0], [1, 3]])
    np.testing.assert_array_equal(Format.binary().encode(values[:, ::2]), [[0], [1]])
    assert Format.int(4).encode(-3).shape == ()
    assert int(Format.int(4).encode(-3)) == 13


@pytest.mark.parametrize("name", SMALL_NAMES)
def test_encode_decode_every_value(name):
    fmt = Format.parse(name)
    values = all_values(fmt)
    patterns = fmt.encode(values)
    np.testing.assert_array_equal(fmt.decode(patterns), values)
    assert len(set(patterns.tolist())) == len(values)
    excluded = {2 ** (fmt.bits - 1)} if fmt.narrow else set()
    assert set(patterns.tolist()) == set(range(2 ** fmt.bits)) - excluded


@pytest.mark.parametrize("name, value", [
    ("int4", 8), ("int4", -9), ("uint4", -1), ("uint4", 16), ("int8n", -128), ("ternary", 2),
    ("ternary", -2), ("binary", 0), ("binary", 2), ("int1", 1),
])
def test_encode_rejects_values_outside(name, value):
    fmt = Format.parse(name)
    with pytest.raises(ValueError, match=anchored(f"Value {value} is not in format {name}")):
        fmt.encode(value)


def test_encode_reports_first_bad_value():
    with pytest.raises(ValueError, match=r"^Value 9 is not in format int4$"):
        Format.int(4).encode([[0, 9], [-20, 3]])
    with pytest.raises(ValueError, match=r"^Value 0 is not in format binary$"):
        Format.binary().encode([1, -1, 0, 3])


@pytest.mark.parametrize("name, pattern", [("ternary", 2), ("int8n", 128), ("int4n", 8)])
def test_decode_rejects_excluded_narrow_pattern(name, pattern):
    fmt = Format.parse(name)
    with pytest.raises(ValueError, match=anchored(f"Bit pattern {pattern} has no value in "
                                                  f"format {name}")):
        fmt.decode([0, pattern])


@pytest.mark.parametrize("name, pattern, top", [("int4", 16, 15), ("int4", -1, 15),
                                                ("uint4", 16, 15), ("binary", 2, 1),
                                                ("ternary", 4, 3), ("int8n", 256, 255)])
def test_decode_rejects_patterns_outside(name, pattern, top):
    with pytest.raises(ValueError, match=anchored(f"Bit patterns of format {name} must be "
                                                  f"0..{top}")):
        Format.parse(name).decode(pattern)


# Overflow ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, overflow, values, expected", [
    ("int8",    Overflow.WRAP,     [128, 255, 256, -129, -1, 127, -128, 511],
                                   [-128, -1, 0, 127, -1, 127, -128, -1]),
    ("int8",    Overflow.SATURATE, [128, 255, -129, -1000, 5, -128],
                                   [127, 127, -128, -128, 5, -128]),
    ("uint4",   Overflow.WRAP,     [17, 16, -1, 15, 33, -16],
                                   [1, 0, 15, 15, 1, 0]),
    ("uint4",   Overflow.SATURATE, [17, -1, 7, 10**12],
                                   [15, 0, 7, 15]),
    # The pattern of -128 has no value in int8n: wrapping onto it saturates to -127.
    ("int8n",   Overflow.WRAP,     [128, 129, 383, -128, 127],
                                   [-127, -127, 127, -127, 127]),
    ("int8n",   Overflow.SATURATE, [-128, 128, -5],
                                   [-127, 127, -5]),
    ("ternary", Overflow.WRAP,     [2, 3, 4, 5, -2, -3],
                                   [-1, -1, 0, 1, -1, 1]),
    ("ternary", Overflow.SATURATE, [5, -5, 0],
                                   [1, -1, 0]),
    ("binary",  Overflow.WRAP,     [-3, -1, 0, 2],
                                   [-1, -1, 1, 1]),
    ("binary",  Overflow.SATURATE, [-3, -1, 0, 2],
                                   [-1, -1, 1, 1]),
    ("int1",    Overflow.WRAP,     [1, 2, -2, 3],
                                   [-1, 0, 0, -1]),
])
def test_fit_hand_cases(name, overflow, values, expected):
    fitted = Format.parse(name).fit(values, overflow)
    np.testing.assert_array_equal(fitted, expected)
    assert fitted.dtype == np.int64


def test_fit_defaults_to_saturate():
    np.testing.assert_array_equal(Format.int(4).fit([9, -9]), [7, -8])


def test_fit_rejects_non_overflow():
    with pytest.raises(TypeError, match=r"^overflow must be an Overflow, not 'wrap'$"):
        Format.int(8).fit(1, "wrap")


int_formats = st.one_of(
    st.builds(Format.int, st.integers(1, 32)),
    st.builds(Format.uint, st.integers(1, 32)),
    st.builds(lambda bits: Format.int(bits, narrow=True), st.integers(2, 32)),
)


@settings(max_examples=200, deadline=None)
@given(fmt=int_formats, values=st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=1, max_size=8))
def test_fit_properties(fmt, values):
    values = np.array(values, dtype=np.int64)
    wrapped = fmt.fit(values, Overflow.WRAP)
    saturated = fmt.fit(values, Overflow.SATURATE)
    assert fmt.contains(wrapped) and fmt.contains(saturated)
    inside = (values >= fmt.min_value) & (values <= fmt.max_value)
    np.testing.assert_array_equal(wrapped[inside], values[inside])
    np.testing.assert_array_equal(saturated[inside], values[inside])
    np.testing.assert_array_equal(saturated[values > fmt.max_value], fmt.max_value)
    np.testing.assert_array_equal(saturated[values < fmt.min_value], fmt.min_value)
    # Wrapping keeps the low bits: the result is congruent modulo 2**bits, except where a
    # narrow format has to move the excluded code to its minimum.
    congruent = (wrapped - values) % 2 ** fmt.bits == 0
    if fmt.narrow:
        lost = (values % 2 ** fmt.bits) == 2 ** (fmt.bits - 1)
        assert np.all(congruent | lost)
        np.testing.assert_array_equal(wrapped[lost], fmt.min_value)
    else:
        assert np.all(congruent)


# Rounding ---------------------------------------------------------------------------------------

TIES = [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]
NON_TIES = [-2.7, -1.2, -0.4, 0.4, 1.2, 2.7]


@pytest.mark.parametrize("rounding, on_ties, on_non_ties", [
    (Rounding.HALF_EVEN,   [-2, -2, 0, 0, 2, 2],   [-3, -1, 0, 0, 1, 3]),
    (Rounding.HALF_UP,     [-2, -1, 0, 1, 2, 3],   [-3, -1, 0, 0, 1, 3]),
    (Rounding.TOWARD_ZERO, [-2, -1, 0, 0, 1, 2],   [-2, -1, 0, 0, 1, 2]),
    (Rounding.FLOOR,       [-3, -2, -1, 0, 1, 2],  [-3, -2, -1, 0, 1, 2]),
    (Rounding.CEIL,        [-2, -1, 0, 1, 2, 3],   [-2, -1, 0, 1, 2, 3]),
])
def test_round_values_modes(rounding, on_ties, on_non_ties):
    ties = round_values(TIES, rounding)
    assert ties.dtype == np.float64
    np.testing.assert_array_equal(ties, on_ties)
    np.testing.assert_array_equal(round_values(NON_TIES, rounding), on_non_ties)
    integers = [-3.0, -1.0, 0.0, 2.0, 2.0 ** 53]
    np.testing.assert_array_equal(round_values(integers, rounding), integers)
    np.testing.assert_array_equal(round_values(np.reshape(TIES, (2, 3)), rounding),
                                  np.reshape(on_ties, (2, 3)))


def test_round_values_defaults_to_half_even():
    np.testing.assert_array_equal(round_values([0.5, 1.5, 2.5]), [0, 2, 2])
    assert round_values(3.5).shape == ()


@pytest.mark.parametrize("x, expected", [
    (0.49999999999999994, 0.0),             # the largest double below 1/2
    (-0.5000000000000001, -1.0),
    (2.0 ** 52 + 1, 2.0 ** 52 + 1),          # odd integer where x + 1/2 is not representable
    (-(2.0 ** 52) - 1, -(2.0 ** 52) - 1),
    (2.0 ** 51 + 0.5, 2.0 ** 51 + 1),
])
def test_round_half_up_is_exact(x, expected):
    assert round_values(x, Rounding.HALF_UP) == expected


def test_round_values_rejects_non_rounding():
    with pytest.raises(TypeError, match=r"^rounding must be a Rounding, not 'half_even'$"):
        round_values(1.0, "half_even")


def test_enum_values_are_stable():
    assert [r.value for r in Rounding] == ["half_even", "half_up", "toward_zero", "floor", "ceil"]
    assert [o.value for o in Overflow] == ["saturate", "wrap"]


@settings(max_examples=300, deadline=None)
@given(x=st.one_of(st.floats(-1e6, 1e6, allow_nan=False),
                   st.integers(-10 ** 6, 10 ** 6).map(lambda k: k + 0.5)))
def test_round_values_properties(x):
    r = {mode: float(round_values(x, mode)) for mode in Rounding}
    assert all(v == np.floor(v) for v in r.values())
    assert r[Rounding.FLOOR] <= x < r[Rounding.FLOOR] + 1
    assert r[Rounding.CEIL] - 1 < x <= r[Rounding.CEIL]
    assert abs(r[Rounding.TOWARD_ZERO]) <= abs(x) < abs(r[Rounding.TOWARD_ZERO]) + 1
    assert r[Rounding.HALF_UP] - 0.5 <= x < r[Rounding.HALF_UP] + 0.5
    assert abs(x - r[Rounding.HALF_EVEN]) <= 0.5
    if abs(x - r[Rounding.HALF_EVEN]) == 0.5:
        assert r[Rounding.HALF_EVEN] % 2 == 0


# Width inference --------------------------------------------------------------------------------

@pytest.mark.parametrize("lo, hi, bits", [
    (0, 0, 1), (-1, 0, 1), (-1, -1, 1), (0, 1, 2), (-2, 1, 2), (-2, 2, 3), (-128, 127, 8),
    (-129, 127, 9), (0, 128, 9), (0, 127, 8), (-128, -128, 8), (-5, -3, 4), (3, 3, 3),
    (-(2 ** 31), 2 ** 31 - 1, 32), (-(2 ** 31), 2 ** 31, 33),
])
def test_signed_bits_for_hand_cases(lo, hi, bits):
    assert signed_bits_for(lo, hi) == bits


@settings(max_examples=300, deadline=None)
@given(a=st.integers(-2 ** 40, 2 ** 40), b=st.integers(-2 ** 40, 2 ** 40))
def test_signed_bits_for_is_smallest(a, b):
    lo, hi = min(a, b), max(a, b)
    bits = signed_bits_for(lo, hi)

    def holds(w):
        return -(2 ** (w - 1)) <= lo and hi <= 2 ** (w - 1) - 1

    assert holds(bits)
    assert bits == 1 or not holds(bits - 1)
    if bits <= Format.MAX_BITS:
        assert Format.int(bits).contains([lo, hi])


def test_signed_bits_for_rejects_empty_range():
    with pytest.raises(ValueError, match=r"^Empty range \[1, 0\]$"):
        signed_bits_for(1, 0)
