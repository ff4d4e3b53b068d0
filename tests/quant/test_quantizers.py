"""Quantizers: affine (per tensor and per channel), calibration, and binary/ternary weights.

Hand cases give exact expected scales, zero points and codes; properties check, over seeded
random tensors, that codes stay inside their format and that the round trip error is bounded.
"""

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwnn.ir.formats import Format, Overflow, Rounding
from hwnn.quant.quantizers import (QuantParams, affine_params, binarize, calibrate, dequantize,
                                   quantize, ternarize)

pytestmark = pytest.mark.filterwarnings("error")

INT8, UINT8 = Format.int(8), Format.uint(8)

NOT_FINITE = "The tensor to quantize must be finite, but it holds NaN or infinite values"
WEIGHTS_NOT_FINITE = "Weights must be finite, but it holds NaN or infinite values"

FORMATS = ([Format.int(k) for k in (2, 3, 4, 8, 16)] + [Format.uint(k) for k in (1, 2, 4, 8, 16)]
           + [Format.int(k, narrow=True) for k in (3, 4, 8)] + [Format.ternary()])


def anchored(message):
    return f"^{re.escape(message)}$"


def random_tensor(seed, shape=(3, 7)):
    """Seeded tensor whose rows have magnitudes spread over six decades."""
    rng = np.random.default_rng(seed)
    magnitude = 10.0 ** rng.uniform(-3, 3, size=(shape[0],) + (1,) * (len(shape) - 1))
    x = rng.normal(size=shape) * magnitude
    zero = rng.random(shape) < 0.1
    zero.reshape(shape[0], -1)[:, 0] = False   # no row is all zero
    x[zero] = 0.0
    return x


def channel(param, x, axis):
    """``param`` shaped to broadcast against ``x`` along ``axis`` (an independent helper)."""
    if axis is None:
        return param
    shape = [1] * x.ndim
    shape[axis] = x.shape[axis]
    return np.reshape(param, shape)


# Hand cases -------------------------------------------------------------------------------------

def test_per_tensor_and_per_channel_symmetric_hand_case():
    x = np.array([[0.5, -2.0, 1.5], [0.1, 0.2, -0.3]])
    per_tensor = affine_params(x, INT8)
    assert per_tensor.axis is None
    assert per_tensor.scale.shape == () and per_tensor.zero_point.shape == ()
    assert per_tensor.scale == pytest.approx(2.0 / 127)
    assert per_tensor.zero_point == 0
    per_channel = affine_params(x, INT8, axis=0)
    assert per_channel.axis == 0
    np.testing.assert_allclose(per_channel.scale, [2.0 / 127, 0.3 / 127], rtol=1e-15)
    np.testing.assert_array_equal(per_channel.zero_point, [0, 0])
    assert per_channel.zero_point.dtype == np.int64
    # 0.5 * 127 / 2 = 31.75, 1.5 * 63.5 = 95.25; 0.1 * 127 / 0.3 = 42.33, 0.2 -> 84.67.
    np.testing.assert_array_equal(quantize(x, INT8, per_channel), [[32, -127, 95], [42, 85, -127]])
    # With the global scale the small row only uses codes up to 0.3 * 63.5 = 19.05.
    np.testing.assert_array_equal(quantize(x, INT8, per_tensor), [[32, -127, 95], [6, 13, -19]])


@pytest.mark.parametrize("fmt, symmetric, scale, zero_point, codes", [
    # [min(x, 0), max(x, 0)] = [-1, 3] onto 0..255: scale 4/255, zero point round(63.75) = 64;
    # codes round(x * 63.75 + 64) = round(0.25, 102.25, 255.25).
    (UINT8, False, 4 / 255, 64, [0, 102, 255]),
    # onto -128..127: zero point round(-128 + 63.75) = -64.
    (INT8, False, 4 / 255, -64, [-128, -26, 127]),
    # max|x| = 3 onto 127: codes round(-42.33, 25.4, 127).
    (INT8, True, 3 / 127, 0, [-42, 25, 127]),
    # unsigned symmetric covers [0, 3]: -1 saturates to 0, 0.6 * 85 = 51.
    (UINT8, True, 3 / 255, 0, [0, 51, 255]),
    # int1 holds -1..0; [-1, 3] onto it: scale 4, zero point round(-1 + 0.25) = -1.
    (Format.int(1), False, 4.0, -1, [-1, -1, 0]),
])
def test_symmetric_and_asymmetric_hand_cases(fmt, symmetric, scale, zero_point, codes):
    x = np.array([-1.0, 0.6, 3.0])
    params = affine_params(x, fmt, symmetric=symmetric)
    assert params.scale == pytest.approx(scale, rel=1e-15)
    assert params.zero_point == zero_point
    np.testing.assert_array_equal(quantize(x, fmt, params), codes)
    np.testing.assert_allclose(dequantize(codes, params),
                               (np.array(codes) - zero_point) * scale, rtol=1e-15)


