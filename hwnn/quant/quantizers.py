"""Quantizers: real tensors to integer codes of a :class:`~hwnn.ir.formats.Format`.

Affine quantization follows QONNX's ``Quant`` op: ``code = fit(round(x / scale + zero_point))``
and ``x ~ (code - zero_point) * scale``, per tensor or per channel along one axis. Binary and
ternary weights have their own quantizers (XNOR-Net and TWN), which return the codes and the
per-output-channel scale ``alpha``.
"""

from dataclasses import dataclass
from functools import partial

import numpy as np

from ..ir.formats import Format, Overflow, Rounding, round_values

__all__ = ["QuantParams", "affine_params", "binarize", "calibrate", "dequantize", "quantize",
           "ternarize"]


def _finite_array(x, name):
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} must be finite, but it holds NaN or infinite values")
    return x


def _check_axis(x, axis):
    if axis is None:
        return
    if not isinstance(axis, int) or isinstance(axis, bool):
        raise TypeError(f"axis must be an integer or None, not {axis!r}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis must be in -{x.ndim}..{x.ndim - 1} for a {x.ndim}-d tensor, "
                         f"not {axis}")


def _reduce(x, axis, fn):
    """Apply ``fn(array, axis=...)`` over every axis but ``axis`` (all axes when None)."""
    if axis is None:
        return np.asarray(fn(x))
    moved = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    return fn(moved, axis=1)


def _broadcast(param, x, axis):
    if axis is None or param.ndim == 0:
        return param
    shape = [1] * x.ndim
    shape[axis] = -1
    return param.reshape(shape)


@dataclass(frozen=True, eq=False)
class QuantParams:
    """Scale and zero point of an affine quantization.

    ``scale`` (float64, positive) and ``zero_point`` (int64) are scalars for per-tensor
    quantization (``axis`` None), or vectors with one entry per channel along ``axis``.
    """
    scale:      np.ndarray
    zero_point: np.ndarray
    axis:       int | None = None

    def __post_init__(self):
        scale = np.asarray(self.scale, dtype=np.float64)
        zero_point = np.asarray(self.zero_point)
        if zero_point.dtype.kind not in "iu":
            if not np.all(zero_point == np.round(zero_point)):
                raise ValueError(f"zero_point must be integers, not {zero_point!r}")
        zero_point = zero_point.astype(np.int64)
        if not np.all(np.isfinite(scale)) or not np.all(scale > 0):
            raise ValueError(f"scale must be finite and positive, not {scale!r}")
        if self.axis is None and (scale.ndim, zero_point.ndim) != (0, 0):
            raise ValueError("Per-tensor quantization (axis None) needs a scalar scale and "
                             "zero point")
        if self.axis is not None:
            zero_point = np.broadcast_to(zero_point, scale.shape).copy()
            if scale.ndim != 1:
                raise ValueError(f"Per-channel scale must be a vector, not shape {scale.shape}")
        object.__setattr__(self, "scale", scale)
        object.__setattr__(self, "zero_point", zero_point)


def affine_params(x, fmt: Format, *, axis=None, symmetric=True, percentile=None) -> QuantParams:
    """Scale and zero point that map the range of ``x`` onto ``fmt``.

    ``symmetric`` gives a zero point of 0 and ``scale = max|x| / max_value`` (unsigned formats
    then cover ``[0, max x]``); otherwise the range ``[min(x, 0), max(x, 0)]`` maps onto
    ``[min_value, max_value]`` with an integer zero point. ``axis`` makes it per channel.
    ``percentile`` (0 < p <= 100) replaces the extremes by percentiles, ignoring outliers.
    An all-zero range gets scale 1.
    """
    x = _finite_array(x, "The tensor to quantize")
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt must be a Format, not {fmt!r}")
    if fmt.kind != "int":
        raise ValueError(f"Affine quantization needs an int format, not {fmt}; "
                         f"use binarize() for binary")
    if x.size == 0:
        raise ValueError("Cannot derive quantization parameters from an empty tensor")
    _check_axis(x, axis)
    if percentile is not None:
        if not isinstance(percentile, int | float) or isinstance(percentile, bool) \
                or not 0 < percentile <= 100:
            raise ValueError(f"percentile must be in (0, 100], not {percentile!r}")
        upper = partial(np.percentile, q=percentile)
        lower = partial(np.percentile, q=100 - percentile)
    else:
        upper, lower = np.max, np.min
    qmin, qmax = fmt.min_value, fmt.max_value
    if symmetric and qmax == 0:
        raise ValueError(f"Symmetric quantization needs a format with positive values, not "
                         f"{fmt}")
    if symmetric:
        reach = _reduce(np.abs(x) if fmt.signed else np.maximum(x, 0), axis, upper)
        scale = np.where(reach > 0, reach / qmax, 1.0)
        zero_point = np.zeros_like(scale, dtype=np.int64)
    else:
        lo = np.minimum(_reduce(x, axis, lower), 0.0)
        hi = np.maximum(_reduce(x, axis, upper), 0.0)
        scale = np.where(hi > lo, (hi - lo) / (qmax - qmin), 1.0)
        zero_point = np.clip(np.round(qmin - lo / scale), qmin, qmax).astype(np.int64)
    return QuantParams(scale, zero_point, axis)


