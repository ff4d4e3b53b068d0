"""Number formats of the integer codes that cross the hardware.

A :class:`Format` says which integer *values* a code may take and how a value is laid out in
bits. Two kinds exist:

* ``int``: ``bits``-wide signed (two's complement) or unsigned integers, optionally with a
  narrow range (the most negative signed code is left out, so the range is symmetric). Ternary
  is the 2-bit signed narrow format: values ``{-1, 0, +1}``, encoded ``0b11, 0b00, 0b01``.
* ``bipolar``: binary values ``{-1, +1}`` in one bit, bit 1 meaning +1 (FINN/QONNX).

Values are what the golden model computes with; :meth:`Format.encode` and :meth:`Format.decode`
convert them to and from the unsigned bit patterns that hardware, streams and host files use.
Every format also numbers its values as *levels* ``0 .. levels - 1`` in increasing order; a
threshold stage (``level = number of thresholds <= acc``) produces levels.
"""

import enum
import re
from dataclasses import dataclass

import numpy as np

__all__ = ["Format", "Overflow", "Rounding", "round_values", "signed_bits_for"]


class Rounding(enum.Enum):
    """How a real value becomes an integer."""
    HALF_EVEN   = "half_even"    # ties to even, like numpy.round and QONNX "ROUND"
    HALF_UP     = "half_up"      # ties toward +infinity: floor(x + 1/2)
    TOWARD_ZERO = "toward_zero"  # truncation, QONNX "ROUND_TO_ZERO"
    FLOOR       = "floor"
    CEIL        = "ceil"


class Overflow(enum.Enum):
    """What happens to an integer outside a format's range."""
    SATURATE = "saturate"        # clamp to the nearest end of the range
    WRAP     = "wrap"            # keep the low bits, like a two's complement register


def round_values(x, rounding: Rounding = Rounding.HALF_EVEN) -> np.ndarray:
    """Round real values to integers (returned as float64) with the given rounding mode."""
    if not isinstance(rounding, Rounding):
        raise TypeError(f"rounding must be a Rounding, not {rounding!r}")
    x = np.asarray(x, dtype=np.float64)
    if rounding is Rounding.HALF_EVEN:
        return np.round(x)
    if rounding is Rounding.HALF_UP:
        # Not floor(x + 0.5), whose sum rounds (0.49999999999999994 + 0.5 == 1.0); the
        # fraction x - floor(x) is exact.
        return np.where(x - np.floor(x) >= 0.5, np.ceil(x), np.floor(x))
    if rounding is Rounding.TOWARD_ZERO:
        return np.trunc(x)
    if rounding is Rounding.FLOOR:
        return np.floor(x)
    return np.ceil(x)


_NAME = re.compile(r"(u?)int([0-9]+)(n?)")


