"""Systolic overlay: a whole network run layer by layer on one weight-stationary array.

Where the dataflow architecture spends an engine per layer, the overlay time-shares one
``size x size`` :class:`~hwnn.rtl.systolic.SystolicArray` across all layers, like Google's TPU.
Input vectors are gathered into a batch of up to ``batch`` vectors (a batch closes when it is
full or when the input stream pauses at a vector boundary); then, for each layer, for each
tile of ``size`` outputs (``nt``) and ``size`` inputs (``kt``), the batch's activation rows
stream through the array while the next tile's weights load into the other bank, partial sums
accumulate in an accumulator memory, and after a layer's last input tile the layer's output
stage writes the next layer's activations (two memories, ping-pong). After the last layer the
batch's outputs stream out. Weights, biases and output-stage parameters are ROMs built from the
IR; values are held as signed integers wide enough for every layer's formats (binary +-1 as
2-bit values, so every layer, whatever its formats, is an integer matrix product).

The schedule is static and :func:`schedule` computes its cycle counts exactly; the hardware
follows it cycle for cycle when the output is not back-pressured.
"""

import math
from dataclasses import dataclass

import numpy as np
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Network
from ..ir.formats import Format
from ..ir.packing import pack_values
from .arith import select
from .layouts import Beat
from .stage import OutputStage, stage_latency
from .params import check_positive_int
from .systolic import SystolicArray, SystolicParams
from .values import decode_codes, encode_value, holding_format, resize
from .widthconv import WordSplitter

__all__ = ["OverlayParams", "SystolicOverlay", "check_overlay", "drain_cycles", "schedule"]


#: Width of the performance counters (they wrap around).
COUNTER_BITS = 32


@dataclass(frozen=True)
class OverlayParams:
    """A square ``size x size`` array and the largest batch the memories hold."""
    size:  int
    batch: int

    def __post_init__(self):
        check_positive_int("OverlayParams", "size", self.size, 64)
        check_positive_int("OverlayParams", "batch", self.batch, 4096)


def _value_format(network: Network):
    """Formats of the array's operands: every layer's activations and weights fit them."""
    return (holding_format(layer.input.format for layer in network.layers),
            holding_format(layer.weight_format for layer in network.layers))


#: Registers between issuing a memory read and the array's input (the read, and a register
#: for the slow block RAM output).
READ_STAGES = 2


def drain_cycles(size: int, layer: Dense) -> int:
    """Cycles ``layer`` waits after its last row, until its results are written (memory read,
    array, accumulator, the layer's output stage, write) and the next layer may read them."""
    return READ_STAGES + 2 * size + 1 + stage_latency(layer) + 2


