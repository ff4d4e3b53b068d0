"""Accumulators and the output stages that turn them into output codes.

A layer with an accumulator computes, per output channel, an integer sum of products in the
accumulator domain; its output stage is then

* :class:`Thresholds`: ``level = #(t <= acc)`` per channel (``#(acc <= t)`` for a channel whose
  real output falls as the accumulator rises), output value = ``out_format.level_value(level)``
  (FINN's MultiThreshold);
* :class:`Requant`: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)`` per channel,
  with ``2**(s-1)`` read as 0 when ``s`` is 0 (round half up), ``zero_point`` being the output
  format's;
* no stage (``None``): the output *is* the accumulator, in a signed format wide enough for it.

:func:`stage_to_file` and :func:`stage_from_file` give a stage's part of a layer's entry in a
network file, which every layer kind with a stage shares.
"""

from dataclasses import dataclass

import numpy as np

from .checks import expect_keys, int_array, plain_int
from .formats import Format

__all__ = ["MAX_PRODUCT_BITS", "Requant", "Thresholds", "accumulator_range", "partial_sum_range",
           "stage_array_keys", "stage_from_file", "stage_header_keys", "stage_name",
           "stage_to_file"]

#: Widest accumulator (and accumulator x multiplier product) the int64 golden model can hold.
MAX_PRODUCT_BITS = 63


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Threshold output stage: ``values`` (channels x (levels - 1)), sorted ascending per channel
    for rising channels and descending for ``descending`` channels."""
    values:     np.ndarray
    descending: np.ndarray

    def __post_init__(self):
        values = int_array(self.values, "Threshold values", 2)
        descending = np.asarray(self.descending)
        if descending.dtype != np.bool_ or descending.shape != values.shape[:1]:
            raise ValueError(f"Threshold directions must be {values.shape[0]} booleans, "
                             f"not {descending.dtype} of shape {descending.shape}")
        steps = np.diff(values, axis=1)
        ordered = np.where(descending[:, None], steps <= 0, steps >= 0)
        if not np.all(ordered):
            channel = int(np.nonzero(~np.all(ordered, axis=1))[0][0])
            raise ValueError(f"Thresholds of channel {channel} are not sorted in its direction")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "descending", descending)


@dataclass(frozen=True, eq=False)
class Requant:
    """Requantization output stage, per channel ``multiplier`` M (``0 <= M < 2**mult_bits``)
    and ``shift`` s (``0 <= s <= 62``), then ``zero_point`` and the clamp ``[lo, hi]``."""
    multiplier: np.ndarray
    shift:      np.ndarray
    mult_bits:  int
    zero_point: int
    lo:         int
    hi:         int

    def __post_init__(self):
        multiplier = int_array(self.multiplier, "Requantization multipliers", 1)
        shift = int_array(self.shift, "Requantization shifts", 1)
        mult_bits = plain_int(self.mult_bits, "mult_bits")
        if not 1 <= mult_bits <= 32:
            raise ValueError(f"mult_bits must be 1..32, not {mult_bits}")
        if shift.shape != multiplier.shape:
            raise ValueError("Requantization multipliers and shifts differ in length")
        if np.any((multiplier < 0) | (multiplier >= 1 << mult_bits)):
            raise ValueError(f"Requantization multipliers must be 0..{(1 << mult_bits) - 1}")
        if np.any((shift < 0) | (shift > 62)):
            raise ValueError("Requantization shifts must be 0..62")
        for name in ("zero_point", "lo", "hi"):
            object.__setattr__(self, name, plain_int(getattr(self, name), name))
        if self.lo > self.hi:
            raise ValueError(f"Requantization clamp is empty: lo {self.lo} > hi {self.hi}")
        object.__setattr__(self, "multiplier", multiplier)
        object.__setattr__(self, "shift", shift)
        object.__setattr__(self, "mult_bits", mult_bits)


def accumulator_range(weights, bias, in_format: Format) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel bounds ``(lo, hi)`` of every partial sum of ``bias + weights @ x``, each
    ``x`` ranging over ``in_format`` (see :func:`partial_sum_range`)."""
    return partial_sum_range(weights, bias, in_format.min_value, in_format.max_value)