def test_asymmetric_per_channel_hand_case():
    x = np.array([[-1.0, 3.0], [0.5, 2.0]])
    params = affine_params(x, UINT8, axis=0, symmetric=False)
    # Row 0: [-1, 3] -> scale 4/255, zero point 64. Row 1: [0, 2] -> scale 2/255, zero point 0.
    np.testing.assert_allclose(params.scale, [4 / 255, 2 / 255], rtol=1e-15)
    np.testing.assert_array_equal(params.zero_point, [64, 0])
    # round(-63.75 + 64), round(191.25 + 64); round(63.75), round(255).
    np.testing.assert_array_equal(quantize(x, UINT8, params), [[0, 255], [64, 255]])


@pytest.mark.parametrize("x, fmt, scale, zero_point", [
    ([1.0, 3.0], UINT8, 3 / 255, 0),      # the range always includes 0: [0, 3]
    ([-4.0, -2.0], INT8, 4 / 255, 127),   # [-4, 0]: zero point round(-128 + 255) = 127
    ([-4.0, -2.0], UINT8, 4 / 255, 255),
])
def test_asymmetric_range_includes_zero(x, fmt, scale, zero_point):
    params = affine_params(x, fmt, symmetric=False)
    assert params.scale == pytest.approx(scale, rel=1e-15)
    assert params.zero_point == zero_point


@pytest.mark.parametrize("fmt, symmetric, zero_point", [
    (INT8, True, 0), (UINT8, True, 0), (UINT8, False, 0), (INT8, False, -128),
])
def test_all_zero_tensor_gets_unit_scale(fmt, symmetric, zero_point):
    params = affine_params(np.zeros((2, 3)), fmt, symmetric=symmetric)
    assert params.scale == 1.0
    assert params.zero_point == zero_point
    assert np.all(dequantize(quantize(np.zeros(3), fmt, params), params) == 0.0)


def test_all_zero_channel_gets_unit_scale():
    params = affine_params([[0.0, 0.0], [-2.54, 1.0]], INT8, axis=0)
    np.testing.assert_allclose(params.scale, [1.0, 0.02], rtol=1e-15)


# x = 0.5, 1.5, 2.5, -0.5, -1.5; with zero point 3: 3.5, 4.5, 5.5, 2.5, 1.5.
@pytest.mark.parametrize("rounding, codes, shifted", [
    (Rounding.HALF_EVEN,   [0, 2, 2, 0, -2],   [4, 4, 6, 2, 2]),
    (Rounding.HALF_UP,     [1, 2, 3, 0, -1],   [4, 5, 6, 3, 2]),
    (Rounding.TOWARD_ZERO, [0, 1, 2, 0, -1],   [3, 4, 5, 2, 1]),
    (Rounding.FLOOR,       [0, 1, 2, -1, -2],  [3, 4, 5, 2, 1]),
    (Rounding.CEIL,        [1, 2, 3, 0, -1],   [4, 5, 6, 3, 2]),
])
def test_quantize_rounding(rounding, codes, shifted):
    x = np.array([0.5, 1.5, 2.5, -0.5, -1.5])
    np.testing.assert_array_equal(quantize(x, INT8, QuantParams(1.0, 0), rounding=rounding),
                                  codes)
    # The zero point is added before rounding, so ties and truncation see the shifted value.
    np.testing.assert_array_equal(quantize(x / 4, INT8, QuantParams(0.25, 3), rounding=rounding),
                                  shifted)


@pytest.mark.parametrize("overflow, codes", [
    (Overflow.SATURATE, [127, -128, 127, 5]),
    (Overflow.WRAP,     [-56, 56, -126, 5]),    # 200 - 256, -200 + 256, 130 - 256
])
def test_quantize_overflow(overflow, codes):
    x = [200.0, -200.0, 130.0, 5.0]
    np.testing.assert_array_equal(quantize(x, INT8, QuantParams(1.0, 0), overflow=overflow),
                                  codes)


