# amaranth: UnusedElaboratable=no
# (The accelerator makes its PEs up front because its memory images and sizes come from
# them; an accelerator built only for those never elaborates them.)
"""Sparse PE array (EIE): a whole network run layer by layer on compressed weights, skipping
zero activations and zero weights.

``pes`` processing elements share the work of each layer: row ``i`` of a layer belongs to PE
``i mod pes``, which holds that slice of the weights in the compressed sparse column format of
:mod:`hwnn.quant.csc` (a stored field and a relative row index per entry, padding entries for
long gaps, column pointers). For each layer:

1. a scanner walks the layer's input vector (the input stream for the first layer, the
   activation memory for the others) and broadcasts every nonzero activation with its column
   index, one per cycle, to every PE's activation queue (``queue_depth`` entries; the
   broadcast waits while any queue is full);
2. each PE pops an activation, reads the column's entry range from its pointer memory (columns
   without entries for this PE cost no cycle of the PE), and then processes one entry per
   cycle: fetch, decode the row, look the weight up in the layer's codebook (or take the stored
   weight), multiply, and accumulate into that row (a transparent accumulator memory forwards
   back-to-back updates of the same row);
3. when every PE is idle, the accumulators are read out one group of ``pes`` rows (one row per
   PE) per cycle through the layer's :class:`~hwnn.rtl.stage.OutputStage` into the activation
   memory, or for the last layer into the output FIFO; the same read-out loads the next
   layer's biases into the accumulators.

The accumulators have no initial contents: at power-on and after every reset, before it
accepts an input, the array loads the first layer's biases into them (one group of rows per
cycle), so a reset at any cycle, even in the middle of a vector, leaves it as at power-on.

Vectors are processed one at a time (EIE's batch of one). Layer ``l`` takes about
``max(nonzero input activations, max over PEs of the entries in those columns)`` cycles plus
:func:`layer_overhead`; :mod:`hwnn.planning.sparse_cycles` models them for given activations.
"""

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Network
from ..ir.formats import Format
from ..quant.csc import CscMatrix, encode
from .arith import select
from .engine import LayerCounters, LayerEngine, LayerStages, OutputDrain, bias_words
from .params import check_positive_int
from .stage import stage_latency, stage_structure
from .structure import Memory, Multipliers, Structure
from .values import decode_codes, holding_format

__all__ = ["SparseAccelerator", "SparseLayer", "SparsePE", "SparseParams", "layer_overhead",
           "plan_layers"]

#: Columns with entries waiting for a PE's fetcher.
COLUMN_FIFO_DEPTH = 2

#: The accelerator's phases: load the first layer's biases (after a reset), scan a layer's
#: inputs, read its accumulators out, let its output stage settle.
LOAD, SCAN, READOUT, SETTLE = range(4)


@dataclass(frozen=True)
class SparseParams:
    """``pes`` processing elements with activation queues of ``queue_depth`` entries, and
    relative row indices of ``index_bits`` bits in the compressed weights (the options of the
    sparse architecture, :mod:`hwnn.arch.sparse`)."""
    pes:         int = field(default=8, metadata={"help": "processing elements"})
    queue_depth: int = field(default=8, metadata={"help": "activation queue entries per PE"})
    index_bits:  int = field(default=4, metadata={
        "help": "bits of the relative row index per stored weight"})

    def __post_init__(self):
        check_positive_int("SparseParams", "pes", self.pes, 64)
        check_positive_int("SparseParams", "queue_depth", self.queue_depth, 64)
        check_positive_int("SparseParams", "index_bits", self.index_bits, 8)


@dataclass(frozen=True, eq=False)
class SparseLayer:
    """A layer's compressed weights for the PE array.

    ``csc`` holds the stored fields: with a codebook, the codebook index (0 is zero, so a
    padding entry is field 0); without one, the weight itself, stored as its bit pattern in the
    layer's weight format. ``table`` is the codebook lookup (``table[field]`` is the weight) or
    None.
    """
    layer:      Dense
    csc:        CscMatrix
    field_bits: int
    table:      tuple | None

    def field_patterns(self, pe) -> list:
        """The stored field patterns of PE ``pe``'s entries, in order."""
        values = self.csc.values[pe]
        if self.table is not None:
            return [int(v) for v in values]
        # Padding entries (value 0) only occur in formats that hold zero, whose pattern is 0.
        return [int(p) for p in self.layer.weight_format.encode(values)] if len(values) else []

    def active_entries(self, columns) -> np.ndarray:
        """Entries per PE in the given columns (a boolean mask over the layer's inputs)."""
        columns = np.asarray(columns, dtype=bool)
        return np.array([int(np.sum(np.diff(pointers)[columns]))
                         for pointers in self.csc.pointers])


