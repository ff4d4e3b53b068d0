"""Deep memories in banks, their outputs chosen in registered steps.

Yosys maps a memory deeper than one block RAM to several blocks and chooses among their outputs
in logic right after the read: the blocks' own output registers stay unused and a wide
multiplexer sits in the read's cycle (CNV's 193,600-word weight ROM took 95 DP16KD of an
ECP5-85F, and its read held the overlay to 64 MHz). :class:`BankedMemory` makes the banks
itself: each bank's read goes into a register of its own (which becomes the block's output
register), and the bank is chosen in two registered steps, among groups of banks and then
among the groups. Read at ``addr``, a word is at ``data`` :data:`LATENCY` cycles later,
whatever the depth; one bank's path has the same registers. :func:`single_port` is the
address sharing of a RAM written before it is read.
"""

import math
from types import SimpleNamespace

from amaranth import *
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BANK_BITS", "LATENCY", "MIN_BANK_DEPTH", "BankedMemory", "bank_depth",
           "single_port"]

#: Cycles from a read's address to its word: the read, the bank's register, the choice in
#: the group, the choice of the group.
LATENCY = 4
#: A bank holds a power of two of words, at least this many,
MIN_BANK_DEPTH = 2048
#: and at least this many bits (an ECP5 DP16KD's, four iCE40 block RAMs'): no bank leaves
#: more of a block unused than the memory's last bank does.
BANK_BITS = 16384


def bank_depth(width) -> int:
    """Words in a bank of ``width``-bit words: the smallest power of two, at least
    :data:`MIN_BANK_DEPTH`, whose words hold :data:`BANK_BITS` bits."""
    depth = MIN_BANK_DEPTH
    while depth * width < BANK_BITS:
        depth *= 2
    return depth


def single_port(m, mem):
    """A read port and a write port of ``mem`` that share one address: the write's when it
    writes (the read port's data is then unused and it holds), else the read's. Returns the
    read side (``addr``, ``data``) and the write side (``addr``, ``data``, ``en``)."""
    read, write = mem.read_port(), mem.write_port()
    read_side = SimpleNamespace(addr=Signal.like(read.addr), data=read.data)
    write_side = SimpleNamespace(addr=Signal.like(write.addr), data=write.data, en=write.en)
    m.d.comb += [read.addr.eq(Mux(write.en, write_side.addr, read_side.addr)),
                 write.addr.eq(read.addr), read.en.eq(~write.en)]
    return read_side, write_side


def _choose(index, values):
    """``values[index]`` (``index`` below their number) as a balanced tree of two-way
    multiplexers, one level per bit of ``index``."""
    level = [Value.cast(value) for value in values]
    for bit in Value.cast(index):
        level = [Mux(bit, level[i + 1], level[i]) if i + 1 < len(level) else level[i]
                 for i in range(0, len(level), 2)]
    return level[0]


class BankedMemory(wiring.Component):
    """``depth`` words of ``width`` bits, read :data:`LATENCY` cycles after their address.

    A read-only memory (``init``, its words) is held in banks of :func:`bank_depth` words (one
    bank when it has fewer): each bank reads the address's low bits into a register of its
    own, the address's bank is chosen among groups of ``group`` banks (a power of two, about
    the square root of their number) into a register per group, then among the groups into
    ``data``'s register. A writable memory (``writable``: its words written before it is read,
    at addresses of the read's) is one bank with one address, the write's while it writes:
    a single-port RAM, which an iCE40's SPRAM can hold whole. The banks' memories are
    named ``name`` (one bank) or ``name`` and their index, with ``attrs``.

    Members
    -------
    addr : ``In(range(depth))``
        The word read, in every cycle (a writable memory's read waits while it writes).
    data : ``Out(width)``, registered
        The word at ``addr`` :data:`LATENCY` cycles earlier.
    write_addr, write_data, write_en : ``In``, with ``writable`` only
        ``write_data`` is written at ``write_addr`` in a cycle of ``write_en``.
    """

    def __init__(self, width, depth, *, init=(), writable=False, name="bank",
                 attrs=None):
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"BankedMemory width must be a positive int, not {width!r}")
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise ValueError(f"BankedMemory depth must be a positive int, not {depth!r}")
        if len(init) > depth:
            raise ValueError(f"BankedMemory init has {len(init)} words, more than its depth "
                             f"{depth}")
        self.width, self.depth, self.init = width, depth, list(init)
        self.writable, self.name, self.attrs = writable, name, dict(attrs or {})
        self.bank_depth = depth if writable else min(bank_depth(width), depth)
        self.banks = math.ceil(depth / self.bank_depth)
        self.group = 1 << math.isqrt(self.banks - 1).bit_length()
        self.groups = math.ceil(self.banks / self.group)
        members = {"addr": In(range(depth)), "data": Out(width)}
        if writable:
            members |= {"write_addr": In(range(depth)), "write_data": In(width),
                        "write_en": In(1)}
        super().__init__(members)

    @property
    def register_bits(self) -> int:
        """Bits of its registers: the banks', the groups' and ``data``'s."""
        return (self.banks + self.groups + 1) * self.width

    def elaborate(self, platform):
        m = Module()
        low_bits = (self.bank_depth - 1).bit_length()
        reads = []
        for index in range(self.banks):
            words = self.init[index * self.bank_depth:(index + 1) * self.bank_depth]
            depth = min(self.bank_depth, self.depth - index * self.bank_depth)
            bank = memory.Memory(shape=unsigned(self.width), depth=depth, init=words,
                                 attrs=self.attrs)
            m.submodules[self.name if self.banks == 1 else f"{self.name}{index}"] = bank
            if self.writable:
                read, write = single_port(m, bank)
                m.d.comb += [write.addr.eq(self.write_addr), write.data.eq(self.write_data),
                             write.en.eq(self.write_en)]
            else:
                read = bank.read_port()
            m.d.comb += read.addr.eq(self.addr[:low_bits])
            reads.append(read.data)
        # The address's bank, delayed along with its read: late[k] is k cycles late.
        late = [self.addr[low_bits:]]
        for stage in range(1, LATENCY):
            late.append(Signal.like(late[-1], name=f"bank_{stage}"))
            m.d.sync += late[-1].eq(late[-2])
        in_group = (self.group - 1).bit_length()
        held = [Signal(self.width, name=f"bank_q{index}", reset_less=True)
                for index in range(self.banks)]
        chosen = [Signal(self.width, name=f"group_q{index}", reset_less=True)
                  for index in range(self.groups)]
        m.d.sync += [register.eq(data) for register, data in zip(held, reads, strict=True)]
        m.d.sync += [register.eq(_choose(late[2][:in_group],
                                         held[index * self.group:(index + 1) * self.group]))
                     for index, register in enumerate(chosen)]
        data = Signal(self.width, reset_less=True)
        m.d.sync += data.eq(_choose(late[3][in_group:], chosen))
        m.d.comb += self.data.eq(data)
        return m