def _run_cycles(tiles: int, size: int, rows: int) -> int:
    """Cycles of a layer's run phase: replay the weight loader's and the row issuer's rules
    (a tile's load waits for the rows of the tile two before it; a tile's rows wait for the
    first beat of its load), until both have finished."""
    ld_tile = ld_row = rw_tile = rw_m = cycle = 0
    while not (ld_tile == tiles and rw_tile == tiles):
        load = ld_tile < tiles and ld_tile <= rw_tile + 1
        issue = rw_tile < tiles and (ld_tile > rw_tile or (ld_tile == rw_tile and ld_row > 0))
        if load:
            ld_tile, ld_row = (ld_tile + 1, 0) if ld_row == size - 1 else (ld_tile, ld_row + 1)
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
    ``macs / (size * size * cycles)``.
    """
    size = params.size
    batch = params.batch if batch is None else batch
    layers = []
    for layer in network.layers:
        kt_count = math.ceil(layer.in_features / size)
        tiles = kt_count * math.ceil(layer.out_features / size)
        cycles = _run_cycles(tiles, size, batch) + drain_cycles(size, layer) + 1
        macs = batch * layer.in_features * layer.out_features
        layers.append({"name": layer.name, "tiles": tiles, "cycles": cycles,
                       "busy": tiles * batch, "macs": macs,
                       "utilization": macs / (size * size * cycles)})
    in_count = math.gcd(network.in_features, size)
    out_count = math.gcd(network.out_features, size)
    load = batch * (network.in_features // in_count) + 1
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


class SystolicOverlay(wiring.Component):
    """A whole network on one ``size x size`` systolic array, one batch at a time.

    The ports are those of the dataflow top: an input vector is ``in_features / in_count``
    beats of ``in_count = gcd(in_features, size)`` codes, an output vector
    ``out_features / out_count`` beats of ``out_count = gcd(out_features, size)`` codes,
    ``last`` on the final beat of each.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    busy : ``Out(32).array(layers)``
        Performance counters since reset: cycles in which the layer fed a row to the array.
    cycles : ``Out(32).array(layers)``
        Performance counters since reset: cycles the layer held the array (run and drain).
    """

    def __init__(self, network: Network, params: OverlayParams):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {network!r}")
        if not isinstance(params, OverlayParams):
            raise TypeError(f"params must be an OverlayParams, not {params!r}")
        self.network, self.params = network, params
        size = params.size
        self.a_format, self.w_format = _value_format(network)
        # The array sums one tile (size terms); a layer's accumulators hold every partial sum.
        self.array_params = SystolicParams(size, size, self.a_format, self.w_format, size)
        self.acc_bits = max(layer.acc_bits for layer in network.layers)
        self.in_count = math.gcd(network.in_features, size)
        self.out_count = math.gcd(network.out_features, size)
        self.kt = [math.ceil(layer.in_features / size) for layer in network.layers]
        self.nt = [math.ceil(layer.out_features / size) for layer in network.layers]
        self.stride = max(self.kt)
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, network.input.format.width))),
            "o_stream": Out(stream.Signature(Beat(self.out_count,
                                                  network.output.format.width))),
            "busy":     Out(unsigned(COUNTER_BITS)).array(len(network.layers)),
            "cycles":   Out(unsigned(COUNTER_BITS)).array(len(network.layers)),
        })

    # Memory images ----------------------------------------------------------------------------

    def weight_words(self):
        """Weight ROM: per layer, per tile (nt-major), ``size`` rows of ``size`` weights; tile
        row ``r``, column ``c`` holds ``weights[nt * size + c, kt * size + r]`` (0 outside)."""
        size, bits = self.params.size, self.w_format.bits
        words, bases = [], []
        for layer, kt_count, nt_count in zip(self.network.layers, self.kt, self.nt,
                                             strict=True):
            bases.append(len(words))
            padded = np.zeros((nt_count * size, kt_count * size), dtype=np.int64)
            padded[:layer.out_features, :layer.in_features] = layer.weights
            patterns = self.w_format.encode(padded)
            for nt in range(nt_count):
                for kt in range(kt_count):
                    tile = patterns[nt * size:(nt + 1) * size, kt * size:(kt + 1) * size]
                    words.extend(pack_values(tile[:, r], bits) for r in range(size))
        return words, bases

    def bias_words(self):
        """Bias ROM: per layer, per output tile, ``size`` accumulator-format biases."""
        size, bits = self.params.size, self.acc_bits
        words, bases = [], []
        acc_format = Format.int(bits)
        for layer, nt_count in zip(self.network.layers, self.nt, strict=True):
            bases.append(len(words))
            padded = np.zeros(nt_count * size, dtype=np.int64)
            padded[:layer.out_features] = layer.bias
            patterns = acc_format.encode(padded)
            words.extend(pack_values(patterns[nt * size:(nt + 1) * size], bits)
                         for nt in range(nt_count))
        return words, bases

    @property
    def memory_bits(self) -> dict:
        size, batch = self.params.size, self.params.batch
        weights, _ = self.weight_words()
        biases, _ = self.bias_words()
        last = self.network.layers[-1]
        return {"weights": len(weights) * size * self.w_format.bits,
                "biases": len(biases) * size * self.acc_bits,
                "activations": 2 * batch * self.stride * size * self.a_format.bits,
                "accumulators": batch * size * self.acc_bits,
                "outputs": batch * self.nt[-1] * size * last.output.format.bits}

    # Hardware ---------------------------------------------------------------------------------

    def elaborate(self, platform):
        m = Module()
        network, size, batch = self.network, self.params.size, self.params.batch
        layers = network.layers
        count = len(layers)
        a_bits, w_bits, acc_bits = self.a_format.bits, self.w_format.bits, self.acc_bits
        stride = self.stride

        array = m.submodules.array = SystolicArray(self.array_params)

        weight_words, weight_bases = self.weight_words()
        weight_rom = m.submodules.weights = memory.Memory(
            shape=unsigned(size * w_bits), depth=len(weight_words), init=weight_words)
        weight_read = weight_rom.read_port()
        bias_words, bias_bases = self.bias_words()
        bias_rom = m.submodules.biases = memory.Memory(
            shape=unsigned(size * acc_bits), depth=len(bias_words), init=bias_words)
        bias_read = bias_rom.read_port()

        acts = [memory.Memory(shape=unsigned(size * a_bits), depth=batch * stride, init=[])
                for _ in range(2)]
        m.submodules.acts0, m.submodules.acts1 = acts
        act_reads = [mem.read_port() for mem in acts]
        act_writes = [mem.write_port() for mem in acts]

        accumulators = m.submodules.accumulators = memory.Memory(
            shape=unsigned(size * acc_bits), depth=batch, init=[])
        acc_write = accumulators.write_port()
        acc_read = accumulators.read_port(transparent_for=(acc_write,))

        out_fmt = network.output.format
        out_bits = out_fmt.bits
        out_words = batch * self.nt[-1]
        outputs = m.submodules.outputs = memory.Memory(
            shape=unsigned(size * out_bits), depth=out_words, init=[])
        out_write = outputs.write_port()
        out_read = outputs.read_port()

        # Per-layer constants, selected by the current layer.
        layer = Signal(range(count))
        kt_last = select(layer, [Const(kt - 1, range(stride)) for kt in self.kt])
        tile_counts = [kt * nt for kt, nt in zip(self.kt, self.nt, strict=True)]
        m_count = Signal(range(batch + 1))

        # Phase ---------------------------------------------------------------------------------
        phase = Signal(range(4))
        LOAD, RUN, DRAIN, OUTPUT = range(4)

        # Input: gather in_count values per beat into words of size values.
        in_fmt = network.input.format
        in_count = self.in_count
        k0 = network.in_features
        beats_per_word = size // in_count
        last_word_beats = (k0 - (self.kt[0] - 1) * size) // in_count
        word = Signal(size * a_bits)
        beat = Signal(range(beats_per_word))
        in_kt = Signal(range(stride))
        in_m = Signal(range(batch + 1))
        decoded = decode_codes(self.i_stream.payload.data, in_fmt, in_count, a_bits)
        word_done = (beat == Mux(in_kt == self.kt[0] - 1, last_word_beats, beats_per_word) - 1)
        vector_done = word_done & (in_kt == self.kt[0] - 1)
        closing = Signal()    # a batch closes: full, or the input paused at a vector boundary
        m.d.comb += [
            self.i_stream.ready.eq((phase == LOAD) & (in_m < batch)),
            closing.eq((phase == LOAD) & (in_m > 0) & (in_kt == 0) & (beat == 0)
                       & ((in_m == batch) | ~self.i_stream.valid)),
        ]
        # The word with this beat's values in place (slot p belongs to beat p // in_count).
        merged = Signal(size * a_bits)
        m.d.comb += merged.eq(Cat(*(
            Mux(beat == slot // in_count, decoded[slot % in_count].as_unsigned(),
                word[slot * a_bits:(slot + 1) * a_bits])
            for slot in range(beats_per_word * in_count))))
        load_write = Signal()
        with m.If(self.i_stream.valid & self.i_stream.ready):
            m.d.sync += word.eq(merged)
            m.d.comb += load_write.eq(word_done)
            with m.If(word_done):
                m.d.sync += [beat.eq(0), in_kt.eq(Mux(vector_done, 0, in_kt + 1))]
                with m.If(vector_done):
                    m.d.sync += in_m.eq(in_m + 1)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

        # Run: the weight loader and the row issuer of the current layer -----------------------
        # Their rules, with registered flags so that no wide comparison sits in the way: the
        # loader may start tile i once the rows of tile i - 2 are issued (gap <= 1), and the
        # rows of a tile wait until the first beat of its load has been issued (gap >= 1).
        most_tiles = max(kt * nt for kt, nt in zip(self.kt, self.nt, strict=True))
        ld_left = Signal(range(most_tiles + 1))      # tiles still to load, this one included
        ld_final = Signal()                          # this is the layer's last tile to load
        ld_busy = Signal()
        ld_row = Signal(range(size))
        ld_bank = Signal()
        ld_addr = Signal(range(len(weight_words) + 1))
        rw_left = Signal(range(most_tiles + 1))
        rw_final = Signal()
        rw_busy = Signal()
        rw_bank = Signal()
        rw_m = Signal(range(batch))
        rw_kt = Signal(range(stride))
        rw_nt = Signal(range(max(self.nt)))
        rw_addr = Signal(range(batch * stride))      # rw_m * stride + rw_kt
        gap = Signal(range(3))                       # tiles whose load began, minus issued
        load, issue = Signal(), Signal()
        load_done, rows_done = Signal(), Signal()    # a tile's last beat / last row, now
        running = phase == RUN
        m.d.comb += [
            load.eq(running & ld_busy & ((ld_row != 0) | (gap <= 1))),
            issue.eq(running & rw_busy & (gap != 0)),
            load_done.eq(load & (ld_row == size - 1)),
            rows_done.eq(issue & (rw_m == m_count - 1)),
            weight_read.addr.eq(ld_addr),
        ]
        # gap counts tiles whose load has begun (first beat issued) and whose rows are not all
        # issued; a load begins on beat 0.
        load_begins = load & (ld_row == 0)
        m.d.sync += gap.eq(gap + load_begins - rows_done)
        with m.If(load):
            m.d.sync += [ld_addr.eq(ld_addr + 1), ld_row.eq(Mux(ld_row == size - 1, 0,
                                                                  ld_row + 1))]
        with m.If(load_done):
            m.d.sync += [ld_bank.eq(~ld_bank), ld_left.eq(ld_left - 1),
                         ld_final.eq(ld_left == 2)]
            with m.If(ld_final):
                m.d.sync += ld_busy.eq(0)
        with m.If(issue):
            with m.If(rows_done):
                m.d.sync += [rw_m.eq(0), rw_bank.eq(~rw_bank), rw_left.eq(rw_left - 1),
                             rw_final.eq(rw_left == 2)]
                with m.If(rw_final):
                    m.d.sync += rw_busy.eq(0)
                with m.If(rw_kt == kt_last):
                    m.d.sync += [rw_kt.eq(0), rw_nt.eq(rw_nt + 1), rw_addr.eq(0)]
                with m.Else():
                    m.d.sync += [rw_kt.eq(rw_kt + 1), rw_addr.eq(rw_kt + 1)]
            with m.Else():
                m.d.sync += [rw_m.eq(rw_m + 1), rw_addr.eq(rw_addr + stride)]

        source = layer[0] if count > 1 else Const(0)     # layer l reads memory l % 2
        for index in range(2):
            m.d.comb += act_reads[index].addr.eq(rw_addr)

        # One cycle later the memories answer; register their data (block RAM outputs are slow)
        # and feed the array the cycle after.
        load1, row1, bank1 = Signal(), Signal.like(ld_row), Signal()
        issue1, bank_rows1, source1 = Signal(), Signal(), Signal()
        m.d.sync += [load1.eq(load), row1.eq(ld_row), bank1.eq(ld_bank),
                     issue1.eq(issue), bank_rows1.eq(rw_bank), source1.eq(source)]
        load2, row2, bank2 = Signal(), Signal.like(ld_row), Signal()
        issue2, bank_rows2 = Signal(), Signal()
        weights2 = Signal(size * w_bits)
        acts2 = Signal(size * a_bits)
        m.d.sync += [load2.eq(load1), row2.eq(row1), bank2.eq(bank1), issue2.eq(issue1),
                     bank_rows2.eq(bank_rows1), weights2.eq(weight_read.data),
                     acts2.eq(Mux(source1, act_reads[1].data, act_reads[0].data))]
        m.d.comb += [
            array.i_w.valid.eq(load2),
            array.i_w.payload.row.eq(row2),
            array.i_w.payload.bank.eq(bank2),
            array.i_a.valid.eq(issue2),
            array.i_a.payload.bank.eq(bank_rows2),
        ]
        for c in range(size):
            m.d.comb += array.i_w.payload.w[c].eq(weights2[c * w_bits:(c + 1) * w_bits])
            m.d.comb += array.i_a.payload.a[c].eq(acts2[c * a_bits:(c + 1) * a_bits])

        # Sideband of each row, delayed to meet its partial sums one cycle early (memory reads).
        info_valid, info_m, info_nt = issue, rw_m, rw_nt
        info_first, info_last = rw_kt == 0, rw_kt == kt_last
        for stage in range(array.latency + READ_STAGES - 1):
            valid_next = Signal(name=f"side_valid_{stage}")
            m_next = Signal.like(rw_m, name=f"side_m_{stage}")
            nt_next = Signal.like(rw_nt, name=f"side_nt_{stage}")
            first_next = Signal(name=f"side_first_{stage}")
            last_next = Signal(name=f"side_last_{stage}")
            m.d.sync += [valid_next.eq(info_valid), m_next.eq(info_m), nt_next.eq(info_nt),
                         first_next.eq(info_first), last_next.eq(info_last)]
            info_valid, info_m, info_nt = valid_next, m_next, nt_next
            info_first, info_last = first_next, last_next
        bias_base = select(layer, [Const(base, range(len(bias_words) + 1))
                                   for base in bias_bases])
        m.d.comb += [acc_read.addr.eq(info_m), bias_read.addr.eq(bias_base + info_nt)]
        valid_p, m_p, nt_p, first_p, last_p = Signal(), Signal.like(rw_m), Signal.like(rw_nt), \
            Signal(), Signal()
        m.d.sync += [valid_p.eq(info_valid), m_p.eq(info_m), nt_p.eq(info_nt),
                     first_p.eq(info_first), last_p.eq(info_last)]

        # Accumulate; after a layer's last input tile, hand the sums to the layer's stage.
        sums = [Signal(signed(acc_bits), name=f"sum_{c}") for c in range(size)]
        for c in range(size):
            start = Mux(first_p, bias_read.data[c * acc_bits:(c + 1) * acc_bits].as_signed(),
                        acc_read.data[c * acc_bits:(c + 1) * acc_bits].as_signed())
            m.d.comb += sums[c].eq(start + array.o_psum.payload[c])
        m.d.comb += [
            acc_write.addr.eq(m_p),
            acc_write.data.eq(Cat(*sums)),
            acc_write.en.eq(valid_p & ~last_p),
        ]
        m_bits, nt_bits = len(rw_m), len(rw_nt)
        stage_outputs = []
        for index, ir_layer in enumerate(layers):
            stage = m.submodules[f"stage{index}"] = OutputStage(ir_layer, size,
                                                                tag_bits=m_bits + nt_bits)
            m.d.comb += [
                stage.i_acc.valid.eq(valid_p & last_p & (layer == index)),
                stage.i_acc.payload.group.eq(nt_p),
                stage.i_acc.payload.tag.eq(Cat(m_p, nt_p)),
            ]
            for c in range(size):
                m.d.comb += stage.i_acc.payload.acc[c].eq(sums[c])
            stage_outputs.append(stage.o_values)

        # Stage results: activations of the next layer, or the network's outputs.
        for index, stage_out in enumerate(stage_outputs):
            tag_m = stage_out.payload.tag[:m_bits]
            tag_nt = stage_out.payload.tag[m_bits:]
            with m.If(stage_out.valid):
                if index == count - 1:
                    m.d.comb += [
                        out_write.addr.eq(tag_m * self.nt[-1] + tag_nt),
                        out_write.data.eq(Cat(*(encode_value(stage_out.payload.values[c], out_fmt)
                                                for c in range(size)))),
                        out_write.en.eq(1),
                    ]
                else:
                    target = act_writes[(index + 1) % 2]
                    m.d.comb += [
                        target.addr.eq(tag_m * stride + tag_nt),
                        target.data.eq(Cat(*(resize(stage_out.payload.values[c], a_bits)
                                             for c in range(size)))),
                        target.en.eq(1),
                    ]
        with m.If(load_write):
            m.d.comb += [
                act_writes[0].addr.eq(in_m * stride + in_kt),
                act_writes[0].data.eq(merged),
                act_writes[0].en.eq(1),
            ]

        # Output: a reader walks the batch's output words into a small FIFO (one per cycle),
        # and the emitter offers each word in beats of out_count values.
        out_count = self.out_count
        n_last = network.out_features
        out_tiles = self.nt[-1]
        out_tail = n_last - (out_tiles - 1) * size     # values in a vector's final word
        fifo_depth = 4
        out_fifo = m.submodules.out_fifo = SyncFIFOBuffered(width=size * out_bits + 2,
                                                            depth=fifo_depth)
        rd_m = Signal(range(batch))
        rd_nt = Signal(range(out_tiles))
        rd_done = Signal()
        inflight = Signal()
        reading = Signal()
        rd_last_nt, rd_last_word = Signal(), Signal()
        m.d.comb += [
            reading.eq((phase == OUTPUT) & ~rd_done
                       & (out_fifo.level + inflight < fifo_depth)),
            out_read.addr.eq(rd_m * out_tiles + rd_nt),
        ]
        m.d.sync += [inflight.eq(reading), rd_last_nt.eq(rd_nt == out_tiles - 1),
                     rd_last_word.eq((rd_nt == out_tiles - 1) & (rd_m == m_count - 1))]
        with m.If(reading):
            with m.If(rd_nt == out_tiles - 1):
                m.d.sync += rd_nt.eq(0)
                with m.If(rd_m == m_count - 1):
                    m.d.sync += rd_done.eq(1)
                with m.Else():
                    m.d.sync += rd_m.eq(rd_m + 1)
            with m.Else():
                m.d.sync += rd_nt.eq(rd_nt + 1)
        m.d.comb += [
            out_fifo.w_en.eq(inflight),
            out_fifo.w_data.eq(Cat(out_read.data, rd_last_nt, rd_last_word)),
        ]
        splitter = m.submodules.splitter = WordSplitter(out_bits, size, out_count, out_tail)
        word_last = out_fifo.r_data[size * out_bits + 1]
        m.d.comb += [
            splitter.i_stream.valid.eq(out_fifo.r_rdy),
            splitter.i_stream.payload.data.eq(out_fifo.r_data[:size * out_bits]),
            splitter.i_stream.payload.final.eq(out_fifo.r_data[size * out_bits]),
            out_fifo.r_en.eq(splitter.i_stream.ready),
        ]
        wiring.connect(m, splitter.o_stream, wiring.flipped(self.o_stream))
        batch_sent = out_fifo.r_rdy & splitter.i_stream.ready & word_last

        # Performance counters.
        for index in range(count):
            active = (layer == index) & ((phase == RUN) | (phase == DRAIN))
            with m.If(active):
                m.d.sync += self.cycles[index].eq(self.cycles[index] + 1)
            with m.If(active & issue):
                m.d.sync += self.busy[index].eq(self.busy[index] + 1)

        # The phase sequencer ---------------------------------------------------------------------
        def start_layer(tile_count):
            """Statements that reset both issuers for a layer of ``tile_count`` tiles."""
            return [ld_left.eq(tile_count), ld_final.eq(tile_count == 1), ld_busy.eq(1),
                    ld_row.eq(0), ld_bank.eq(0),
                    rw_left.eq(tile_count), rw_final.eq(tile_count == 1), rw_busy.eq(1),
                    rw_bank.eq(0), rw_m.eq(0), rw_kt.eq(0), rw_nt.eq(0), rw_addr.eq(0),
                    gap.eq(0)]

        drains = [drain_cycles(size, ir_layer) for ir_layer in network.layers]
        drain = Signal(range(max(drains) + 1))
        with m.Switch(phase):
            with m.Case(LOAD):
                with m.If(closing):
                    m.d.sync += [phase.eq(RUN), m_count.eq(in_m), layer.eq(0),
                                 ld_addr.eq(weight_bases[0])]
                    m.d.sync += start_layer(tile_counts[0])
            with m.Case(RUN):
                # Done when every row is issued and every weight beat (the last tile's load
                # may still run when its rows, fewer than its height, are all issued).
                with m.If(~ld_busy & ~rw_busy):
                    m.d.sync += [phase.eq(DRAIN), drain.eq(select(layer, [
                        Const(cycles, drain.shape()) for cycles in drains]))]
            with m.Case(DRAIN):
                m.d.sync += drain.eq(drain - 1)
                with m.If(drain == 0):
                    with m.If(layer == count - 1):
                        m.d.sync += [phase.eq(OUTPUT), rd_m.eq(0), rd_nt.eq(0),
                                     rd_done.eq(0)]
                    with m.Else():
                        m.d.sync += [phase.eq(RUN), layer.eq(layer + 1),
                                     ld_addr.eq(select(layer + 1, [
                                         Const(base, range(len(weight_words) + 1))
                                         for base in weight_bases]))]
                        m.d.sync += start_layer(select(layer + 1, [
                            Const(t, range(most_tiles + 1)) for t in tile_counts]))
            with m.Case(OUTPUT):
                with m.If(batch_sent):
                    m.d.sync += [phase.eq(LOAD), in_m.eq(0)]
        return m

