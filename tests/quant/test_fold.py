"""Folding float output stages into thresholds and requantization (hwnn.quant.fold).

Thresholds are checked exhaustively: on every integer accumulator of every channel, the golden
threshold stage must give exactly what the float stage function gives. Requantization is
checked against the exact integer spec (Python fractions) and against the float ideal.
"""

import math
from fractions import Fraction

import numpy as np
import pytest

from hwnn.ir import Requant, Thresholds
from hwnn.ir.formats import Format, Rounding
from hwnn.quant.floatnet import BatchNorm
from hwnn.quant.fold import requant_for, stage_function, thresholds_for
from hwnn.sim.golden import requantize, threshold

FORMATS = {"uint2": Format.uint(2), "uint4": Format.uint(4), "int4": Format.int(4),
           "binary": Format.binary()}
#: Rough output reach of each activation, to pick output scales that span several levels.
REACH = {"identity": 3.0, "relu": 3.0, "tanh": 1.0, "logistic": 1.0, "hardtanh": 1.0,
         "sign": 1.0}


def _random_case(rng, fmt, activation, channels=7):
    """A random layer output stage with BatchNorm (negative and zero gamma included)."""
    lo = rng.integers(-150, 1, channels)
    hi = lo + rng.integers(0, 300, channels)
    hi[0] = lo[0]                                          # a one-value accumulator range
    acc_scale = rng.uniform(0.005, 0.05, channels) * rng.choice([-1.0, 1.0], channels)
    bias = rng.normal(0.0, 0.5, channels)
    gamma = rng.normal(1.0, 1.0, channels)
    gamma[1] = -abs(gamma[1]) - 0.1                        # negative gamma flips the direction
    gamma[2] = 0.0                                         # zero gamma: a constant channel
    batchnorm = BatchNorm(gamma, rng.normal(0.0, 0.5, channels), rng.normal(0.0, 0.5, channels),
                          rng.uniform(0.2, 2.0, channels))
    if fmt.kind == "bipolar":
        out_scale, zero_point = 1.0, 0
    else:
        out_scale = REACH[activation] * rng.uniform(0.5, 1.5) / max(fmt.max_value, 1)
        zero_point = int(rng.integers(0, 3)) if not fmt.signed else int(rng.integers(-2, 1))
    return lo, hi, acc_scale, bias, batchnorm, out_scale, zero_point


def _grid(lo, hi):
    """Every accumulator of each channel (channels on axis 0), padded by repeating hi."""
    width = int((hi - lo).max()) + 1
    return np.minimum(lo[:, None] + np.arange(width), hi[:, None])


@pytest.mark.parametrize("fmt_name", list(FORMATS))
@pytest.mark.parametrize("activation", list(REACH))
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_batchnorm", [True, False])
def test_thresholds_reproduce_stage_function_on_every_accumulator(fmt_name, activation, seed,
                                                                  with_batchnorm):
    fmt = FORMATS[fmt_name]
    rng = np.random.default_rng([seed, len(fmt_name), len(activation)])
    lo, hi, acc_scale, bias, batchnorm, out_scale, zero_point = _random_case(rng, fmt, activation)
    if not with_batchnorm:
        batchnorm = None
    function = stage_function(acc_scale=acc_scale, bias=bias, batchnorm=batchnorm,
                              activation=activation, out_format=fmt, out_scale=out_scale,
                              out_zero_point=zero_point)
    gain = acc_scale * (batchnorm.gain if batchnorm is not None else 1.0)
    descending = gain < 0
    stage = thresholds_for(function, lo, hi, fmt, descending)

    assert isinstance(stage, Thresholds)
    assert stage.values.shape == (len(lo), fmt.levels - 1)
    assert np.array_equal(stage.descending, descending)
    assert np.all(stage.values >= lo[:, None] - 1)
    assert np.all(stage.values <= hi[:, None] + 1)

    grid = _grid(lo, hi)
    expected = function(grid)                              # (channels, accumulators)
    assert fmt.contains(expected)
    assert np.array_equal(threshold(grid.T, stage, fmt), expected.T)
    if fmt.kind == "bipolar" and activation in ("relu", "logistic"):
        assert np.all(expected == 1)                       # y >= 0 everywhere
    else:
        # Not vacuous: some channel takes several output values.
        assert max(len(np.unique(row)) for row in expected) >= 2


