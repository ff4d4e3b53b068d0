# amaranth: UnusedElaboratable=no
# (A top built for its structure only, by the estimator, never elaborates its parts.)
"""Dataflow accelerator: one streaming unit per layer (:mod:`hwnn.rtl.units`), chained by
streams.

Between two layers a :class:`~hwnn.rtl.widthconv.WidthConverter` repacks the producer's
``out_count`` values per beat into the consumer's ``in_count`` values per beat, and a FIFO of
the depth the consumer asks for (a matrix-vector unit: one input vector, so that the producer
runs ahead while it re-reads its input buffer) lets every layer run at the rate of the
slowest one.
"""

import math
from itertools import pairwise

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Network
from .fifo import FlagFIFO
from .layouts import Beat
from .mvau import MatrixVectorUnit
from .params import LayerFold
from .structure import Structure
from .units import unit_class
from .widthconv import WidthConverter

__all__ = ["DataflowAccelerator"]


class DataflowAccelerator(wiring.Component):
    """A whole network as a pipeline of streaming layer units.

    An input vector is ``in_features / in_count`` beats of ``in_count`` input codes (an image
    in raster order, channels fastest); an output vector is ``out_features / out_count``
    beats of ``out_count`` output codes, ``last`` set on its final beat. Throughput is one
    vector every :attr:`cycles` cycles in steady state.

    Parameters
    ----------
    network : :class:`~hwnn.ir.Network`
    folding : one :class:`~hwnn.rtl.folding.LayerFold` per layer (its ``multipliers`` say
        where the layer's multipliers go).
    ram_style : where the weight memories go (see :data:`~hwnn.rtl.mvau.RAM_STYLES`).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    in_count, out_count : int
        Values per input beat (the first unit's ``in_count``: ``simd[0]``) and per output
        beat (the last unit's ``out_count``: ``pe[-1]``), as in the other architectures'
        tops.
    units : the layer units (:mod:`hwnn.rtl.units`), in order.
    """

    def __init__(self, network: Network, folding, *, ram_style="auto"):
        if not isinstance(network, Network):
            raise TypeError(f"network must be a Network, not {network!r}")
        folding = tuple(folding)
        if len(folding) != len(network.layers):
            raise ValueError(f"folding needs one entry per layer ({len(network.layers)}), not "
                             f"{len(folding)}")
        for fold in folding:
            if not isinstance(fold, LayerFold):
                raise TypeError(f"folding entries must be LayerFold, not {fold!r}")
        self.network, self.folding = network, folding
        self.units = [unit_class(layer)(layer, pe=fold.pe, simd=fold.simd, ram_style=ram_style,
                                        multipliers=fold.multipliers)
                      for layer, fold in zip(network.layers, folding, strict=True)]
        # Between layers: the producer's beats repacked for the consumer, into the FIFO the
        # consumer asks for.
        self.converters, self.fifos = [], []
        for producer, consumer in pairwise(self.units):
            converter = WidthConverter(producer.out_width, producer.out_count,
                                       consumer.in_count, math.prod(producer.layer.output_shape))
            self.converters.append(converter)
            self.fifos.append(FlagFIFO(converter.o_stream.payload.shape(),
                                       depth=consumer.input_fifo_depth))
        first, last = self.units[0], self.units[-1]
        self.in_count, self.out_count = first.in_count, last.out_count
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, first.in_width))),
            "o_stream": Out(stream.Signature(Beat(self.out_count, last.out_width))),
        })

    @property
    def cycles(self) -> int:
        """Cycles per inference in steady state: the slowest layer's."""
        return max(unit.cycles for unit in self.units)

    @property
    def lanes(self) -> int:
        return sum(unit.lanes for unit in self.units)

    def structure(self) -> Structure:
        """The hardware of the units and of what connects them (:mod:`hwnn.rtl.structure`)."""
        structure = Structure.of(MatrixVectorUnit.COUNTS)
        for part in [*self.units, *self.converters, *self.fifos]:
            structure.merge(part.structure())
        return structure

    def elaborate(self, platform):
        m = Module()
        for index, unit in enumerate(self.units):
            m.submodules[f"layer{index}"] = unit
        wiring.connect(m, wiring.flipped(self.i_stream), self.units[0].i_stream)
        for index, (converter, fifo) in enumerate(zip(self.converters, self.fifos,
                                                      strict=True)):
            m.submodules[f"convert{index}"] = converter
            m.submodules[f"fifo{index}"] = fifo
            wiring.connect(m, self.units[index].o_stream, converter.i_stream)
            wiring.connect(m, converter.o_stream, fifo.i_stream)
            wiring.connect(m, fifo.o_stream, self.units[index + 1].i_stream)
        wiring.connect(m, self.units[-1].o_stream, wiring.flipped(self.o_stream))
        return m
