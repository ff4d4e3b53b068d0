# amaranth: UnusedElaboratable=no
# (A top built for its structure only, by the estimator, never elaborates its parts.)
"""Systolic overlay: a whole network run layer by layer on one weight-stationary array.

Where the dataflow architecture spends an engine per layer, the overlay time-shares one
``rows x cols`` :class:`~hwnn.rtl.systolic.SystolicArray` across all layers, like Google's TPU:
the array's rows run over a layer's inputs (K), its columns over its outputs (N). Input vectors
are gathered into a batch of up to ``batch`` vectors (a batch closes when it is full or when
the input stream pauses at a vector boundary); then, for each layer, for each tile of ``cols``
outputs (``nt``) and ``rows`` inputs (``kt``), the batch's activation rows stream through the
array while the next tile's weights load into the other bank, partial sums accumulate in an
accumulator memory, and after a layer's last input tile the layer's output stage writes the
next layer's activations (two memories, ping-pong). After the last layer the batch's outputs
stream out.

Activations are held in words of ``cols`` values (what an output stage writes at once, and
what the input gatherer fills), padded to :attr:`OverlayParams.word_values`, a multiple of
``rows``; an input tile is one of the word's :attr:`OverlayParams.word_tiles` slices of
``rows`` values (a word's slices wholly past its layer's inputs are skipped, and its weights
are zero past its ``cols`` values). A square array has one tile per word, as has a tall one
(``rows > cols``), which then uses ``cols`` of its rows.

Weights, biases and output-stage parameters are ROMs built from the IR; values are held as
signed integers wide enough for every layer's formats (binary +-1 as 2-bit values, so every
layer, whatever its formats, is an integer matrix product).

The schedule is static and :func:`schedule` computes its cycle counts exactly; the hardware
follows it cycle for cycle when the output is not back-pressured.
"""

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from amaranth import *
from amaranth.lib import memory, wiring

from ..ir import Dense, Network
from ..ir.packing import pack_values
from .arith import select
from .engine import LayerCounters, LayerEngine, LayerStages, OutputDrain, bias_words
from .params import check_positive_int
from .stage import stage_latency, stage_structure
from .structure import Memory, Multipliers, Structure
from .systolic import SystolicArray, SystolicParams, array_latency, max_pack
from .values import decode_codes, holding_format

__all__ = ["REQUANT_MULTIPLIERS", "OverlayParams", "SystolicOverlay", "check_overlay",
           "drain_cycles", "schedule"]


#: Where the output stages' requantization multipliers go: DSP blocks, or logic (where the
#: array takes every DSP block, as on an iCE40UP5K).
REQUANT_MULTIPLIERS = ("dsp", "logic")


@dataclass(frozen=True)
class OverlayParams:
    """A ``rows x cols`` array (rows over a layer's inputs, columns over its outputs), the
    largest batch the memories hold, where the requantization multipliers go
    (:data:`REQUANT_MULTIPLIERS`), and how many adjacent columns share a multiplier (``pack``,
    :class:`~hwnn.rtl.systolic.SystolicParams`; ``"auto"``: the most that are exact for the
    network's formats, :func:`~hwnn.rtl.systolic.max_pack`)."""
    rows:    int
    cols:    int
    batch:   int
    requant: str = "dsp"
    pack:    int | str = 1

    def __post_init__(self):
        check_positive_int("OverlayParams", "rows", self.rows, 64)
        check_positive_int("OverlayParams", "cols", self.cols, 64)
        check_positive_int("OverlayParams", "batch", self.batch, 4096)
        if self.requant not in REQUANT_MULTIPLIERS:
            raise ValueError(f"OverlayParams requant must be one of "
                             f"{', '.join(REQUANT_MULTIPLIERS)}, not {self.requant!r}")
        if isinstance(self.pack, str) and self.pack != "auto":
            raise ValueError(f"OverlayParams pack must be 1..{self.cols} or 'auto', "
                             f"not {self.pack!r}")
        if self.pack != "auto":
            check_positive_int("OverlayParams", "pack", self.pack, self.cols)

    @property
    def word_tiles(self) -> int:
        """Input tiles (slices of ``rows`` values) per activation word of ``cols`` values."""
        return math.ceil(self.cols / self.rows)

    @property
    def word_values(self) -> int:
        """Values of an activation memory word: ``cols``, padded to a multiple of ``rows``."""
        return self.word_tiles * self.rows

    def words(self, features: int) -> int:
        """Activation words of a vector of ``features`` values."""
        return math.ceil(features / self.cols)

    def input_tiles(self, features: int) -> int:
        """Input tiles of a layer of ``features`` inputs: every slice of every word, but those
        of the last word that hold none of its values."""
        words = self.words(features)
        tail = features - (words - 1) * self.cols
        return (words - 1) * self.word_tiles + math.ceil(tail / self.rows)

    def input_index(self, tile: int, row: int) -> int | None:
        """The layer input that row ``row`` of input tile ``tile`` multiplies: the tile is
        slice ``piece = tile % word_tiles`` of word ``tile // word_tiles``, the row its lane
        ``piece * rows + row``, which holds input ``word * cols + lane``; None where the lane
        is padding (``lane >= cols``)."""
        word, piece = divmod(tile, self.word_tiles)
        lane = piece * self.rows + row
        return word * self.cols + lane if lane < self.cols else None