def plan_layers(network: Network, params: SparseParams) -> list[SparseLayer]:
    """The compressed form of every layer of ``network`` for ``params``."""
    plans = []
    for layer in network.layers:
        if layer.codebook is not None:
            table = (0, *(int(v) for v in layer.codebook))
            fields = np.where(layer.weights != 0,
                              np.searchsorted(layer.codebook, layer.weights) + 1, 0)
            field_bits = max(len(layer.codebook).bit_length(), 1)
        else:
            table, fields, field_bits = None, layer.weights, layer.weight_format.width
        csc = encode(fields, pes=params.pes, index_bits=params.index_bits)
        plans.append(SparseLayer(layer, csc, field_bits, table))
    return plans


def _groups(features, pes):
    return -(-features // pes)


def _readout_lengths(network: Network, pes):
    """Read-out cycles of each layer: its groups of rows, and enough to load the next layer's
    biases (the last layer loads the first layer's, for the next vector)."""
    groups = [_groups(layer.out_features, pes) for layer in network.layers]
    return [max(groups[i], groups[(i + 1) % len(groups)]) for i in range(len(groups))]


#: Cycles of a layer besides its scan, its entries, its read-out and its output stage's
#: latency: the way of the last column through the queue, the pointer read, the column FIFO
#: and the fetcher, the entry pipeline, the end-of-layer check, the read-out pipeline and the
#: step to the next layer (measured in Amaranth's simulator).
_FIXED_OVERHEAD = 15


def layer_overhead(network: Network, params: SparseParams) -> list[int]:
    """Cycles each layer spends beyond its scan: the PE pipeline's drain, the read-out and the
    output stage."""
    return [length + _FIXED_OVERHEAD + stage_latency(layer)
            for length, layer in zip(_readout_lengths(network, params.pes), network.layers,
                                     strict=True)]


class SparsePE(wiring.Component):
    """One processing element: PE ``pe`` of ``params.pes``, for every layer of ``plans``.

    Activations ``(column, value)`` enter the queue on ``i_act``; the PE accumulates
    ``weight * value`` into each of its rows with an entry in that column (of the current
    ``layer``). ``idle`` is high when the queue is empty and no entry is in flight. With
    ``readout`` high the accumulator memory is read at ``r_addr``, the value appearing on
    ``acc`` one cycle later; ``w_en`` writes ``w_data`` to row ``w_addr`` (loads biases).
    The accumulator memory has no initial contents: the accelerator loads it.

    Members
    -------
    i_act : ``In(stream.Signature({"column", "value": signed(a_bits)}))``
    layer : ``In(range(layers))``
    idle : ``Out(1)``
    readout, r_addr, w_addr, w_data, w_en : ``In``
    acc : ``Out(signed(acc_bits))``
    """

    def __init__(self, plans, pe, params: SparseParams, *, a_bits, w_bits, acc_bits):
        self.plans, self.pe, self.params = plans, pe, params
        self.a_bits, self.w_bits, self.acc_bits = a_bits, w_bits, acc_bits
        self.rows = max(_groups(plan.layer.out_features, params.pes) for plan in plans)
        self.field_bits = max(plan.field_bits for plan in plans)
        self.columns = max(plan.layer.in_features for plan in plans)
        self.entries = sum(len(plan.csc.values[pe]) for plan in plans)
        super().__init__({
            "i_act": In(stream.Signature(data.StructLayout({
                "column": range(self.columns), "value": signed(a_bits)}))),
            "layer":   In(range(len(plans))),
            "idle":    Out(1),
            "readout": In(1),
            "r_addr":  In(range(self.rows)),
            "acc":     Out(signed(acc_bits)),
            "w_addr":  In(range(self.rows)),
            "w_data":  In(signed(acc_bits)),
            "w_en":    In(1),
        })

    # Memory images ----------------------------------------------------------------------------

    def entry_words(self) -> tuple[list, list]:
        """Entry memory: per layer, the PE's entries (``field | gap << field_bits``); and each
        layer's first entry."""
        words, bases = [], []
        for plan in self.plans:
            bases.append(len(words))
            gaps = plan.csc.gaps[self.pe]
            words.extend(field | (int(gap) << self.field_bits)
                         for field, gap in zip(plan.field_patterns(self.pe), gaps, strict=True))
        return words, bases

    def pointer_words(self) -> tuple[list, list]:
        """Pointer memory: per layer, ``columns + 1`` entry addresses; and each layer's first
        pointer."""
        _, entry_bases = self.entry_words()
        words, bases = [], []
        for plan, entry_base in zip(self.plans, entry_bases, strict=True):
            bases.append(len(words))
            words.extend(entry_base + int(p) for p in plan.csc.pointers[self.pe])
        return words, bases

    def codebook_words(self) -> tuple[list, list]:
        """Codebook memory: the tables of the layers that have one (weight patterns of
        ``w_bits``); and each layer's first entry (0 for layers without a table)."""
        fmt = Format.int(self.w_bits)
        words, bases = [], []
        for plan in self.plans:
            bases.append(len(words))
            if plan.table is not None:
                words.extend(int(p) for p in fmt.encode(np.array(plan.table)))
        return words, bases

    @property
    def memory_bits(self) -> dict:
        """Bits of this PE's memories."""
        return self.structure().memory_bits(("entries", "pointers", "codebook",
                                             "accumulators", "queue"))

    def structure(self) -> Structure:
        """The PE's memories (entries, pointers, codebook, accumulators, activation queue) and
        its registers (``pe_bits``: the entry pipeline's fields, operands, accumulators,
        pointers and column)."""
        entries, _ = self.entry_words()
        pointers, _ = self.pointer_words()
        table, _ = self.codebook_words()
        column_bits = max(self.columns - 1, 1).bit_length()
        index_bits = self.params.index_bits
        return Structure(
            {"pe_bits": (self.field_bits + index_bits + self.a_bits + self.w_bits
                         + 2 * self.acc_bits + 2 * self._pointer_bits + column_bits)},
            memories=[Memory("entries", len(entries), self.field_bits + index_bits, entries),
                      Memory("pointers", len(pointers), self._pointer_bits, pointers),
                      Memory("codebook", len(table), self.w_bits, table),
                      Memory("accumulators", self.rows, self.acc_bits),
                      Memory("queue", self.params.queue_depth, column_bits + self.a_bits),
                      Memory("fifo", COLUMN_FIFO_DEPTH, 2 * self._pointer_bits + self.a_bits)])

    @property
    def _pointer_bits(self):
        return max(self.entries.bit_length(), 1)

    # Hardware ---------------------------------------------------------------------------------
    # elaborate() chains the fetch (queue, pointers, column FIFO, fetcher: one entry address
    # per cycle) and the entry pipeline (E1 row, E2 weight, E3 accumulate); ``s`` holds the
    # signals they share.

    def elaborate(self, platform):
        m = Module()
        s = SimpleNamespace()
        self._fetch(m, s)
        self._entries(m, s)
        m.d.comb += self.idle.eq(~s.queue.r_rdy & ~s.pending & ~s.columns.r_rdy & ~s.busy
                                 & ~s.e1_valid & ~s.e2_valid & ~s.e3_valid)
        return m

    def _fetch(self, m, s):
        """The activation queue; the popped column's entry range from the pointer memory;
        columns with entries wait in a two-entry FIFO for the fetcher, which walks one
        column's entries (``s.ptr``, with ``s.busy``; ``s.first`` on a column's first entry,
        ``s.value`` its activation), one per cycle, and goes on to the next column without a
        bubble. A pop is allowed when the column it fetches will find room there."""
        a_bits, ptr_bits = self.a_bits, self._pointer_bits
        queue = s.queue = m.submodules.queue = SyncFIFO(
            width=len(self.i_act.payload.as_value()), depth=self.params.queue_depth)
        m.d.comb += [
            queue.w_data.eq(self.i_act.payload),
            queue.w_en.eq(self.i_act.valid),
            self.i_act.ready.eq(queue.w_rdy),
        ]
        head = data.View(self.i_act.payload.shape(), queue.r_data)

        # Pointers: the popped column's entry range arrives one cycle after the pop.
        pointer_words, pointer_bases = self.pointer_words()
        pointers = m.submodules.pointers = memory.Memory(
            shape=unsigned(ptr_bits), depth=len(pointer_words), init=pointer_words)
        start_port, end_port = pointers.read_port(), pointers.read_port()
        pointer_base = select(self.layer, [Const(b, range(len(pointer_words)))
                                           for b in pointer_bases])
        m.d.comb += [start_port.addr.eq(pointer_base + head.column),
                     end_port.addr.eq(pointer_base + head.column + 1)]
        s.pending = pending = Signal()
        pending_value = Signal(signed(a_bits))
        start, end = start_port.data, end_port.data
        arrived = Signal()
        m.d.comb += arrived.eq(pending & (start != end))     # empty columns are dropped here

        columns = s.columns = m.submodules.columns = SyncFIFO(width=2 * ptr_bits + a_bits,
                                                              depth=COLUMN_FIFO_DEPTH)
        busy, first = s.busy, s.first = Signal(), Signal()
        ptr = s.ptr = Signal(ptr_bits)
        last_ptr = Signal(ptr_bits)
        value = s.value = Signal(signed(a_bits))
        free, take, pop = Signal(), Signal(), Signal()
        m.d.comb += [
            columns.w_data.eq(Cat(start, end, pending_value)),
            columns.w_en.eq(arrived),
            free.eq(~busy | (ptr + 1 == last_ptr)),
            take.eq(free & columns.r_rdy),
            columns.r_en.eq(take),
            pop.eq(queue.r_rdy & (columns.level + arrived - take <= 1)),
            queue.r_en.eq(pop),
        ]
        m.d.sync += [pending.eq(pop), pending_value.eq(head.value)]
        with m.If(take):
            m.d.sync += [busy.eq(1), first.eq(1),
                         ptr.eq(columns.r_data[:ptr_bits]),
                         last_ptr.eq(columns.r_data[ptr_bits:2 * ptr_bits]),
                         value.eq(columns.r_data[2 * ptr_bits:])]
        with m.Elif(free):
            m.d.sync += busy.eq(0)
        with m.Else():
            m.d.sync += [ptr.eq(ptr + 1), first.eq(0)]

    def _entries(self, m, s):
        """The entry pipeline: E1 the entry arrives and its row follows from the previous one;
        E2 the weight (looked up in the codebook, or decoded from the stored pattern); E3 the
        product is accumulated into the row (the read-out and the bias loads share the
        accumulator memory's ports)."""
        a_bits, w_bits, acc_bits = self.a_bits, self.w_bits, self.acc_bits
        field_bits, rows = self.field_bits, self.rows
        entry_words, _ = self.entry_words()
        entries = m.submodules.entries = memory.Memory(
            shape=unsigned(field_bits + self.params.index_bits), depth=max(len(entry_words), 1),
            init=entry_words)
        entry_port = entries.read_port()
        m.d.comb += entry_port.addr.eq(s.ptr)
        s.e1_valid, e1_first = Signal(), Signal()
        e1_value = Signal(signed(a_bits))
        m.d.sync += [s.e1_valid.eq(s.busy), e1_first.eq(s.first), e1_value.eq(s.value)]
        field = entry_port.data[:field_bits]
        gap = entry_port.data[field_bits:]
        row = Signal(range(rows))
        row_now = Signal(range(rows))
        m.d.comb += row_now.eq(Mux(e1_first, gap, row + gap + 1))
        with m.If(s.e1_valid):
            m.d.sync += row.eq(row_now)

        table_words, table_bases = self.codebook_words()
        if table_words:
            table = m.submodules.codebook = memory.Memory(
                shape=unsigned(w_bits), depth=len(table_words), init=table_words)
            table_port = table.read_port()
            m.d.comb += table_port.addr.eq(
                select(self.layer, [Const(b, range(len(table_words) + 1))
                                    for b in table_bases]) + field)
        s.e2_valid = Signal()
        e2_row = Signal(range(rows))
        e2_field = Signal(field_bits)
        e2_value = Signal(signed(a_bits))
        m.d.sync += [s.e2_valid.eq(s.e1_valid), e2_row.eq(row_now), e2_field.eq(field),
                     e2_value.eq(e1_value)]
        weight = select(self.layer, [
            table_port.data.as_signed() if plan.table is not None
            else decode_codes(e2_field, plan.layer.weight_format, 1, w_bits)[0]
            for plan in self.plans])

        accumulators = m.submodules.accumulators = memory.Memory(
            shape=unsigned(acc_bits), depth=rows, init=[])
        acc_write = accumulators.write_port()
        acc_read = accumulators.read_port(transparent_for=(acc_write,))
        m.d.comb += acc_read.addr.eq(Mux(self.readout, self.r_addr, e2_row))
        s.e3_valid = Signal()
        e3_row = Signal(range(rows))
        product = Signal(signed(a_bits + w_bits))
        m.d.sync += [s.e3_valid.eq(s.e2_valid), e3_row.eq(e2_row),
                     product.eq(weight * e2_value)]
        current = acc_read.data.as_signed()
        m.d.comb += [
            self.acc.eq(current),
            acc_write.addr.eq(Mux(s.e3_valid, e3_row, self.w_addr)),
            acc_write.data.eq(Mux(s.e3_valid, current + product, self.w_data)),
            acc_write.en.eq(s.e3_valid | self.w_en),
        ]


class SparseAccelerator(LayerEngine):
    """A whole network on a sparse PE array, one vector at a time.

    The ports are those of every architecture's top (:class:`~hwnn.rtl.engine.LayerEngine`,
    with ``lanes = pes``).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    cycles : ``Out(32).array(layers)``
        Performance counters since reset: cycles spent in each layer.
    """
    Params = SparseParams
    lanes_field = "pes"

    def __init__(self, network: Network, params: SparseParams):
        super().__init__(network, params, counters=("cycles",))
        pes = params.pes
        self.plans = plan_layers(network, params)
        # Values are signed inside the array: an unsigned holding format gains a sign bit.
        self.a_format = _signed(holding_format(layer.input.format for layer in network.layers))
        self.w_format = _signed(holding_format(layer.weight_format for layer in network.layers))
        self.groups = [_groups(layer.out_features, pes) for layer in network.layers]
        self.pes = [SparsePE(self.plans, pe, params, a_bits=self.a_format.bits,
                             w_bits=self.w_format.bits, acc_bits=self.acc_bits)
                    for pe in range(pes)]

    def bias_words(self) -> tuple[list, list]:
        """Bias memory, read during a layer's read-out to load the next layer's biases (and
        after a reset, to load the first layer's): for each layer (in order), one word of
        ``pes`` biases per read-out cycle of the layer before it, zeros past its rows."""
        lengths = _readout_lengths(self.network, self.params.pes)
        return bias_words([layer.bias for layer in self.network.layers],
                          lengths[-1:] + lengths[:-1], self.params.pes, self.acc_bits)

    @property
    def memory_bits(self) -> dict:
        """Bits of memory by purpose, summed over the PEs where each has its own."""
        return self.structure().memory_bits(("entries", "pointers", "codebook",
                                             "accumulators", "queue", "biases",
                                             "activations", "outputs"))

    @property
    def _activation_words(self):
        """Words of the activation memory: the largest hidden layer's groups."""
        return max(self.groups[:-1], default=0)

    #: The counts of :meth:`structure`.
    COUNTS = ("unit", "pes", "pe_bits", "readout_bits", "compare_bits", "pipeline_bits",
              "requant_bits", "counter_bits")

    def structure(self) -> Structure:
        """The array's hardware (:mod:`hwnn.rtl.structure`): the PEs' multipliers, the PEs
        (:meth:`SparsePE.structure`), every layer's output stage, the read-out registers
        (``readout_bits``), the performance counters (``counter_bits``), the bias and
        activation memories and the output FIFO, which holds a whole output vector (use
        ``"outputs"``)."""
        pes, acc_bits, a_bits = self.params.pes, self.acc_bits, self.a_format.bits
        structure = Structure.of(self.COUNTS)
        structure.add("unit", 1)
        structure.add("pes", pes)
        structure.multipliers.append(Multipliers("lanes", pes, self.a_format, self.w_format))
        for layer in self.network.layers:
            structure.merge(stage_structure(layer, pes))
        for pe in self.pes:
            structure.merge(pe.structure())
        structure.add("readout_bits", pes * (acc_bits + a_bits))
        structure.merge(LayerCounters(len(self.network.layers)).structure())
        biases, _ = self.bias_words()
        structure.memories += [Memory("biases", len(biases), pes * acc_bits, biases),
                               Memory("activations", self._activation_words, pes * a_bits)]
        drain = self._output_drain().structure()
        structure.memories += [replace(memory, use="outputs") for memory in drain.memories]
        return structure

    # Hardware ---------------------------------------------------------------------------------
    # elaborate() makes the PEs and the control registers, then each part adds its logic: the
    # scan's source (the input stream or the activation memory), the scanner (SCAN), the
    # read-out through the layers' stages (READOUT, and LOAD after a reset), the output drain,
    # the counters and the phase sequencer. ``s`` holds the signals the parts share.

    def elaborate(self, platform):
        m = Module()
        s = SimpleNamespace()
        for index, pe in enumerate(self.pes):
            m.submodules[f"pe{index}"] = pe
        s.layer = Signal(range(len(self.network.layers)))
        s.next_layer = Mux(s.layer == len(self.network.layers) - 1, 0, s.layer + 1)
        # After a reset the first layer's biases are loaded (LOAD) before the first scan.
        s.phase = Signal(range(4), init=LOAD)
        for pe in self.pes:
            m.d.comb += [pe.layer.eq(s.layer), pe.readout.eq(s.phase == READOUT)]
        self._source(m, s)
        self._scan(m, s)
        self._read_out(m, s)
        self._drain(m, s)
        counters = m.submodules.counters = LayerCounters(len(self.network.layers))
        m.d.comb += [counters.layer.eq(s.layer), counters.enable.eq(s.phase != LOAD)]
        for port, count in zip(self.cycles, counters.counts, strict=True):
            m.d.comb += port.eq(count)
        self._sequence(m, s)
        return m

    def _source(self, m, s):
        """The words the scanner takes: ``in_count`` values of the input stream (first layer)
        or ``pes`` values of the activation memory (the others), as ``s.src_values`` (one per
        slot) and ``s.src_mask`` (nonzero, and within the layer's inputs); ``s.src_index``
        counts the words, ``s.src_base`` is the column of the word's first value."""
        network, pes, in_count = self.network, self.params.pes, self.in_count
        layers, a_bits = network.layers, self.a_format.bits
        count = len(layers)
        if count > 1:
            activations = m.submodules.activations = memory.Memory(
                shape=unsigned(pes * a_bits), depth=self._activation_words, init=[])
            act_read = activations.read_port(domain="comb")
            s.act_write = activations.write_port()
        lasts = ([network.in_features // in_count - 1]
                 + [_groups(layer.in_features, pes) - 1 for layer in layers[1:]])
        s.src_index = Signal(range(max(lasts) + 1))
        s.src_done = Signal()
        s.src_last = select(s.layer, [Const(last, s.src_index.shape()) for last in lasts])
        s.column_bits = max(max(layer.in_features for layer in layers) - 1, 1).bit_length()
        s.first_layer = first_layer = s.layer == 0
        s.src_base = Signal(s.column_bits)
        m.d.comb += s.src_base.eq(Mux(first_layer, s.src_index * in_count, s.src_index * pes))
        s.src_valid = Mux(first_layer, self.i_stream.valid, 1)
        in_values = decode_codes(self.i_stream.payload.data, network.input.format, in_count,
                                 a_bits)
        features = select(s.layer, [Const(layer.in_features, s.column_bits + 1)
                                    for layer in layers])
        s.slots = max(in_count, pes)
        s.src_values, s.src_mask = [], []
        for slot in range(s.slots):
            stored = (act_read.data[slot * a_bits:(slot + 1) * a_bits].as_signed()
                      if count > 1 and slot < pes else Const(0, signed(a_bits)))
            streamed = in_values[slot] if slot < in_count else Const(0, signed(a_bits))
            chosen = Mux(first_layer, streamed, stored)
            s.src_values.append(chosen)
            in_range = (Const(slot < in_count) if count == 1
                        else Mux(first_layer, slot < in_count, s.src_base + slot < features))
            s.src_mask.append(in_range & (chosen != 0))
        if count > 1:
            m.d.comb += act_read.addr.eq(s.src_index)

    def _scan(self, m, s):
        """SCAN: the scanner takes a word from the source, holds it, and broadcasts its
        nonzero values to every PE, lowest slot first, one per cycle while every PE's queue has
        room; it takes the next word with the last value (``s.mask``: values left)."""
        slots, a_bits = s.slots, self.a_format.bits
        held = Signal(data.ArrayLayout(signed(a_bits), slots))
        s.mask = mask = Signal(slots)
        base = Signal(s.column_bits)
        lowest = Signal(slots)
        m.d.comb += lowest.eq(mask & (~mask + 1))
        slot_index = Cat(*(Cat(*(lowest[i] for i in range(slots) if i >> b & 1)).any()
                           for b in range(max(slots - 1, 1).bit_length())))
        chosen_value = Signal(signed(a_bits))
        m.d.comb += chosen_value.eq(_or_reduce(Mux(lowest[i], held[i].as_unsigned(), 0)
                                               for i in range(slots)))
        all_ready = Cat(*(pe.i_act.ready for pe in self.pes)).all()
        emit, rest = Signal(), Signal(slots)
        m.d.comb += [
            emit.eq((mask != 0) & all_ready),
            rest.eq(Mux(emit, mask & (mask - 1), mask)),
        ]
        for pe in self.pes:
            m.d.comb += [pe.i_act.valid.eq(emit),
                         pe.i_act.payload.column.eq(base + slot_index),
                         pe.i_act.payload.value.eq(chosen_value)]
        accept = Signal()
        m.d.comb += [
            accept.eq((s.phase == SCAN) & ~s.src_done & s.src_valid & (rest == 0)),
            self.i_stream.ready.eq(accept & s.first_layer),
        ]
        m.d.sync += mask.eq(rest)
        with m.If(accept):
            m.d.sync += [mask.eq(Cat(*s.src_mask)), base.eq(s.src_base),
                         s.src_index.eq(s.src_index + 1)]
            for i in range(slots):
                m.d.sync += held[i].eq(s.src_values[i])
            with m.If(s.src_index == s.src_last):
                m.d.sync += s.src_done.eq(1)

    def _read_out(self, m, s):
        """READOUT: the accumulators are read one group of rows (one per PE) per cycle
        (``s.r_index``) through the layer's stage, whose hidden-layer results go to the
        activation memory; the same read-out (and LOAD, after a reset) writes the next layer's
        biases into the accumulators."""
        pes, acc_bits = self.params.pes, self.acc_bits
        lengths = _readout_lengths(self.network, pes)
        bias_words, bias_bases = self.bias_words()
        biases = m.submodules.biases = memory.Memory(
            shape=unsigned(pes * acc_bits), depth=len(bias_words), init=bias_words)
        bias_read = biases.read_port()
        s.r_index = Signal(range(max(lengths)))
        loaded_layer = Mux(s.phase == LOAD, 0, s.next_layer)
        m.d.comb += bias_read.addr.eq(
            select(loaded_layer, [Const(b, range(len(bias_words))) for b in bias_bases])
            + s.r_index)
        ro_valid, ro_load = Signal(), Signal()
        ro_index = Signal.like(s.r_index)
        m.d.sync += [ro_valid.eq(s.phase == READOUT),
                     ro_load.eq((s.phase == READOUT) | (s.phase == LOAD)),
                     ro_index.eq(s.r_index)]
        for index, pe in enumerate(self.pes):
            m.d.comb += [
                pe.r_addr.eq(s.r_index),
                pe.w_addr.eq(ro_index),
                pe.w_data.eq(bias_read.data[index * acc_bits:(index + 1) * acc_bits]),
                pe.w_en.eq(ro_load),
            ]
        stages = s.stages = m.submodules.stages = LayerStages(
            self.network, pes, acc_bits=acc_bits, a_bits=self.a_format.bits,
            tag_bits=len(s.r_index), groups=max(lengths))
        groups = select(s.layer, [Const(n, range(max(self.groups) + 1)) for n in self.groups])
        m.d.comb += [
            stages.layer.eq(s.layer),
            stages.i_acc.valid.eq(ro_valid & (ro_index < groups)),
            stages.i_acc.payload.group.eq(ro_index),
            stages.i_acc.payload.tag.eq(ro_index),
        ]
        for p, pe in enumerate(self.pes):
            m.d.comb += stages.i_acc.payload.acc[p].eq(pe.acc)
        if len(self.network.layers) > 1:
            m.d.comb += [
                s.act_write.addr.eq(stages.o_act.payload.tag),
                s.act_write.data.eq(stages.o_act.payload.data),
                s.act_write.en.eq(stages.o_act.valid),
            ]

    def _output_drain(self):
        """The output path: a FIFO that holds a whole output vector."""
        pes, groups = self.params.pes, self.groups[-1]
        return OutputDrain(self.network.output.format.width, pes, self.out_count,
                           self.network.out_features - (groups - 1) * pes, depth=groups,
                           buffered=False)

    def _drain(self, m, s):
        """The last layer's groups into the output drain, whose FIFO holds a whole output
        vector (the last layer's read-out waits until it is empty: ``s.out_room``)."""
        groups = self.groups[-1]
        drain = m.submodules.drain = self._output_drain()
        out = s.stages.o_out
        m.d.comb += [
            drain.i_word.valid.eq(out.valid),
            drain.i_word.payload.data.eq(out.payload.data),
            drain.i_word.payload.final.eq(out.payload.tag == groups - 1),
        ]
        wiring.connect(m, drain.o_stream, wiring.flipped(self.o_stream))
        s.out_room = (s.layer != len(self.network.layers) - 1) | (drain.level == 0)

    def _sequence(self, m, s):
        """The phases: LOAD the first layer's biases after a reset; SCAN until every PE is
        idle, READOUT, SETTLE until the stage has written the last group (its latency), then
        the next layer's SCAN."""
        layers, pes = self.network.layers, self.params.pes
        lengths = _readout_lengths(self.network, pes)
        all_idle = Cat(*(pe.idle for pe in self.pes)).all()
        latencies = [stage_latency(layer) for layer in layers]
        settle = Signal(range(max(latencies) + 1))
        with m.Switch(s.phase):
            with m.Case(LOAD):
                m.d.sync += s.r_index.eq(s.r_index + 1)
                with m.If(s.r_index == self.groups[0] - 1):
                    m.d.sync += s.phase.eq(SCAN)
            with m.Case(SCAN):
                with m.If(s.src_done & (s.mask == 0) & all_idle & s.out_room):
                    m.d.sync += [s.phase.eq(READOUT), s.r_index.eq(0)]
            with m.Case(READOUT):
                m.d.sync += s.r_index.eq(s.r_index + 1)
                with m.If(s.r_index == select(s.layer, [Const(n - 1, range(max(lengths)))
                                                        for n in lengths])):
                    m.d.sync += [s.phase.eq(SETTLE), settle.eq(select(s.layer, [
                        Const(latency, settle.shape()) for latency in latencies]))]
            with m.Case(SETTLE):
                m.d.sync += settle.eq(settle - 1)
                with m.If(settle == 0):
                    m.d.sync += [s.phase.eq(SCAN), s.layer.eq(s.next_layer),
                                 s.src_index.eq(0), s.src_done.eq(0)]


def _signed(fmt: Format) -> Format:
    """The narrowest signed int format holding every value of ``fmt``."""
    return fmt if fmt.signed else Format.int(fmt.bits + 1)


def _or_reduce(values):
    """The bitwise OR of ``values``."""
    values = list(values)
    result = values[0]
    for value in values[1:]:
        result = result | value
    return result