def test_quantize_saturates_huge_values_exactly():
    codes = quantize([1e300, -1e300, 1e19, -1e19], INT8, QuantParams(1.0, 0))
    np.testing.assert_array_equal(codes, [127, -128, 127, -128])
    assert codes.dtype == np.int64


def test_grid_values_round_trip_exactly():
    params = QuantParams(0.25, 0)
    x = 0.25 * np.arange(-128, 128)
    codes = quantize(x, INT8, params)
    np.testing.assert_array_equal(codes, np.arange(-128, 128))
    np.testing.assert_array_equal(dequantize(codes, params), x)


def test_zero_point_shifts_codes():
    params = QuantParams(0.5, 3)
    assert quantize(1.0, UINT8, params) == 5          # 1 / 0.5 + 3
    assert dequantize(5, params) == 1.0               # (5 - 3) * 0.5
    assert quantize(-1.5, UINT8, params) == 0         # -3 + 3
    assert quantize(-2.0, UINT8, params) == 0         # -4 + 3 saturates


# Properties -------------------------------------------------------------------------------------

@settings(max_examples=120, deadline=None)
@given(fmt=st.sampled_from(FORMATS), seed=st.integers(0, 2 ** 32 - 1),
       symmetric=st.booleans(), axis=st.sampled_from([None, 0, 1, -1]),
       overflow=st.sampled_from(list(Overflow)), rounding=st.sampled_from(list(Rounding)),
       stretch=st.sampled_from([0.5, 1.0, 1.7, 40.0]))
def test_codes_always_inside_format(fmt, seed, symmetric, axis, overflow, rounding, stretch):
    x = random_tensor(seed)
    params = affine_params(x, fmt, axis=axis, symmetric=symmetric)
    codes = quantize(x * stretch, fmt, params, rounding=rounding, overflow=overflow)
    assert codes.dtype == np.int64
    assert codes.shape == x.shape
    assert fmt.contains(codes)
    assert np.all((codes >= fmt.min_value) & (codes <= fmt.max_value))


@settings(max_examples=120, deadline=None)
@given(fmt=st.sampled_from(FORMATS), seed=st.integers(0, 2 ** 32 - 1),
       symmetric=st.booleans(), axis=st.sampled_from([None, 0, 1, -2]))
def test_dequantization_error_within_half_step(fmt, seed, symmetric, axis):
    x = random_tensor(seed)
    if symmetric and not fmt.signed:
        x = np.abs(x)   # unsigned symmetric quantization covers [0, max x] only
    params = affine_params(x, fmt, axis=axis, symmetric=symmetric)
    codes = quantize(x, fmt, params, rounding=Rounding.HALF_EVEN)
    error = np.abs(dequantize(codes, params) - x)
    scale = channel(params.scale, x, axis)
    assert np.all(error <= scale * (0.5 + 1e-9))


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FORMATS), seed=st.integers(0, 2 ** 32 - 1),
       axis=st.sampled_from([None, 0, 1]))
def test_asymmetric_zero_is_exact(fmt, seed, axis):
    x = random_tensor(seed) + np.random.default_rng(seed).normal(size=(3, 1)) * 5
    params = affine_params(x, fmt, axis=axis, symmetric=False)
    assert fmt.contains(params.zero_point)
    zeros = np.zeros_like(x)
    codes = quantize(zeros, fmt, params)
    np.testing.assert_array_equal(codes, np.broadcast_to(channel(params.zero_point, x, axis),
                                                         x.shape))
    assert np.all(dequantize(codes, params) == 0.0)


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from(FORMATS), seed=st.integers(0, 2 ** 32 - 1))
def test_per_channel_scales_are_row_maxima(fmt, seed):
    x = random_tensor(seed)
    reach = np.abs(x) if fmt.signed else np.maximum(x, 0)
    per_channel = affine_params(x, fmt, axis=0)
    row_reach = reach.max(axis=1)
    np.testing.assert_allclose(per_channel.scale,
                               np.where(row_reach > 0, row_reach / fmt.max_value, 1.0), rtol=1e-15)
    per_tensor = affine_params(x, fmt)
    if reach.max() > 0:
        assert per_tensor.scale == pytest.approx(reach.max() / fmt.max_value, rel=1e-15)
    else:   # a non-positive tensor has nothing to cover in an unsigned format
        assert per_tensor.scale == 1.0
    used = row_reach > 0
    assert np.all(per_channel.scale[used] <= per_tensor.scale)


