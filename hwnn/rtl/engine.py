"""Parts shared by the layer-by-layer engines (systolic overlay, sparse PE array).

Both run a whole network on one array of ``lanes`` lanes, one layer after the other: they
share their ports (:class:`LayerEngine`), the image of their bias memory (:func:`bias_words`),
the bank of per-layer output stages that writes each layer's results
(:class:`LayerStages`), the output path from words of ``lanes`` values to the output stream
(:class:`OutputDrain`) and their per-layer performance counters (:class:`LayerCounters`).
"""

import math
from types import SimpleNamespace

import numpy as np
from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Network
from ..ir.formats import Format
from ..ir.packing import pack_values
from .fifo import FlagFIFO
from .layouts import Beat
from .stage import OutputStage, stage_latency
from .structure import Memory, Structure
from .values import encode_value, resize
from .widthconv import WordSplitter

__all__ = ["COUNTER_BITS", "LOAD_PORT", "LayerCounters", "LayerEngine", "LayerStages",
           "OutputDrain", "bias_words", "load_port", "piece_cycles"]

#: Width of the performance counters (they wrap around).
COUNTER_BITS = 32


#: The name of a top's load stream, where it has one: the words it takes after reset, before
#: its first input (a systolic design's loaded weights), its ``load_words``.
LOAD_PORT = "w_stream"


def load_port(top):
    """``top``'s load stream (an Amaranth component's :data:`LOAD_PORT` member), or None."""
    return getattr(top, LOAD_PORT) if LOAD_PORT in top.signature.members else None


class LayerEngine(wiring.Component):
    """Base of a top that runs ``network`` layer by layer on ``lanes`` lanes.

    Checks the arguments and makes the ports of every architecture's top: an input vector is
    ``in_features / in_count`` beats of ``in_count = gcd(in_features, lanes)`` codes, an output
    vector ``out_features / out_count`` beats of ``out_count = gcd(out_features, lanes)``
    codes (or ``in_count`` codes, a divisor of both, when given), ``last`` on the final beat of
    each; per name in ``counters``, one :data:`COUNTER_BITS`-bit performance counter per
    layer; and the members of ``ports`` (a dict), if any. A subclass names its parameters
    dataclass in ``Params`` and the field of it that gives ``lanes`` in ``lanes_field``.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    <counter> : ``Out(32).array(layers)``, for each name in ``counters``
    """
    Params = None
    lanes_field = None

    def __init__(self, network: Network, params, *, counters, in_count=None, ports=None):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {network!r}")
        name = self.Params.__name__
        if not isinstance(params, self.Params):
            article = "an" if name[0] in "AEIOU" else "a"
            raise TypeError(f"params must be {article} {name}, not {params!r}")
        self.network, self.params = network, params
        lanes = getattr(params, self.lanes_field)
        self.acc_bits = max(layer.acc_bits for layer in network.layers)
        self.in_count = math.gcd(network.in_features, lanes) if in_count is None else in_count
        self.out_count = math.gcd(network.out_features, lanes)
        counter = Out(unsigned(COUNTER_BITS)).array(len(network.layers))
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, network.input.format.width))),
            "o_stream": Out(stream.Signature(Beat(self.out_count,
                                                  network.output.format.width))),
            **{name: counter for name in counters},
            **(ports or {}),
        })


def bias_words(biases, lengths, lanes, bits) -> tuple[list, list]:
    """Image of a bias memory: for each vector of ``biases`` (one per layer), ``lengths[i]``
    words of ``lanes`` biases (two's complement, ``bits`` bits each, element 0 lowest; zeros
    past the vector's end); and the address of each vector's first word."""
    fmt = Format.int(bits)
    words, bases = [], []
    for bias, length in zip(biases, lengths, strict=True):
        bases.append(len(words))
        padded = np.zeros(length * lanes, dtype=np.int64)
        padded[:len(bias)] = bias
        patterns = fmt.encode(padded)
        words.extend(pack_values(patterns[g * lanes:(g + 1) * lanes], bits)
                     for g in range(length))
    return words, bases


def piece_cycles(pieces: int) -> int:
    """Cycles :class:`LayerStages` taking a group in ``pieces`` pieces adds to its stages'
    latency: the piece's input register and the pieces after the first (none for one)."""
    return 0 if pieces == 1 else pieces


