"""Sliding-window unit: the input generator of a streamed convolution (FINN's SWU).

An image streams in once, row by row; each output pixel's window streams out, so a
:class:`~hwnn.rtl.mvau.MatrixVectorUnit` with ``K = kh * kw * C`` computes the convolution
one window (one input vector) at a time. Image rows wait in line buffers, a circular queue of
row slots in one block RAM; padding is made on the fly. For a depthwise convolution the unit
emits each window channel group by channel group instead, several kernel positions a beat,
for a :class:`~hwnn.rtl.vvau.VectorVectorUnit`.
"""

from collections import namedtuple
from itertools import pairwise

from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..errors import ParameterError
from .arith import select
from .geometry import sliding_windows
from .layouts import Beat
from .params import check_positive_int
from .structure import Memory, Structure
from .widthconv import WidthConverter

__all__ = ["ORDERS", "SlidingWindowUnit"]

#: The orders in which the unit emits a window (see :class:`SlidingWindowUnit`).
ORDERS = ("window", "depthwise")

#: The reader's window position (see :meth:`SlidingWindowUnit.elaborate`).
_Window = namedtuple("_Window", "y0 x0 x0_col head")


class SlidingWindowUnit(wiring.Component):
    """Stream an image in and every output pixel's ``kh x kw x C`` window out.

    The input is one ``H x W x C`` image after another, channels-last in raster order
    (pixels row by row, left to right, channels fastest), ``in_count`` values per beat;
    framing is by count (the input ``last`` is ignored) and images may follow each other
    with no gap. For each output pixel ``(oy, ox)`` in raster order, the output is its
    window in the order ``(ky, kx, c)``, channel fastest, ``simd`` values per beat, ``last``
    set on the window's final beat: ``kh * kw * C / simd`` beats, exactly one input vector of
    a :class:`~hwnn.rtl.mvau.MatrixVectorUnit` with ``K = kh * kw * C`` folded by ``simd``.
    Window ``(oy, ox)`` covers padded rows ``oy * sh ..`` and columns ``ox * sw ..``; a tap
    in the padding is ``pad_code`` in every channel (the bit pattern of the input's real
    zero; for binary maps, which have no zero, the caller's choice, e.g. 0 for -1 as FINN).
    ``simd`` divides ``C``, so a beat never straddles two taps. With ``taps > 1`` (``simd ==
    C``: whole pixels) a beat is ``taps`` consecutive kernel positions of the window, still in
    window order (a hardwired convolution takes a whole window, ``taps = kh * kw``, a beat).

    With ``order="depthwise"`` (for a :class:`~hwnn.rtl.vvau.VectorVectorUnit`) a window is
    emitted channel group by channel group instead: for each group of ``simd`` channels, for
    each group of ``taps`` kernel positions in window order (``ky`` then ``kx``), one beat of
    ``simd * taps`` values whose element ``c * taps + j`` is channel ``c`` of the group at
    position ``j`` of the group; ``taps`` divides ``kh * kw``. The ``taps`` values of a
    channel come from ``taps`` copies of the line buffer, one read each, so a beat still
    takes one cycle. Everything below holds for both orders, with
    ``simd * taps`` values per output beat.

    Storage is a queue of :attr:`rows` line buffer slots of ``W x C`` values in one memory
    (:attr:`memory_bits` bits), written in ``simd``-value words: the rows that the current
    output row's windows cover, and room for the next output row's (or, at the end of an
    image, the next image's first) so that the writer fills them while the reader emits.
    Image rows no window covers (below the last window, or between windows when the stride
    exceeds the kernel) are accepted and dropped. A window is read as soon as its last
    pixel is written (pixel-level, not row-level, hand-over).

    Throughput. The unit emits one beat per cycle while the next window's pixels are
    there, and accepts ``m = min(in_count, simd)`` values per cycle while a row slot is
    free (an input :class:`~hwnn.rtl.widthconv.WidthConverter` repacks to ``simd``). With a
    producer and a consumer at full rate and images back to back, an image takes
    ``max(out_beats, in_cycles)`` cycles in steady state, where :attr:`out_beats` ``= OH * OW
    * kh * kw * C / simd`` and :attr:`in_cycles` ``= H * W * C / m``. That is exact when
    windows dominate: ``out_beats >= in_cycles``, ``sw * simd <= kh * kw * m`` (a window
    lasts as long as its new columns take to arrive) and ``sh * W * simd <= OW * kh * kw *
    m`` (an output row lasts as long as its new image rows take); the producer then waits
    now and then. When the input dominates (a 1x1 kernel with stride 2, say) the output
    idles between windows, and a burst of windows after a long wait for input can hold a
    row slot a little longer than the input needs it, costing a cycle or so per image in
    rare geometries. One image alone, when windows dominate, takes ``latency + out_beats -
    1`` cycles from its first input transfer to its last output transfer. (An output row's
    last beat waits until the rows the queue drops after it are whole, which matters only
    when no window covers an image row's right end.)

    Timing: ``i_stream.ready`` comes from registers through a few gates (a free row slot);
    the output comes from two registers (the memory's read register, then one that
    synthesis moves into the block RAM's output register) through the padding multiplexer,
    and ``o_stream.ready`` enables them and the reader's counters. The longest path goes
    from the window's readiness (comparisons of the writer's and the reader's positions)
    to those enables: on an ECP5-85F (nextpnr, register harness) 141 MHz for a 30x30x64
    binary image, 3x3 kernel, ``simd`` 32, and 168 MHz for 32x32x3 int8, 3x3, padding 1.

    Parameters
    ----------
    image : (int, int, int)
        ``(H, W, C)``.
    kernel, stride : int or (int, int)
        ``(kh, kw)`` and ``(sh, sw)``, rows first.
    padding : int or (int, int, int, int)
        ``(top, bottom, left, right)``, each smaller than the kernel.
    width : int
        Bits per value.
    pad_code : int
        Bit pattern of a padding value, ``0 .. 2 ** width - 1``.
    in_count, simd : int
        Values per input beat, and channels per output beat; both divide ``C``.
    order : str
        ``"window"`` or ``"depthwise"`` (:data:`ORDERS`).
    taps : int
        Kernel positions per output beat, a divisor of ``kh * kw``; in window order more than
        1 only with ``simd == C``.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, width)))``
    o_stream : ``Out(stream.Signature(Beat(simd * taps, width)))``
    out_size : (int, int)
        ``(OH, OW)``: ``(H + top + bottom - kh) // sh + 1`` and likewise for columns.
    window : int
        Values per window, ``kh * kw * C`` (the MVAU's ``K``).
    rows : int
        Row slots of the line buffer, the most rows two consecutive output rows cover
        together (the last and the first of an image count as consecutive), at most
        ``2 * kh``.
    memory_bits : int
        ``rows * W * C * width``, ``taps`` times.
    out_beats, in_cycles : int
        Output beats and input cycles per image (see above).
    latency : int
        Cycles from an image's first input transfer to its first output transfer, for an
        idle unit with an always-ready output and a full-rate producer:
        ``P * C / m + 3`` (``+ 2`` when ``in_count == simd``, which needs no repacking),
        where ``P`` is the number of input pixels up to the first window's last one,
        ``min(H - 1, kh - 1 - top) * W + min(W, kw - left)``.
    """

    def __init__(self, image, kernel, *, width, stride=1, padding=0, pad_code=0, in_count=1,
                 simd=1, order="window", taps=1):
        owner = "SlidingWindowUnit"
        self.geometry = geo = sliding_windows(owner, image, kernel, stride, padding)
        for name, value in (("width", width), ("in_count", in_count), ("simd", simd),
                            ("taps", taps)):
            check_positive_int(owner, name, value)
        if order not in ORDERS:
            raise ValueError(f"{owner} order must be one of {', '.join(ORDERS)}, not {order!r}")
        positions = geo.kernel[0] * geo.kernel[1]
        if order == "window" and taps != 1 and simd != geo.channels:
            raise ParameterError("taps", f"{owner} taps",
                                 f"must be 1 in window order unless simd is the "
                                 f"{geo.channels} channels (simd {simd}), not {taps}")
        if positions % taps:
            raise ParameterError("taps", f"{owner} taps",
                                 f"must divide the {positions} kernel positions, not {taps}")
        for name, value in (("in_count", in_count), ("simd", simd)):
            if geo.channels % value:
                raise ParameterError(name, f"{owner} {name}",
                                     f"must divide the {geo.channels} channels, not {value}")
        if not isinstance(pad_code, int) or isinstance(pad_code, bool):
            raise TypeError(f"{owner} pad_code must be an integer, not {pad_code!r}")
        if not 0 <= pad_code < 1 << width:
            raise ParameterError("pad_code", f"{owner} pad_code",
                                 f"must be a {width}-bit pattern 0..{(1 << width) - 1}, not "
                                 f"{pad_code}")
        self.image = (geo.height, geo.width, geo.channels)
        self.kernel, self.stride, self.padding = geo.kernel, geo.stride, geo.padding
        self.width, self.pad_code = width, pad_code
        self.in_count, self.simd = in_count, simd
        self.order, self.taps = order, taps
        self.out_size = (geo.out_height, geo.out_width)
        self.window = geo.kernel[0] * geo.kernel[1] * geo.channels
        self.rows = self._rows()
        super().__init__({
            "i_stream": In(stream.Signature(Beat(in_count, width))),
            "o_stream": Out(stream.Signature(Beat(simd * taps, width))),
        })

    def _rows(self):
        geo = self.geometry
        spans = [geo.real_rows(oy) for oy in range(geo.out_height)]

        def together(a, b, same_image):
            overlap = max(0, a[1] - b[0] + 1) if same_image else 0
            return (a[1] - a[0] + 1) + (b[1] - b[0] + 1) - overlap

        pairs = [together(a, b, True) for a, b in pairwise(spans)]
        return max([*pairs, together(spans[-1], spans[0], False)])

    @property
    def memory_bits(self) -> int:
        _, width, channels = self.image
        return self.rows * width * channels * self.width * self.taps

    def structure(self) -> Structure:
        """Its hardware (:mod:`hwnn.rtl.structure`): the line buffer (a RAM of :attr:`rows`
        slots of ``W * C / simd`` words of ``simd`` values, use ``"line_buffer"``, once per read
        port), the input width converter's registers, and ``register_bits``: the two output
        registers and the reader's and writer's position counters (about twenty of them, each
        as wide as the coordinate it counts)."""
        height, width, channels = self.image
        depth = self.rows * width * channels // self.simd
        positions = [height, width, *self.kernel, depth, self.rows, *self.out_size]
        counters = 2 * sum(max(size, 2).bit_length() for size in positions)
        structure = Structure({"register_bits": 2 * self.simd * self.taps * self.width
                               + counters + 8})
        if self.in_count != self.simd:
            structure.merge(WidthConverter(self.width, self.in_count, self.simd,
                                           channels).structure())
        structure.memories += [Memory("line_buffer", depth, self.simd * self.width)] * self.taps
        return structure

    @property
    def out_beats(self) -> int:
        return self.out_size[0] * self.out_size[1] * self.window // (self.simd * self.taps)

    @property
    def in_cycles(self) -> int:
        height, width, channels = self.image
        return height * width * channels // min(self.in_count, self.simd)

    @property
    def latency(self) -> int:
        height, width, channels = self.image
        (kh, kw), (top, _, left, _) = self.kernel, self.padding
        pixels = min(height - 1, kh - 1 - top) * width + min(width, kw - left)
        return (pixels * channels // min(self.in_count, self.simd) + 3
                - (self.in_count == self.simd))

    def elaborate(self, platform):
        m = Module()
        _, width, channels = self.image
        (kh, kw), (sh, sw) = self.kernel, self.stride
        top, left = self.padding[0], self.padding[2]
        out_h, out_w = self.out_size
        folds = channels // self.simd                 # words per pixel
        row_words = width * folds
        depth = self.rows * row_words

        # A word is never read in the cycle it is written (a window is read once its pixels
        # are written, a slot written once its row is dropped), so Yosys need not add logic
        # for that collision between the block RAM's output and its output register. One
        # copy of the line buffer per read port (what synthesis would make of a memory with
        # several read ports), all written alike.
        writes, reads = [], []
        for copy in range(self.taps):
            line = m.submodules[f"line{copy or ''}"] = memory.Memory(
                shape=unsigned(self.simd * self.width), depth=depth, init=[],
                attrs={"no_rw_check": True})
            writes.append(line.write_port())
            reads.append(line.read_port(domain="sync"))
        converter = m.submodules.converter = WidthConverter(self.width, self.in_count,
                                                            self.simd, channels)
        wiring.connect(m, wiring.flipped(self.i_stream), converter.i_stream)

        # The queue of row slots: `occupied` slots hold a row or are being written, the first
        # `complete` of them (from `head`) hold a whole row.
        occupied = Signal(range(self.rows + 1))
        complete = Signal(range(self.rows + 1))
        release = Signal()                            # the reader drops `pop` rows
        storing, w_x, reserve, finish = self._writer(m, converter.o_stream, writes,
                                                     occupied < self.rows)

        # Reader: one beat of window (oy, ox) per cycle, the beats of a window in the order's
        # sequence (:meth:`_window_order`, :meth:`_tap_group_order`). y0, x0: the window's
        # first padded row and column, in image coordinates; x0_col: x0's word in its row;
        # head: the row slot of its first real row.
        first_y0, last_y0 = -top, (out_h - 1) * sh - top
        first_x0, last_x0 = -left, (out_w - 1) * sw - left
        window = _Window(
            y0=Signal(range(first_y0, last_y0 + 1), init=first_y0),
            x0=Signal(range(first_x0, last_x0 + 1), init=first_x0),
            x0_col=Signal(range(first_x0 * folds, row_words), init=first_x0 * folds),
            head=Signal(range(self.rows)))
        # The next window's (valid while the current one's last beat issues).
        after = _Window(*(Signal.like(value, name=f"next_{name}")
                          for name, value in window._asdict().items()))
        # Per output row, from a table: the queue position of the last row its windows cover,
        # and how many rows the queue drops after it.
        plan = self._row_plan()
        oy = Signal(range(out_h))
        need_rows = Signal(range(kh), init=plan[0][0])
        pop = Signal(range(kh + 1), init=plan[0][1])
        need_x = Signal(range(width), init=min(width - 1, first_x0 + kw - 1))

        issue = Signal()
        if self.taps == 1 and self.order == "window":
            window_end, ports = self._window_order(m, issue, window, after)
        else:
            window_end, ports = self._tap_group_order(m, issue, window, after, oy, pop)
        row_done = window_end & (window.x0 == last_x0)
        # The window's pixels are written; and the rows dropped after the output row's last
        # beat are whole (the writer may still be in the right part of one no window covers).
        ready = Signal()
        m.d.comb += ready.eq(((complete > need_rows)
                              | ((complete == need_rows) & storing & (w_x > need_x)))
                             & (~row_done | (complete >= pop)))

        # Two registers to the output: the memory's read register, then the word again (no
        # reset, so that synthesis may move it into the block RAM's output register), with
        # the tap's flags beside them; the pad value is chosen after the second.
        valid1, last1 = Signal(), Signal()
        valid2, last2 = Signal(), Signal()
        advance = ~valid2 | self.o_stream.ready
        pad_word = Const(self.pad_code, self.width).replicate(self.simd)
        words = []
        for j, (read, (address, pad)) in enumerate(zip(reads, ports, strict=True)):
            pad1, pad2 = Signal(name=f"pad1_{j}"), Signal(name=f"pad2_{j}")
            data2 = Signal.like(read.data, name=f"data2_{j}", reset_less=True)
            m.d.comb += [read.en.eq(advance), read.addr.eq(address)]
            with m.If(advance):
                m.d.sync += [pad1.eq(pad), pad2.eq(pad1), data2.eq(read.data)]
            words.append(Mux(pad2, pad_word, data2))
        w = self.width
        if self.order == "window":                # element j * simd + c: port j's channel c
            data = Cat(*words)
        else:                                     # element c * taps + j
            data = Cat(*(word[c * w:(c + 1) * w] for c in range(self.simd) for word in words))
        m.d.comb += [
            issue.eq(ready & advance),
            release.eq(issue & row_done),
            self.o_stream.valid.eq(valid2),
            self.o_stream.payload.data.eq(data),
            self.o_stream.payload.last.eq(last2),
        ]
        with m.If(advance):
            m.d.sync += [valid1.eq(ready), last1.eq(window_end),
                         valid2.eq(valid1), last2.eq(last1)]

        # The queue's counts; both sums are ready before `release` (which comes late: it
        # depends on the output's ready).
        m.d.sync += [
            occupied.eq(Mux(release, occupied + reserve - pop, occupied + reserve)),
            complete.eq(Mux(release, complete + finish - pop, complete + finish)),
        ]

        # The next window: along the row, or the next output row's (or image's) first (from
        # registers only: not from the beat counters that say when it is needed).
        new_head = window.head + pop
        image_done = oy == out_h - 1
        row_last = window.x0 == last_x0
        m.d.comb += [
            after.y0.eq(Mux(row_last, Mux(image_done, first_y0, window.y0 + sh), window.y0)),
            after.x0.eq(Mux(row_last, first_x0, window.x0 + sw)),
            after.x0_col.eq(Mux(row_last, first_x0 * folds, window.x0_col + sw * folds)),
            after.head.eq(Mux(row_last, Mux(new_head >= self.rows, new_head - self.rows,
                                            new_head), window.head)),
        ]
        with m.If(issue & window_end):
            m.d.sync += [getattr(window, name).eq(getattr(after, name))
                         for name in window._fields]
            with m.If(~row_done):
                m.d.sync += need_x.eq(Mux(need_x + sw >= width - 1, width - 1, need_x + sw))
            with m.Else():
                following = plan[1:] + plan[:1]           # the row after each
                m.d.sync += [
                    need_x.eq(need_x.init), oy.eq(Mux(image_done, 0, oy + 1)),
                    need_rows.eq(_lookup(oy, [need for need, _ in following])),
                    pop.eq(_lookup(oy, [drop for _, drop in following])),
                ]
        return m

    def _window_order(self, m, issue, window, after):
        """Window order: tap by tap, ``simd`` channels a beat, one read port. The tap's row,
        column, word and row slot are counted along (no multiplier or table in the address).
        Returns whether this beat is the window's last and ``[(address, pad)]``."""
        height, width, channels = self.image
        kh, kw = self.kernel
        folds = channels // self.simd
        row_words = width * folds
        y0, x0, x0_col = window.y0, window.x0, window.x0_col
        # ty, tx: the tap's image coordinates; col: its word in its row; slot: the row slot
        # of tap row ky (the head's until the first real row).
        ky = Signal(range(kh))
        kx = Signal(range(kw))
        fold = Signal(range(folds))
        ty = Signal(range(y0.init, height + self.padding[1]), init=y0.init)
        tx = Signal(range(x0.init, width + self.padding[3]), init=x0.init)
        col = Signal(range(x0_col.init, (width + self.padding[3]) * folds), init=x0_col.init)
        slot = Signal(range(self.rows))
        pad = (ty < 0) | (ty >= height) | (tx < 0) | (tx >= width)
        fold_end, tap_end = fold == folds - 1, kx == kw - 1
        window_end = fold_end & tap_end & (ky == kh - 1)
        address = select(slot, [s * row_words for s in range(self.rows)]) + col
        with m.If(issue):
            m.d.sync += fold.eq(Mux(fold_end, 0, fold + 1))
            with m.If(~(fold_end & tap_end)):
                m.d.sync += col.eq(col + 1)
            with m.If(fold_end & ~tap_end):
                m.d.sync += [kx.eq(kx + 1), tx.eq(tx + 1)]
            with m.If(fold_end & tap_end & ~window_end):      # next kernel row
                m.d.sync += [
                    kx.eq(0), ky.eq(ky + 1), ty.eq(ty + 1), tx.eq(x0), col.eq(x0_col),
                    slot.eq(Mux(ty < 0, slot, Mux(slot == self.rows - 1, 0, slot + 1))),
                ]
            with m.If(window_end):                            # the next window's first tap
                m.d.sync += [kx.eq(0), ky.eq(0), ty.eq(after.y0), tx.eq(after.x0),
                             col.eq(after.x0_col), slot.eq(after.head)]
        return window_end, [(address, pad)]

    def _tap_group_order(self, m, issue, window, after, oy, pop):
        """Depthwise order, or window order with ``taps > 1`` (then one channel group):
        channel group by channel group, ``taps`` kernel positions a beat, one read port each;
        port ``j``'s position in tap group ``g`` is ``g * taps + j``, from a table. Each port's
        tap row, column, word and row slot are registers set a beat ahead, from the output
        row's row slots (registers too), so the memory address is a slot multiplexer and an
        adder, as in window order. Returns whether this beat is the
        window's last and ``[(address, pad)]`` per port."""
        height, width, channels = self.image
        kh, kw = self.kernel
        bottom, right = self.padding[1], self.padding[3]
        folds = channels // self.simd
        row_words = width * folds
        groups = kh * kw // self.taps
        last_x0 = (self.out_size[1] - 1) * self.stride[1] - self.padding[2]
        fold = Signal(range(folds))
        group = Signal(range(groups))
        group_end = group == groups - 1
        window_end = group_end & (fold == folds - 1)
        next_group = Mux(group_end, 0, group + 1)
        next_fold = Mux(group_end, Mux(fold == folds - 1, 0, fold + 1), fold)
        with m.If(issue):
            m.d.sync += [group.eq(next_group), fold.eq(next_fold)]

        # The row slot of each kernel row for the current output row, not wrapped around the
        # queue (the address multiplexer does that): the head's plus the row's offset from
        # the output row's first real row (a table by output row; rows in the bottom
        # padding, which are not read, count on); the next output row's, from the head after
        # the rows the queue drops.
        geo, y_init = self.geometry, window.y0.init
        offsets = [[max(oy_ * self.stride[0] - self.padding[0] + ky, 0)
                    - geo.real_rows(oy_)[0] for ky in range(kh)]
                   for oy_ in range(self.out_size[0])]
        following = offsets[1:] + offsets[:1]
        spread = 3 * self.rows + kh                  # head + pop + offset < spread
        row_slots = [Signal(range(spread), init=offsets[0][ky], name=f"row_slot_{ky}")
                     for ky in range(kh)]
        upcoming = [window.head + pop + _lookup(oy, [row[ky] for row in following])
                    for ky in range(kh)]
        row_last = window.x0 == last_x0
        with m.If(issue & window_end & row_last):
            m.d.sync += [slot.eq(new) for slot, new in zip(row_slots, upcoming, strict=True)]

        ports = []
        for j in range(self.taps):
            positions = [divmod(g * self.taps + j, kw) for g in range(groups)]
            ky_table, kx_table = ([position[i] for position in positions] for i in (0, 1))
            ky, kx = _lookup(next_group, ky_table), _lookup(next_group, kx_table)
            y_first, x_first = ky_table[0], kx_table[0]      # a window's first beat
            ty = Signal(range(y_init, height + bottom), init=y_init + y_first, name=f"ty_{j}")
            tx = Signal(range(window.x0.init, width + right), init=window.x0.init + x_first,
                        name=f"tx_{j}")
            col = Signal(range(window.x0_col.init, (width + right) * folds),
                         init=(window.x0.init + x_first) * folds, name=f"col_{j}")
            slot = Signal(range(spread), init=row_slots[y_first].init, name=f"slot_{j}")
            # The next beat's: in this window, or the next window's first.
            same = (window.y0 + ky, window.x0 + kx, window.x0_col + kx * folds + next_fold,
                    select(ky, row_slots))
            first = (after.y0 + y_first, after.x0 + x_first, after.x0_col + x_first * folds,
                     Mux(row_last, upcoming[y_first], row_slots[y_first]))
            with m.If(issue):
                m.d.sync += [reg.eq(Mux(window_end, a, b))
                             for reg, a, b in zip((ty, tx, col, slot), first, same, strict=True)]
            pad = (ty < 0) | (ty >= height) | (tx < 0) | (tx >= width)
            ports.append((select(slot, [s % self.rows * row_words for s in range(spread)])
                          + col, pad))
        return window_end, ports

    def _writer(self, m, beats, writes, room):
        """Write the image rows some window covers from ``beats`` (``simd`` values each) into
        the queue, in consecutive words of the line buffer (through each of ``writes``, its
        copies' write ports); drop the others. A stored row
        takes a slot at its first beat, when there is ``room``. Returns whether the current
        row is stored, the pixel being written, and whether this cycle takes a slot
        (``reserve``) or completes a row (``finish``)."""
        height, width, channels = self.image
        (kh, _), (sh, _), top = self.kernel, self.stride, self.padding[0]
        folds = channels // self.simd
        depth = self.rows * width * folds
        last_used = min(height - 1, self.geometry.real_rows(self.out_size[0] - 1)[1])
        w_fold = Signal(range(folds))
        w_x = Signal(range(width))
        w_y = Signal(range(height))
        w_addr = Signal(range(depth))
        storing = Signal(init=1)                      # row w_y is stored (row 0 always is)
        w_phase = Signal(range(sh), init=top % sh)    # (w_y + top) mod sh
        row_start = (w_x == 0) & (w_fold == 0)
        pixel_end = w_fold == folds - 1
        row_end = pixel_end & (w_x == width - 1)
        accept, reserve, finish = Signal(), Signal(), Signal()
        m.d.comb += [
            beats.ready.eq(~storing | ~row_start | room),
            accept.eq(beats.valid & beats.ready),
            *(port.eq(value) for write in writes
              for port, value in ((write.addr, w_addr), (write.data, beats.payload.data),
                                  (write.en, accept & storing))),
            reserve.eq(accept & storing & row_start),
            finish.eq(accept & storing & row_end),
        ]
        with m.If(accept):
            m.d.sync += w_fold.eq(Mux(pixel_end, 0, w_fold + 1))
            with m.If(storing):
                m.d.sync += w_addr.eq(Mux(w_addr == depth - 1, 0, w_addr + 1))
            with m.If(pixel_end):
                m.d.sync += w_x.eq(Mux(row_end, 0, w_x + 1))
            with m.If(row_end):
                image_end = w_y == height - 1
                next_phase = Mux(w_phase == sh - 1, 0, w_phase + 1)
                m.d.sync += [
                    w_y.eq(Mux(image_end, 0, w_y + 1)),
                    w_phase.eq(Mux(image_end, top % sh, next_phase)),
                    storing.eq(image_end | ((w_y < last_used)
                                            & ((next_phase < kh) if sh > kh else 1))),
                ]
        return storing, w_x, reserve, finish

    def _row_plan(self):
        """Per output row: the queue position of the last image row its windows cover (the
        first they cover is at the head), and the rows the queue drops after it, those the
        next output row does not cover (all of them after the image's last)."""
        geo = self.geometry
        plan = []
        for oy in range(geo.out_height):
            first, last = geo.real_rows(oy)
            if oy == geo.out_height - 1:
                drop = last - first + 1
            else:
                drop = min(last - first + 1, geo.real_rows(oy + 1)[0] - first)
            plan.append((last - first, drop))
        return plan


def _lookup(index, table):
    """``table[index]`` (a list of ints) as a few multiplexers: one per entry that differs from
    the most common value."""
    common = max(table, key=table.count)
    result = Const(common)
    for position, value in enumerate(table):
        if value != common:
            result = Mux(index == position, value, result)
    return result
