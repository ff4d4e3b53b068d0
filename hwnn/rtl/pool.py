"""Streaming max-pool unit: a row buffer of partial maxima, one input beat per cycle."""

from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ParameterError
from ..ir.formats import Format
from .arith import select
from .geometry import sliding_windows
from .layouts import Beat
from .params import check_positive_int
from .structure import Memory, Structure

__all__ = ["MaxPoolUnit"]


class _Windows:
    """Which windows along one axis (rows or columns) contain the current position.

    Positions ``0 .. length - 1`` are visited in order (:meth:`step` moves to the next, back
    to 0 after the last). The ``windows`` windows of ``kernel`` positions start every
    ``stride`` positions; window ``j`` lives in slot ``j mod slots``, ``slots`` being the most
    windows that can hold one position. Per slot: ``inside``, ``first`` and ``final`` (the
    position is in, first in, last in the slot's window), all registers.
    """

    def __init__(self, m, name, length, kernel, stride, windows):
        self.slots = min(-(-kernel // stride), windows)
        self._m, self._length = m, length
        self._kernel, self._stride, self._windows = kernel, stride, windows
        self.active = [Signal(name=f"{name}_active{t}", init=t == 0) for t in range(self.slots)]
        self.offset = [Signal(range(kernel), name=f"{name}_offset{t}")
                       for t in range(self.slots)]
        self.position = Signal(range(length), name=f"{name}_position")
        self._phase = Signal(range(stride), name=f"{name}_phase")     # position mod stride
        self._started = Signal(range(windows + 1), name=f"{name}_started", init=1)
        self._next = Signal(range(self.slots), name=f"{name}_next", init=1 % self.slots)

    def inside(self, t):
        return self.active[t]

    def first(self, t):
        return self.active[t] & (self.offset[t] == 0)

    def final(self, t):
        return self.active[t] & (self.offset[t] == self._kernel - 1)

    def any_final(self):
        return Cat(*(self.final(t) for t in range(self.slots))).any()

    def final_slot(self):
        """The slot whose window ends at the position (0 if none does)."""
        slot = Const(0, range(self.slots))
        for t in range(1, self.slots):
            slot = Mux(self.final(t), t, slot)
        return slot

    def step(self):
        """Move to the next position at the clock edge (under the caller's ``m.If``)."""
        m, sync = self._m, self._m.d.sync
        wrap = self.position == self._length - 1
        phase = Mux(wrap | (self._phase == self._stride - 1), 0, self._phase + 1)
        start = ~wrap & (phase == 0) & (self._started < self._windows)
        sync += [self.position.eq(Mux(wrap, 0, self.position + 1)), self._phase.eq(phase)]
        for t in range(self.slots):
            with m.If(wrap):
                sync += [self.active[t].eq(self.active[t].init), self.offset[t].eq(0)]
            with m.Elif(start & (self._next == t)):
                sync += [self.active[t].eq(1), self.offset[t].eq(0)]
            with m.Else():
                sync += [self.active[t].eq(self.active[t] & ~self.final(t)),
                         self.offset[t].eq(self.offset[t] + 1)]
        with m.If(wrap):
            sync += [self._started.eq(self._started.init), self._next.eq(self._next.init)]
        with m.Elif(start):
            sync += [self._started.eq(self._started + 1),
                     self._next.eq(Mux(self._next == self.slots - 1, 0, self._next + 1))]


class MaxPoolUnit(wiring.Component):
    """Max-pool a stream of images, one input beat per cycle.

    The input is one ``H x W x C`` image after another, channels-last in raster order,
    ``count`` values per beat (framing is by count: the input ``last`` is ignored; images may
    follow each other with no gap). The output is the ``OH x OW x C`` image of the maxima of
    each channel over each ``kh x kw`` window, windows every ``(sh, sw)`` pixels with no
    padding (``OH = (H - kh) // sh + 1``, likewise ``OW``), in the same order and beats of
    ``count`` values, ``last`` set on the final beat of each image. Windows may overlap
    (stride smaller than the kernel) or leave pixels out (larger). Values compare as the
    codes of ``fmt``: signed or unsigned integers; for binary (bipolar) codes, where bit 1
    is +1, the maximum is the OR.

    The partial maxima wait in a row buffer: ``nh x nv`` small memories, ``nh = min(ceil(kw
    / sw), OW)`` and ``nv = min(ceil(kh / sh), OH)`` (the most windows that share a column,
    or a row), window ``(oy, ox)`` in memory ``(ox mod nh, oy mod nv)``, one word of
    ``count`` values per channel group; :attr:`memory_bits` ``= nv * OW * C * width`` bits
    in all. Each input beat reads, and writes back, one word of each memory whose window
    holds the pixel; the first pixel of a window overwrites its stale partial maximum. The
    reads are transparent (a beat sees the write of the one before it), which costs a bypass
    multiplexer in logic and keeps the memories out of block RAM's output registers.

    Throughput and latency: an input beat is accepted every cycle while the output is not
    back-pressured (``i_stream.ready`` is ``o_stream.ready`` or an empty output register), so
    an image takes :attr:`cycles` ``= H * W * C / count`` cycles, back to back or alone; an
    output beat is offered :attr:`latency` cycles after the input beat that completes its
    window is accepted. The output is registered. The longest path is the read-modify-write
    of a partial maximum (a comparison and a multiplexer): on an ECP5-85F, 197 MHz for binary
    codes, 119 MHz for int8 with overlapping windows (nextpnr, register harness).

    Parameters
    ----------
    image : (int, int, int)
        ``(H, W, C)``.
    kernel : int or (int, int)
        ``(kh, kw)``.
    stride : int or (int, int) or None
        ``(sh, sw)``; the kernel when None.
    fmt : :class:`~hwnn.ir.formats.Format`
        Format of the codes (its width and how they compare).
    count : int
        Values per beat, a divisor of ``C``.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(count, fmt.width)))``
    o_stream : ``Out(stream.Signature(Beat(count, fmt.width)))``
    out_size : (int, int)
        ``(OH, OW)``.
    cycles, latency, memory_bits : int
        See above.
    """

    #: Cycles from the acceptance of the input beat completing an output beat to the first
    #: cycle that output beat is offered (a memory read, then the output register).
    latency = 2

    def __init__(self, image, kernel, *, fmt, stride=None, count=1):
        owner = "MaxPoolUnit"
        if not isinstance(fmt, Format):
            raise TypeError(f"{owner} fmt must be a Format, not {fmt!r}")
        self.geometry = geo = sliding_windows(owner, image, kernel,
                                              kernel if stride is None else stride)
        check_positive_int(owner, "count", count)
        if geo.channels % count:
            raise ParameterError("count", f"{owner} count",
                                 f"must divide the {geo.channels} channels, not {count}")
        self.image = (geo.height, geo.width, geo.channels)
        self.kernel, self.stride = geo.kernel, geo.stride
        self.fmt, self.count = fmt, count
        self.out_size = (geo.out_height, geo.out_width)
        super().__init__({
            "i_stream": In(stream.Signature(Beat(count, fmt.width))),
            "o_stream": Out(stream.Signature(Beat(count, fmt.width))),
        })

    @property
    def cycles(self) -> int:
        """Cycles per image at full rate: one per input beat."""
        height, width, channels = self.image
        return height * width * channels // self.count

    @property
    def memory_bits(self) -> int:
        return self._slots(0) * self.out_size[1] * self.image[2] * self.fmt.width

    def structure(self) -> Structure:
        """Its hardware (:mod:`hwnn.rtl.structure`): the memories of partial maxima (use
        ``"partial_maxima"``), ``compare_bits`` (a comparator and multiplexer of ``count``
        values per memory, and one for the completed window) and ``register_bits`` (the beat,
        the output register, the position counters)."""
        nh, nv = self._slots(1), self._slots(0)
        value_bits = self.count * self.fmt.width
        height, width, _ = self.image
        counters = sum(max(size, 2).bit_length() for size in (height, width, *self.out_size))
        structure = Structure({"compare_bits": (nh * nv + 1) * value_bits,
                               "register_bits": 2 * value_bits + 2 * counters + 4 * nh * nv})
        structure.memories += [Memory("partial_maxima", self._bank_depth(bank), value_bits)
                               for bank in range(nh) for _ in range(nv)]
        return structure

    def _slots(self, axis):
        windows = self.out_size[axis]
        return min(-(-self.kernel[axis] // self.stride[axis]), windows)

    def _bank_depth(self, bank):
        """Words of memory ``bank``: a channel group of each window column it holds."""
        groups = self.image[2] // self.count
        return -(-(self.out_size[1] - bank) // self._slots(1)) * groups

    def _greater(self, a, b):
        """Whether code ``a`` is larger than code ``b`` in the unit's format."""
        if self.fmt.shape().signed:
            return a.as_signed() > b.as_signed()
        return a > b

    def elaborate(self, platform):
        m = Module()
        height, width, channels = self.image
        (kh, kw), (sh, sw) = self.kernel, self.stride
        out_h, out_w = self.out_size
        groups, bits, count = channels // self.count, self.fmt.width, self.count
        value_bits = count * bits

        # Position of the beat on offer: channel group, then window columns, then rows.
        group = Signal(range(groups))
        cols = _Windows(m, "col", width, kw, sw, out_w)
        rows = _Windows(m, "row", height, kh, sh, out_h)

        out_valid = Signal()
        advance = ~out_valid | self.o_stream.ready
        accept = Signal()
        m.d.comb += [self.i_stream.ready.eq(advance),
                     accept.eq(self.i_stream.valid & advance)]
        with m.If(accept):
            m.d.sync += group.eq(Mux(group == groups - 1, 0, group + 1))
            with m.If(group == groups - 1):
                cols.step()
                with m.If(cols.position == width - 1):
                    rows.step()

        # Stage 1: each bank reads the word of its window column (if the pixel is in it);
        # the beat, what it does to each partial maximum (update it, or load it: the pixel is
        # the window's first) and which window (if any) it completes wait in registers.
        valid1, done1 = Signal(), Signal()
        data1 = Signal(value_bits)
        update = [[Signal(name=f"update{b}_{t}") for t in range(rows.slots)]
                  for b in range(cols.slots)]
        load = [[Signal(name=f"load{b}_{t}") for t in range(rows.slots)]
                for b in range(cols.slots)]
        col_final1 = Signal(range(cols.slots))
        row_final1 = Signal(range(rows.slots))
        with m.If(advance):
            m.d.sync += [valid1.eq(accept), data1.eq(self.i_stream.payload.data),
                         done1.eq(accept & cols.any_final() & rows.any_final()),
                         col_final1.eq(cols.final_slot()), row_final1.eq(rows.final_slot())]
            for b in range(cols.slots):
                for t in range(rows.slots):
                    m.d.sync += [update[b][t].eq(cols.inside(b) & rows.inside(t)),
                                 load[b][t].eq(cols.first(b) & rows.first(t))]

        def larger(word, take=0):
            """Per value of ``word``: the beat's value if larger (or if ``take``)."""
            values = []
            for i in range(count):
                old, value = word[i * bits:(i + 1) * bits], data1[i * bits:(i + 1) * bits]
                values.append(Mux(take | self._greater(value, old), value, old))
            return Cat(*values)

        # The partial maxima of window row oy, column ox: memory (ox mod nh, oy mod nv), word
        # (ox // nh) * groups + group. One read and one write per memory and beat.
        finals = []             # per bank (column slot): the completed window's partial maximum
        for bank in range(cols.slots):
            # The first word of the bank's current window column (it moves on when a window
            # ends), and the word of the beat on offer.
            base = Signal(range(self._bank_depth(bank) + groups), name=f"base{bank}")
            address = Signal.like(base, name=f"address{bank}")
            with m.If(accept & (group == groups - 1)):
                with m.If(cols.position == width - 1):
                    m.d.sync += [base.eq(0), address.eq(0)]
                with m.Elif(cols.final(bank)):
                    m.d.sync += [base.eq(base + groups), address.eq(base + groups)]
                with m.Else():
                    m.d.sync += address.eq(base)
            with m.Elif(accept):
                m.d.sync += address.eq(address + 1)
            address1 = Signal.like(base, name=f"address{bank}_1")
            with m.If(advance):
                m.d.sync += address1.eq(address)
            olds = []
            for t in range(rows.slots):
                mem = m.submodules[f"partial{bank}_{t}"] = memory.Memory(
                    shape=unsigned(value_bits), depth=self._bank_depth(bank), init=[])
                write = mem.write_port()
                read = mem.read_port(domain="sync", transparent_for=(write,))
                m.d.comb += [
                    read.addr.eq(address), read.en.eq(advance),
                    write.addr.eq(address1), write.data.eq(larger(read.data, load[bank][t])),
                    write.en.eq(advance & valid1 & update[bank][t]),
                ]
                olds.append(read.data)
            finals.append(select(row_final1, olds))

        # Stage 2: a beat that ends a window in both directions gives its maximum (a window's
        # last pixel is also its first only for a 1x1 kernel).
        result = data1 if self.kernel == (1, 1) else larger(select(col_final1, finals))
        out_data, out_last = Signal(value_bits), Signal()
        beats = out_h * out_w * groups
        sent = Signal(range(beats))
        with m.If(advance):
            m.d.sync += [out_valid.eq(done1), out_data.eq(result),
                         out_last.eq(sent == beats - 1)]
            with m.If(done1):
                m.d.sync += sent.eq(Mux(sent == beats - 1, 0, sent + 1))
        m.d.comb += [self.o_stream.valid.eq(out_valid),
                     self.o_stream.payload.data.eq(out_data),
                     self.o_stream.payload.last.eq(out_last)]
        return m