class LayerStages(wiring.Component):
    """One :class:`~hwnn.rtl.stage.OutputStage` per layer of ``network``, ``lanes`` wide; the
    one of layer ``layer`` takes the groups of accumulators.

    A group on ``i_acc`` (sums of ``acc_bits`` bits, the group index within its layer and a
    ``tag``) goes to the stage of the current ``layer``; the stage's latency later its values
    come out with the tag: a hidden layer's on ``o_act`` as ``a_bits``-bit signed values
    (``source`` is the layer), the last layer's on ``o_out`` in the network's output encoding.
    No backpressure (``always_ready``); at most one stage has output at a time.

    Parameters
    ----------
    network : :class:`~hwnn.ir.Network`
    lanes : int
        Accumulators per group.
    layers : sequence of :class:`~hwnn.ir.Dense`, optional
        The layers whose stages to build, in place of the network's (the last one's values go
        to ``o_out`` in the network's output encoding).
    acc_bits, a_bits, tag_bits : int
        Bits of an accumulator, of a hidden layer's value, of the tag.
    groups : int
        Groups of the largest layer (the range of ``group``).
    pipelined, logic_multipliers : bool
        Whether the stages are pipelined, and build their requantization multipliers in logic
        (:class:`~hwnn.rtl.stage.OutputStage`).
    pieces : int
        Cycles a group takes (a divisor of ``lanes``). With ``pieces > 1`` each stage is only
        ``lanes // pieces`` wide and takes a group a piece of that many accumulators a cycle,
        the first piece registered in the cycle the group arrives; the group's values come out
        together with its last piece's, :func:`piece_cycles` later than a full-width stage's
        (:meth:`latency`). Groups must then arrive at least ``pieces`` cycles apart, and each
        group's payload stay on ``i_acc`` until the next arrives.

    Members
    -------
    layer : ``In(range(layers))``
    i_acc : ``In(stream.Signature({"acc", "group", "tag"}, always_ready=True))``
    o_act : ``Out(stream.Signature({"data", "tag", "source"}, always_ready=True))``
    o_out : ``Out(stream.Signature({"data", "tag"}, always_ready=True))``
    """

    def __init__(self, network: Network, lanes, *, acc_bits, a_bits, tag_bits, groups,
                 pipelined=False, logic_multipliers=False, layers=None, pieces=1):
        if lanes % pieces:
            raise ValueError(f"LayerStages pieces must divide the {lanes} lanes, not {pieces}")
        self.network, self.lanes, self.a_bits = network, lanes, a_bits
        self.layers = tuple(network.layers if layers is None else layers)
        self.pipelined, self.logic_multipliers = pipelined, logic_multipliers
        self.pieces, self.groups, self.acc_bits = pieces, groups, acc_bits
        count = len(self.layers)
        out_bits = network.output.format.width
        super().__init__({
            "layer": In(range(count)),
            "i_acc": In(stream.Signature(data.StructLayout({
                "acc":   data.ArrayLayout(signed(acc_bits), lanes),
                "group": range(groups),
                "tag":   unsigned(tag_bits),
            }), always_ready=True)),
            "o_act": Out(stream.Signature(data.StructLayout({
                "data": unsigned(lanes * a_bits), "tag": unsigned(tag_bits),
                "source": range(count),
            }), always_ready=True)),
            "o_out": Out(stream.Signature(data.StructLayout({
                "data": unsigned(lanes * out_bits), "tag": unsigned(tag_bits),
            }), always_ready=True)),
        })

    def latency(self, layer: Dense) -> int:
        """Cycles from a group of ``layer`` to its values."""
        return (stage_latency(layer, self.pipelined, self.logic_multipliers)
                + piece_cycles(self.pieces))

    def elaborate(self, platform):
        m = Module()
        if self.pieces == 1:
            self._stages(m, self.i_acc, self.o_act, self.o_out)
            return m
        # Pieces: stages of ``width`` lanes, fed piece ``piece`` of the group on i_acc (which
        # holds it); the values of all but the last piece collected as they come out (a
        # hidden layer's and the last layer's in the same register, never both at once).
        pieces, width = self.pieces, self.lanes // self.pieces
        tag_bits = len(self.i_acc.payload.tag)
        narrow = SimpleNamespace(**{name: signature.create() for name, signature in zip(
            ("i_acc", "o_act", "o_out"), self._narrow_signatures(width, tag_bits), strict=True)})
        # The piece is registered on its way in: a stage multiplying by constants starts on
        # its input at once.
        piece = Signal(range(pieces))                # 0 between groups
        feeding = Signal()
        accs = self.i_acc.payload.acc
        m.d.comb += feeding.eq(self.i_acc.valid | (piece != 0))
        m.d.sync += [
            narrow.i_acc.valid.eq(feeding),
            narrow.i_acc.payload.group.eq(self.i_acc.payload.group * pieces + piece),
            narrow.i_acc.payload.tag.eq(Cat(self.i_acc.payload.tag, piece == pieces - 1)),
        ]
        with m.Switch(piece):
            for k in range(pieces):
                with m.Case(k):
                    m.d.sync += [narrow.i_acc.payload.acc[c].eq(accs[k * width + c])
                                 for c in range(width)]
        with m.If(feeding):
            m.d.sync += piece.eq(Mux(piece == pieces - 1, 0, piece + 1))
        self._stages(m, narrow.i_acc, narrow.o_act, narrow.o_out)
        parts = (narrow.o_act, narrow.o_out)
        piece_bits = max(len(part.payload.data) for part in parts)
        earlier = Signal(piece_bits * (pieces - 1))
        with m.If(narrow.o_act.valid | narrow.o_out.valid):
            m.d.sync += earlier.eq(Cat(earlier[piece_bits:], Mux(
                narrow.o_act.valid, narrow.o_act.payload.data, narrow.o_out.payload.data)))
        for wide, part in zip((self.o_act, self.o_out), parts, strict=True):
            data_bits = len(part.payload.data)
            m.d.comb += [
                wide.valid.eq(part.valid & part.payload.tag[tag_bits]),
                wide.payload.data.eq(Cat(*(earlier[k * piece_bits:k * piece_bits + data_bits]
                                           for k in range(pieces - 1)), part.payload.data)),
                wide.payload.tag.eq(part.payload.tag[:tag_bits]),
            ]
            if hasattr(wide.payload, "source"):
                m.d.comb += wide.payload.source.eq(part.payload.source)
        return m

    def _narrow_signatures(self, width, tag_bits):
        """The ports of the ``width``-lane stages behind the pieces: groups of ``width``
        accumulators (their tag one bit wider: the group's last piece) and their values."""
        count, out_bits = len(self.layers), self.network.output.format.width
        return (
            stream.Signature(data.StructLayout({
                "acc":   data.ArrayLayout(signed(self.acc_bits), width),
                "group": range(self.groups * self.pieces),
                "tag":   unsigned(tag_bits + 1)}), always_ready=True),
            stream.Signature(data.StructLayout({
                "data": unsigned(width * self.a_bits), "tag": unsigned(tag_bits + 1),
                "source": range(count)}), always_ready=True),
            stream.Signature(data.StructLayout({
                "data": unsigned(width * out_bits), "tag": unsigned(tag_bits + 1)}),
                always_ready=True))

    def _stages(self, m, i_acc, o_act, o_out):
        """A stage per layer, as wide as ``i_acc``'s groups, between the streams."""
        layers, lanes = self.layers, len(i_acc.payload.acc)
        out_fmt = self.network.output.format
        for index, layer in enumerate(layers):
            stage = m.submodules[f"stage{index}"] = OutputStage(
                layer, lanes, tag_bits=len(i_acc.payload.tag), pipelined=self.pipelined,
                logic_multipliers=self.logic_multipliers)
            group = i_acc.payload.group
            if stage.groups < math.ceil(layer.out_features / self.lanes) * self.pieces:
                # A piece wholly past the layer's channels (in its last group's padding) reads
                # the last parameters: an address past a ROM's end reads undefined values in
                # Verilog, which would reach the padding's values.
                group = Mux(group < stage.groups, group, stage.groups - 1)
            m.d.comb += [
                stage.i_acc.valid.eq(i_acc.valid & (self.layer == index)),
                stage.i_acc.payload.group.eq(group),
                stage.i_acc.payload.tag.eq(i_acc.payload.tag),
            ]
            for c in range(lanes):
                m.d.comb += stage.i_acc.payload.acc[c].eq(i_acc.payload.acc[c])
            values = stage.o_values.payload.values
            with m.If(stage.o_values.valid):
                if index == len(layers) - 1:
                    m.d.comb += [
                        o_out.valid.eq(1),
                        o_out.payload.tag.eq(stage.o_values.payload.tag),
                        o_out.payload.data.eq(Cat(*(encode_value(values[c], out_fmt)
                                                    for c in range(lanes)))),
                    ]
                else:
                    m.d.comb += [
                        o_act.valid.eq(1),
                        o_act.payload.tag.eq(stage.o_values.payload.tag),
                        o_act.payload.source.eq(index),
                        o_act.payload.data.eq(Cat(*(resize(values[c], self.a_bits)
                                                    for c in range(lanes)))),
                    ]


