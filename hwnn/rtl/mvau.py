"""Matrix-vector-activation unit: one dense layer as a folded streaming engine (FINN's MVAU).

The layer's ``rows x cols`` weight matrix is folded onto ``pe`` processing elements (output
neurons computed in parallel) each taking ``simd`` inputs per cycle. An input vector arrives as
``SF = cols / simd`` beats; it is used for ``NF = rows / pe`` neuron folds (the first straight
from the stream, the others from an input buffer), each of which takes ``SF`` cycles and yields
one output beat of ``pe`` values. A new input vector can start as soon as the last fold of the
previous one has been issued, so the unit computes one vector every ``NF * SF`` cycles.

Lane arithmetic follows the formats of the layer: XNOR + popcount for binary weights and
inputs (``dot = 2 * popcount - simd``), add / subtract / skip for ternary or binary weights and
for binary inputs, multiply-accumulate otherwise. Weights live in an on-chip memory
initialized from the IR, accumulators are exactly as wide as the IR's worst case, and the
output stage (thresholds, requantization or the raw accumulator) is the IR's.

A layer's multipliers (its multiply-accumulate lanes and its requantization) go to DSP blocks,
or with ``multipliers="logic"`` into logic (:func:`~hwnn.rtl.arith.logic_product`: shifts and
adds, which Yosys never maps to a DSP block) at the same rate, so that the cycle counts do not
change: for devices whose DSP blocks run out (an iCE40UP5K has eight). A fully parallel layer
(``pe`` all its outputs, ``simd`` all its inputs: one vector per cycle) can have its weights
``multipliers="hardwired"``: no weight memory and no multiplier, the products and the PEs' sums
one pipelined graph of adders shared across the matrix (:mod:`hwnn.rtl.cmvm`), a register after
each adder; its requantization in logic as with ``"logic"``.

The same engine, with an input beat per PE instead of one shared by all PEs, is the
vector-vector unit of a depthwise convolution (:class:`~hwnn.rtl.vvau.VectorVectorUnit`).
"""


import math

import numpy as np
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Dense
from ..ir.formats import Format
from ..ir.packing import pack_rows, pack_values
from .arith import logic_product, pipelined_sum, tree_levels, tree_register_bits
from .cmvm import adder_graph, pipelined_graph, summed_graph
from .fifo import FlagFIFO
from .layouts import Beat
from .params import LayerFold, check_divides, check_multipliers, check_positive_int, divisors
from .stage import OutputStage, stage_latency, stage_structure
from .structure import Memory, Multipliers, Structure

__all__ = ["BINARY_TREE_LEVELS", "GRAPH_LEVELS", "RAM_STYLES", "MatrixVectorUnit", "check_folding",
           "check_hardwired"]

#: Popcount-tree levels between registers in XNOR-popcount lanes.
BINARY_TREE_LEVELS = 3

#: Adder levels between registers in a hardwired layer's graph (:mod:`hwnn.rtl.cmvm`): one.
#: With two (chained adders kept apart), the first 16 outputs of the digits MLP's binary
#: first layer took the same LUT4s and 36% fewer flip-flops on the ECP5-85F, at 112.1 MHz
#: instead of 140.7 (nextpnr; ``benchmarks/peers.py --outputs 16``).
GRAPH_LEVELS = 1

#: Where the weight memory (a ROM) goes: Yosys' choice, block RAM, or logic (LUTs).
RAM_STYLES = {
    "auto":  None,
    "block": {"ram_style": "block"},
    "logic": {"ram_style": "logic"},
}


def check_hardwired(name, pe, simd, max_pe, max_simd):
    """Raise a ValueError unless a layer ``name`` with hardwired multipliers is fully parallel
    (``pe == max_pe`` and ``simd == max_simd``: each lane keeps one weight)."""
    if (pe, simd) != (max_pe, max_simd):
        raise ValueError(f"Layer {name!r}: hardwired multipliers need the layer fully parallel "
                         f"(pe {max_pe}, simd {max_simd}), not pe {pe}, simd {simd}")


def check_folding(layer: Dense, pe, simd):
    """Raise TypeError/ValueError unless ``pe`` divides the layer's rows and ``simd`` its
    columns."""
    check_positive_int("MatrixVectorUnit", "pe", pe)
    check_positive_int("MatrixVectorUnit", "simd", simd)
    check_divides(layer, "pe", pe, layer.out_features, "outputs")
    check_divides(layer, "simd", simd, layer.in_features, "inputs")