@settings(max_examples=60, deadline=None)
@given(fmt=st.sampled_from([f for f in FORMATS if f.signed]), seed=st.integers(0, 2 ** 32 - 1))
def test_per_channel_error_never_exceeds_per_tensor_bound(fmt, seed):
    # The worst case error of a row is half its step; a per-channel step is never larger than
    # the per-tensor one, and the row that holds the global extreme gets the same codes.
    x = random_tensor(seed)
    per_channel, per_tensor = affine_params(x, fmt, axis=0), affine_params(x, fmt)
    error_channel = np.abs(dequantize(quantize(x, fmt, per_channel), per_channel) - x)
    error_tensor = np.abs(dequantize(quantize(x, fmt, per_tensor), per_tensor) - x)
    assert np.all(error_channel.max(axis=1) <= per_channel.scale * (0.5 + 1e-9))
    assert np.all(per_channel.scale <= per_tensor.scale)
    widest = np.argmax(np.abs(x).max(axis=1))
    np.testing.assert_array_equal(quantize(x[widest], fmt, per_tensor),
                                  quantize(x, fmt, per_channel)[widest])
    np.testing.assert_array_equal(error_channel[widest], error_tensor[widest])


@pytest.mark.parametrize("seed", range(5))
def test_per_channel_rmse_is_smaller_on_uneven_rows(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4, 64)) * np.array([[1e-3], [1e-1], [1.0], [10.0]])
    x[3, 0] = 40.0   # the widest row holds the global maximum
    per_channel, per_tensor = affine_params(x, INT8, axis=0), affine_params(x, INT8)
    rmse_channel = np.sqrt(np.mean((dequantize(quantize(x, INT8, per_channel),
                                               per_channel) - x) ** 2, axis=1))
    rmse_tensor = np.sqrt(np.mean((dequantize(quantize(x, INT8, per_tensor),
                                              per_tensor) - x) ** 2, axis=1))
    assert np.all(rmse_channel <= rmse_tensor)
    assert rmse_channel[3] == rmse_tensor[3]
    assert np.all(rmse_channel[:3] < rmse_tensor[:3] / 5)


# Axes -------------------------------------------------------------------------------------------

def test_axis_of_a_3d_tensor():
    x = random_tensor(7, shape=(2, 3, 4))
    params = affine_params(x, INT8, axis=1)
    assert params.scale.shape == (3,)
    np.testing.assert_allclose(params.scale, np.abs(x).max(axis=(0, 2)) / 127, rtol=1e-15)
    codes = quantize(x, INT8, params)
    for c in range(3):
        alone = affine_params(x[:, c, :], INT8)
        assert params.scale[c] == alone.scale
        np.testing.assert_array_equal(codes[:, c, :], quantize(x[:, c, :], INT8, alone))
    np.testing.assert_allclose(dequantize(codes, params),
                               codes * params.scale.reshape(1, 3, 1), rtol=1e-15)


@pytest.mark.parametrize("negative, positive", [(-1, 2), (-2, 1), (-3, 0)])
def test_negative_axis(negative, positive):
    x = random_tensor(3, shape=(2, 3, 4))
    a = affine_params(x, INT8, axis=negative, symmetric=False)
    b = affine_params(x, INT8, axis=positive, symmetric=False)
    np.testing.assert_array_equal(a.scale, b.scale)
    np.testing.assert_array_equal(a.zero_point, b.zero_point)
    codes = quantize(x, INT8, a)
    np.testing.assert_array_equal(codes, quantize(x, INT8, b))
    np.testing.assert_array_equal(dequantize(codes, a), dequantize(codes, b))


def test_axis_one_is_axis_zero_of_the_transpose():
    x = random_tensor(11, shape=(5, 6))
    a = affine_params(x, UINT8, axis=1, symmetric=False)
    b = affine_params(x.T, UINT8, axis=0, symmetric=False)
    np.testing.assert_array_equal(a.scale, b.scale)
    np.testing.assert_array_equal(quantize(x, UINT8, a), quantize(x.T, UINT8, b).T)


@pytest.mark.parametrize("axis, message", [
    (2, "axis must be in -2..1 for a 2-d tensor, not 2"),
    (-3, "axis must be in -2..1 for a 2-d tensor, not -3"),
])
def test_rejects_axis_out_of_range(axis, message):
    x = np.ones((2, 3))
    for call in (lambda: affine_params(x, INT8, axis=axis),
                 lambda: binarize(x, axis=axis),
                 lambda: ternarize(x, axis=axis),
                 lambda: quantize(x, INT8, QuantParams([1.0, 1.0], 0, axis=axis)),
                 lambda: dequantize(x, QuantParams([1.0, 1.0], 0, axis=axis))):
        with pytest.raises(ValueError, match=anchored(message)):
            call()


