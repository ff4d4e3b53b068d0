"""Stream width conversion: between beats of different value counts, and from wide words
to beats."""

from math import gcd

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import select
from .layouts import Beat
from .params import check_positive_int
from .structure import Structure

__all__ = ["WidthConverter", "WordSplitter"]


class WidthConverter(wiring.Component):
    """Repack a stream of ``in_count``-value beats into a stream of ``out_count``-value beats.

    The output carries exactly the input's sequence of values, in order: element 0 of the
    first input beat is element 0 of the first output beat. Values are grouped in vectors of
    ``vector`` values, and ``last`` is set on the output beat that holds the final value of each
    vector. Framing is by count: the input ``last`` is ignored, so the input must deliver whole
    vectors. When ``in_count == out_count`` the converter is a plain wire-through (no
    registers, zero latency) and passes the input ``last`` through unchanged instead.

    The converter is never the bottleneck: with a producer and a consumer at full rate it
    sustains ``max(vector // in_count, vector // out_count)`` cycles per vector, accepting an
    input beat in the same cycle as it emits an output beat. ``i_stream.ready`` therefore
    depends combinationally on ``o_stream.ready`` (allowed by the stream rules); ``o_stream``
    is driven from registers only, and its payload is stable while ``valid & ~ready``.

    Parameters
    ----------
    width : int
        Bits per value.
    in_count : int
        Values per input beat.
    out_count : int
        Values per output beat.
    vector : int
        Values per vector; a multiple of both ``in_count`` and ``out_count``.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, width)))``
        Input beats. ``last`` is ignored unless ``in_count == out_count``.
    o_stream : ``Out(stream.Signature(Beat(out_count, width)))``
        Output beats, ``last`` set on the final beat of each vector.
    width, in_count, out_count, vector : int
        The parameters (read-only).
    latency : int
        Cycles from the acceptance of an input beat to the earliest output beat holding its
        values: 0 for the wire-through, otherwise 1.
    """

    def __init__(self, width, in_count, out_count, vector):
        for name, value in (("width", width), ("in_count", in_count),
                            ("out_count", out_count), ("vector", vector)):
            check_positive_int("WidthConverter", name, value)
        if vector % in_count or vector % out_count:
            raise ValueError(f"WidthConverter vector must be a multiple of in_count {in_count} "
                             f"and out_count {out_count}, not {vector!r}")
        self._width = width
        self._in_count = in_count
        self._out_count = out_count
        self._vector = vector
        super().__init__({
            "i_stream": In(stream.Signature(Beat(in_count, width))),
            "o_stream": Out(stream.Signature(Beat(out_count, width))),
        })

    @property
    def width(self):
        return self._width

    def structure(self) -> Structure:
        """Its registers as the estimator counts them (``register_bits``: two beats of the
        wider side)."""
        return Structure({"register_bits": 2 * max(self._in_count, self._out_count)
                          * self._width})

    @property
    def in_count(self):
        return self._in_count

    @property
    def out_count(self):
        return self._out_count

    @property
    def vector(self):
        return self._vector

    @property
    def latency(self):
        return 0 if self._in_count == self._out_count else 1

    def elaborate(self, platform):
        m = Module()

        i_stream, o_stream = self.i_stream, self.o_stream
        w, n_in, n_out = self._width, self._in_count, self._out_count

        if n_in == n_out:
            m.d.comb += [
                o_stream.payload.eq(i_stream.payload),
                o_stream.valid.eq(i_stream.valid),
                i_stream.ready.eq(o_stream.ready),
            ]
            return m

        # Both counts are multiples of `step`, so the fill level always is one too, and a
        # capacity of `n_in + n_out - step` values is exactly what the largest level needs
        # (the largest multiple of `step` not above `n_in + n_out - 1`).
        step = gcd(n_in, n_out)
        capacity = n_in + n_out - step
        held = Signal(capacity * w)          # the held values, the oldest in the LSBs
        level = Signal(range(capacity + 1))  # how many values `held` holds
        kept = Signal.like(level)            # how many remain after this cycle's emission

        emit = Signal()
        accept = Signal()
        m.d.comb += [
            o_stream.valid.eq(level >= n_out),
            o_stream.payload.data.eq(held[:n_out * w]),
            emit.eq(o_stream.valid & o_stream.ready),
            kept.eq(Mux(emit, level - n_out, level)),
            # Room for a whole input beat: `kept + n_in <= capacity`, i.e. `kept < n_out`.
            i_stream.ready.eq(kept < n_out),
            accept.eq(i_stream.valid & i_stream.ready),
        ]

        # Emission shifts the held values down by one output beat (a constant shift); an
        # accepted input beat lands just above the values kept (a constant slice per level).
        with m.If(emit):
            m.d.sync += held.eq(held[n_out * w:])
        with m.If(accept):
            with m.Switch(kept):
                for position in range(0, n_out, step):
                    with m.Case(position):
                        m.d.sync += held[position * w:(position + n_in) * w].eq(
                            i_stream.payload.data)
        m.d.sync += level.eq(kept + Mux(accept, n_in, 0))

        # Output beats never straddle vectors (`vector` is a multiple of `n_out`): count them.
        beats = self._vector // n_out
        if beats == 1:
            m.d.comb += o_stream.payload.last.eq(1)
        else:
            beat = Signal(range(beats))
            m.d.comb += o_stream.payload.last.eq(beat == beats - 1)
            with m.If(emit):
                m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))

        return m


