"""Stream payload layouts shared by the generators, the simulators' drivers and the host.

Values are packed element 0 in the least significant bits (Amaranth ``Cat`` order), each in
its format's bit encoding (two's complement; bipolar bit 1 = +1).
"""

from amaranth.hdl import unsigned
from amaranth.lib import data

__all__ = ["Beat", "pack_values", "unpack_values"]


class Beat(data.StructLayout):
    """One stream beat: ``count`` values of ``width`` bits packed in ``data``, and ``last``,
    set on the final beat of a vector."""

    def __init__(self, count, width):
        self.count, self.width = count, width
        super().__init__({
            "data": unsigned(count * width),
            "last": unsigned(1),
        })


def pack_values(patterns, width) -> int:
    """One integer holding unsigned bit ``patterns`` of ``width`` bits, element 0 lowest."""
    word = 0
    for index, pattern in enumerate(patterns):
        word |= int(pattern) << (index * width)
    return word


def unpack_values(word, count, width) -> list[int]:
    """The ``count`` unsigned bit patterns of ``width`` bits packed in ``word``."""
    mask = (1 << width) - 1
    return [(int(word) >> (index * width)) & mask for index in range(count)]
