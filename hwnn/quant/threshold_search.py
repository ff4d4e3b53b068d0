"""Thresholds of a monotone function of the accumulator, found by binary search.

An imported model defines, per output channel ``c``, a function from the integer accumulator
to an output level (``0 .. levels - 1``), typically float arithmetic followed by a quantizer.
When that function is monotone per channel (non-decreasing on rising channels,
non-increasing on descending ones), a :class:`~hwnn.ir.stages.Thresholds` stage reproduces
it exactly on every accumulator value of the range ``[lo, hi]``:

* rising channel: threshold ``i`` is the smallest accumulator whose level exceeds ``i``
  (``hi + 1`` when none does), so ``#(t <= acc)`` is the level;
* descending channel: threshold ``i`` is the largest accumulator whose level exceeds ``i``
  (``lo - 1`` when none does), so ``#(acc <= t)`` is the level.

The search evaluates the function on ``levels - 1`` accumulators per channel at a time, about
``log2(hi - lo + 2)`` times; nothing is sampled or interpolated.
"""

import numpy as np

from ..ir.stages import Thresholds

__all__ = ["search_thresholds"]


def search_thresholds(level_of, lo, hi, levels, descending) -> Thresholds:
    """The :class:`Thresholds` whose levels equal ``level_of(acc)`` for every integer ``acc``
    in ``[lo[c], hi[c]]`` of every channel ``c``, provided ``level_of`` is monotone per
    channel in the direction ``descending[c]`` says.

    ``level_of`` maps an int64 array ``(k, channels)`` of accumulators (column ``c`` for
    channel ``c``) to their integer levels ``0 .. levels - 1``, of the same shape. ``lo``,
    ``hi`` (int64, one per channel) bound the accumulator; ``levels`` is the number of
    output levels (2 or more).
    """
    lo = np.asarray(lo, dtype=np.int64)
    hi = np.asarray(hi, dtype=np.int64)
    descending = np.asarray(descending, dtype=bool)
    if not (isinstance(levels, int) and levels >= 2):
        raise ValueError(f"levels must be an integer >= 2, not {levels!r}")
    if lo.shape != hi.shape or lo.ndim != 1 or descending.shape != lo.shape:
        raise ValueError("lo, hi and descending must be vectors of one entry per channel")
    if np.any(lo > hi):
        raise ValueError("Every channel's accumulator range must be non-empty (lo <= hi)")
    wanted = np.arange(1, levels, dtype=np.int64)[:, None]          # (levels - 1, 1)
    shape = (levels - 1, lo.size)
    # Rising: the smallest acc in [lo, hi + 1] with level >= wanted (hi + 1 counts as one).
    # Descending: the largest acc in [lo - 1, hi] with level >= wanted (lo - 1 counts).
    low = np.broadcast_to(np.where(descending, lo - 1, lo), shape).copy()
    high = np.broadcast_to(np.where(descending, hi, hi + 1), shape).copy()
    while True:
        open_ = low < high
        if not open_.any():
            break
        # Rising: floor midpoint in [low, high - 1]; descending: ceiling midpoint in
        # [low + 1, high]; either way a real accumulator of the range.
        middle = np.where(descending, high - (high - low) // 2, low + (high - low) // 2)
        probe = np.where(open_, middle, np.where(descending, hi, lo))
        reached = _levels(level_of, probe, levels) >= wanted
        rising_step = ~descending & open_
        falling_step = descending & open_
        high = np.where(rising_step & reached, middle, high)
        low = np.where(rising_step & ~reached, middle + 1, low)
        low = np.where(falling_step & reached, middle, low)
        high = np.where(falling_step & ~reached, middle - 1, high)
    return Thresholds(low.T.copy(), descending)


def _levels(level_of, acc, levels):
    result = np.asarray(level_of(acc))
    if result.shape != acc.shape or result.dtype.kind not in "iu":
        raise ValueError(f"The level function must return integers of shape {acc.shape}, not "
                         f"{result.dtype} of shape {result.shape}")
    if np.any((result < 0) | (result >= levels)):
        raise ValueError(f"The level function returned levels outside 0..{levels - 1}")
    return result
