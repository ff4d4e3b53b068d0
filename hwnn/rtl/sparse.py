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

import math
from dataclasses import dataclass, field

import numpy as np
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Network
from ..ir.formats import Format
from ..ir.packing import pack_values
from ..quant.csc import CscMatrix, encode
from .arith import select
from .layouts import Beat
from .params import check_positive_int
from .stage import OutputStage, stage_latency
from .values import decode_codes, encode_value, holding_format, resize
from .widthconv import WordSplitter

__all__ = ["SparseAccelerator", "SparseLayer", "SparsePE", "SparseParams", "layer_overhead",
           "plan_layers"]

#: Width of the performance counters (they wrap around).
COUNTER_BITS = 32


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
        entries, _ = self.entry_words()
        pointers, _ = self.pointer_words()
        table, _ = self.codebook_words()
        column_bits = max(self.columns - 1, 1).bit_length()
        return {"entries": len(entries) * (self.field_bits + self.params.index_bits),
                "pointers": len(pointers) * self._pointer_bits,
                "codebook": len(table) * self.w_bits,
                "accumulators": self.rows * self.acc_bits,
                "queue": self.params.queue_depth * (column_bits + self.a_bits)}

    @property
    def _pointer_bits(self):
        return max(self.entries.bit_length(), 1)

    # Hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        a_bits, w_bits, acc_bits = self.a_bits, self.w_bits, self.acc_bits
        field_bits, rows = self.field_bits, self.rows

        queue = m.submodules.queue = SyncFIFO(width=len(self.i_act.payload.as_value()),
                                              depth=self.params.queue_depth)
        m.d.comb += [
            queue.w_data.eq(self.i_act.payload),
            queue.w_en.eq(self.i_act.valid),
            self.i_act.ready.eq(queue.w_rdy),
        ]
        head = data.View(self.i_act.payload.shape(), queue.r_data)

        # Pointers: the popped column's entry range arrives one cycle after the pop.
        pointer_words, pointer_bases = self.pointer_words()
        ptr_bits = self._pointer_bits
        pointers = m.submodules.pointers = memory.Memory(
            shape=unsigned(ptr_bits), depth=len(pointer_words), init=pointer_words)
        start_port, end_port = pointers.read_port(), pointers.read_port()
        pointer_base = select(self.layer, [Const(b, range(len(pointer_words)))
                                           for b in pointer_bases])
        m.d.comb += [start_port.addr.eq(pointer_base + head.column),
                     end_port.addr.eq(pointer_base + head.column + 1)]
        pending = Signal()
        pending_value = Signal(signed(a_bits))
        start, end = start_port.data, end_port.data
        arrived = Signal()
        m.d.comb += arrived.eq(pending & (start != end))     # empty columns are dropped here

        # Columns with entries wait in a two-entry FIFO for the fetcher, which walks one
        # column's entries, one per cycle, and goes on to the next column without a bubble.
        # A pop is allowed when the column it fetches will find room there.
        columns = m.submodules.columns = SyncFIFO(width=2 * ptr_bits + a_bits, depth=2)
        busy, first = Signal(), Signal()
        ptr, last_ptr = Signal(ptr_bits), Signal(ptr_bits)
        value = Signal(signed(a_bits))
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

        # E1: the entry arrives; its row follows from the previous one.
        entry_words, _ = self.entry_words()
        entries = m.submodules.entries = memory.Memory(
            shape=unsigned(field_bits + self.params.index_bits), depth=max(len(entry_words), 1),
            init=entry_words)
        entry_port = entries.read_port()
        m.d.comb += entry_port.addr.eq(ptr)
        e1_valid, e1_first = Signal(), Signal()
        e1_value = Signal(signed(a_bits))
        m.d.sync += [e1_valid.eq(busy), e1_first.eq(first), e1_value.eq(value)]
        field = entry_port.data[:field_bits]
        gap = entry_port.data[field_bits:]
        row = Signal(range(rows))
        row_now = Signal(range(rows))
        m.d.comb += row_now.eq(Mux(e1_first, gap, row + gap + 1))
        with m.If(e1_valid):
            m.d.sync += row.eq(row_now)

        table_words, table_bases = self.codebook_words()
        if table_words:
            table = m.submodules.codebook = memory.Memory(
                shape=unsigned(w_bits), depth=len(table_words), init=table_words)
            table_port = table.read_port()
            m.d.comb += table_port.addr.eq(
                select(self.layer, [Const(b, range(len(table_words) + 1))
                                    for b in table_bases]) + field)

        # E2: the weight (looked up, or decoded from the stored pattern); the product.
        e2_valid = Signal()
        e2_row = Signal(range(rows))
        e2_field = Signal(field_bits)
        e2_value = Signal(signed(a_bits))
        m.d.sync += [e2_valid.eq(e1_valid), e2_row.eq(row_now), e2_field.eq(field),
                     e2_value.eq(e1_value)]
        weights = []
        for plan in self.plans:
            if plan.table is not None:
                weights.append(table_port.data.as_signed())
            else:
                fmt = plan.layer.weight_format
                weights.append(decode_codes(e2_field, fmt, 1, w_bits)[0])
        weight = select(self.layer, weights)

        accumulators = m.submodules.accumulators = memory.Memory(
            shape=unsigned(acc_bits), depth=rows, init=[])
        acc_write = accumulators.write_port()
        acc_read = accumulators.read_port(transparent_for=(acc_write,))
        m.d.comb += acc_read.addr.eq(Mux(self.readout, self.r_addr, e2_row))

        # E3: accumulate.
        e3_valid = Signal()
        e3_row = Signal(range(rows))
        product = Signal(signed(a_bits + w_bits))
        m.d.sync += [e3_valid.eq(e2_valid), e3_row.eq(e2_row), product.eq(weight * e2_value)]
        current = acc_read.data.as_signed()
        m.d.comb += [
            self.acc.eq(current),
            acc_write.addr.eq(Mux(e3_valid, e3_row, self.w_addr)),
            acc_write.data.eq(Mux(e3_valid, current + product, self.w_data)),
            acc_write.en.eq(e3_valid | self.w_en),
            self.idle.eq(~queue.r_rdy & ~pending & ~columns.r_rdy & ~busy
                         & ~e1_valid & ~e2_valid & ~e3_valid),
        ]
        return m