@pytest.mark.parametrize("axis", [True, 1.0, "0"])
def test_rejects_non_integer_axis(axis):
    with pytest.raises(TypeError, match=anchored(f"axis must be an integer or None, not "
                                                 f"{axis!r}")):
        affine_params(np.ones((2, 3)), INT8, axis=axis)
    with pytest.raises(TypeError, match=anchored(f"axis must be an integer or None, not "
                                                 f"{axis!r}")):
        binarize(np.ones((2, 3)), axis=axis)


def test_rejects_wrong_number_of_channel_scales():
    params = QuantParams([1.0, 2.0], 0, axis=0)
    with pytest.raises(ValueError, match=r"^2 channel scales do not match axis 0 of a tensor "
                                         r"of shape \(3, 4\)$"):
        quantize(np.ones((3, 4)), INT8, params)
    with pytest.raises(ValueError, match=r"^2 channel scales do not match axis 0 of codes of "
                                         r"shape \(3, 4\)$"):
        dequantize(np.ones((3, 4), dtype=np.int64), params)
    # A channel axis of length 1 must not broadcast silently against 2 scales.
    with pytest.raises(ValueError, match=r"^2 channel scales do not match axis 0 of codes of "
                                         r"shape \(1, 4\)$"):
        dequantize(np.ones((1, 4), dtype=np.int64), params)
    with pytest.raises(ValueError, match=r"^2 channel scales do not match axis -1 of a tensor "
                                         r"of shape \(2, 3\)$"):
        quantize(np.ones((2, 3)), INT8, QuantParams([1.0, 2.0], 0, axis=-1))


# Calibration and percentiles --------------------------------------------------------------------

def test_percentile_ignores_an_outlier():
    samples = np.concatenate([np.linspace(-1.0, 1.0, 1001), [50.0]])
    minmax = calibrate(samples, INT8)
    assert minmax.scale == pytest.approx(50.0 / 127, rel=1e-15)
    robust = calibrate(samples, INT8, method="percentile", percentile=99)
    # The 99th percentile of |x| falls among the regular samples, below 1.
    assert 0.9 / 127 < robust.scale <= 1.0 / 127
    assert robust.scale < minmax.scale / 40
    assert (robust.axis, robust.zero_point) == (None, 0)


@pytest.mark.parametrize("samples, fmt, percentile, scale", [
    ([0.0, 1.0, 2.0, 3.0, 4.0], UINT8, 75, 3 / 255),        # 75th percentile: index 3 of 5
    ([-4.0, -1.0, 0.0, 1.0, 2.0], INT8, 75, 2 / 127),       # |x| sorted 0, 1, 1, 2, 4
    ([-4.0, -1.0, 0.0, 1.0, 2.0], INT8, 100, 4 / 127),
    ([0.0, 1.0, 2.0, 3.0, 4.0], UINT8, 12.5, 0.5 / 255),    # index 0.5: between 0 and 1
])
def test_percentile_hand_cases(samples, fmt, percentile, scale):
    params = calibrate(samples, fmt, method="percentile", percentile=percentile)
    assert params.scale == pytest.approx(scale, rel=1e-15)
    assert params.zero_point == 0


def test_default_percentile_is_close_to_the_maximum():
    samples = np.arange(10001.0)
    params = calibrate(samples, UINT8, method="percentile")
    # 99.99th percentile of 0..10000 (linear interpolation): index 0.9999 * 10000 = 9999.
    assert params.scale == pytest.approx(9999.0 / 255, rel=1e-12)


def test_percentile_asymmetric_and_per_channel():
    # 75th percentile of [-8, -1, 0, 3, 9] is 3, its 25th is -1: [-1, 3] onto uint8.
    params = affine_params([-8.0, -1.0, 0.0, 3.0, 9.0], UINT8, symmetric=False, percentile=75)
    assert params.scale == pytest.approx(4 / 255, rel=1e-15)
    assert params.zero_point == 64
    # Medians of |x| per row: 3 and 2.
    params = affine_params([[1.0, 2.0, 3.0, 4.0, 100.0], [-10.0, 1.0, 2.0, 5.0, 0.0]], INT8,
                           axis=0, percentile=50)
    np.testing.assert_allclose(params.scale, [3 / 127, 2 / 127], rtol=1e-15)