def _value_format(network: Network):
    """Formats of the array's operands: every layer's activations and weights fit them."""
    return (holding_format(layer.input.format for layer in network.layers),
            holding_format(layer.weight_format for layer in network.layers))


#: The overlay's phases: gather a batch, run a layer, drain it, send the batch's outputs.
LOAD, RUN, DRAIN, OUTPUT = range(4)

#: Registers between issuing a memory read and the array's input (the read, a register for
#: the slow block RAM output, which becomes the block's own output register, and a register
#: after the choice of activation memory and slice).
READ_STAGES = 3


def drain_cycles(params: OverlayParams, layer: Dense) -> int:
    """Cycles ``layer`` waits after its last row, until its results are written (memory read,
    array, accumulator, the layer's output stage, write) and the next layer may read them."""
    return (READ_STAGES + array_latency(params.rows, params.cols)
            + stage_latency(layer, pipelined=True) + 2)


def _run_cycles(tiles: int, beats: int, rows: int) -> int:
    """Cycles of a layer's run phase: replay the weight loader's and the row issuer's rules
    (a tile's load waits for the rows of the tile two before it; a tile's rows wait for the
    first beat of its load; a load is ``beats`` beats, a tile ``rows`` rows), until both
    have finished."""
    ld_tile = ld_row = rw_tile = rw_m = cycle = 0
    while not (ld_tile == tiles and rw_tile == tiles):
        load = ld_tile < tiles and ld_tile <= rw_tile + 1
        issue = rw_tile < tiles and (ld_tile > rw_tile or (ld_tile == rw_tile and ld_row > 0))
        if load:
            ld_tile, ld_row = (ld_tile + 1, 0) if ld_row == beats - 1 else (ld_tile, ld_row + 1)
        if issue:
            rw_tile, rw_m = (rw_tile + 1, 0) if rw_m == rows - 1 else (rw_tile, rw_m + 1)
        cycle += 1
    return cycle + 1