class SparseAccelerator(wiring.Component):
    """A whole network on a sparse PE array, one vector at a time.

    The ports are those of the other architectures: an input vector is
    ``in_features / in_count`` beats of ``in_count = gcd(in_features, pes)`` codes, an output
    vector ``out_features / out_count`` beats of ``out_count = gcd(out_features, pes)``
    codes, ``last`` on the final beat of each.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    cycles : ``Out(32).array(layers)``
        Performance counters since reset: cycles spent in each layer.
    """

    def __init__(self, network: Network, params: SparseParams):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {network!r}")
        if not isinstance(params, SparseParams):
            raise TypeError(f"params must be a SparseParams, not {params!r}")
        self.network, self.params = network, params
        pes = params.pes
        self.plans = plan_layers(network, params)
        # Values are signed inside the array: an unsigned holding format gains a sign bit.
        self.a_format = _signed(holding_format(layer.input.format for layer in network.layers))
        self.w_format = _signed(holding_format(layer.weight_format for layer in network.layers))
        self.acc_bits = max(layer.acc_bits for layer in network.layers)
        self.in_count = math.gcd(network.in_features, pes)
        self.out_count = math.gcd(network.out_features, pes)
        self.groups = [_groups(layer.out_features, pes) for layer in network.layers]
        self.pes = [SparsePE(self.plans, pe, params, a_bits=self.a_format.bits,
                             w_bits=self.w_format.bits, acc_bits=self.acc_bits)
                    for pe in range(pes)]
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, network.input.format.width))),
            "o_stream": Out(stream.Signature(Beat(self.out_count,
                                                  network.output.format.width))),
            "cycles":   Out(unsigned(COUNTER_BITS)).array(len(network.layers)),
        })

    def bias_words(self) -> tuple[list, list]:
        """Bias memory, read during a layer's read-out to load the next layer's biases (and
        after a reset, to load the first layer's): for each layer (in order), one word of
        ``pes`` biases per read-out cycle of the layer before it, zeros past its rows."""
        pes, bits = self.params.pes, self.acc_bits
        lengths = _readout_lengths(self.network, pes)
        layers = self.network.layers
        words, bases = [], []
        for index, layer in enumerate(layers):
            bases.append(len(words))
            length = lengths[index - 1]
            padded = np.zeros(length * pes, dtype=np.int64)
            padded[:layer.out_features] = layer.bias
            patterns = Format.int(bits).encode(padded)
            words.extend(pack_values(patterns[g * pes:(g + 1) * pes], bits)
                         for g in range(length))
        return words, bases

    @property
    def memory_bits(self) -> dict:
        """Bits of memory by purpose, summed over the PEs where each has its own."""
        totals = {}
        for pe in self.pes:
            for name, bits in pe.memory_bits.items():
                totals[name] = totals.get(name, 0) + bits
        biases, _ = self.bias_words()
        totals["biases"] = len(biases) * self.params.pes * self.acc_bits
        totals["activations"] = self._activation_words * self.params.pes * self.a_format.bits
        totals["outputs"] = (self.groups[-1] * self.params.pes
                             * self.network.output.format.width)
        return totals

    @property
    def _activation_words(self):
        return max(self.groups[:-1], default=0)

    def elaborate(self, platform):
        m = Module()
        network, pes = self.network, self.params.pes
        layers = network.layers
        count = len(layers)
        a_bits, acc_bits = self.a_format.bits, self.acc_bits
        for index, pe in enumerate(self.pes):
            m.submodules[f"pe{index}"] = pe

        layer = Signal(range(count))
        # After a reset the first layer's biases are loaded (LOAD) before the first scan.
        LOAD, SCAN, READOUT, SETTLE = range(4)
        phase = Signal(range(4), init=LOAD)
        for pe in self.pes:
            m.d.comb += [pe.layer.eq(layer), pe.readout.eq(phase == READOUT)]

        # Sources of the scan: the input stream (first layer), the activation memory (others).
        in_fmt = network.input.format
        in_count = self.in_count
        slots = max(in_count, pes)
        if count > 1:
            activations = m.submodules.activations = memory.Memory(
                shape=unsigned(pes * a_bits), depth=self._activation_words, init=[])
            act_read = activations.read_port(domain="comb")
            act_write = activations.write_port()
        index_limit = max([network.in_features // in_count]
                          + [_groups(layer.in_features, pes) for layer in layers[1:]])
        src_index = Signal(range(index_limit))
        src_done = Signal()
        src_last = select(layer, [Const(network.in_features // in_count - 1, range(index_limit))]
                          + [Const(_groups(ly.in_features, pes) - 1, range(index_limit))
                             for ly in layers[1:]])
        column_bits = max(max(ly.in_features for ly in layers) - 1, 1).bit_length()
        first_layer = layer == 0
        src_base = Signal(column_bits)
        m.d.comb += src_base.eq(Mux(first_layer, src_index * in_count, src_index * pes))
        src_valid = Mux(first_layer, self.i_stream.valid, 1)
        in_values = decode_codes(self.i_stream.payload.data, in_fmt, in_count, a_bits)
        features = select(layer, [Const(ly.in_features, column_bits + 1) for ly in layers])
        src_values, src_mask = [], []
        for slot in range(slots):
            stored = (act_read.data[slot * a_bits:(slot + 1) * a_bits].as_signed()
                      if count > 1 and slot < pes else Const(0, signed(a_bits)))
            streamed = in_values[slot] if slot < in_count else Const(0, signed(a_bits))
            chosen = Mux(first_layer, streamed, stored)
            src_values.append(chosen)
            in_range = (Const(slot < in_count) if count == 1
                        else Mux(first_layer, slot < in_count, src_base + slot < features))
            src_mask.append(in_range & (chosen != 0))
        if count > 1:
            m.d.comb += act_read.addr.eq(src_index)

        # The scanner holds one word and broadcasts its nonzero values, lowest slot first.
        held = Signal(data.ArrayLayout(signed(a_bits), slots))
        mask = Signal(slots)
        base = Signal(column_bits)
        lowest = Signal(slots)
        m.d.comb += lowest.eq(mask & (~mask + 1))
        slot_index = Cat(*(Cat(*(lowest[s] for s in range(slots) if s >> b & 1)).any()
                           for b in range(max(slots - 1, 1).bit_length())))
        chosen_value = Signal(signed(a_bits))
        m.d.comb += chosen_value.eq(_or_reduce(Mux(lowest[s], held[s].as_unsigned(), 0)
                                               for s in range(slots)))
        all_ready = Cat(*(pe.i_act.ready for pe in self.pes)).all()
        emit = Signal()
        rest = Signal(slots)
        m.d.comb += [
            emit.eq((mask != 0) & all_ready),
            rest.eq(Mux(emit, mask & (mask - 1), mask)),
        ]
        for pe in self.pes:
            m.d.comb += [pe.i_act.valid.eq(emit),
                         pe.i_act.payload.column.eq(base + slot_index),
                         pe.i_act.payload.value.eq(chosen_value)]
        scanning = phase == SCAN
        accept = Signal()
        m.d.comb += [
            accept.eq(scanning & ~src_done & src_valid & (rest == 0)),
            self.i_stream.ready.eq(accept & first_layer),
        ]
        m.d.sync += mask.eq(rest)
        with m.If(accept):
            m.d.sync += [mask.eq(Cat(*src_mask)), base.eq(src_base),
                         src_index.eq(src_index + 1)]
            for s in range(slots):
                m.d.sync += held[s].eq(src_values[s])
            with m.If(src_index == src_last):
                m.d.sync += src_done.eq(1)

        # Read-out through the output stages, loading the next layer's biases.
        lengths = _readout_lengths(network, pes)
        bias_words, bias_bases = self.bias_words()
        biases = m.submodules.biases = memory.Memory(
            shape=unsigned(pes * acc_bits), depth=len(bias_words), init=bias_words)
        bias_read = biases.read_port()
        r_index = Signal(range(max(lengths)))
        next_layer = Mux(layer == count - 1, 0, layer + 1)
        loaded_layer = Mux(phase == LOAD, 0, next_layer)
        m.d.comb += bias_read.addr.eq(
            select(loaded_layer, [Const(b, range(len(bias_words))) for b in bias_bases])
            + r_index)
        ro_valid, ro_load = Signal(), Signal()
        ro_index = Signal.like(r_index)
        m.d.sync += [ro_valid.eq(phase == READOUT), ro_load.eq((phase == READOUT)
                                                               | (phase == LOAD)),
                     ro_index.eq(r_index)]
        for index, pe in enumerate(self.pes):
            m.d.comb += [
                pe.r_addr.eq(r_index),
                pe.w_addr.eq(ro_index),
                pe.w_data.eq(bias_read.data[index * acc_bits:(index + 1) * acc_bits]),
                pe.w_en.eq(ro_load),
            ]
        group_bits = len(r_index)
        out_fmt = network.output.format
        # Holds a whole output vector: the last layer's read-out waits until it is empty.
        out_fifo = m.submodules.out_fifo = SyncFIFO(width=pes * out_fmt.width + 1,
                                                    depth=self.groups[-1])
        for index, ir_layer in enumerate(layers):
            stage = m.submodules[f"stage{index}"] = OutputStage(ir_layer, pes,
                                                                tag_bits=group_bits)
            m.d.comb += [
                stage.i_acc.valid.eq(ro_valid & (layer == index)
                                     & (ro_index < self.groups[index])),
                stage.i_acc.payload.group.eq(ro_index),
                stage.i_acc.payload.tag.eq(ro_index),
            ]
            for p, pe in enumerate(self.pes):
                m.d.comb += stage.i_acc.payload.acc[p].eq(pe.acc)
            values = stage.o_values.payload.values
            group = stage.o_values.payload.tag
            with m.If(stage.o_values.valid):
                if index == count - 1:
                    m.d.comb += [
                        out_fifo.w_data.eq(Cat(*(encode_value(values[p], out_fmt)
                                                 for p in range(pes)),
                                               group == self.groups[-1] - 1)),
                        out_fifo.w_en.eq(1),
                    ]
                else:
                    m.d.comb += [
                        act_write.addr.eq(group),
                        act_write.data.eq(Cat(*(resize(values[p], a_bits)
                                                for p in range(pes)))),
                        act_write.en.eq(1),
                    ]
        splitter = m.submodules.splitter = WordSplitter(
            out_fmt.width, pes, self.out_count,
            network.out_features - (self.groups[-1] - 1) * pes)
        m.d.comb += [
            splitter.i_stream.valid.eq(out_fifo.r_rdy),
            splitter.i_stream.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(splitter.i_stream.ready),
        ]
        wiring.connect(m, splitter.o_stream, wiring.flipped(self.o_stream))

        # The sequencer: scan until every PE is idle, read out, let the stage settle (until
        # it has written the last group).
        all_idle = Cat(*(pe.idle for pe in self.pes)).all()
        out_room = (layer != count - 1) | (out_fifo.level == 0)
        latencies = [stage_latency(ir_layer) for ir_layer in layers]
        settle = Signal(range(max(latencies) + 1))
        with m.Switch(phase):
            with m.Case(LOAD):
                m.d.sync += r_index.eq(r_index + 1)
                with m.If(r_index == self.groups[0] - 1):
                    m.d.sync += phase.eq(SCAN)
            with m.Case(SCAN):
                with m.If(src_done & (mask == 0) & all_idle & out_room):
                    m.d.sync += [phase.eq(READOUT), r_index.eq(0)]
            with m.Case(READOUT):
                m.d.sync += r_index.eq(r_index + 1)
                with m.If(r_index == select(layer, [Const(n - 1, range(max(lengths)))
                                                    for n in lengths])):
                    m.d.sync += [phase.eq(SETTLE), settle.eq(select(layer, [
                        Const(latency, settle.shape()) for latency in latencies]))]
            with m.Case(SETTLE):
                m.d.sync += settle.eq(settle - 1)
                with m.If(settle == 0):
                    m.d.sync += [phase.eq(SCAN), layer.eq(next_layer), src_index.eq(0),
                                 src_done.eq(0)]

        for index in range(count):
            with m.If((layer == index) & (phase != LOAD)):
                m.d.sync += self.cycles[index].eq(self.cycles[index] + 1)
        return m


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
