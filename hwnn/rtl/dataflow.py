"""Dataflow accelerator: one matrix-vector-activation unit per layer, chained by streams.

Between two layers a :class:`~hwnn.rtl.widthconv.WidthConverter` repacks the producer's ``pe``
values per beat into the consumer's ``simd`` values per beat, and a FIFO holding one input
vector of the consumer lets the producer run ahead while the consumer re-reads its input
buffer, so every layer can run at the rate of the slowest one.
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Network
from .folding import LayerFold
from .layouts import Beat
from .mvau import MatrixVectorUnit
from .widthconv import WidthConverter
from .fifo import FlagFIFO

__all__ = ["DataflowAccelerator"]


class DataflowAccelerator(wiring.Component):
    """A whole network as a pipeline of streaming layer engines.

    An input vector is ``in_features / simd[0]`` beats of ``simd[0]`` input codes; an output
    vector is ``out_features / pe[-1]`` beats of ``pe[-1]`` output codes, ``last`` set on its
    final beat. Throughput is one vector every :attr:`cycles` cycles in steady state.

    Parameters
    ----------
    network : :class:`~hwnn.ir.Network`
    folding : one :class:`~hwnn.rtl.folding.LayerFold` per layer.
    ram_style : where the weight memories go (see :data:`~hwnn.rtl.mvau.RAM_STYLES`).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(simd[0], input width)))``
    o_stream : ``Out(stream.Signature(Beat(pe[-1], output width)))``
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
        self.units = [MatrixVectorUnit(layer, pe=fold.pe, simd=fold.simd, ram_style=ram_style)
                      for layer, fold in zip(network.layers, folding, strict=True)]
        first, last = self.units[0], self.units[-1]
        super().__init__({
            "i_stream": In(stream.Signature(Beat(first.simd, first.in_width))),
            "o_stream": Out(stream.Signature(Beat(last.pe, last.out_width))),
        })

    @property
    def cycles(self) -> int:
        """Cycles per inference in steady state: the slowest layer's."""
        return max(unit.cycles for unit in self.units)

    @property
    def lanes(self) -> int:
        return sum(unit.lanes for unit in self.units)

    def elaborate(self, platform):
        m = Module()
        for index, unit in enumerate(self.units):
            m.submodules[f"layer{index}"] = unit
        wiring.connect(m, wiring.flipped(self.i_stream), self.units[0].i_stream)
        for index, (producer, consumer) in enumerate(zip(self.units, self.units[1:],
                                                         strict=False)):
            width = producer.out_width
            converter = m.submodules[f"convert{index}"] = WidthConverter(
                width, producer.pe, consumer.simd, producer.layer.out_features)
            wiring.connect(m, producer.o_stream, converter.i_stream)
            fifo = m.submodules[f"fifo{index}"] = FlagFIFO(
                width=len(converter.o_stream.payload.as_value()),
                depth=consumer.synapse_folds + 2)
            m.d.comb += [
                fifo.w_data.eq(converter.o_stream.payload),
                fifo.w_en.eq(converter.o_stream.valid),
                converter.o_stream.ready.eq(fifo.w_rdy),
                consumer.i_stream.payload.eq(fifo.r_data),
                consumer.i_stream.valid.eq(fifo.r_rdy),
                fifo.r_en.eq(consumer.i_stream.ready),
            ]
        wiring.connect(m, self.units[-1].o_stream, wiring.flipped(self.o_stream))
        return m
