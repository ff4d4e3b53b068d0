"""The output stage of a layer: accumulators to output values, as the IR says.

:class:`OutputStage` serves ``lanes`` channels per cycle: a group ``g`` of accumulators holds
channels ``g * lanes .. g * lanes + lanes - 1`` (channels past the layer's last are padding and
give unspecified values). Per-channel parameters live in ROMs indexed by the group:

* thresholds: ``level = #(t <= acc)`` (``#(acc <= t)`` on descending channels), output value
  ``out_format.min_value + step * level``;
* requantization: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)``, with a constant
  shift when the layer's shifts are all equal;
* no stage: the value is the accumulator.

A ``pipelined`` stage (the dataflow engine's) registers every parameter read before it is used
(a block RAM output register), multiplies each 16-bit piece of the accumulator separately
(one DSP block per piece, registered at its output and again in logic) and rounds, shifts
and clamps in two steps: one more cycle for thresholds, three more for requantization.
"""

import numpy as np
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Requant, Thresholds
from ..ir.formats import Format, signed_bits_for
from .arith import adder_tree, popcount
from .layouts import pack_values

__all__ = ["OutputStage", "PIECE_BITS", "accumulator_pieces", "parameter_bits",
           "parameter_words", "stage_latency"]

#: Accumulator bits per requantization multiplier of a pipelined stage: a piece and the
#: multiplier fit one ECP5 MULT18X18D or iCE40 SB_MAC16 for multipliers of up to 16 bits.
PIECE_BITS = 16


