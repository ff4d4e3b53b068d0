# amaranth: UnusedElaboratable=no
# (A unit built for its structure only, by the estimator, never elaborates its parts.)
"""Max-pool unit of the dataflow engine: a :class:`~hwnn.rtl.pool.MaxPoolUnit` for one
:class:`~hwnn.ir.MaxPool2d` layer, with the members every dataflow unit has."""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import MaxPool2d
from .layouts import Beat
from .params import LayerFold, check_divides, check_positive_int, divisors
from .pool import MaxPoolUnit
from .structure import Structure

__all__ = ["PoolingUnit"]


class PoolingUnit(wiring.Component):
    """Streaming max pool of one layer, ``count`` values per beat in and out.

    Its fold is ``LayerFold(count, count)``: ``pe`` and ``simd`` are both the values per beat
    (``count`` comparators), and ``count`` divides the channels. The input is one ``H x W x
    C`` image after another (framing by count), the output each pooled image, ``last`` on its
    final beat; one image every :attr:`cycles` ``= H * W * C / count`` cycles.

    Parameters
    ----------
    layer : :class:`~hwnn.ir.MaxPool2d`
    pe, simd : the fold, both ``count``.
    ram_style : ignored (the partial maxima are RAMs; Yosys maps them).
    multipliers : ignored (a max pool has none).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(count, width)))``
    o_stream : ``Out(stream.Signature(Beat(count, width)))``
    pool : :class:`~hwnn.rtl.pool.MaxPoolUnit`
    layer, pe, simd, lanes, in_count, out_count, in_width, out_width, cycles, latency,
    memory_bits, input_fifo_depth :
        As every dataflow unit has them (:mod:`hwnn.rtl.units`); :attr:`lanes` is ``count``.
    """

    #: A FIFO of three beats in front: the unit takes a beat every cycle it can give one, and
    #: a :class:`~hwnn.rtl.fifo.FlagFIFO` of two passes only a beat every other cycle.
    input_fifo_depth = 3

    def __init__(self, layer: MaxPool2d, *, pe=1, simd=1, ram_style="auto", multipliers="dsp"):
        if not isinstance(layer, MaxPool2d):
            raise TypeError(f"layer must be a MaxPool2d layer, not {layer!r}")
        self.check_fold(layer, LayerFold(pe, simd, multipliers))
        self.layer, self.pe, self.simd = layer, pe, simd
        self.pool = MaxPoolUnit(layer.input_shape, layer.kernel, fmt=layer.input.format,
                                stride=layer.stride, count=pe)
        self.in_count = self.out_count = pe
        self.in_width = self.out_width = layer.input.format.width
        super().__init__({
            "i_stream": In(stream.Signature(Beat(pe, self.in_width))),
            "o_stream": Out(stream.Signature(Beat(pe, self.out_width))),
        })

    # Folding (the dataflow unit protocol, :mod:`hwnn.rtl.units`) -----------------------------

    @staticmethod
    def fold_options(layer: MaxPool2d) -> list[LayerFold]:
        """``LayerFold(count, count)`` for every ``count`` dividing the channels."""
        return [LayerFold(count, count) for count in divisors(layer.in_channels)]

    @staticmethod
    def fold_cycles(layer: MaxPool2d, fold: LayerFold) -> int:
        """Cycles per image: ``H * W * C / count``."""
        height, width, channels = layer.input_shape
        return height * width * channels // fold.pe

    @staticmethod
    def fold_lanes(layer: MaxPool2d, fold: LayerFold) -> int:
        """Lanes of ``fold``: its ``count`` comparators."""
        return fold.pe

    @staticmethod
    def check_fold(layer: MaxPool2d, fold: LayerFold):
        """Raise TypeError/ValueError unless ``pe == simd`` (the values per beat) divides the
        channels."""
        check_positive_int("PoolingUnit", "pe", fold.pe)
        check_positive_int("PoolingUnit", "simd", fold.simd)
        if fold.pe != fold.simd:
            raise ValueError(f"Layer {layer.name!r}: a max pool's pe and simd are its values "
                             f"per beat and must be equal, not pe {fold.pe} and simd "
                             f"{fold.simd}")
        check_divides(layer, "pe", fold.pe, layer.in_channels, "channels")

    # Members ----------------------------------------------------------------------------------

    @property
    def lanes(self) -> int:
        return self.pe

    @property
    def cycles(self) -> int:
        return self.pool.cycles

    @property
    def latency(self) -> int:
        """Cycles from an image's first input transfer to its first output transfer, at full
        rate: the input beats up to the one completing the first window's first beat, then
        the unit's :attr:`~hwnn.rtl.pool.MaxPoolUnit.latency`."""
        (kh, kw), width, channels = self.layer.kernel, self.layer.in_size[1], \
            self.layer.in_channels
        return ((kh - 1) * width + kw - 1) * channels // self.pe + MaxPoolUnit.latency

    @property
    def memory_bits(self) -> dict:
        """Bits of on-chip memory: the partial maxima."""
        return {"partial_maxima": self.pool.memory_bits}

    def structure(self) -> Structure:
        return self.pool.structure()

    def elaborate(self, platform):
        m = Module()
        m.submodules.pool = self.pool
        wiring.connect(m, wiring.flipped(self.i_stream), self.pool.i_stream)
        wiring.connect(m, self.pool.o_stream, wiring.flipped(self.o_stream))
        return m