def _decode(bits, fmt: Format):
    """Value of a code's bits: signed/unsigned for int formats, +-1 is handled by callers."""
    return bits.as_signed() if fmt.signed else bits.as_unsigned()


def _term(w_bits, x_bits, w_fmt: Format, x_fmt: Format):
    """One product ``w * x`` without a multiplier where a factor is binary or ternary."""
    if w_fmt.kind == "bipolar":
        x = _decode(x_bits, x_fmt)
        return Mux(w_bits[0], x, -x)
    if x_fmt.kind == "bipolar":
        w = _decode(w_bits, w_fmt)
        return Mux(x_bits[0], w, -w)
    x = _decode(x_bits, x_fmt)
    if w_fmt == Format.ternary():
        # 0b01 is +1, 0b11 is -1, 0b00 is 0: add, subtract or skip.
        return Mux(w_bits[0], Mux(w_bits[1], -x, x), 0)
    return _decode(w_bits, w_fmt) * x


class MatrixVectorUnit(wiring.Component):
    """Streaming dense layer ``out = stage(weights @ x + bias)`` folded onto ``pe x simd``
    lanes.

    An input vector is ``cols / simd`` beats of ``simd`` input codes; an output vector is
    ``rows / pe`` beats of ``pe`` output codes, neurons in order, ``last`` set on the final one
    (the input ``last`` is not used: framing is by count). The unit sustains one vector every
    :attr:`cycles` cycles; the first output beat of a vector is transferred :attr:`latency`
    cycles after its first input beat when the output is not back-pressured.

    Parameters
    ----------
    layer : :class:`~hwnn.ir.Dense`
    pe, simd : folding; ``pe`` divides the rows, ``simd`` the columns.
    ram_style : where the weight memory goes (:data:`RAM_STYLES`); ``"auto"`` lets Yosys
        choose, which for shallow, wide memories is often logic.
    multipliers : ``"dsp"``, ``"logic"`` or ``"hardwired"``
        (:data:`~hwnn.rtl.params.MULTIPLIERS`): where the lanes' and the output stage's
        multipliers are built; ``"hardwired"`` only fully parallel (one cycle per vector).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(simd, input width)))``
    o_stream : ``Out(stream.Signature(Beat(pe, output width)))``
    layer, pe, simd, lanes, in_count, out_count, in_width, out_width, cycles, latency,
    memory_bits, input_fifo_depth :
        As every dataflow unit has them (:mod:`hwnn.rtl.units`); ``in_count`` is ``simd``,
        ``out_count`` ``pe``.
    """

    #: Pipeline registers between issuing a beat and the final accumulator of its fold (memory
    #: read, operands, lane products, accumulator); for multiplier lanes a second operand and
    #: a second product register (:attr:`dsp_stages`), the adder tree's levels
    #: (:attr:`tree_levels`) and the output stage's latency come on top.
    _STAGES = 4

    #: Whether one input vector feeds every PE (a matrix-vector product); the vector-vector
    #: unit gives each PE its own ``simd`` inputs in every beat instead.
    _shared_input = True

    def __init__(self, layer: Dense, *, pe=1, simd=1, ram_style="auto", multipliers="dsp"):
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense layer, not {layer!r}")
        if ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not "
                             f"{ram_style!r}")
        check_multipliers(multipliers)
        self.ram_style, self.multipliers = ram_style, multipliers
        self.logic_multipliers = multipliers != "dsp"
        self.hardwired = multipliers == "hardwired"
        check_folding(layer, pe, simd)
        self.layer, self.pe, self.simd = layer, pe, simd
        self.neuron_folds = layer.out_features // pe
        self.synapse_folds = layer.in_features // simd
        if self.hardwired:
            check_hardwired(layer.name, pe, simd, layer.out_features, layer.in_features)
        self.in_width = layer.input.format.width
        self.out_width = layer.output.format.width
        # Hardwired, the products and the PEs' sums are one graph: its first register is
        # the products' (stage 3), the others the adder tree's.
        self.graph = summed_graph(adder_graph(self._constant_matrix())) if self.hardwired else None
        self.tree_levels = (self.graph.stages(GRAPH_LEVELS) - 1 if self.hardwired
                            else tree_levels(simd, self._levels_per_register()))
        # Multiplier lanes register their operands and products twice: at the block RAM /
        # input multiplexer and at the multiplier (a DSP block's input registers), at the
        # multiplier (its output register) and again in the logic that adds them up.
        self.dsp_stages = 1 if self._multiplier_lanes() and not self.hardwired else 0
        self._depth = (self._STAGES + 2 * self.dsp_stages + self.tree_levels
                       + stage_latency(layer, pipelined=True,
                                       logic_multipliers=self.logic_multipliers))
        self.fifo_depth = self._depth + 4
        self.in_count = simd if self._shared_input else pe * simd
        self.out_count = pe
        # One input vector (and two beats more) before the unit lets the producer run ahead
        # while the unit re-reads its input buffer for the neuron folds after the first.
        self.input_fifo_depth = self.synapse_folds + 2 if self._shared_input else 2
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, self.in_width))),
            "o_stream": Out(stream.Signature(Beat(pe, self.out_width))),
        })

    # Folding (the dataflow unit protocol, :mod:`hwnn.rtl.units`) -------------------------------

    @staticmethod
    def fold_options(layer: Dense) -> list[LayerFold]:
        """Every folding: ``pe`` divides the rows, ``simd`` the columns."""
        return [LayerFold(pe, simd) for pe in divisors(layer.out_features)
                for simd in divisors(layer.in_features)]

    @staticmethod
    def fold_cycles(layer: Dense, fold: LayerFold) -> int:
        """Cycles per vector folded as ``fold``: ``(rows / pe) * (cols / simd)``."""
        return (layer.out_features // fold.pe) * (layer.in_features // fold.simd)

    @staticmethod
    def fold_lanes(layer: Dense, fold: LayerFold) -> int:
        """Lanes of ``fold``: ``pe * simd``."""
        return fold.lanes

    @staticmethod
    def check_fold(layer: Dense, fold: LayerFold):
        """:func:`check_folding`, and :func:`check_hardwired` for hardwired multipliers."""
        check_folding(layer, fold.pe, fold.simd)
        if fold.multipliers == "hardwired":
            check_hardwired(layer.name, fold.pe, fold.simd, layer.out_features,
                            layer.in_features)

    @property
    def cycles(self) -> int:
        """Cycles per input vector in steady state (``NF * SF``)."""
        return self.neuron_folds * self.synapse_folds

    @property
    def latency(self) -> int:
        """Cycles from the transfer of a vector's first input beat to the transfer of its first
        output beat, for an idle unit whose output is always ready."""
        return self.synapse_folds + self._depth + 1

    @property
    def lanes(self) -> int:
        return self.pe * self.simd

    @property
    def memory_bits(self) -> dict:
        """Bits of on-chip memory by use: weights, input buffer, output-stage parameters
        (biases included)."""
        return self.structure().memory_bits(("weights", "input_buffer", "parameters"))

    #: The counts of :meth:`structure`.
    COUNTS = ("unit", "xnor_lanes", "addsub_bits", "tree_bits", "graph_bits",
              "graph_register_bits", "acc_bits", "register_bits", "pipeline_bits",
              "compare_bits", "requant_bits")

    def structure(self) -> Structure:
        """This unit's hardware (:mod:`hwnn.rtl.structure`): the weight ROM, the bias ROM,
        the input buffer, the output FIFO and the output stage's ROMs; the multiplier lanes;
        counts of XNOR lanes, add/subtract lane bits (over the nonzero weights when they are
        constants), adder-tree, accumulator and register bits (operands, lane terms, input
        registers, accumulators, FIFO and fold counters; ``pipeline_bits``: the registers
        added for speed, in the adder tree, at the multipliers and in the output stage); a
        hardwired layer's adder graph as ``graph_bits`` (its adders' bits) and
        ``graph_register_bits`` (its registers, one after every adder as wide as its value:
        exact, unlike the estimated ``pipeline_bits``, so fitted apart from them)."""
        layer, pe, simd, lanes = self.layer, self.pe, self.simd, self.lanes
        w_fmt, x_fmt = layer.weight_format, layer.input.format
        wb, xb, acc_bits = w_fmt.width, x_fmt.width, layer.acc_bits
        structure = Structure.of(self.COUNTS)
        structure.add("unit", 1)
        if self.hardwired:
            # The graph's adders and its registers.
            adder_bits, register_bits = self.graph.register_bits(*self._input_range(),
                                                                 GRAPH_LEVELS)
            term = 0
            structure.add("graph_bits", adder_bits)
            structure.add("graph_register_bits", register_bits)
        elif self._binary_lanes():
            term = 1
            structure.add("xnor_lanes", lanes)
        elif not self._multiplier_lanes():
            term = (wb if x_fmt.kind == "bipolar" else xb) + 1
            # Constant weights (a one-word memory): zero weights drop out of the logic.
            used = (np.count_nonzero(layer.weights) / layer.weights.size
                    if self.cycles == 1 else 1.0)
            structure.add("addsub_bits", lanes * term * used)
        else:
            term = wb + xb
            structure.multipliers.append(Multipliers("lanes", lanes, w_fmt, x_fmt,
                                                     logic=self.logic_multipliers))
        if not self.hardwired:
            structure.add("tree_bits", pe * (simd - 1) * (term + math.log2(simd) / 2))
        if self._accumulates:
            structure.add("acc_bits", pe * acc_bits)
        # Weights of a one-word memory are constants: no register holds them.
        weight_register = lanes * wb if self.cycles > 1 else 0
        structure.add("register_bits", (weight_register + lanes * term + 2 * self.in_count * xb
                                        + pe * acc_bits + self.fifo_depth.bit_length() + 8
                                        + 2 * self.cycles.bit_length()))
        if not self.hardwired:
            structure.add("pipeline_bits",
                          pe * tree_register_bits(simd, term, self._levels_per_register())
                          + self.dsp_stages * (weight_register + lanes * term
                                               + self.in_count * xb))
            structure.memories.append(Memory("weights", self.cycles, lanes * wb,
                                             self._weight_words()))
        structure.merge(stage_structure(layer, pe, pipelined=True,
                                        logic_multipliers=self.logic_multipliers))
        biases = self._bias_words()
        if biases is not None:
            structure.memories.append(Memory("parameters", self.neuron_folds, pe * acc_bits,
                                             biases))
            structure.add("register_bits", pe * acc_bits)
        if self._reuses_input():
            structure.memories.append(Memory("input_buffer", self.synapse_folds, simd * xb))
        structure.memories.append(Memory("fifo", self.fifo_depth - 1, pe * self.out_width + 1))
        return structure

    # Memory images ----------------------------------------------------------------------------

    def _weight_words(self):
        layer, pe, simd = self.layer, self.pe, self.simd
        patterns = layer.weight_format.encode(layer.weights)
        # Word (nf, sf) holds the pe x simd block of neuron fold nf and synapse fold sf.
        blocks = patterns.reshape(self.neuron_folds, pe, self.synapse_folds, simd)
        return pack_rows(blocks.transpose(0, 2, 1, 3).reshape(-1, pe * simd),
                         layer.weight_format.width)

    @property
    def _accumulates(self) -> bool:
        """Whether the accumulators add: a vector of several beats, or a bias (a vector of one
        beat without one only registers its sum)."""
        return self.synapse_folds > 1 or self._bias_words() is not None

    def _bias_words(self):
        """Bias per neuron fold (``pe`` accumulator-format values), or None if all zero."""
        layer, pe = self.layer, self.pe
        if not np.any(layer.bias != 0):
            return None
        patterns = Format.int(layer.acc_bits).encode(layer.bias)
        return [pack_values(patterns[nf * pe:(nf + 1) * pe], layer.acc_bits)
                for nf in range(self.neuron_folds)]

    # Hardware ---------------------------------------------------------------------------------

    def _rom(self, m, name, words, width, attrs=None):
        rom = m.submodules[name] = memory.Memory(shape=unsigned(width), depth=len(words),
                                                 init=[int(word) for word in words], attrs=attrs)
        return rom.read_port()

    def _reuses_input(self):
        """Whether an input vector is kept for the neuron folds after the first."""
        return self._shared_input and self.neuron_folds > 1

    def _pe_inputs(self, x_word, p):
        """The ``simd`` input codes of PE ``p`` in a beat."""
        if self._shared_input:
            return x_word
        width = self.simd * self.in_width
        return x_word[p * width:(p + 1) * width]

    def _constant_matrix(self):
        """The weights as a matrix over an input beat (hardwired layers): the layer's weights,
        or for an input beat per PE (the vector-vector unit) block-diagonal, each PE's
        weights over its own inputs."""
        weights = np.asarray(self.layer.weights, dtype=np.int64)
        if self._shared_input:
            return weights
        matrix = np.zeros((self.pe, self.pe * self.simd), dtype=np.int64)
        for p in range(self.pe):
            matrix[p, p * self.simd:(p + 1) * self.simd] = weights[p]
        return matrix

    def _input_range(self):
        """The smallest and largest input value."""
        x_fmt = self.layer.input.format
        return (-1, 1) if x_fmt.kind == "bipolar" else (x_fmt.min_value, x_fmt.max_value)

    def _input_values(self, x_word):
        """The values of a beat's input codes (+-1 for binary inputs)."""
        x_fmt, xw = self.layer.input.format, self.in_width
        codes = [x_word[i * xw:(i + 1) * xw] for i in range(self.in_count)]
        if x_fmt.kind == "bipolar":
            return [Mux(code[0], 1, -1) for code in codes]
        return [_decode(code, x_fmt) for code in codes]

    def _multiplier_lanes(self):
        """Whether each lane multiplies (neither factor binary nor ternary weights)."""
        w_fmt, x_fmt = self.layer.weight_format, self.layer.input.format
        return (w_fmt.kind != "bipolar" and x_fmt.kind != "bipolar"
                and w_fmt != Format.ternary())

    def _binary_lanes(self):
        layer = self.layer
        return layer.weight_format.kind == "bipolar" and layer.input.format.kind == "bipolar"

    def _lane_terms(self, w_word, x_word):
        """One PE's ``simd`` products (for XNOR-popcount lanes: the agreement bits)."""
        layer, simd = self.layer, self.simd
        w_fmt, x_fmt = layer.weight_format, layer.input.format
        if self._binary_lanes():
            return [~(w_word ^ x_word)]
        ww, xw = w_fmt.width, x_fmt.width
        return [_term(w_word[i * ww:(i + 1) * ww], x_word[i * xw:(i + 1) * xw], w_fmt, x_fmt)
                for i in range(simd)]

    def _lane_products(self, m, w_word, x_word, p):
        """PE ``p``'s ``simd`` lane terms (:meth:`_lane_terms`), ``1 +`` :attr:`dsp_stages`
        registers later: registered once or twice (a DSP block's output register and one in
        logic), or products built in logic over those cycles."""
        cycles = 1 + self.dsp_stages
        if self.logic_multipliers and self._multiplier_lanes():
            w_fmt, x_fmt = self.layer.weight_format, self.layer.input.format
            ww, xw = w_fmt.width, x_fmt.width
            # The weight selects the shifted inputs: a constant weight's zero bits drop out.
            return [logic_product(m, _decode(x_word[i * xw:(i + 1) * xw], x_fmt),
                                  _decode(w_word[i * ww:(i + 1) * ww], w_fmt),
                                  name=f"term_{p}_{i}", cycles=cycles)
                    for i in range(self.simd)]
        terms = self._lane_terms(w_word, x_word)
        for copy in range(cycles):
            registered = [Signal(Value.cast(term).shape(), name=f"term_{p}_{i}_{copy}",
                                 reset_less=True) for i, term in enumerate(terms)]
            m.d.sync += [reg.eq(term) for reg, term in zip(registered, terms, strict=True)]
            terms = registered
        return terms

    def _levels_per_register(self):
        """Adder-tree levels between registers: the first levels of a popcount add single
        bits, which LUTs do in depth without carry chains."""
        return BINARY_TREE_LEVELS if self._binary_lanes() else 1

    def _lane_sum(self, m, terms, name):
        """The sum of one PE's lane terms, :attr:`tree_levels` registers later (a signed
        Value)."""
        if self._binary_lanes():
            agreements = terms[0]                                 # 2 * agreements - simd
            return pipelined_sum(m, [agreements[i] for i in range(self.simd)], name=name,
                                 finish=lambda total: total * 2 - self.simd,
                                 levels_per_register=self._levels_per_register())
        return pipelined_sum(m, terms, name=name)

    def elaborate(self, platform):
        m = Module()
        layer, pe, simd = self.layer, self.pe, self.simd
        nf_count, sf_count = self.neuron_folds, self.synapse_folds
        w_width, x_width = layer.weight_format.width, self.in_width
        acc_bits = layer.acc_bits
        out_fmt = layer.output.format

        # Issue: one (neuron fold, synapse fold) beat per cycle when the FIFO has room for
        # every result in flight and, on the first neuron fold, the input stream has a beat.
        fifo = m.submodules.fifo = FlagFIFO(self.o_stream.payload.shape(),
                                            depth=self.fifo_depth)
        nf = Signal(range(nf_count))
        sf = Signal(range(sf_count))
        address = Signal(range(nf_count * sf_count))
        # FIFO places not taken by a result or promised to a fold in flight, whether there is
        # one, and whether the next beat is a first-fold one: registers, so that the input
        # stream's ready is one gate of flip-flops (no adder or comparator in front of it).
        credits = Signal(range(self.fifo_depth + 1), init=self.fifo_depth)
        room = Signal(init=1)
        many = Signal(init=self.fifo_depth >= 2)
        from_stream = Signal(init=1)
        issue = Signal()
        m.d.comb += [
            self.i_stream.ready.eq(room & from_stream),
            issue.eq(room & (~from_stream | self.i_stream.valid)),
        ]
        # Whether sf is the fold's last, in a register (compared one beat ahead).
        sf_last = Signal(init=sf_count == 1)
        with m.If(issue):
            m.d.sync += address.eq(Mux(address == nf_count * sf_count - 1, 0, address + 1))
            m.d.sync += [sf.eq(Mux(sf_last, 0, sf + 1)),
                         sf_last.eq(Mux(sf_last, sf_count == 1, sf == sf_count - 2))]
            with m.If(sf_last):
                next_nf = Mux(nf == nf_count - 1, 0, nf + 1)
                m.d.sync += nf.eq(next_nf)
                if self._shared_input:
                    m.d.sync += from_stream.eq(next_nf == 0)

        if not self.hardwired:
            weights = self._rom(m, "weights", self._weight_words(), pe * simd * w_width,
                                attrs=RAM_STYLES[self.ram_style])
            m.d.comb += weights.addr.eq(address)

        # Stage 1: weights and the input beat (from the stream register or the buffer).
        valid1, first1, last1 = Signal(), Signal(), Signal()
        nf1 = Signal.like(nf)
        x_reg = Signal(self.in_count * x_width)
        m.d.sync += [valid1.eq(issue), first1.eq(sf == 0), last1.eq(sf_last),
                     nf1.eq(nf), x_reg.eq(self.i_stream.payload.data)]
        if self._reuses_input():
            buffer = m.submodules.input_buffer = memory.Memory(
                shape=unsigned(simd * x_width), depth=sf_count, init=[])
            write = buffer.write_port()
            read = buffer.read_port()
            from_stream1 = Signal()
            m.d.sync += from_stream1.eq(from_stream)
            m.d.comb += [
                write.addr.eq(sf), write.data.eq(self.i_stream.payload.data),
                write.en.eq(issue & from_stream),
                read.addr.eq(sf),
            ]
            x1 = Mux(from_stream1, x_reg, read.data)
        else:
            x1 = x_reg

        def delayed(valid, first, last, fold, stage):
            """The beat's control, one register later."""
            regs = (Signal(name=f"valid{stage}"), Signal(name=f"first{stage}"),
                    Signal(name=f"last{stage}"), Signal.like(nf, name=f"nf{stage}"))
            m.d.sync += [reg.eq(value) for reg, value in zip(regs, (valid, first, last, fold),
                                                             strict=True)]
            return regs

        # Stage 2: the operands, registered (block RAM outputs and the input multiplexer are
        # slow); stage 3: each lane's product, registered (a DSP block's output register).
        # Data registers have no reset, so that synthesis may move them into those blocks.
        ctrl2 = delayed(valid1, first1, last1, nf1, 2)
        w2 = Signal(pe * simd * w_width, reset_less=True)
        x2 = Signal(self.in_count * x_width, reset_less=True)
        m.d.sync += x2.eq(x1)
        if not self.hardwired:
            m.d.sync += w2.eq(weights.data)
        lane_width = simd * w_width
        history = [ctrl2]
        for copy in range(1, 1 + self.dsp_stages):       # again, at the multipliers
            w_next = Signal.like(w2, name=f"w2_{copy}", reset_less=True)
            x_next = Signal.like(x2, name=f"x2_{copy}", reset_less=True)
            m.d.sync += [w_next.eq(w2), x_next.eq(x2)]
            w2, x2 = w_next, x_next
            history.append(delayed(*history[-1], f"2_{copy}"))
        history.append(delayed(*history[-1], 3))
        for copy in range(1, 1 + self.dsp_stages):
            history.append(delayed(*history[-1], f"3_{copy}"))
        # Stage 4: each PE's sum over its simd lanes, one register per adder-tree level
        # (hardwired: the graph of products and sums, stages 3 and 4 in one).
        for level in range(self.tree_levels):
            history.append(delayed(*history[-1], f"4_{level}"))
        valid4, first4, last4, nf4 = history[-1]
        if self.hardwired:
            partial = pipelined_graph(m, self.graph, self._input_values(x2),
                                      *self._input_range(), name="graph",
                                      levels_per_register=GRAPH_LEVELS)
        else:
            terms3 = [self._lane_products(m, w2[p * lane_width:(p + 1) * lane_width],
                                          self._pe_inputs(x2, p), p)
                      for p in range(pe)]
            partial = [self._lane_sum(m, terms3[p], f"partial_{p}") for p in range(pe)]

        # Stage 5: accumulate; a fold's accumulator is final when its last beat is added.
        # The bias is read two cycles ahead and registered (a block RAM output register).
        bias_words = self._bias_words()
        if bias_words is not None:
            bias_port = self._rom(m, "bias", bias_words, pe * acc_bits)
            m.d.comb += bias_port.addr.eq(history[-3][3])
            bias = Signal(pe * acc_bits, reset_less=True)
            m.d.sync += bias.eq(bias_port.data)
        acc = [Signal(signed(acc_bits), name=f"acc_{p}") for p in range(pe)]
        done5 = Signal()
        nf5 = Signal.like(nf)
        m.d.sync += [done5.eq(valid4 & last4), nf5.eq(nf4)]
        with m.If(valid4):
            for p in range(pe):
                start = (bias[p * acc_bits:(p + 1) * acc_bits].as_signed()
                         if bias_words is not None else 0)
                if not self._accumulates:
                    m.d.sync += acc[p].eq(partial[p])
                elif sf_count == 1:         # every beat is the vector's first
                    m.d.sync += acc[p].eq(start + partial[p])
                else:
                    m.d.sync += acc[p].eq(Mux(first4, start, acc[p]) + partial[p])

        # The output stage, tagged with "last fold of the vector".
        stage = m.submodules.stage = OutputStage(layer, pe, pipelined=True,
                                                 logic_multipliers=self.logic_multipliers)
        m.d.comb += [
            stage.i_acc.valid.eq(done5),
            stage.i_acc.payload.group.eq(nf5),
            stage.i_acc.payload.tag.eq(nf5 == nf_count - 1),
        ]
        for p in range(pe):
            m.d.comb += stage.i_acc.payload.acc[p].eq(acc[p])
        values = [stage.o_values.payload.values[p] for p in range(pe)]
        valid_out = stage.o_values.valid

        # Result into the FIFO: values in their output encoding, last on the final fold.
        if out_fmt.kind == "bipolar":
            codes = [value > 0 for value in values]
        else:
            codes = [value[:out_fmt.width] for value in values]
        m.d.comb += [
            fifo.i_stream.valid.eq(valid_out),
            fifo.i_stream.payload.eq(Cat(*codes, stage.o_values.payload.tag)),
        ]
        # Credits: one more when a result leaves, one less when a fold is issued. "room" is
        # credits >= 1 and "many" credits >= 2, updated from comparisons of the register
        # (not of its next value), so the control decides late.
        finishing = issue & sf_last
        leaving = fifo.o_stream.valid & fifo.o_stream.ready
        with m.If(leaving & ~finishing):
            m.d.sync += [credits.eq(credits + 1), room.eq(1), many.eq(credits >= 1)]
        with m.Elif(finishing & ~leaving):
            m.d.sync += [credits.eq(credits - 1), room.eq(many), many.eq(credits >= 3)]

        wiring.connect(m, fifo.o_stream, wiring.flipped(self.o_stream))
        return m
