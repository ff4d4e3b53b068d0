"""Folding "accumulator -> affine / BatchNorm -> monotone activation -> quantizer" into
integer output stages.

:func:`stage_function` is the float computation being replaced: it maps integer accumulator
values of each channel to output codes. :func:`thresholds_for` turns it into exact per-channel
integer thresholds (binary search over integer accumulators, so the thresholds reproduce the
function on every accumulator value of the layer); :func:`requant_for` approximates a pure
scale ``acc * ratio`` by an integer multiplier and shift.
"""

import numpy as np

from ..ir import Thresholds
from ..ir.formats import Format, Overflow, Rounding, round_values
from .floatnet import ACTIVATIONS, BatchNorm

__all__ = ["requant_for", "stage_function", "thresholds_for"]


def stage_function(*, acc_scale, bias, batchnorm: BatchNorm | None, activation: str,
                   out_format: Format, out_scale: float, out_zero_point: int = 0,
                   rounding: Rounding = Rounding.HALF_EVEN):
    """The float output stage of a layer as a function of its integer accumulators.

    Channel ``c`` computes ``z = acc * acc_scale[c] + bias[c]``, then the optional batch
    normalization, then ``y = activation(z)``. A bipolar output is +1 where ``y >= 0``; an int
    output is ``fit(round(y / out_scale) + out_zero_point)`` (saturating). The returned function
    takes accumulators with channels on axis 0 and returns int64 output values.
    """
    acc_scale = np.asarray(acc_scale, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    act = ACTIVATIONS[activation]

    def function(acc):
        acc = np.asarray(acc)
        expand = (slice(None),) + (None,) * (acc.ndim - 1)
        z = acc * acc_scale[expand] + bias[expand]
        if batchnorm is not None:
            z = (z - batchnorm.mean[expand]) * batchnorm.gain[expand] + batchnorm.beta[expand]
        y = act(z)
        if out_format.kind == "bipolar":
            return np.where(y >= 0, 1, -1).astype(np.int64)
        codes = round_values(y / out_scale, rounding) + out_zero_point
        limit = float(1 << 62)
        return out_format.fit(np.clip(codes, -limit, limit).astype(np.int64), Overflow.SATURATE)

    return function


def thresholds_for(function, lo, hi, out_format: Format, descending) -> Thresholds:
    """Exact thresholds of a per-channel monotone ``function`` over accumulators in
    ``[lo[c], hi[c]]``.

    For a rising channel, threshold ``k`` is the least accumulator whose output reaches level
    ``k`` (``hi + 1`` if none does); for a ``descending`` channel it is the greatest (``lo - 1``
    if none does). The result reproduces ``function`` on every accumulator in the range as long
    as it is monotone in the stated direction.
    """
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    descending = np.asarray(descending, dtype=bool)
    targets = out_format.level_value(np.arange(1, out_format.levels))[None, :]
    shape = (lo.shape[0], targets.shape[1])
    # Rising: least a in [lo, hi + 1] with f(a) >= target. Falling: greatest a in [lo - 1, hi].
    low = np.broadcast_to(np.where(descending, lo - 1, lo)[:, None], shape).copy()
    high = np.broadcast_to(np.where(descending, hi, hi + 1)[:, None], shape).copy()
    while np.any(low < high):
        # Rising channels probe the lower middle, falling ones the upper, so both shrink.
        middle = np.where(descending[:, None], (low + high + 1) // 2, (low + high) // 2)
        active = low < high
        reached = function(middle) >= targets
        falling = descending[:, None]
        high = np.where(active & ~falling & reached, middle,
                        np.where(active & falling & ~reached, middle - 1, high))
        low = np.where(active & falling & reached, middle,
                       np.where(active & ~falling & ~reached, middle + 1, low))
    return Thresholds(low, descending)


def requant_for(ratio, mult_bits=16, *, shared_shift=False) -> tuple[np.ndarray, np.ndarray]:
    """Integer multipliers ``M < 2**mult_bits`` and shifts ``0 <= s <= 62`` with
    ``M / 2**s`` as close to each positive ``ratio`` as ``mult_bits`` allow.

    With ``shared_shift`` every channel gets the same shift (the smallest of the per-channel
    ones), so hardware shifts by a constant instead of a per-channel amount; channels with
    smaller ratios then have fewer significant multiplier bits.
    """
    ratio = np.asarray(ratio, dtype=np.float64)
    if not np.all(np.isfinite(ratio)) or not np.all(ratio > 0):
        raise ValueError("Requantization ratios must be finite and positive")
    limit = (1 << mult_bits) - 1
    if np.any(np.round(ratio) > limit):
        raise ValueError(f"A requantization ratio of {ratio.max():.6g} needs a multiplier of "
                         f"more than {mult_bits} bits")
    shift = np.clip(np.floor(np.log2(limit / ratio)), 0, 62).astype(np.int64)
    multiplier = np.round(ratio * np.exp2(shift))
    # Rounding up can reach 2**mult_bits; one shift less always fits.
    over = multiplier > limit
    shift = np.where(over, shift - 1, shift)
    if shared_shift:
        shift = np.full_like(shift, shift.min())
    multiplier = np.round(ratio * np.exp2(shift))
    return multiplier.astype(np.int64), shift