def schedule(network: Network, params: OverlayParams, batch: int | None = None) -> dict:
    """Exact cycle counts of one batch of ``batch`` vectors (default: a full batch) when the
    input keeps up and the output is always ready.

    Returns ``{"layers": [{name, tiles, cycles, busy, macs, utilization}], "load", "output",
    "total", "per_inference"}``; a layer's ``cycles`` run from its first weight beat to the
    end of its drain, ``busy`` counts the cycles that issued a row, and ``utilization`` is
    ``macs / (rows * cols * cycles)``.
    """
    batch = params.batch if batch is None else batch
    layers = []
    for layer in network.layers:
        tiles = params.input_tiles(layer.in_features) * params.words(layer.out_features)
        cycles = _run_cycles(tiles, params.rows, batch) + drain_cycles(params, layer) + 1
        macs = batch * layer.in_features * layer.out_features
        layers.append({"name": layer.name, "tiles": tiles, "cycles": cycles,
                       "busy": tiles * batch, "macs": macs,
                       "utilization": macs / (params.rows * params.cols * cycles)})
    in_count = math.gcd(network.in_features, params.cols)
    out_count = math.gcd(network.out_features, params.cols)
    # A beat per cycle, the cycle that closes the batch and the registered decision.
    load = batch * (network.in_features // in_count) + 2
    # The first word takes 3 cycles through the memory read and the FIFO; then one beat
    # per cycle.
    output = 3 + batch * (network.out_features // out_count)
    total = load + sum(layer["cycles"] for layer in layers) + output
    return {"layers": layers, "load": load, "output": output, "total": total,
            "per_inference": total / batch}


def check_overlay(network: Network, params: OverlayParams):
    """Raise ValueError unless the array can serve every layer's values and weights."""
    a_format, w_format = _value_format(network)
    for what, fmt in (("activations", a_format), ("weights", w_format)):
        if fmt.bits > 16:
            raise ValueError(f"The systolic array multiplies values of up to 16 bits, but this "
                             f"network's {what} need {fmt}")


class SystolicOverlay(LayerEngine):
    """A whole network on one ``rows x cols`` systolic array, one batch at a time.

    The ports are those of every architecture's top (:class:`~hwnn.rtl.engine.LayerEngine`,
    with ``lanes = cols``).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    busy : ``Out(32).array(layers)``
        Performance counters since reset: cycles in which the layer fed a row to the array.
    cycles : ``Out(32).array(layers)``
        Performance counters since reset: cycles the layer held the array (run and drain).
    """
    Params = OverlayParams
    lanes_field = "cols"

    def __init__(self, network: Network, params: OverlayParams):
        super().__init__(network, params, counters=("busy", "cycles"))
        self.a_format, self.w_format = _value_format(network)
        # The array sums one tile (rows terms); a layer's accumulators hold every partial sum.
        pack = (max_pack(self.a_format, self.w_format, params.rows, cols=params.cols)
                if params.pack == "auto" else params.pack)
        self.array_params = SystolicParams(params.rows, params.cols, self.a_format,
                                           self.w_format, params.rows, pack)
        self.kt = [params.input_tiles(layer.in_features) for layer in network.layers]
        self.nt = [params.words(layer.out_features) for layer in network.layers]
        # Activation words per vector slot of the activation memories.
        self.stride = max(params.words(layer.in_features) for layer in network.layers)

    # Memory images ----------------------------------------------------------------------------

    def weight_words(self):
        """Weight ROM: per layer, per tile (nt-major), ``rows`` rows of ``cols`` weights; tile
        row ``r``, column ``c`` holds ``weights[nt * cols + c, j]`` for the input ``j`` of
        :meth:`OverlayParams.input_index` (0 where there is none)."""
        p, bits = self.params, self.w_format.bits
        words, bases = [], []
        for layer, kt_count, nt_count in zip(self.network.layers, self.kt, self.nt,
                                             strict=True):
            bases.append(len(words))
            padded = np.zeros((nt_count * p.cols, kt_count * p.rows), dtype=np.int64)
            for position in range(kt_count * p.rows):
                index = p.input_index(*divmod(position, p.rows))
                if index is not None and index < layer.in_features:
                    padded[:layer.out_features, position] = layer.weights[:, index]
            patterns = self.w_format.encode(padded)
            for nt in range(nt_count):
                for kt in range(kt_count):
                    tile = patterns[nt * p.cols:(nt + 1) * p.cols, kt * p.rows:(kt + 1) * p.rows]
                    words.extend(pack_values(tile[:, r], bits) for r in range(p.rows))
        return words, bases

    def bias_words(self):
        """Bias ROM: per layer, per output tile, ``cols`` accumulator-format biases."""
        return bias_words([layer.bias for layer in self.network.layers], self.nt,
                          self.params.cols, self.acc_bits)

    @property
    def memory_bits(self) -> dict:
        """Bits of memory by use (the output stages' parameters and the output FIFO aside)."""
        return self.structure().memory_bits(("weights", "biases", "activations",
                                             "accumulators", "outputs"))

    #: The counts of :meth:`structure`.
    COUNTS = ("unit", "cells", "cell_bits", "edge_bits", "compare_bits", "pipeline_bits",
              "requant_bits")

    def structure(self) -> Structure:
        """The overlay's hardware (:mod:`hwnn.rtl.structure`): the array's multipliers and
        cell registers (``cell_bits``: operands and partial sums), the accumulator edge
        (``edge_bits``), every layer's output stage, and its memories: weights, biases, the two
        activation memories, the accumulators, the outputs and the output FIFO."""
        p, batch = self.params, self.params.batch
        cells, cols = p.rows * p.cols, p.cols
        a_bits, w_bits, acc_bits = self.a_format.bits, self.w_format.bits, self.acc_bits
        structure = Structure.of(self.COUNTS)
        structure.add("unit", 1)
        structure.add("cells", cells)
        array = self.array_params                   # pack columns per multiplier
        structure.multipliers.append(Multipliers("lanes", array.multipliers, self.a_format,
                                                 array.packed_w_format))
        structure.add("cell_bits", array.multipliers * (a_bits + array.packed_w_format.bits
                                                        + array.psum_bits))
        structure.add("edge_bits", cols * acc_bits)
        for layer in self.network.layers:
            structure.merge(stage_structure(layer, cols, pipelined=True,
                                            logic_multipliers=p.requant == "logic"))
        weights, _ = self.weight_words()
        biases, _ = self.bias_words()
        structure.memories += [
            Memory("weights", len(weights), cols * w_bits, weights),
            Memory("biases", len(biases), cols * acc_bits, biases),
            *(Memory("activations", batch * self.stride, p.word_values * a_bits)
              for _ in range(2)),
            Memory("accumulators", batch, cols * acc_bits),
            Memory("outputs", batch * self.nt[-1], cols * self.network.output.format.bits)]
        return structure.merge(self._output_drain().structure())

    # Hardware ---------------------------------------------------------------------------------
    # elaborate() makes the memories and the control registers, then each part adds its logic:
    # the input gatherer (LOAD), the weight loader and row issuer (RUN), the array's feed, the
    # accumulation into the layer's stage, the stages' writes, the output reader (OUTPUT) and
    # the phase sequencer. ``s`` holds the signals the parts share.

    def elaborate(self, platform):
        m = Module()
        s = SimpleNamespace()
        s.array = m.submodules.array = SystolicArray(self.array_params)
        self._memories(m, s)
        s.phase = Signal(range(4))
        s.layer = Signal(range(len(self.network.layers)))
        s.m_count = Signal(range(self.params.batch + 1))     # vectors in the batch
        self._gather(m, s)
        self._issue(m, s)
        self._feed(m, s)
        self._accumulate(m, s)
        self._write_results(m, s)
        self._read_outputs(m, s)
        self._count(m, s)
        self._sequence(m, s)
        return m

    def _memories(self, m, s):
        """The weight and bias ROMs, the two activation memories (layer ``l`` reads memory
        ``l % 2`` and its stage writes the other), the accumulators and the outputs."""
        p, batch = self.params, self.params.batch
        cols, a_bits, acc_bits = p.cols, self.a_format.bits, self.acc_bits
        out_bits = self.network.output.format.bits
        s.weight_words, s.weight_bases = self.weight_words()
        weights = m.submodules.weights = memory.Memory(
            shape=unsigned(cols * self.w_format.bits), depth=len(s.weight_words),
            init=s.weight_words)
        s.weight_read = weights.read_port()
        s.bias_words, s.bias_bases = self.bias_words()
        biases = m.submodules.biases = memory.Memory(
            shape=unsigned(cols * acc_bits), depth=len(s.bias_words), init=s.bias_words)
        s.bias_read = biases.read_port()
        # A layer reads one activation memory while its stage writes the other, and the
        # outputs are read only once written: a read that meets a write to its address is
        # never used, so Yosys need not emulate the read's old data around a block RAM
        # (``no_rw_check``: logic that would keep the read data out of the block's own
        # output register).
        unchecked = {"no_rw_check": 1}
        acts = [memory.Memory(shape=unsigned(p.word_values * a_bits), depth=batch * self.stride,
                              init=[], attrs=unchecked)
                for _ in range(2)]
        m.submodules.acts0, m.submodules.acts1 = acts
        s.act_reads = [mem.read_port() for mem in acts]
        s.act_writes = [mem.write_port() for mem in acts]
        accumulators = m.submodules.accumulators = memory.Memory(
            shape=unsigned(cols * acc_bits), depth=batch, init=[])
        s.acc_write = accumulators.write_port()
        s.acc_read = accumulators.read_port(transparent_for=(s.acc_write,))
        outputs = m.submodules.outputs = memory.Memory(
            shape=unsigned(cols * out_bits), depth=batch * self.nt[-1], init=[],
            attrs=unchecked)
        s.out_write = outputs.write_port()
        s.out_read = outputs.read_port()

    def _gather(self, m, s):
        """LOAD: gather ``in_count`` values per beat into words of ``cols`` values, written to
        activation memory 0 (``s.load_write``, ``s.merged``); ``s.closing`` the cycle after the
        batch closes (full, or the input paused at a vector boundary): the decision is
        registered, and the input is no longer ready from that cycle on."""
        cols, batch, in_count = self.params.cols, self.params.batch, self.in_count
        a_bits, words0 = self.a_format.bits, self.params.words(self.network.in_features)
        beats_per_word = cols // in_count
        last_word_beats = (self.network.in_features - (words0 - 1) * cols) // in_count
        word = Signal(cols * a_bits)
        beat = Signal(range(beats_per_word))
        s.in_word = in_word = Signal(range(self.stride))
        s.in_m = in_m = Signal(range(batch + 1))
        decoded = decode_codes(self.i_stream.payload.data, self.network.input.format, in_count,
                               a_bits)
        word_done = (beat == Mux(in_word == words0 - 1, last_word_beats, beats_per_word) - 1)
        vector_done = word_done & (in_word == words0 - 1)
        loading = s.phase == LOAD
        s.closing = Signal()
        # Ready while LOAD has room for a vector: a register (set when LOAD begins, cleared
        # when the batch closes or fills), so that nothing but a flip-flop drives the port.
        s.accepting = Signal(init=1)
        closes = Signal()           # no transfer now; in_m is the batch (~accepting: full)
        m.d.comb += [
            self.i_stream.ready.eq(s.accepting),
            closes.eq(loading & ~s.closing & (in_m > 0) & (in_word == 0) & (beat == 0)
                      & (~s.accepting | ~self.i_stream.valid)),
        ]
        m.d.sync += s.closing.eq(closes)
        with m.If(closes):
            m.d.sync += s.accepting.eq(0)
        # The word with this beat's values in place (slot p belongs to beat p // in_count).
        s.merged = Signal(cols * a_bits)
        m.d.comb += s.merged.eq(Cat(*(
            Mux(beat == slot // in_count, decoded[slot % in_count].as_unsigned(),
                word[slot * a_bits:(slot + 1) * a_bits])
            for slot in range(beats_per_word * in_count))))
        s.load_write = Signal()
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += word.eq(s.merged)
            m.d.comb += s.load_write.eq(word_done)
            with m.If(word_done):
                m.d.sync += [beat.eq(0), in_word.eq(Mux(vector_done, 0, in_word + 1))]
                with m.If(vector_done):
                    m.d.sync += in_m.eq(in_m + 1)
                    with m.If(in_m == batch - 1):
                        m.d.sync += s.accepting.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

    def _issue(self, m, s):
        """RUN: the weight loader (``s.load``: a row of the next tile's weights) and the row
        issuer (``s.issue``: a row of activations) of the current layer. Their rules, with
        registered flags so that no wide comparison sits in the way: the loader may start tile
        i once the rows of tile i - 2 are issued (gap <= 1), and the rows of a tile wait until
        the first beat of its load has been issued (gap >= 1). An input tile ``rw_kt`` is slice
        ``rw_piece`` of word ``rw_word``."""
        p, batch, stride = self.params, self.params.batch, self.stride
        s.most_tiles = max(kt * nt for kt, nt in zip(self.kt, self.nt, strict=True))
        tiles = range(s.most_tiles + 1)
        s.ld_left = Signal(tiles)                    # tiles still to load, this one included
        s.ld_final = Signal()                        # this is the layer's last tile to load
        s.ld_busy, s.ld_row, s.ld_bank = Signal(), Signal(range(p.rows)), Signal()
        s.ld_addr = Signal(range(len(s.weight_words) + 1))
        s.rw_left, s.rw_final, s.rw_busy, s.rw_bank = Signal(tiles), Signal(), Signal(), Signal()
        s.rw_m = Signal(range(batch))
        s.rw_m_last = Signal()                       # rw_m is the batch's last vector
        s.rw_kt = Signal(range(max(self.kt)))
        s.rw_kt_last = Signal()                      # rw_kt is the layer's last input tile
        s.rw_kt_left = Signal.like(s.rw_kt)          # input tiles after rw_kt
        s.rw_word, s.rw_piece = Signal(range(stride)), Signal(range(p.word_tiles))
        s.rw_nt = Signal(range(max(self.nt)))
        s.rw_addr = Signal(range(batch * stride))    # rw_m * stride + rw_word
        s.gap = Signal(range(3))                     # tiles whose load began, minus issued
        s.kt_last = select(s.layer, [Const(kt - 1, s.rw_kt.shape()) for kt in self.kt])
        s.load, s.issue = Signal(), Signal()
        load_done, rows_done = Signal(), Signal()    # a tile's last beat / last row, now
        # Both are busy only while the phase is RUN (they start with the layer, which leaves
        # RUN when neither is).
        m.d.comb += [
            s.load.eq(s.ld_busy & ((s.ld_row != 0) | (s.gap <= 1))),
            s.issue.eq(s.rw_busy & (s.gap != 0)),
            load_done.eq(s.load & (s.ld_row == p.rows - 1)),
            rows_done.eq(s.issue & s.rw_m_last),
            s.weight_read.addr.eq(s.ld_addr),
        ]
        # gap counts tiles whose load has begun (a load begins on beat 0) and whose rows are
        # not all issued.
        m.d.sync += s.gap.eq(s.gap + (s.load & (s.ld_row == 0)) - rows_done)
        with m.If(s.load):
            m.d.sync += [s.ld_addr.eq(s.ld_addr + 1),
                         s.ld_row.eq(Mux(s.ld_row == p.rows - 1, 0, s.ld_row + 1))]
        with m.If(load_done):
            m.d.sync += [s.ld_bank.eq(~s.ld_bank), s.ld_left.eq(s.ld_left - 1),
                         s.ld_final.eq(s.ld_left == 2)]
            with m.If(s.ld_final):
                m.d.sync += s.ld_busy.eq(0)
        with m.If(s.issue):
            with m.If(rows_done):
                m.d.sync += [s.rw_m.eq(0), s.rw_m_last.eq(s.m_count == 1),
                             s.rw_bank.eq(~s.rw_bank), s.rw_left.eq(s.rw_left - 1),
                             s.rw_final.eq(s.rw_left == 2)]
                with m.If(s.rw_final):
                    m.d.sync += s.rw_busy.eq(0)
                with m.If(s.rw_kt_last):
                    m.d.sync += [s.rw_kt.eq(0), s.rw_kt_left.eq(s.kt_last),
                                 s.rw_kt_last.eq(s.kt_last == 0),
                                 s.rw_nt.eq(s.rw_nt + 1), s.rw_addr.eq(0), s.rw_word.eq(0),
                                 s.rw_piece.eq(0)]
                with m.Else():
                    # A down count, not rw_kt + 1 == kt_last: no carry chain before the flag.
                    m.d.sync += [s.rw_kt.eq(s.rw_kt + 1), s.rw_kt_left.eq(s.rw_kt_left - 1),
                                 s.rw_kt_last.eq(s.rw_kt_left == 1)]
                    with m.If(s.rw_piece == p.word_tiles - 1):
                        m.d.sync += [s.rw_piece.eq(0), s.rw_word.eq(s.rw_word + 1),
                                     s.rw_addr.eq(s.rw_word + 1)]
                    with m.Else():
                        m.d.sync += [s.rw_piece.eq(s.rw_piece + 1), s.rw_addr.eq(s.rw_word)]
            with m.Else():
                m.d.sync += [s.rw_m.eq(s.rw_m + 1), s.rw_m_last.eq(s.rw_m + 2 == s.m_count),
                             s.rw_addr.eq(s.rw_addr + stride)]

    def _start_layer(self, s, tile_count, vectors, kt_last):
        """Statements that reset both issuers for a layer of ``tile_count`` tiles and
        ``kt_last + 1`` input tiles, on a batch of ``vectors``."""
        return [s.ld_left.eq(tile_count), s.ld_final.eq(tile_count == 1), s.ld_busy.eq(1),
                s.ld_row.eq(0), s.ld_bank.eq(0),
                s.rw_left.eq(tile_count), s.rw_final.eq(tile_count == 1), s.rw_busy.eq(1),
                s.rw_bank.eq(0), s.rw_m.eq(0), s.rw_m_last.eq(vectors == 1), s.rw_kt.eq(0),
                s.rw_kt_last.eq(kt_last == 0), s.rw_kt_left.eq(kt_last), s.rw_word.eq(0),
                s.rw_piece.eq(0),
                s.rw_nt.eq(0), s.rw_addr.eq(0), s.gap.eq(0)]

    def _feed(self, m, s):
        """The memories answer the loader and the issuer one cycle later; their data is
        registered (block RAM outputs are slow: these registers become the blocks' own), then
        the row's activation memory and slice of the word are chosen and registered again,
        and fed to the array (:data:`READ_STAGES`)."""
        p, a_bits, w_bits = self.params, self.a_format.bits, self.w_format.bits
        array = s.array
        source = s.layer[0] if len(self.network.layers) > 1 else Const(0)
        for read in s.act_reads:
            m.d.comb += read.addr.eq(s.rw_addr)
        # The loader's and the issuer's sideband, delayed along: side[k] is k cycles late.
        names = ("load", "row", "bank", "issue", "bank_rows", "source", "piece")
        side = [dict(zip(names, (s.load, s.ld_row, s.ld_bank, s.issue, s.rw_bank, source,
                                 s.rw_piece), strict=True))]
        for stage in range(1, READ_STAGES + 1):
            late = {name: Signal.like(Value.cast(value), name=f"feed_{name}_{stage}")
                    for name, value in side[-1].items()}
            m.d.sync += [late[name].eq(value) for name, value in side[-1].items()]
            side.append(late)
        weights2 = Signal(p.cols * w_bits, reset_less=True)
        words2 = [Signal.like(read.data, name=f"word2_{i}", reset_less=True)
                  for i, read in enumerate(s.act_reads)]
        weights3 = Signal(p.cols * w_bits, reset_less=True)
        acts3 = Signal(p.rows * a_bits, reset_less=True)
        word2 = Mux(side[2]["source"], words2[1], words2[0])
        slice_bits = p.rows * a_bits
        m.d.sync += [weights2.eq(s.weight_read.data),
                     *(word.eq(read.data) for word, read in zip(words2, s.act_reads,
                                                                  strict=True)),
                     weights3.eq(weights2),
                     acts3.eq(select(side[2]["piece"], [
                         word2[i * slice_bits:(i + 1) * slice_bits]
                         for i in range(p.word_tiles)]))]
        fed = side[READ_STAGES]
        m.d.comb += [
            array.i_w.valid.eq(fed["load"]),
            array.i_w.payload.row.eq(fed["row"]),
            array.i_w.payload.bank.eq(fed["bank"]),
            array.i_a.valid.eq(fed["issue"]),
            array.i_a.payload.bank.eq(fed["bank_rows"]),
        ]
        for c in range(p.cols):
            m.d.comb += array.i_w.payload.w[c].eq(weights3[c * w_bits:(c + 1) * w_bits])
        for r in range(p.rows):
            m.d.comb += array.i_a.payload.a[r].eq(acts3[r * a_bits:(r + 1) * a_bits])

    def _accumulate(self, m, s):
        """Each row's partial sums plus the accumulator (or, on a tile's first input tile, the
        bias): written back, or after the layer's last input tile handed to the layer's output
        stage (``s.stages``). The row's sideband is delayed to meet its sums one cycle early
        (memory reads)."""
        cols, acc_bits = self.params.cols, self.acc_bits
        info = [s.issue, s.rw_m, s.rw_nt, s.rw_kt == 0, s.rw_kt_last]
        names = ("valid", "m", "nt", "first", "last")
        for stage in range(s.array.latency + READ_STAGES - 1):
            delayed = [Signal.like(Value.cast(value), name=f"side_{name}_{stage}")
                       for name, value in zip(names, info, strict=True)]
            m.d.sync += [new.eq(old) for new, old in zip(delayed, info, strict=True)]
            info = delayed
        bias_base = select(s.layer, [Const(base, range(len(s.bias_words) + 1))
                                     for base in s.bias_bases])
        m.d.comb += [s.acc_read.addr.eq(info[1]), s.bias_read.addr.eq(bias_base + info[2])]
        valid_p, m_p, nt_p, first_p, last_p = [Signal.like(Value.cast(value), name=f"{name}_p")
                                               for name, value in zip(names, info, strict=True)]
        m.d.sync += [new.eq(old) for new, old in
                     zip((valid_p, m_p, nt_p, first_p, last_p), info, strict=True)]
        sums = [Signal(signed(acc_bits), name=f"sum_{c}") for c in range(cols)]
        for c in range(cols):
            start = Mux(first_p, s.bias_read.data[c * acc_bits:(c + 1) * acc_bits].as_signed(),
                        s.acc_read.data[c * acc_bits:(c + 1) * acc_bits].as_signed())
            m.d.comb += sums[c].eq(start + s.array.o_psum.payload[c])
        m.d.comb += [
            s.acc_write.addr.eq(m_p),
            s.acc_write.data.eq(Cat(*sums)),
            s.acc_write.en.eq(valid_p & ~last_p),
        ]
        s.m_bits = len(s.rw_m)
        stages = s.stages = m.submodules.stages = LayerStages(
            self.network, cols, acc_bits=acc_bits, a_bits=self.a_format.bits,
            tag_bits=s.m_bits + len(s.rw_nt), groups=max(self.nt), pipelined=True,
            logic_multipliers=self.params.requant == "logic")
        m.d.comb += [
            stages.layer.eq(s.layer),
            stages.i_acc.valid.eq(valid_p & last_p),
            stages.i_acc.payload.group.eq(nt_p),
            stages.i_acc.payload.tag.eq(Cat(m_p, nt_p)),
        ]
        for c in range(cols):
            m.d.comb += stages.i_acc.payload.acc[c].eq(sums[c])

    def _write_results(self, m, s):
        """The stages' results (tagged with their vector and output tile) into the other
        activation memory, or the last layer's into the output memory; the gatherer's words
        into activation memory 0."""
        act, out = s.stages.o_act, s.stages.o_out
        with m.If(act.valid):
            odd = act.payload.source & 1                 # layer l writes memory (l + 1) % 2
            for index, port in enumerate(s.act_writes):
                with m.If(odd != index):
                    m.d.comb += [
                        port.addr.eq(act.payload.tag[:s.m_bits] * self.stride
                                     + act.payload.tag[s.m_bits:]),
                        port.data.eq(act.payload.data),
                        port.en.eq(1),
                    ]
        with m.If(out.valid):
            m.d.comb += [
                s.out_write.addr.eq(out.payload.tag[:s.m_bits] * self.nt[-1]
                                    + out.payload.tag[s.m_bits:]),
                s.out_write.data.eq(out.payload.data),
                s.out_write.en.eq(1),
            ]
        with m.If(s.load_write):
            m.d.comb += [
                s.act_writes[0].addr.eq(s.in_m * self.stride + s.in_word),
                s.act_writes[0].data.eq(s.merged),
                s.act_writes[0].en.eq(1),
            ]

    def _output_drain(self):
        """The output path: a buffered FIFO of four words of ``cols`` outputs."""
        out_tiles, cols = self.nt[-1], self.params.cols
        return OutputDrain(self.network.output.format.bits, cols, self.out_count,
                           self.network.out_features - (out_tiles - 1) * cols,
                           depth=4, buffered=True)

    def _read_outputs(self, m, s):
        """OUTPUT: a reader walks the batch's output words into the drain's FIFO (one per
        cycle, while it has room), which offers each word in beats of ``out_count`` values;
        ``s.batch_sent`` when the batch's last word has left it."""
        batch = self.params.batch
        out_tiles = self.nt[-1]
        drain = m.submodules.drain = self._output_drain()
        depth = drain.depth
        s.rd_m, s.rd_nt, s.rd_done = Signal(range(batch)), Signal(range(out_tiles)), Signal()
        inflight, reading = Signal(), Signal()
        m.d.comb += [
            reading.eq((s.phase == OUTPUT) & ~s.rd_done & (drain.level + inflight < depth)),
            s.out_read.addr.eq(s.rd_m * out_tiles + s.rd_nt),
        ]
        rd_last_nt, rd_last_word = Signal(), Signal()
        m.d.sync += [inflight.eq(reading), rd_last_nt.eq(s.rd_nt == out_tiles - 1),
                     rd_last_word.eq((s.rd_nt == out_tiles - 1) & (s.rd_m == s.m_count - 1))]
        with m.If(reading):
            with m.If(s.rd_nt == out_tiles - 1):
                m.d.sync += s.rd_nt.eq(0)
                with m.If(s.rd_m == s.m_count - 1):
                    m.d.sync += s.rd_done.eq(1)
                with m.Else():
                    m.d.sync += s.rd_m.eq(s.rd_m + 1)
            with m.Else():
                m.d.sync += s.rd_nt.eq(s.rd_nt + 1)
        m.d.comb += [
            drain.i_word.valid.eq(inflight),
            drain.i_word.payload.data.eq(s.out_read.data),
            drain.i_word.payload.final.eq(rd_last_nt),
            drain.i_word.payload.end.eq(rd_last_word),
        ]
        wiring.connect(m, drain.o_stream, wiring.flipped(self.o_stream))
        s.batch_sent = drain.ended

    def _count(self, m, s):
        """The performance counters: cycles the layer holds the array, and those in which it
        issues a row."""
        holding = (s.phase == RUN) | (s.phase == DRAIN)
        for name, enable in (("cycles", holding), ("busy", holding & s.issue)):
            counters = m.submodules[f"{name}_counters"] = LayerCounters(len(self.network.layers))
            m.d.comb += [counters.layer.eq(s.layer), counters.enable.eq(enable)]
            for port, count in zip(getattr(self, name), counters.counts, strict=True):
                m.d.comb += port.eq(count)

    def _sequence(self, m, s):
        """The phases: LOAD until the batch closes; for each layer RUN until both issuers are
        done (the last tile's load may still run when its rows, fewer than its height, are all
        issued), then DRAIN for the layer's :func:`drain_cycles`; OUTPUT until the batch is
        sent."""
        layers = self.network.layers
        tile_counts = [kt * nt for kt, nt in zip(self.kt, self.nt, strict=True)]
        drains = [drain_cycles(self.params, layer) for layer in layers]
        drain = Signal(range(max(drains) + 1))
        drain_end = Signal()                         # the drain's last cycle (drain == 0)
        next_layer = s.layer + 1
        with m.Switch(s.phase):
            with m.Case(LOAD):
                with m.If(s.closing):
                    m.d.sync += [s.phase.eq(RUN), s.m_count.eq(s.in_m), s.layer.eq(0),
                                 s.ld_addr.eq(s.weight_bases[0])]
                    m.d.sync += self._start_layer(s, tile_counts[0], s.in_m,
                                                  Const(self.kt[0] - 1, s.rw_kt.shape()))
            with m.Case(RUN):
                with m.If(~s.ld_busy & ~s.rw_busy):
                    m.d.sync += [s.phase.eq(DRAIN), drain_end.eq(0), drain.eq(select(s.layer, [
                        Const(cycles, drain.shape()) for cycles in drains]))]
            with m.Case(DRAIN):
                m.d.sync += [drain.eq(drain - 1), drain_end.eq(drain == 1)]
                with m.If(drain_end):
                    with m.If(s.layer == len(layers) - 1):
                        m.d.sync += [s.phase.eq(OUTPUT), s.rd_m.eq(0), s.rd_nt.eq(0),
                                     s.rd_done.eq(0)]
                    with m.Else():
                        m.d.sync += [s.phase.eq(RUN), s.layer.eq(next_layer),
                                     s.ld_addr.eq(select(next_layer, [
                                         Const(base, range(len(s.weight_words) + 1))
                                         for base in s.weight_bases]))]
                        m.d.sync += self._start_layer(
                            s, select(next_layer, [Const(t, range(s.most_tiles + 1))
                                                   for t in tile_counts]),
                            s.m_count, select(next_layer, [Const(kt - 1, s.rw_kt.shape())
                                                           for kt in self.kt]))
            with m.Case(OUTPUT):
                with m.If(s.batch_sent):
                    m.d.sync += [s.phase.eq(LOAD), s.in_m.eq(0), s.accepting.eq(1)]
