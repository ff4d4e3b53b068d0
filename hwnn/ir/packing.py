"""Packing of codes into words, the same in streams, memories and host files.

Value ``i`` of a word takes bits ``[i * width, (i + 1) * width)``: element 0 in the least
significant bits (Amaranth ``Cat`` order), each value as its format's unsigned bit pattern
(:meth:`hwnn.ir.Format.encode`). Pure Python: the host side packs with it without Amaranth.
"""

__all__ = ["pack_values", "unpack_values"]


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