class OutputDrain(wiring.Component):
    """The output path of a layer-by-layer engine: words of ``lanes`` values of ``bits`` bits
    into a FIFO of ``depth`` words, then out as beats of ``count`` values.

    A word is written when ``i_word.valid`` and ``i_word.ready`` (the FIFO has room; the
    writer may also watch ``level``). ``final`` marks a vector's last word, of which only the
    first ``tail`` values are sent (:class:`~hwnn.rtl.widthconv.WordSplitter`); ``end`` marks
    the last word of a burst: ``ended`` is high in the cycle its last beat is sent. With
    ``buffered`` the FIFO is a :class:`~hwnn.rtl.fifo.FlagFIFO` (Amaranth's
    ``SyncFIFOBuffered`` cycle for cycle, its flags in flip-flops: a word written in cycle
    ``t`` is offered in cycle ``t + 2``), otherwise Amaranth's ``SyncFIFO`` (``t + 1``).

    Parameters
    ----------
    bits, lanes, count, tail : int
        Bits per value, values per word, values per beat, values of a vector's last word.
    depth : int
        Words the FIFO holds.
    buffered : bool

    Members
    -------
    i_word : ``In(stream.Signature({"data": lanes * bits, "final": 1, "end": 1}))``
    o_stream : ``Out(stream.Signature(Beat(count, bits)))``
    level : ``Out(range(depth + 1))``
        Words in the FIFO.
    ended : ``Out(1)``
    """

    def __init__(self, bits, lanes, count, tail, *, depth, buffered):
        self.bits, self.lanes, self.count, self.tail = bits, lanes, count, tail
        self.depth, self.buffered = depth, buffered
        super().__init__({
            "i_word": In(stream.Signature(data.StructLayout({
                "data": unsigned(lanes * bits), "final": unsigned(1), "end": unsigned(1)}))),
            "o_stream": Out(stream.Signature(Beat(count, bits))),
            "level": Out(range(depth + 1)),
            "ended": Out(1),
        })

    def structure(self) -> Structure:
        """Its FIFO's memory (use ``"fifo"``; a buffered FIFO keeps one word in a register)."""
        depth = self.depth - 1 if self.buffered else self.depth
        return Structure(memories=[Memory("fifo", depth, self.lanes * self.bits + 2)])

    def elaborate(self, platform):
        m = Module()
        word_bits = self.lanes * self.bits
        if self.buffered:
            fifo = FlagFIFO(word_bits + 2, depth=self.depth)
            w_data, w_en, w_rdy = fifo.i_stream.payload, fifo.i_stream.valid, fifo.i_stream.ready
            r_data, r_rdy, r_en = fifo.o_stream.payload, fifo.o_stream.valid, fifo.o_stream.ready
        else:
            fifo = SyncFIFO(width=word_bits + 2, depth=self.depth)
            w_data, w_en, w_rdy = fifo.w_data, fifo.w_en, fifo.w_rdy
            r_data, r_rdy, r_en = fifo.r_data, fifo.r_rdy, fifo.r_en
        m.submodules.fifo = fifo
        splitter = m.submodules.splitter = WordSplitter(self.bits, self.lanes, self.count,
                                                        self.tail)
        m.d.comb += [
            w_data.eq(self.i_word.payload),
            w_en.eq(self.i_word.valid),
            self.i_word.ready.eq(w_rdy),
            self.level.eq(fifo.level),
            splitter.i_stream.valid.eq(r_rdy),
            splitter.i_stream.payload.eq(r_data[:word_bits + 1]),
            r_en.eq(splitter.i_stream.ready),
            self.ended.eq(r_rdy & splitter.i_stream.ready & r_data[word_bits + 1]),
        ]
        wiring.connect(m, splitter.o_stream, wiring.flipped(self.o_stream))
        return m


class LayerCounters(wiring.Component):
    """``layers`` performance counters of :data:`COUNTER_BITS` bits (they wrap around): in
    each cycle with ``enable`` high, the counter of layer ``layer`` counts one. They start at
    0 after a reset.

    Members
    -------
    layer : ``In(range(layers))``
    enable : ``In(1)``
    counts : ``Out(COUNTER_BITS).array(layers)``
    """

    def __init__(self, layers):
        super().__init__({
            "layer": In(range(layers)),
            "enable": In(1),
            "counts": Out(unsigned(COUNTER_BITS)).array(layers),
        })

    def structure(self) -> Structure:
        """Its hardware (:mod:`hwnn.rtl.structure`): ``counter_bits``, the counters' bits (a
        register and an incrementer bit each)."""
        return Structure({"counter_bits": len(self.counts) * COUNTER_BITS})

    def elaborate(self, platform):
        m = Module()
        for index, count in enumerate(self.counts):
            with m.If(self.enable & (self.layer == index)):
                m.d.sync += count.eq(count + 1)
        return m