def test_zero_gamma_channel_is_constant_and_rising():
    rng = np.random.default_rng(5)
    lo, hi, acc_scale, bias, batchnorm, _, _ = _random_case(rng, Format.uint(4), "relu")
    fmt = Format.uint(4)
    function = stage_function(acc_scale=acc_scale, bias=bias, batchnorm=batchnorm,
                              activation="identity", out_format=fmt, out_scale=0.2,
                              out_zero_point=3)
    gain = acc_scale * batchnorm.gain
    assert gain[2] == 0 and not gain[2] < 0
    stage = thresholds_for(function, lo, hi, fmt, gain < 0)
    # z = beta after BatchNorm with gamma 0: code = round(beta / 0.2) + 3 everywhere.
    level = int(np.clip(np.round(batchnorm.beta[2] / 0.2) + 3, 0, 15))
    assert np.all(stage.values[2, :level] == lo[2])
    assert np.all(stage.values[2, level:] == hi[2] + 1)
    assert np.all(threshold(np.arange(lo[2], hi[2] + 1)[:, None].repeat(len(lo), 1),
                            stage, fmt)[:, 2] == level)


def test_stage_function_by_hand():
    # gain = 2 / sqrt(3 + 1) = 1, so after BatchNorm z = acc * 0.5 + 0.25 - 0.25 = acc / 2.
    batchnorm = BatchNorm([2.0], [0.0], [0.25], [3.0], eps=1.0)
    acc = np.array([[-3, -1, 0, 1, 2, 3, 5, 40]])
    common = dict(acc_scale=[0.5], bias=[0.25], batchnorm=batchnorm, out_scale=1.0)
    even = stage_function(**common, activation="relu", out_format=Format.uint(4))
    assert even(acc).tolist() == [[0, 0, 0, 0, 1, 2, 2, 15]]           # 0.5->0, 1.5->2, 2.5->2
    up = stage_function(**common, activation="relu", out_format=Format.uint(4),
                        rounding=Rounding.HALF_UP)
    assert up(acc).tolist() == [[0, 0, 0, 1, 1, 2, 3, 15]]
    signed = stage_function(**common, activation="identity", out_format=Format.int(3),
                            out_zero_point=1)
    # round(acc / 2) + 1 (half to even: -1.5 -> -2), saturated to -4..3
    assert signed(acc).tolist() == [[-1, 1, 1, 1, 2, 3, 3, 3]]
    bipolar = stage_function(acc_scale=[1.0], bias=[-2.0], batchnorm=None,
                             activation="identity", out_format=Format.binary(), out_scale=1.0)
    assert bipolar(np.array([[1, 2, 3]])).tolist() == [[-1, 1, 1]]      # y == 0 gives +1


def test_stage_function_takes_channels_on_axis_0():
    function = stage_function(acc_scale=[1.0, -1.0], bias=[0.0, 0.0], batchnorm=None,
                              activation="identity", out_format=Format.int(8), out_scale=1.0)
    acc = np.arange(12).reshape(2, 3, 2)
    assert np.array_equal(function(acc), np.stack([acc[0], -acc[1]]))


