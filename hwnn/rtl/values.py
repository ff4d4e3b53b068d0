"""Integer values inside the layer-by-layer engines (systolic overlay, sparse PE array).

These engines hold every layer's activations in one signed integer format wide enough for all
of them (bipolar +-1 as the integers -1 and +1), so each layer is a plain integer product
whatever its formats. The helpers here choose that format, decode stream codes into it and
encode values back into a stream format.
"""

from amaranth import *

from ..ir.formats import Format, signed_bits_for

__all__ = ["decode_codes", "encode_value", "holding_format", "resize"]


def holding_format(formats) -> Format:
    """The narrowest int format (2 bits at least) that holds every value of ``formats``:
    unsigned when none has negative values."""
    formats = list(formats)
    lo = min(fmt.min_value for fmt in formats)
    hi = max(fmt.max_value for fmt in formats)
    if lo >= 0:
        return Format.uint(max(hi.bit_length(), 2))
    return Format.int(max(signed_bits_for(lo, hi), 2))


def decode_codes(data, fmt: Format, count, bits) -> list:
    """The ``count`` values packed in ``data`` (codes of ``fmt``, element 0 lowest) as signed
    ``bits``-bit values (bipolar: bit 1 is +1, bit 0 is -1)."""
    data = Value.cast(data)
    values = []
    for i in range(count):
        code = data[i * fmt.width:(i + 1) * fmt.width]
        if fmt.kind == "bipolar":
            values.append(Mux(code[0], Const(1, signed(bits)), Const(-1, signed(bits))))
        else:
            values.append(resize(code.as_signed() if fmt.signed else code, bits).as_signed())
    return values


def encode_value(value, fmt: Format):
    """The bit pattern of ``value`` in ``fmt`` (bipolar: 1 for +1)."""
    return (value > 0) if fmt.kind == "bipolar" else Value.cast(value)[:fmt.width]


def resize(value, bits):
    """The ``bits``-bit pattern of ``value`` extended (by its signedness) or truncated (an
    unsigned value: use ``.as_signed()`` for arithmetic)."""
    value = Value.cast(value)
    if len(value) >= bits:
        return value[:bits]
    fill = value[-1] if value.shape().signed else Const(0, 1)
    return Cat(value, fill.replicate(bits - len(value)))