def test_calibrate_unsigned_is_quantized_relu():
    params = calibrate([-3.0, 0.5, 2.55], UINT8)
    assert params.scale == pytest.approx(0.01, rel=1e-15)  # max / 255
    codes = quantize([-3.0, 0.5, 2.55], UINT8, params)
    np.testing.assert_array_equal(codes, [0, 50, 255])
    np.testing.assert_allclose(dequantize(codes, params), [0.0, 0.5, 2.55], rtol=1e-15)


def test_calibrate_minmax_is_symmetric_affine_params():
    x = random_tensor(5)
    for fmt in (INT8, UINT8, Format.int(4, narrow=True)):
        a, b = calibrate(x, fmt), affine_params(x, fmt)
        assert (a.scale, a.zero_point, a.axis) == (b.scale, b.zero_point, b.axis)


@pytest.mark.parametrize("method", ["max", "MinMax", "", None, "entropy"])
def test_calibrate_rejects_unknown_methods(method):
    with pytest.raises(ValueError, match=anchored(f"Calibration method must be 'minmax' or "
                                                  f"'percentile', not {method!r}")):
        calibrate([1.0], INT8, method=method)


@pytest.mark.parametrize("percentile", [0, -1, 100.5, 101, float("nan"), True, "99"])
def test_rejects_bad_percentile(percentile):
    message = anchored(f"percentile must be in (0, 100], not {percentile!r}")
    with pytest.raises(ValueError, match=message):
        calibrate([1.0, 2.0], INT8, method="percentile", percentile=percentile)
    with pytest.raises(ValueError, match=message):
        affine_params([1.0, 2.0], INT8, percentile=percentile)


# Binary weights ---------------------------------------------------------------------------------

W_BINARY = np.array([[0.5, -1.0, 0.0, 2.5], [-0.25, -0.75, -0.0, 0.0]])


def test_binarize_hand_case():
    codes, alpha = binarize(W_BINARY)
    # Zero (and -0.0) counts as non-negative, so it becomes +1.
    np.testing.assert_array_equal(codes, [[1, -1, 1, 1], [-1, -1, 1, 1]])
    assert codes.dtype == np.int64
    assert Format.binary().contains(codes)
    # mean |w| per row: 4 / 4 and 1 / 4.
    np.testing.assert_allclose(alpha, [1.0, 0.25], rtol=1e-15)


def test_binarize_other_axes():
    codes, alpha = binarize(W_BINARY, axis=1)
    np.testing.assert_array_equal(codes, [[1, -1, 1, 1], [-1, -1, 1, 1]])
    # Column means of |w|: 0.375, 0.875, 0 (all zero: 1), 1.25.
    np.testing.assert_allclose(alpha, [0.375, 0.875, 1.0, 1.25], rtol=1e-15)
    np.testing.assert_array_equal(binarize(W_BINARY, axis=-1)[1], alpha)
    codes, alpha = binarize(W_BINARY, axis=None)
    assert alpha.shape == ()
    assert alpha == pytest.approx(5.0 / 8, rel=1e-15)


@pytest.mark.parametrize("axis, shape", [(0, (2,)), (1, (4,)), (-1, (4,)), (None, ())])
def test_binarize_unscaled_gives_ones(axis, shape):
    codes, alpha = binarize(W_BINARY, axis=axis, scaled=False)
    np.testing.assert_array_equal(codes, binarize(W_BINARY, axis=axis)[0])
    assert alpha.shape == shape
    assert np.all(alpha == 1.0)


def test_binarize_scale_minimizes_l2_error():
    # XNOR-Net: for codes sign(W), alpha = mean |W| minimizes ||W - alpha * B||^2 per row.
    w = np.random.default_rng(1).normal(size=(4, 32))
    codes, alpha = binarize(w)

    def error(a):
        return np.sum((w - a[:, None] * codes) ** 2, axis=1)

    assert np.all(error(alpha) < error(alpha * 1.01))
    assert np.all(error(alpha) < error(alpha * 0.99))


# Ternary weights --------------------------------------------------------------------------------

W_TERNARY = np.array([[0.1, -0.5, 0.9, -0.2], [1.0, 0.2, -0.3, 0.0]])