def test_thresholds_for_hand_cases():
    fmt = Format.uint(2)

    def rising(a):                                         # levels reached at 3, 6, 9
        return fmt.fit(a // 3)

    assert thresholds_for(rising, [-5], [20], fmt, [False]).values.tolist() == [[3, 6, 9]]
    # Range starts above the first thresholds: they clip to lo.
    assert thresholds_for(rising, [7], [20], fmt, [False]).values.tolist() == [[7, 7, 9]]
    # Unreached levels get hi + 1.
    assert thresholds_for(rising, [-5], [4], fmt, [False]).values.tolist() == [[3, 5, 5]]

    def falling(a):                                        # level k for a <= -k
        return fmt.fit(-a)

    stage = thresholds_for(falling, [-5], [5], fmt, [True])
    assert stage.values.tolist() == [[-1, -2, -3]]
    assert thresholds_for(falling, [-1], [5], fmt, [True]).values.tolist() == [[-1, -2, -2]]
    assert threshold(np.arange(-5, 6)[:, None], stage, fmt)[:, 0].tolist() == \
        [3, 3, 3, 2, 1, 0, 0, 0, 0, 0, 0]


def test_thresholds_for_binary_outputs_by_hand():
    binary = Format.binary()

    def two(a):
        return np.where(a >= np.array([[2], [-3]]), 1, -1)

    stage = thresholds_for(two, [-10, -10], [10, 10], binary, [False, False])
    assert stage.values.tolist() == [[2], [-3]]

    def down(a):
        return np.where(a <= 4, 1, -1)

    assert thresholds_for(down, [-10], [10], binary, [True]).values.tolist() == [[4]]
    assert thresholds_for(down, [6], [10], binary, [True]).values.tolist() == [[5]]   # lo - 1
    assert thresholds_for(down, [-10], [-8], binary, [True]).values.tolist() == [[-8]]  # hi


# Requantization -------------------------------------------------------------------------------

def _exact_requant(acc, multiplier, shift, zero_point, lo, hi):
    """The integer spec with exact rationals: clamp(floor(acc * M / 2**s + 1/2) + zp), where
    the 1/2 is absent for s = 0 (it makes no difference then: acc * M is an integer)."""
    half = Fraction(1, 2) if shift > 0 else Fraction(0)
    value = math.floor(Fraction(int(acc) * int(multiplier), 1 << int(shift)) + half)
    return min(max(value + zero_point, lo), hi)


@pytest.mark.parametrize("mult_bits", [2, 4, 8, 16, 24, 32])
def test_requant_for_is_accurate(mult_bits):
    limit = (1 << mult_bits) - 1
    rng = np.random.default_rng(mult_bits)
    ratios = np.concatenate([10.0 ** rng.uniform(-8, math.log10(limit), 200),
                             [1.0, 0.5, 1 / 3, 2.0 ** -20, float(limit), limit + 0.4]])
    multiplier, shift = requant_for(ratios, mult_bits)
    assert multiplier.dtype == np.int64 and shift.dtype == np.int64
    assert np.all((multiplier >= 0) & (multiplier <= limit))
    assert np.all((shift >= 0) & (shift <= 62))
    for ratio, m, s in zip(ratios, multiplier, shift, strict=True):
        exact = Fraction(float(ratio))
        error = abs(Fraction(int(m), 1 << int(s)) - exact) / exact
        assert error <= Fraction(1, limit) * (1 + Fraction(1, 10**9)), (ratio, m, s)


def test_requant_for_shared_shift_takes_the_smallest_shift():
    # Per channel: 1.0 -> (128, 7), 0.25 -> (128, 9); shared: shift 7, 0.25 * 128 = 32.
    assert [a.tolist() for a in requant_for([1.0, 0.25], 8, shared_shift=True)] \
        == [[128, 32], [7, 7]]
    multiplier, shift = requant_for([3.7, 0.01, 1.5], 16, shared_shift=True)
    assert len(set(shift.tolist())) == 1 and multiplier.max() < 1 << 16
    assert np.allclose(multiplier / 2.0 ** shift, [3.7, 0.01, 1.5], rtol=0.05)


def test_requant_for_hand_cases():
    assert [a.tolist() for a in requant_for(0.5)] == [32768, 16]
    assert [a.tolist() for a in requant_for([1.0, 0.25], 8)] == [[128, 128], [7, 9]]
    assert [a.tolist() for a in requant_for(40000.0, 16)] == [40000, 0]    # s = 0
    assert [a.tolist() for a in requant_for(3.0, 2)] == [3, 0]
    assert [a.tolist() for a in requant_for(65535.4, 16)] == [65535, 0]


@pytest.mark.parametrize("ratio, mult_bits, message", [
    (70000.0, 16, r"^A requantization ratio of 70000 needs a multiplier of more than 16 bits$"),
    (4.0, 2, r"^A requantization ratio of 4 needs a multiplier of more than 2 bits$"),
    ([0.5, 65535.5], 16, (r"^A requantization ratio of 65535\.5 needs a multiplier of more "
                          r"than 16 bits$")),
])
def test_requant_for_rejects_large_ratios(ratio, mult_bits, message):
    with pytest.raises(ValueError, match=message):
        requant_for(ratio, mult_bits)


@pytest.mark.parametrize("ratio", [0.0, -0.5, float("nan"), float("inf"), [0.5, 0.0]])
def test_requant_for_rejects_non_positive_ratios(ratio):
    with pytest.raises(ValueError, match=r"^Requantization ratios must be finite and positive$"):
        requant_for(ratio)


def test_requantize_hand_cases():
    acc = np.arange(-3, 4)[:, None]
    # M / 2**s = 1/2: ties round up (-1.5 -> -1, -0.5 -> 0, 0.5 -> 1, 1.5 -> 2).
    half = Requant([1], [1], 1, 0, -8, 7)
    assert requantize(acc, half)[:, 0].tolist() == [-1, -1, 0, 0, 1, 1, 2]
    multiplier, shift = requant_for(0.5)
    stage = Requant(multiplier[None], shift[None], 16, 0, -8, 7)
    assert requantize([[1], [-1], [3], [-3]], stage)[:, 0].tolist() == [1, 0, 2, -1]
    # s = 0: no rounding term at all.
    exact = Requant([3], [0], 2, 0, -100, 100)
    assert requantize([[5], [-5], [0]], exact)[:, 0].tolist() == [15, -15, 0]
    # zero point then clamp
    clamp = Requant([1], [0], 1, 2, 0, 5)
    assert requantize([[-5], [-2], [0], [3], [4]], clamp)[:, 0].tolist() == [0, 0, 2, 5, 5]
    # per channel
    two = Requant([3, 5], [1, 2], 4, -1, -20, 20)
    # ch0: (7*3 + 1) >> 1 = 11, -1 -> 10; ch1: (7*5 + 2) >> 2 = 9, -1 -> 8
    assert requantize([7, 7], two).tolist() == [10, 8]


@pytest.mark.parametrize("mult_bits, share", [(4, 0.45), (8, 0.6), (16, 0.85)])
@pytest.mark.parametrize("fmt, zero_point", [(Format.int(8), 0), (Format.uint(8), 3),
                                             (Format.int(4), -2)])
def test_requantize_exhaustively(mult_bits, share, fmt, zero_point):
    ratios = np.array([0.0123, 0.5, 1 / 3, 0.9999, 2.7, 0.0625])
    multiplier, shift = requant_for(ratios, mult_bits)
    stage = Requant(multiplier, shift, mult_bits, zero_point, fmt.min_value, fmt.max_value)
    # Every accumulator in [-500, 500], plus a sample of larger ones.
    acc = np.concatenate([np.arange(-500, 501),
                          np.random.default_rng(mult_bits).integers(-30000, 30001, 200)])
    golden = requantize(np.repeat(acc[:, None], len(ratios), axis=1), stage)
    equal_checked = 0
    for channel, ratio in enumerate(ratios):
        m, s = int(multiplier[channel]), int(shift[channel])
        approx_error = abs(Fraction(float(ratio)) - Fraction(m, 1 << s))
        for a, got in zip(acc.tolist(), golden[:, channel].tolist(), strict=True):
            assert got == _exact_requant(a, m, s, zero_point, fmt.min_value, fmt.max_value)
            x = a * Fraction(float(ratio))
            ideal = min(max(math.floor(x + Fraction(1, 2)) + zero_point, fmt.min_value),
                        fmt.max_value)
            # x moves by |a| * approx_error, so the rounded value by at most 1 more than that
            # (and at most 1 code while it is below 1, as for mult_bits 16 here).
            drift = abs(a) * approx_error
            assert abs(got - ideal) <= 1 + math.floor(drift)
            assert abs(got - ideal) <= 1 or drift >= 1
            to_tie = abs(x - math.floor(x) - Fraction(1, 2))
            if approx_error == 0 or to_tie > drift + Fraction(1, 10**9):
                assert got == ideal, (ratio, a)
                equal_checked += 1
    assert equal_checked > share * acc.size * len(ratios)