@dataclass(frozen=True)
class Format:
    """Integer code format: ``int`` (``bits``, ``signed``, ``narrow``) or ``bipolar``.

    Build one with :meth:`int`, :meth:`uint`, :meth:`ternary`, :meth:`binary` or
    :meth:`parse` (``"int8"``, ``"uint4"``, ``"int8n"`` for narrow range, ``"ternary"``,
    ``"binary"``). ``str(fmt)`` gives that name back.
    """
    kind:   str
    bits:   int
    signed: bool = True
    narrow: bool = False

    MAX_BITS = 32

    def __post_init__(self):
        if self.kind not in ("int", "bipolar"):
            raise ValueError(f"Format kind must be 'int' or 'bipolar', not {self.kind!r}")
        if not isinstance(self.bits, int) or isinstance(self.bits, bool):
            raise TypeError(f"Format bits must be an integer, not {self.bits!r}")
        for name in ("signed", "narrow"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Format {name} must be a bool, not {getattr(self, name)!r}")
        if self.kind == "bipolar":
            if (self.bits, self.signed, self.narrow) != (1, True, False):
                raise ValueError("A bipolar format is 1 bit, signed, not narrow")
            return
        if not 1 <= self.bits <= self.MAX_BITS:
            raise ValueError(f"Format bits must be 1..{self.MAX_BITS}, not {self.bits}")
        if self.narrow and not self.signed:
            raise ValueError("Only signed formats have a narrow range")
        if self.narrow and self.bits < 2:
            raise ValueError("A narrow signed format needs at least 2 bits")

    # Constructors ------------------------------------------------------------------------------

    @classmethod
    def int(cls, bits, *, narrow=False) -> "Format":
        """Signed ``bits``-wide two's complement format."""
        return cls("int", bits, True, narrow)

    @classmethod
    def uint(cls, bits) -> "Format":
        """Unsigned ``bits``-wide format."""
        return cls("int", bits, False, False)

    @classmethod
    def ternary(cls) -> "Format":
        """Values ``{-1, 0, +1}`` as 2-bit two's complement (``int2n``)."""
        return cls("int", 2, True, True)

    @classmethod
    def binary(cls) -> "Format":
        """Bipolar values ``{-1, +1}`` in one bit, bit 1 meaning +1."""
        return cls("bipolar", 1)

    @classmethod
    def parse(cls, name) -> "Format":
        """Format from its name: ``int<k>``, ``uint<k>``, ``int<k>n``, ``ternary``, ``binary``."""
        if isinstance(name, Format):
            return name
        if not isinstance(name, str):
            raise TypeError(f"Format name must be a string, not {name!r}")
        if name == "binary":
            return cls.binary()
        if name == "ternary":
            return cls.ternary()
        match = _NAME.fullmatch(name)
        if match is None:
            raise ValueError(f"Unknown number format {name!r}; expected int<k>, uint<k>, "
                             f"int<k>n (narrow), ternary or binary, with k in 1..{cls.MAX_BITS}")
        unsigned, bits, narrow = match.group(1) == "u", int(match.group(2)), match.group(3) == "n"
        if not 1 <= bits <= cls.MAX_BITS:
            raise ValueError(f"Format bits must be 1..{cls.MAX_BITS}, not {bits} (in {name!r})")
        if unsigned and narrow:
            raise ValueError(f"Only signed formats have a narrow range, not {name!r}")
        return cls("int", bits, not unsigned, narrow)

    def __str__(self):
        if self.kind == "bipolar":
            return "binary"
        if (self.bits, self.signed, self.narrow) == (2, True, True):
            return "ternary"
        return f"{'' if self.signed else 'u'}int{self.bits}{'n' if self.narrow else ''}"

    # Value range -------------------------------------------------------------------------------

    @property
    def width(self) -> int:
        """Bits per code in hardware."""
        return self.bits

    @property
    def min_value(self) -> int:
        if self.kind == "bipolar":
            return -1
        if not self.signed:
            return 0
        return -(1 << (self.bits - 1)) + (1 if self.narrow else 0)

    @property
    def max_value(self) -> int:
        if self.kind == "bipolar":
            return 1
        return (1 << (self.bits - (1 if self.signed else 0))) - 1

    @property
    def levels(self) -> int:
        """Number of distinct values."""
        return 2 if self.kind == "bipolar" else self.max_value - self.min_value + 1

    @property
    def step(self) -> int:
        """Distance between neighbouring values (2 for bipolar, 1 otherwise)."""
        return 2 if self.kind == "bipolar" else 1

    def contains(self, values) -> bool:
        """Whether every value is a valid value of this format."""
        values = np.asarray(values)
        if values.size == 0:
            return True
        if self.kind == "bipolar":
            return bool(np.all((values == 1) | (values == -1)))
        return bool(np.all((values >= self.min_value) & (values <= self.max_value)
                           & (values == np.round(values))))

    def level_value(self, levels) -> np.ndarray:
        """Values of the given levels (``min_value + step * level``)."""
        return self.min_value + self.step * np.asarray(levels, dtype=np.int64)

    def value_level(self, values) -> np.ndarray:
        """Levels of the given values (inverse of :meth:`level_value`)."""
        return (np.asarray(values, dtype=np.int64) - self.min_value) // self.step

    # Integer conversion -----------------------------------------------------------------------

    def fit(self, values, overflow: Overflow = Overflow.SATURATE) -> np.ndarray:
        """Bring integer values into the range, saturating or wrapping (``int`` formats)."""
        if not isinstance(overflow, Overflow):
            raise TypeError(f"overflow must be an Overflow, not {overflow!r}")
        values = np.asarray(values, dtype=np.int64)
        if self.kind == "bipolar":
            return np.where(values >= 0, 1, -1).astype(np.int64)
        if overflow is Overflow.SATURATE:
            return np.clip(values, self.min_value, self.max_value)
        bits = values & ((1 << self.bits) - 1)
        if self.signed:
            bits = np.where(bits >= 1 << (self.bits - 1), bits - (1 << self.bits), bits)
        if self.narrow:
            # The code left out of a narrow range has no value; it saturates to the minimum.
            bits = np.maximum(bits, self.min_value)
        return bits

    def encode(self, values) -> np.ndarray:
        """Unsigned bit patterns (int64) of valid values: two's complement, or bit 1 = +1."""
        values = np.asarray(values, dtype=np.int64)
        if not self.contains(values):
            bad = values[(values < self.min_value) | (values > self.max_value)
                         if self.kind == "int" else (np.abs(values) != 1)]
            raise ValueError(f"Value {int(bad.flat[0])} is not in format {self}")
        if self.kind == "bipolar":
            return (values > 0).astype(np.int64)
        return values & ((1 << self.bits) - 1)

    def decode(self, patterns) -> np.ndarray:
        """Values of unsigned bit patterns (inverse of :meth:`encode`)."""
        patterns = np.asarray(patterns, dtype=np.int64)
        if np.any((patterns < 0) | (patterns >= 1 << self.bits)):
            raise ValueError(f"Bit patterns of format {self} must be 0..{(1 << self.bits) - 1}")
        if self.kind == "bipolar":
            return 2 * patterns - 1
        values = np.where(patterns >= 1 << (self.bits - 1), patterns - (1 << self.bits),
                          patterns) if self.signed else patterns
        if not self.contains(values):
            raise ValueError(f"Bit pattern {1 << (self.bits - 1)} has no value in format {self}")
        return values

    def shape(self):
        """Amaranth shape of a code in this format (Amaranth is imported lazily)."""
        from amaranth.hdl import signed, unsigned
        if self.kind == "bipolar":
            return unsigned(1)
        return signed(self.bits) if self.signed else unsigned(self.bits)

    def to_dict(self) -> dict:
        return {"name": str(self)}

    @classmethod
    def from_dict(cls, data) -> "Format":
        if not isinstance(data, dict) or set(data) != {"name"}:
            raise ValueError(f"A format must be a {{'name': ...}} mapping, not {data!r}")
        return cls.parse(data["name"])


def signed_bits_for(lo: int, hi: int) -> int:
    """Smallest two's complement width that holds every integer in ``[lo, hi]``."""
    lo, hi = int(lo), int(hi)
    if lo > hi:
        raise ValueError(f"Empty range [{lo}, {hi}]")
    return 1 + max(max(hi, 0).bit_length(), (-lo - 1).bit_length() if lo < 0 else 0)
