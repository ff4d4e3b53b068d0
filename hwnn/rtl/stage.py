"""The output stage of a layer: accumulators to output values, as the IR says.

:class:`OutputStage` serves ``lanes`` channels per cycle: a group ``g`` of accumulators holds
channels ``g * lanes .. g * lanes + lanes - 1`` (channels past the layer's last are padding and
give unspecified values). Per-channel parameters live in ROMs indexed by the group:

* thresholds: ``level = #(t <= acc)`` (``#(acc <= t)`` on descending channels), output value
  ``out_format.min_value + step * level``;
* requantization: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)``, with a constant
  shift when the layer's shifts are all equal;
* no stage: the value is the accumulator.
"""

import numpy as np
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..quant.formats import Format, signed_bits_for
from ..quant.ir import Dense, Requant, Thresholds
from .arith import popcount
from .layouts import pack_values

__all__ = ["OutputStage", "parameter_bits", "parameter_words"]


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


def parameter_bits(layer: Dense, lanes: int) -> int:
    """Bits of output-stage parameter ROM for ``lanes`` channels per word."""
    return sum(width * len(words) for width, words in parameter_words(layer, lanes).values())


class OutputStage(wiring.Component):
    """Output stage of ``layer`` for ``lanes`` channels per cycle.

    An input is a group of accumulators with the group index and a ``tag`` that is passed
    through untouched; :attr:`latency` cycles later the output values come out with the tag.
    One group per cycle; no backpressure (``always_ready``).

    Members
    -------
    i_acc : ``In(stream.Signature({"acc", "group", "tag"}, always_ready=True))``
    o_values : ``Out(stream.Signature({"values", "tag"}, always_ready=True))``
        ``values`` are signed, :attr:`value_bits` wide.
    """

    def __init__(self, layer: Dense, lanes: int, *, tag_bits: int = 1):
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense layer, not {layer!r}")
        self.layer, self.lanes = layer, lanes
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
        return 3 if isinstance(self.layer.stage, Requant) else 2

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

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self.layer, self.lanes
        stage = layer.stage

        ports = {}
        for name, (width, words) in self.parameter_words().items():
            rom = m.submodules[name] = memory.Memory(shape=unsigned(width), depth=len(words),
                                                     init=[int(word) for word in words])
            ports[name] = rom.read_port()
            m.d.comb += ports[name].addr.eq(self.i_acc.payload.group)

        # Cycle 1: the parameters arrive; register the accumulators beside them.
        acc = Signal.like(self.i_acc.payload.acc)
        valid, tag = Signal(), Signal.like(self.i_acc.payload.tag)
        m.d.sync += [acc.eq(self.i_acc.payload.acc), valid.eq(self.i_acc.valid),
                     tag.eq(self.i_acc.payload.tag)]

        if isinstance(stage, Requant):
            mult_bits = stage.mult_bits
            product_bits = layer.acc_bits + mult_bits + 1
            products = [Signal(signed(product_bits), name=f"product_{p}") for p in range(lanes)]
            shifts = [Signal(6, name=f"shift_{p}") for p in range(lanes)]
            valid2, tag2 = Signal(), Signal.like(tag)
            m.d.sync += [valid2.eq(valid), tag2.eq(tag)]
            for p in range(lanes):
                multiplier = ports["multiplier"].data[p * mult_bits:(p + 1) * mult_bits]
                m.d.sync += products[p].eq(acc[p] * multiplier)
                if "shift" in ports:
                    m.d.sync += shifts[p].eq(ports["shift"].data[p * 6:(p + 1) * 6])
            results = []
            for p in range(lanes):
                if "shift" in ports:
                    amount = shifts[p]
                    rounding = (Const(1, product_bits + 1) << amount) >> 1
                else:
                    amount = int(stage.shift[0])
                    rounding = (1 << amount) >> 1
                scaled = ((products[p] + rounding) >> amount) + stage.zero_point
                results.append(Mux(scaled < stage.lo, stage.lo,
                                   Mux(scaled > stage.hi, stage.hi, scaled)))
            valid, tag = valid2, tag2
        elif isinstance(stage, Thresholds):
            t_width = self.parameter_words()["thresholds"][0] // lanes
            results = [self._threshold_value(
                acc[p], ports["thresholds"].data[p * t_width:(p + 1) * t_width],
                ports["descending"].data[p] if "descending" in ports else None)
                for p in range(lanes)]
        else:
            results = [acc[p] for p in range(lanes)]

        for p in range(lanes):
            m.d.sync += self.o_values.payload.values[p].eq(results[p])
        m.d.sync += [self.o_values.valid.eq(valid), self.o_values.payload.tag.eq(tag)]
        return m
