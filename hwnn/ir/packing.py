"""Packing of codes into words, the same in streams, memories and host files.

Value ``i`` of a word takes bits ``[i * width, (i + 1) * width)``: element 0 in the least
significant bits (Amaranth ``Cat`` order), each value as its format's unsigned bit pattern
(:meth:`hwnn.ir.Format.encode`). Pure Python: the host side packs with it without Amaranth.
"""

import numpy as np

__all__ = ["pack_rows", "pack_values", "unpack_values"]


def pack_values(patterns, width) -> int:
    """One integer holding unsigned bit ``patterns`` of ``width`` bits, element 0 lowest."""
    word = 0
    for index, pattern in enumerate(patterns):
        word |= int(pattern) << (index * width)
    return word


def pack_rows(patterns, width) -> list[int]:
    """:func:`pack_values` of each row of the 2-d array ``patterns`` (vectorized: memory
    images of large layers)."""
    patterns = np.asarray(patterns, dtype=np.uint64)
    if patterns.ndim != 2:
        raise ValueError(f"patterns must be 2-d (one word per row), not of shape "
                         f"{patterns.shape}")
    bits = (patterns[:, :, None] >> np.arange(width, dtype=np.uint64)) & np.uint64(1)
    packed = np.packbits(bits.reshape(len(patterns), -1).astype(np.uint8), axis=1,
                         bitorder="little")
    if packed.shape[1] <= 8:                        # words of up to 64 bits: one numpy view
        wide = np.zeros((len(packed), 8), dtype=np.uint8)
        wide[:, :packed.shape[1]] = packed
        return wide.view("<u8")[:, 0].tolist()
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def unpack_values(word, count, width) -> list[int]:
    """The ``count`` unsigned bit patterns of ``width`` bits packed in ``word``."""
    mask = (1 << width) - 1
    return [(int(word) >> (index * width)) & mask for index in range(count)]