def quantize(x, fmt: Format, params: QuantParams, *, rounding=Rounding.HALF_EVEN,
             overflow=Overflow.SATURATE) -> np.ndarray:
    """Integer codes (int64) of ``x``: ``fit(round(x / scale + zero_point))``."""
    x = _finite_array(x, "The tensor to quantize")
    if not isinstance(fmt, Format):
        raise TypeError(f"fmt must be a Format, not {fmt!r}")
    if fmt.kind != "int":
        raise ValueError(f"Affine quantization needs an int format, not {fmt}; "
                         f"use binarize() for binary")
    if not isinstance(params, QuantParams):
        raise TypeError(f"params must be a QuantParams, not {params!r}")
    _check_axis(x, params.axis)
    if params.axis is not None and params.scale.shape[0] != x.shape[params.axis]:
        raise ValueError(f"{params.scale.shape[0]} channel scales do not match axis "
                         f"{params.axis} of a tensor of shape {x.shape}")
    scale = _broadcast(params.scale, x, params.axis)
    zero_point = _broadcast(params.zero_point, x, params.axis)
    codes = round_values(x / scale + zero_point, rounding)
    # Clip far-out values before the int64 conversion so that saturation stays exact.
    limit = float(1 << 62)
    return fmt.fit(np.clip(codes, -limit, limit).astype(np.int64), overflow)


def dequantize(codes, params: QuantParams) -> np.ndarray:
    """Real values ``(code - zero_point) * scale`` of integer codes."""
    if not isinstance(params, QuantParams):
        raise TypeError(f"params must be a QuantParams, not {params!r}")
    codes = np.asarray(codes, dtype=np.int64)
    _check_axis(codes, params.axis)
    if params.axis is not None and params.scale.shape[0] != codes.shape[params.axis]:
        raise ValueError(f"{params.scale.shape[0]} channel scales do not match axis "
                         f"{params.axis} of codes of shape {codes.shape}")
    scale = _broadcast(params.scale, codes, params.axis)
    zero_point = _broadcast(params.zero_point, codes, params.axis)
    return (codes - zero_point) * scale


def binarize(w, *, axis=0, scaled=True) -> tuple[np.ndarray, np.ndarray]:
    """Bipolar codes ``sign(w)`` (``w >= 0`` gives +1) and the per-channel scale.

    With ``scaled`` the scale is XNOR-Net's ``alpha = mean |w|`` of each channel along
    ``axis`` (1 where a channel is all zero); without it, 1. Returns ``(codes, scale)``.
    """
    w = _finite_array(w, "Weights")
    _check_axis(w, axis)
    codes = np.where(w >= 0, 1, -1).astype(np.int64)
    alpha = _reduce(np.abs(w), axis, np.mean)
    return codes, np.where(alpha > 0, alpha, 1.0) if scaled else np.ones_like(alpha)


def ternarize(w, *, axis=0, threshold=None) -> tuple[np.ndarray, np.ndarray]:
    """Ternary codes in ``{-1, 0, +1}`` and the per-channel scale (TWN).

    A weight becomes 0 when ``|w| <= delta``, else its sign. ``delta`` is ``threshold`` when
    given, else TWN's ``0.7 * mean |w|`` of each channel along ``axis``. The scale ``alpha`` is
    the mean of ``|w|`` over the weights above ``delta`` (1 where there are none).
    Returns ``(codes, scale)``.
    """
    w = _finite_array(w, "Weights")
    _check_axis(w, axis)
    magnitude = np.abs(w)
    if threshold is None:
        delta = 0.7 * _reduce(magnitude, axis, np.mean)
    else:
        if not isinstance(threshold, int | float) or isinstance(threshold, bool) \
                or not np.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold must be a finite number >= 0, not {threshold!r}")
        delta = np.asarray(float(threshold))
    keep = magnitude > _broadcast(delta, w, axis)
    codes = (np.sign(w) * keep).astype(np.int64)
    kept = _reduce(keep.astype(np.float64), axis, np.sum)
    total = _reduce(magnitude * keep, axis, np.sum)
    alpha = np.where(kept > 0, total / np.maximum(kept, 1), 1.0)
    return codes, alpha


def calibrate(samples, fmt: Format, *, method="minmax", percentile=99.99) -> QuantParams:
    """Per-tensor quantization parameters of an activation from sample data.

    ``method`` is ``"minmax"`` (the observed extremes) or ``"percentile"`` (the ``percentile``
    of the samples, ignoring outliers). Unsigned formats give the quantized ReLU of uniform
    quantization: levels ``k * alpha`` for ``k = 0 .. 2**bits - 1``, ``alpha = max / (2**bits
    - 1)``; signed formats are symmetric around 0.
    """
    if method not in ("minmax", "percentile"):
        raise ValueError(f"Calibration method must be 'minmax' or 'percentile', not {method!r}")
    return affine_params(samples, fmt, symmetric=True,
                         percentile=percentile if method == "percentile" else None)