def parameter_words(layer: Dense, lanes: int) -> dict:
    """ROM images of a layer's output-stage parameters for ``lanes`` channels per word:
    ``{name: (width, [word per group])}``, channels past the last padded with zeros."""
    stage = layer.stage
    groups = -(-layer.out_features // lanes)

    def per_group(columns, width):
        columns = np.asarray(columns)
        padding = np.zeros((groups * lanes - columns.shape[0], *columns.shape[1:]),
                           dtype=columns.dtype)
        columns = np.concatenate([columns, padding])
        return (lanes * width, [pack_values(columns[g * lanes:(g + 1) * lanes].reshape(-1), width)
                                for g in range(groups)])

    words = {}
    if isinstance(stage, Thresholds):
        t_fmt = Format.int(layer.threshold_bits)
        count = stage.values.shape[1]
        packed = np.array([pack_values(t_fmt.encode(row), t_fmt.width)
                           for row in stage.values], dtype=object)
        words["thresholds"] = per_group(packed, count * t_fmt.width)
        if np.any(stage.descending):
            words["descending"] = per_group(stage.descending.astype(np.int64), 1)
    elif isinstance(stage, Requant):
        words["multiplier"] = per_group(stage.multiplier, stage.mult_bits)
        if np.any(stage.shift != stage.shift[0]):
            words["shift"] = per_group(stage.shift, 6)
    return words


def accumulator_pieces(acc_bits: int) -> list[tuple[int, int, bool]]:
    """The pieces a pipelined stage multiplies separately: ``(offset, width, signed)`` for
    each, least significant first; all but the top one :data:`PIECE_BITS` wide and
    unsigned."""
    count = -(-acc_bits // PIECE_BITS)
    return [(k * PIECE_BITS, min(PIECE_BITS, acc_bits - k * PIECE_BITS), k == count - 1)
            for k in range(count)]


def _delayed(m, value, cycles, name, reset_less=False):
    """``value`` ``cycles`` registers later."""
    for cycle in range(cycles):
        register = Signal.like(value, name=f"{name}_{cycle}", reset_less=reset_less)
        m.d.sync += register.eq(value)
        value = register
    return value


def stage_latency(layer: Dense, pipelined=False) -> int:
    """Cycles from an input group to its output values in ``layer``'s :class:`OutputStage`."""
    if layer.stage is None:
        return 2
    if isinstance(layer.stage, Requant):
        return 6 if pipelined else 3
    return 3 if pipelined else 2


def parameter_bits(layer: Dense, lanes: int) -> int:
    """Bits of output-stage parameter ROM for ``lanes`` channels per word."""
    return sum(width * len(words) for width, words in parameter_words(layer, lanes).values())


class OutputStage(wiring.Component):
    """Output stage of ``layer`` for ``lanes`` channels per cycle.

    An input is a group of accumulators with the group index and a ``tag`` that is passed
    through untouched; :attr:`latency` cycles later the output values come out with the tag.
    One group per cycle; no backpressure (``always_ready``). ``pipelined`` trades latency for
    short paths (see the module's description); the data registers it adds have no reset, so
    that synthesis may move them into block RAM and DSP registers.

    Members
    -------
    i_acc : ``In(stream.Signature({"acc", "group", "tag"}, always_ready=True))``
    o_values : ``Out(stream.Signature({"values", "tag"}, always_ready=True))``
        ``values`` are signed, :attr:`value_bits` wide.
    """

    def __init__(self, layer: Dense, lanes: int, *, tag_bits: int = 1, pipelined=False):
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense layer, not {layer!r}")
        if not isinstance(pipelined, bool):
            raise TypeError(f"pipelined must be True or False, not {pipelined!r}")
        self.layer, self.lanes, self.pipelined = layer, lanes, pipelined
        self.groups = -(-layer.out_features // lanes)
        out_fmt = layer.output.format
        self.value_bits = (out_fmt.bits if layer.stage is None
                           else signed_bits_for(out_fmt.min_value, out_fmt.max_value))
        super().__init__({
            "i_acc": In(stream.Signature(data.StructLayout({
                "acc":   data.ArrayLayout(signed(layer.acc_bits), lanes),
                "group": range(self.groups),
                "tag":   unsigned(tag_bits),
            }), always_ready=True)),
            "o_values": Out(stream.Signature(data.StructLayout({
                "values": data.ArrayLayout(signed(self.value_bits), lanes),
                "tag":    unsigned(tag_bits),
            }), always_ready=True)),
        })

    @property
    def latency(self) -> int:
        """Cycles from an input group to its output values."""
        return stage_latency(self.layer, self.pipelined)

    def parameter_words(self) -> dict:
        """ROM images: ``{name: (width, [word per group])}``."""
        return parameter_words(self.layer, self.lanes)

    def _threshold_value(self, acc, thresholds, descending):
        layer = self.layer
        t_bits = layer.threshold_bits
        hits = []
        for i in range(layer.stage.values.shape[1]):
            t = thresholds[i * t_bits:(i + 1) * t_bits].as_signed()
            hit = acc >= t
            if descending is not None:
                hit = Mux(descending, acc <= t, hit)
            hits.append(hit)
        out_fmt = layer.output.format
        return out_fmt.step * popcount(Cat(*hits)) + out_fmt.min_value

    @property
    def _product_cycles(self):
        return 2 if self.pipelined else 1

    def _products(self, m, acc, multipliers):
        """Each lane's ``acc * multiplier`` :attr:`_product_cycles` later: one registered
        product, or (pipelined) one product per accumulator piece, registered at the
        multiplier (a DSP block's output register) and again in logic, summed by the
        caller."""
        layer, lanes = self.layer, self.lanes
        if not self.pipelined:
            products = [Signal(signed(layer.acc_bits + len(multipliers[p]) + 1),
                               name=f"product_{p}") for p in range(lanes)]
            m.d.sync += [products[p].eq(acc[p] * multipliers[p]) for p in range(lanes)]
            return products
        sums = []
        for p in range(lanes):
            pieces = []
            for k, (offset, width, is_signed) in enumerate(accumulator_pieces(layer.acc_bits)):
                piece = acc[p].as_unsigned()[offset:offset + width]
                piece = piece.as_signed() if is_signed else piece
                product = Signal(signed(width + len(multipliers[p]) + 1),
                                 name=f"product_{p}_{k}", reset_less=True)
                m.d.sync += product.eq(piece * multipliers[p])
                product = _delayed(m, product, 1, f"product_{p}_{k}_logic", True)
                pieces.append(product << offset if offset else product)
            sums.append(adder_tree(pieces))
        return sums

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self.layer, self.lanes
        stage = layer.stage

        def delayed(value, cycles, name, reset_less=False):
            return _delayed(m, value, cycles, name, reset_less)

        # Cycle 1: the parameters arrive; register the accumulators beside them. Pipelined,
        # cycle 2: the parameters registered.
        params = {}
        for name, (width, words) in self.parameter_words().items():
            rom = m.submodules[name] = memory.Memory(shape=unsigned(width), depth=len(words),
                                                     init=[int(word) for word in words])
            port = rom.read_port()
            m.d.comb += port.addr.eq(self.i_acc.payload.group)
            params[name] = delayed(port.data, int(self.pipelined), name, reset_less=True)
        lag = 1 + (self.pipelined and stage is not None)
        acc = delayed(self.i_acc.payload.acc, lag, "acc", reset_less=self.pipelined)
        valid = delayed(self.i_acc.valid, lag, "valid")
        tag = delayed(self.i_acc.payload.tag, lag, "tag")

        if isinstance(stage, Requant):
            mult_bits = stage.mult_bits
            multipliers = [params["multiplier"][p * mult_bits:(p + 1) * mult_bits]
                           for p in range(lanes)]
            products = self._products(m, acc, multipliers)
            cycles = self._product_cycles
            shifts = [delayed(params["shift"][p * 6:(p + 1) * 6], cycles, f"shift_{p}")
                      if "shift" in params else int(stage.shift[0]) for p in range(lanes)]
            valid = delayed(valid, cycles, "valid_product")
            tag = delayed(tag, cycles, "tag_product")
            results = []
            for p in range(lanes):
                if isinstance(shifts[p], int):
                    rounding = (1 << shifts[p]) >> 1
                else:
                    rounding = (Const(1, len(products[p]) + 1) << shifts[p]) >> 1
                scaled = ((products[p] + rounding) >> shifts[p]) + stage.zero_point
                if self.pipelined:
                    scaled = delayed(scaled, 1, f"scaled_{p}", reset_less=True)
                results.append(Mux(scaled < stage.lo, stage.lo,
                                   Mux(scaled > stage.hi, stage.hi, scaled)))
            if self.pipelined:
                valid, tag = delayed(valid, 1, "valid_scaled"), delayed(tag, 1, "tag_scaled")
        elif isinstance(stage, Thresholds):
            t_width = self.parameter_words()["thresholds"][0] // lanes
            results = [self._threshold_value(
                acc[p], params["thresholds"][p * t_width:(p + 1) * t_width],
                params["descending"][p] if "descending" in params else None)
                for p in range(lanes)]
        else:
            results = [acc[p] for p in range(lanes)]

        for p in range(lanes):
            m.d.sync += self.o_values.payload.values[p].eq(results[p])
        m.d.sync += [self.o_values.valid.eq(valid), self.o_values.payload.tag.eq(tag)]
        return m
