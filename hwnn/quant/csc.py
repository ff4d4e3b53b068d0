"""Column-wise compressed sparse storage for N processing elements (EIE's format).

Row ``i`` of a weight matrix belongs to PE ``i mod N`` (local row ``i // N``). For each PE and
column, the nonzeros are stored in row order as ``(value, gap)`` entries, ``gap`` being the
number of zeros of that PE's column skipped before the value (``index_bits`` wide). A gap
longer than ``2**index_bits - 1`` before a nonzero is bridged by padding entries of value 0
and the largest gap; zeros after a column's last nonzero cost nothing. Column pointers (one
list per PE, ``columns + 1`` entries) index each column's first entry. :func:`encode` and
:func:`decode` round-trip exactly.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["CscMatrix", "decode", "encode"]


@dataclass(frozen=True, eq=False)
class CscMatrix:
    """A matrix in the compressed format, per PE: ``values``, ``gaps`` and ``pointers``."""
    rows:       int
    columns:    int
    pes:        int
    index_bits: int
    values:     tuple      # per PE: int64 array of stored values (padding entries are 0)
    gaps:       tuple      # per PE: int64 array of gaps
    pointers:   tuple      # per PE: int64 array of columns + 1 entry offsets

    @property
    def entries(self) -> np.ndarray:
        """Stored entries per PE (nonzeros and padding)."""
        return np.array([len(values) for values in self.values])

    @property
    def padding(self) -> np.ndarray:
        """Padding entries per PE."""
        return np.array([int(np.sum(values == 0)) for values in self.values])

    def bits(self, value_bits) -> int:
        """Storage in bits: ``value_bits + index_bits`` per entry plus the column pointers
        (each wide enough for its PE's entry count)."""
        pointer_bits = sum((self.columns + 1) * max(len(values).bit_length(), 1)
                           for values in self.values)
        return int(self.entries.sum()) * (value_bits + self.index_bits) + pointer_bits


def encode(matrix, *, pes=1, index_bits=4) -> CscMatrix:
    """The compressed form of an integer ``matrix`` (rows x columns)."""
    for name, value in (("pes", pes), ("index_bits", index_bits)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.ndim != 2:
        raise ValueError(f"The matrix must be 2-dimensional, not shape {matrix.shape}")
    rows, columns = matrix.shape
    longest = (1 << index_bits) - 1
    all_values, all_gaps, all_pointers = [], [], []
    for pe in range(pes):
        local = matrix[pe::pes]
        values, gaps, pointers = [], [], [0]
        for column in range(columns):
            gap = 0
            for value in local[:, column]:
                if value == 0:
                    gap += 1
                    continue
                while gap > longest:           # bridge a long run: padding entries
                    values.append(0)
                    gaps.append(longest)
                    gap -= longest + 1
                values.append(int(value))
                gaps.append(gap)
                gap = 0                        # zeros after the last nonzero cost nothing
            pointers.append(len(values))
        all_values.append(np.array(values, dtype=np.int64))
        all_gaps.append(np.array(gaps, dtype=np.int64))
        all_pointers.append(np.array(pointers, dtype=np.int64))
    return CscMatrix(rows, columns, pes, index_bits, tuple(all_values), tuple(all_gaps),
                     tuple(all_pointers))


def decode(csc: CscMatrix) -> np.ndarray:
    """The dense matrix of a :class:`CscMatrix`."""
    matrix = np.zeros((csc.rows, csc.columns), dtype=np.int64)
    for pe in range(csc.pes):
        values, gaps, pointers = csc.values[pe], csc.gaps[pe], csc.pointers[pe]
        for column in range(csc.columns):
            local_row = -1
            for entry in range(pointers[column], pointers[column + 1]):
                local_row += gaps[entry] + 1
                if values[entry] != 0:
                    matrix[local_row * csc.pes + pe, column] = values[entry]
    return matrix
