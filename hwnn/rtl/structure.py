"""What a component reports of its hardware: its memories, its multipliers and counts of its
structure, for the resource estimator (:mod:`hwnn.planning.estimate`) and the manifest.

A component's ``structure()`` is a :class:`Structure`, and depends on the component alone,
not on the FPGA family: which multipliers become DSP blocks and which memories block RAM, LUT
RAM or logic is the estimator's business (Yosys' mapping rules), and so is what a count costs
(the fitted coefficients). A count is named after what it measures (``register_bits``,
``tree_bits``, ``xnor_lanes``, ...); a top component reports every name it can count, zeros
included, so that every design of an architecture has the same features.
"""

from dataclasses import dataclass, field

import numpy as np

from ..ir.formats import Format

__all__ = ["Memory", "Multipliers", "Structure", "bit_matrix", "varying_columns"]


@dataclass(frozen=True)
class Memory:
    """A memory of ``depth`` words of ``width`` bits that holds ``use`` (``"weights"``,
    ``"parameters"``, ``"fifo"``, ...); ``contents``: a ROM's words, None for a RAM;
    ``single_port``: a RAM never read and written in the same cycle, built with one address
    (:data:`hwnn.rtl.overlay.SINGLE_PORT`), which an iCE40's SPRAM can hold, and ``name``
    its name in the design (a single-port memory's is needed to place it)."""
    use:         str
    depth:       int
    width:       int
    contents:    tuple | None = None
    single_port: bool = False
    name:        str = ""

    def __post_init__(self):
        if self.contents is not None:
            contents = tuple(int(word) for word in self.contents)
            if len(contents) != self.depth:
                raise ValueError(f"A {self.use} ROM of depth {self.depth} needs {self.depth} "
                                 f"words, not {len(contents)}")
            object.__setattr__(self, "contents", contents)

    @property
    def bits(self) -> int:
        return self.depth * self.width


@dataclass(frozen=True)
class Multipliers:
    """``count`` multipliers of an ``a`` by a ``b`` operand, for ``use`` (``"lanes"``: the
    datapath; ``"requant"``: output stages); ``logic``: built in logic by the design
    (:func:`~hwnn.rtl.arith.logic_product`), never a DSP block, as ``terms`` partial products
    of ``a`` (None: one per bit of ``b``; a constant ``b``: its signed digits)."""
    use:   str
    count: int
    a:     Format
    b:     Format
    logic: bool = False
    terms: int | None = None


@dataclass
class Structure:
    """A component's hardware: ``counts`` by name, :class:`Multipliers` and
    :class:`Memory` lists."""
    counts:      dict = field(default_factory=dict)
    multipliers: list = field(default_factory=list)
    memories:    list = field(default_factory=list)

    @classmethod
    def of(cls, names) -> "Structure":
        """An empty structure that counts ``names`` (all zero)."""
        return cls(dict.fromkeys(names, 0.0))

    def add(self, name, amount):
        """Count ``amount`` more of ``name``."""
        self.counts[name] = self.counts.get(name, 0.0) + amount

    def merge(self, other: "Structure") -> "Structure":
        """Add ``other``'s counts, multipliers and memories to this one; return it."""
        for name, amount in other.counts.items():
            self.add(name, amount)
        self.multipliers += other.multipliers
        self.memories += other.memories
        return self

    def memory_bits(self, uses) -> dict:
        """Bits of memory for each of ``uses`` (``{use: bits}``, zero where none)."""
        bits = dict.fromkeys(uses, 0)
        for memory in self.memories:
            if memory.use in bits:
                bits[memory.use] += memory.bits
        return bits


def bit_matrix(words, width) -> np.ndarray:
    """Words as a ``len(words) x width`` array of bits (bit 0 first)."""
    data = b"".join(int(word).to_bytes((width + 7) // 8, "little") for word in words)
    return np.unpackbits(np.frombuffer(data, dtype=np.uint8).reshape(len(words), -1), axis=1,
                         bitorder="little")[:, :width]


def varying_columns(words, width) -> int:
    """Bit columns of ``words`` that are not constant."""
    bits = bit_matrix(words, width)
    return int(np.count_nonzero(bits.any(axis=0) & ~bits.all(axis=0)))
