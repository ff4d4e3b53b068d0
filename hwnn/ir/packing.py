"""Packing of codes into words, the same in streams, memories and host files.

Value ``i`` of a word takes bits ``[i * width, (i + 1) * width)``: element 0 in the least
significant bits (Amaranth ``Cat`` order), each value as its format's unsigned bit pattern
(:meth:`hwnn.ir.Format.encode`). Pure Python: the host side packs with it without Amaranth.
"""

import operator

import numpy as np

__all__ = ["image_words", "pack_rows", "pack_values", "unpack_values", "word_image"]


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


def word_image(words, width) -> bytes:
    """The bytes of a memory image: each of ``words`` as ``ceil(width / 8)`` bytes, least
    significant first, in order (a loaded memory's image, as a design folder and a board's
    flash hold it, and :class:`hwnn.rtl.flash.FlashReader` reads it).

    TypeError unless ``width`` is a positive integer and every word an integer (``bool``
    refused), ValueError unless every word is in ``0 .. 2 ** width - 1``."""
    if isinstance(width, bool) or not isinstance(width, int):
        raise TypeError(f"word_image width must be a positive integer, not {width!r}")
    if width < 1:
        raise ValueError(f"word_image width must be a positive integer, not {width!r}")
    size = -(-width // 8)
    image = bytearray()
    for index, word in enumerate(words):
        # Any integer (NumPy's too) but a bool.
        if isinstance(word, bool) or not hasattr(type(word), "__index__"):
            raise TypeError(f"word_image words must be integers, not {word!r} (word {index})")
        word = operator.index(word)
        if not 0 <= word < 1 << width:
            raise ValueError(f"word_image words must be 0..{(1 << width) - 1}, not {word!r} "
                             f"(word {index})")
        image += word.to_bytes(size, "little")
    return bytes(image)


def image_words(image, width) -> list[int]:
    """The words of :func:`word_image` ``image`` of ``width``-bit words."""
    size = -(-width // 8)
    if len(image) % size:
        raise ValueError(f"an image of {width}-bit words holds a multiple of {size} bytes, "
                         f"not {len(image)}")
    return [int.from_bytes(image[i:i + size], "little") for i in range(0, len(image), size)]