def test_ternarize_twn_hand_case():
    # Row 0: mean |w| = 1.7 / 4, delta = 0.2975: keeps -0.5 and 0.9, alpha = 1.4 / 2.
    # Row 1: mean |w| = 1.5 / 4, delta = 0.2625: keeps 1.0 and -0.3, alpha = 1.3 / 2.
    codes, alpha = ternarize(W_TERNARY)
    np.testing.assert_array_equal(codes, [[0, -1, 1, 0], [1, 0, -1, 0]])
    assert codes.dtype == np.int64
    assert Format.ternary().contains(codes)
    np.testing.assert_allclose(alpha, [0.7, 0.65], rtol=1e-15)


@pytest.mark.parametrize("threshold, codes, alpha", [
    (0.4, [[0, -1, 1, 0], [1, 0, 0, 0]], [0.7, 1.0]),
    (0.5, [[0, 0, 1, 0], [1, 0, 0, 0]], [0.9, 1.0]),         # |w| == delta becomes 0
    (0, [[1, -1, 1, -1], [1, 1, -1, 0]], [0.425, 0.5]),      # every non-zero weight is kept
    (10.0, [[0, 0, 0, 0], [0, 0, 0, 0]], [1.0, 1.0]),        # nothing kept: alpha 1
])
def test_ternarize_explicit_threshold(threshold, codes, alpha):
    got_codes, got_alpha = ternarize(W_TERNARY, threshold=threshold)
    np.testing.assert_array_equal(got_codes, codes)
    np.testing.assert_allclose(got_alpha, alpha, rtol=1e-15)


def test_ternarize_all_zero_channel():
    # Row 1: mean |w| = 3.5 / 3, delta = 0.8167: keeps 1 and -2, alpha 1.5.
    codes, alpha = ternarize([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5]])
    np.testing.assert_array_equal(codes, [[0, 0, 0], [1, -1, 0]])
    np.testing.assert_allclose(alpha, [1.0, 1.5], rtol=1e-15)


def test_ternarize_other_axes():
    codes, alpha = ternarize(W_TERNARY.T, axis=1)
    np.testing.assert_array_equal(codes, [[0, 1], [-1, 0], [1, -1], [0, 0]])
    np.testing.assert_allclose(alpha, [0.7, 0.65], rtol=1e-15)
    np.testing.assert_array_equal(ternarize(W_TERNARY.T, axis=-1)[0], codes)
    # Per tensor: mean |w| = 3.2 / 8, delta = 0.28: keeps 0.5, 0.9, 1.0, 0.3.
    codes, alpha = ternarize(W_TERNARY, axis=None)
    np.testing.assert_array_equal(codes, [[0, -1, 1, 0], [1, 0, -1, 0]])
    assert alpha.shape == ()
    assert alpha == pytest.approx(2.7 / 4, rel=1e-15)
    codes, alpha = ternarize(W_TERNARY, axis=None, threshold=0.4)
    np.testing.assert_array_equal(codes, [[0, -1, 1, 0], [1, 0, 0, 0]])
    assert alpha == pytest.approx(2.4 / 3, rel=1e-15)
    codes, alpha = ternarize(W_TERNARY.T, axis=1, threshold=0.4)
    np.testing.assert_array_equal(codes, [[0, 1], [-1, 0], [1, 0], [0, 0]])
    np.testing.assert_allclose(alpha, [0.7, 1.0], rtol=1e-15)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_ternarize_properties(seed):
    w = random_tensor(seed, shape=(4, 9))
    codes, alpha = ternarize(w)
    delta = 0.7 * np.abs(w).mean(axis=1, keepdims=True)
    np.testing.assert_array_equal(codes == 0, np.abs(w) <= delta)
    np.testing.assert_array_equal(codes[codes != 0], np.sign(w)[codes != 0])
    # Given the codes, alpha is the least-squares scale: the mean of the kept magnitudes.
    for row in range(4):
        kept = np.abs(w[row][codes[row] != 0])
        assert alpha[row] == pytest.approx(kept.mean() if kept.size else 1.0, rel=1e-12)


@pytest.mark.parametrize("threshold", [-0.1, float("inf"), float("nan"), True, "0.5", [0.5]])
def test_ternarize_rejects_bad_threshold(threshold):
    with pytest.raises(ValueError, match=anchored(f"threshold must be a finite number >= 0, not "
                                                  f"{threshold!r}")):
        ternarize(W_TERNARY, threshold=threshold)