def partial_sum_range(weights, bias, low, high) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel bounds ``(lo, hi)`` of every partial sum of ``bias + weights @ x``, with
    ``low <= x <= high`` (scalars, or one bound per column of ``weights``).

    Each term ``w * x`` ranges over its ``x``; the bounds add up each term's and the bias'
    extremes, with 0 included, so they hold for the final sum and for any partial sum in any
    accumulation order, and a partial sum reaches each of them. Bounds beyond
    ``MAX_PRODUCT_BITS - 1`` bits raise a ``ValueError`` (their int64 sums could wrap around).
    """

    def bounds(weights, bias, low, high):
        low, high = weights * low, weights * high
        return (np.minimum(np.minimum(low, high), 0).sum(axis=1) + np.minimum(bias, 0),
                np.maximum(np.maximum(low, high), 0).sum(axis=1) + np.maximum(bias, 0))

    weights = np.asarray(weights, dtype=np.int64)
    bias = np.asarray(bias, dtype=np.int64)
    low, high = np.asarray(low, dtype=np.int64), np.asarray(high, dtype=np.int64)
    # The int64 sums are exact while the bounds stay below 2**62, which float64 sums can tell.
    reach = np.abs(np.concatenate(bounds(*(array.astype(np.float64)
                                           for array in (weights, bias, low, high)))))
    if reach.size and reach.max() >= 2.0 ** (MAX_PRODUCT_BITS - 1):
        raise ValueError(f"Accumulator bounds reach {reach.max():.4g}, more than "
                         f"{MAX_PRODUCT_BITS - 1} bits")
    return bounds(weights, bias, low, high)


#: Per output stage name in a file: the layer header's keys and the layer's arrays it adds.
_FILE_KEYS = {"thresholds":  (set(),       {"thresholds", "descending"}),
              "requant":     ({"requant"}, {"multiplier", "shift"}),
              "accumulator": (set(),       set())}


def stage_name(stage) -> str:
    """Name of an output stage: ``"thresholds"``, ``"requant"`` or ``"accumulator"`` (None)."""
    if isinstance(stage, Thresholds):
        return "thresholds"
    return "requant" if isinstance(stage, Requant) else "accumulator"


def stage_to_file(stage) -> tuple[dict, dict]:
    """The layer header entries and the arrays that hold ``stage`` in a network file."""
    header, arrays = {"stage": stage_name(stage)}, {}
    if isinstance(stage, Thresholds):
        arrays = {"thresholds": stage.values, "descending": stage.descending}
    elif isinstance(stage, Requant):
        header["requant"] = {"mult_bits": stage.mult_bits, "lo": stage.lo, "hi": stage.hi,
                             "zero_point": stage.zero_point}
        arrays = {"multiplier": stage.multiplier, "shift": stage.shift}
    return header, arrays


def stage_header_keys(header) -> set:
    """The keys the stage named in a layer ``header`` adds to it (``"stage"`` at least)."""
    return {"stage"} | _FILE_KEYS.get(header.get("stage"), (set(), set()))[0]


def stage_array_keys(header) -> set:
    """The arrays the stage named in a layer ``header`` adds; ValueError for an unknown stage."""
    if header["stage"] not in _FILE_KEYS:
        raise ValueError(f"unknown output stage {header['stage']!r}")
    return _FILE_KEYS[header["stage"]][1]


def stage_from_file(header, arrays):
    """Inverse of :func:`stage_to_file`, once the keys are checked."""
    if header["stage"] == "thresholds":
        return Thresholds(arrays["thresholds"], arrays["descending"])
    if header["stage"] == "requant":
        params = header["requant"]
        expect_keys(params, {"mult_bits", "lo", "hi", "zero_point"}, "requant header")
        return Requant(arrays["multiplier"], arrays["shift"], **params)
    return None