class WordSplitter(wiring.Component):
    """Split words of ``size`` values into beats of ``count`` values, with no latency.

    A word holds ``size`` values, element 0 lowest; ``final`` marks the last word of a vector,
    of which only the first ``tail`` values belong to the vector (the rest are padding and are
    not sent). Each word gives ``size // count`` beats (``tail // count`` for a final word),
    in order; ``last`` is set on the final word's last beat. The word is accepted with its
    last beat: ``o_stream.valid`` is ``i_stream.valid`` and the payload is a slice of the word.

    Members
    -------
    i_stream : ``In(stream.Signature({"data": size * width, "final": 1}))``
    o_stream : ``Out(stream.Signature(Beat(count, width)))``
    """

    def __init__(self, width, size, count, tail):
        for name, value in (("width", width), ("size", size), ("count", count),
                            ("tail", tail)):
            check_positive_int("WordSplitter", name, value)
        if size % count or tail % count or tail > size:
            raise ValueError(f"WordSplitter size {size} and tail {tail} must be multiples of "
                             f"count {count}, with tail <= size")
        self.width, self.size, self.count, self.tail = width, size, count, tail
        super().__init__({
            "i_stream": In(stream.Signature(data.StructLayout({
                "data": unsigned(size * width), "final": unsigned(1)}))),
            "o_stream": Out(stream.Signature(Beat(count, width))),
        })

    def elaborate(self, platform):
        m = Module()
        beats, tail_beats = self.size // self.count, self.tail // self.count
        beat_bits = self.count * self.width
        word = self.i_stream.payload.data
        final = self.i_stream.payload.final
        beat = Signal(range(beats))
        # Whether ``beat`` is a word's last, and a final word's last: registered flags, so that
        # no comparison stands between the sink's ready and the source's.
        at_end, at_tail = Signal(init=beats == 1), Signal(init=tail_beats == 1)
        last_beat = Mux(final, at_tail, at_end)
        sent = self.o_stream.valid & self.o_stream.ready
        m.d.comb += [
            self.o_stream.valid.eq(self.i_stream.valid),
            self.o_stream.payload.data.eq(select(beat, [word[b * beat_bits:(b + 1) * beat_bits]
                                                        for b in range(beats)])),
            self.o_stream.payload.last.eq(last_beat & final),
            self.i_stream.ready.eq(self.o_stream.ready & last_beat),
        ]
        with m.If(sent):
            with m.If(last_beat):
                m.d.sync += [beat.eq(0), at_end.eq(beats == 1), at_tail.eq(tail_beats == 1)]
            with m.Else():
                m.d.sync += [beat.eq(beat + 1), at_end.eq(beat == beats - 2),
                             at_tail.eq(beat == tail_beats - 2)]
        return m