# Invalid input ----------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_rejects_non_finite_tensors(bad):
    x = np.array([[1.0, bad], [0.0, 2.0]])
    params = QuantParams(1.0, 0)
    with pytest.raises(ValueError, match=anchored(NOT_FINITE)):
        quantize(x, INT8, params)
    with pytest.raises(ValueError, match=anchored(NOT_FINITE)):
        affine_params(x, INT8)
    with pytest.raises(ValueError, match=anchored(NOT_FINITE)):
        calibrate(x, UINT8, method="percentile")
    with pytest.raises(ValueError, match=anchored(WEIGHTS_NOT_FINITE)):
        binarize(x)
    with pytest.raises(ValueError, match=anchored(WEIGHTS_NOT_FINITE)):
        ternarize(x)


def test_rejects_empty_tensor():
    with pytest.raises(ValueError, match=r"^Cannot derive quantization parameters from an empty "
                                         r"tensor$"):
        affine_params(np.zeros((0, 3)), INT8)


def test_rejects_bad_format():
    x, params = [1.0], QuantParams(1.0, 0)
    with pytest.raises(TypeError, match=r"^fmt must be a Format, not 'int8'$"):
        affine_params(x, "int8")
    with pytest.raises(TypeError, match=r"^fmt must be a Format, not 'int8'$"):
        quantize(x, "int8", params)
    message = (r"^Affine quantization needs an int format, not binary; use binarize\(\) for "
               r"binary$")
    with pytest.raises(ValueError, match=message):
        affine_params(x, Format.binary())
    with pytest.raises(ValueError, match=message):
        quantize(x, Format.binary(), params)


def test_symmetric_rejects_format_without_positive_values():
    with pytest.raises(ValueError, match=r"^Symmetric quantization needs a format with positive "
                                         r"values, not int1$"):
        affine_params([1.0, -1.0], Format.int(1))


def test_rejects_bad_params_and_modes():
    with pytest.raises(TypeError, match=r"^params must be a QuantParams, not 1\.0$"):
        quantize([1.0], INT8, 1.0)
    with pytest.raises(TypeError, match=r"^params must be a QuantParams, not 1\.0$"):
        dequantize([1], 1.0)
    with pytest.raises(TypeError, match=r"^rounding must be a Rounding, not 'half_up'$"):
        quantize([1.0], INT8, QuantParams(1.0, 0), rounding="half_up")
    with pytest.raises(TypeError, match=r"^overflow must be an Overflow, not 'wrap'$"):
        quantize([1.0], INT8, QuantParams(1.0, 0), overflow="wrap")


@pytest.mark.parametrize("scale, axis, shown", [
    (0.0, None, "array(0.)"), (-1.0, None, "array(-1.)"), (np.nan, None, "array(nan)"),
    (np.inf, None, "array(inf)"), ([1.0, 0.0], 0, "array([1., 0.])"),
    ([2.0, -3.0], 1, "array([ 2., -3.])"),
])
def test_quant_params_rejects_bad_scale(scale, axis, shown):
    with pytest.raises(ValueError, match=anchored(f"scale must be finite and positive, not "
                                                  f"{shown}")):
        QuantParams(scale, 0, axis)


@pytest.mark.parametrize("zero_point, shown", [(0.5, "array(0.5)"), (-2.25, "array(-2.25)"),
                                               (np.nan, "array(nan)")])
def test_quant_params_rejects_non_integer_zero_point(zero_point, shown):
    with pytest.raises(ValueError, match=anchored(f"zero_point must be integers, not {shown}")):
        QuantParams(1.0, zero_point)


def test_quant_params_normalizes():
    params = QuantParams(1, 3.0)
    assert params.scale.dtype == np.float64 and params.scale == 1.0
    assert params.zero_point.dtype == np.int64 and params.zero_point == 3
    params = QuantParams([0.5, 0.25, 2.0], 5, axis=0)
    np.testing.assert_array_equal(params.zero_point, [5, 5, 5])
    assert params.zero_point.dtype == np.int64
    params = QuantParams([0.5, 0.25], np.array([1, -2], dtype=np.int8), axis=1)
    np.testing.assert_array_equal(params.zero_point, [1, -2])
    assert params.zero_point.dtype == np.int64


def test_quant_params_shape_errors():
    message = (r"^Per-tensor quantization \(axis None\) needs a scalar scale and zero "
               r"point$")
    with pytest.raises(ValueError, match=message):
        QuantParams([1.0, 2.0], 0)
    with pytest.raises(ValueError, match=message):
        QuantParams(1.0, [0, 0])
    with pytest.raises(ValueError, match=r"^Per-channel scale must be a vector, not shape "
                                         r"\(2, 2\)$"):
        QuantParams(np.ones((2, 2)), 0, axis=0)
