"""Vectors of codes to stream beats and back, in the packing of
:class:`~hwnn.rtl.layouts.Beat` (element 0 in the least significant bits)."""

import numpy as np

from hwnn.ir.formats import Format
from hwnn.ir.packing import pack_values, unpack_values

__all__ = ["beats_to_vectors", "vectors_to_beats"]


def vectors_to_beats(codes, fmt: Format, count: int) -> list[dict]:
    """Beats ``{"data": int, "last": 0/1}`` of ``count`` values carrying each row of
    ``codes`` (values of ``fmt``) in order."""
    patterns = fmt.encode(np.asarray(codes, dtype=np.int64))
    beats = []
    for vector in patterns.reshape(-1, patterns.shape[-1]):
        chunks = vector.reshape(-1, count)
        for index, chunk in enumerate(chunks):
            beats.append({"data": pack_values(chunk, fmt.width),
                          "last": int(index == len(chunks) - 1)})
    return beats


def beats_to_vectors(words, fmt: Format, count: int, features: int) -> np.ndarray:
    """Rows of ``features`` values of ``fmt`` from beat ``data`` words of ``count`` values."""
    values = [pattern for word in words for pattern in unpack_values(word, count, fmt.width)]
    return fmt.decode(np.array(values, dtype=np.int64)).reshape(-1, features)
