# amaranth: UnusedElaboratable=no
# (A unit built for its structure only, by the estimator, never elaborates its parts.)
"""Convolution unit of the dataflow engine: a sliding-window unit feeding a matrix-vector unit.

The :class:`~hwnn.rtl.window.SlidingWindowUnit` turns the input image into one window per
output pixel (``K = kh * kw * C_in`` codes in window order, channels fastest), and a
:class:`~hwnn.rtl.mvau.MatrixVectorUnit` computes the convolution's im2col matrix
(:meth:`~hwnn.ir.Conv2d.im2col`) on each window, folded by ``pe`` over output channels and
``simd`` over ``K``; its output, one pixel's channels after another, is the output image in
raster order, with ``last`` moved from each pixel's final beat to the image's.

With hardwired weights (``multipliers="hardwired"``, fully parallel: ``pe = C_out``, ``simd =
C_in``) the window unit emits a whole window per beat, reading ``kh * kw`` copies of its line
buffer, and the im2col matrix is one adder graph (:mod:`hwnn.rtl.cmvm`): an output pixel per
cycle.

A depthwise convolution instead has the window unit emit each window channel group by
channel group (``order="depthwise"``) into a :class:`~hwnn.rtl.vvau.VectorVectorUnit`,
folded by ``pe`` over the channels and ``simd`` over the kernel positions: each channel's
``kh * kw`` taps only, not the block-diagonal im2col matrix (``C`` times the work and the
weight memory).
"""

from amaranth import *
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Conv2d
from .layouts import Beat
from .mvau import MatrixVectorUnit, check_hardwired
from .vvau import VectorVectorUnit
from .params import LayerFold, check_divides, check_positive_int, divisors
from .structure import Structure
from .window import SlidingWindowUnit

__all__ = ["ConvolutionUnit"]


class ConvolutionUnit(wiring.Component):
    """Streaming convolution ``out = stage(conv(image) + bias)`` on ``pe x simd`` lanes.

    The input is one ``H x W x C_in`` image after another, channels-last in raster order,
    ``simd`` codes per beat (framing by count: the input ``last`` is ignored); the output
    is each ``OH x OW x C_out`` image in the same order, ``pe`` codes per beat, ``last`` on
    its final beat. ``pe`` divides ``C_out`` and ``simd`` divides ``C_in`` (so that a beat
    never straddles two pixels of the input or two taps of a window).

    Throughput: one image every :attr:`cycles` ``= max(OH * OW * (C_out / pe) * (K / simd),
    H * W * C_in / simd)`` cycles, the matrix-vector unit's work (``K = kh * kw * C_in``) or,
    when the kernel covers fewer pixels than the stride skips, the input's arrival. Padding
    inserts the input's zero point.

    Hardwired (``multipliers="hardwired"``, only at ``pe = C_out``, ``simd = C_in``), a whole
    window is one beat of the matrix-vector unit: ``max(OH * OW, H * W)`` cycles an image.

    A depthwise convolution (``C_out == C_in == C``) folds differently: ``pe`` divides ``C``
    (channels in parallel, and the input's values per beat), ``simd`` divides ``kh * kw``
    (kernel positions per beat), and an image takes ``max(OH * OW * (C / pe) * (kh * kw /
    simd), H * W * C / pe)`` cycles on a :class:`~hwnn.rtl.vvau.VectorVectorUnit`.

    Parameters
    ----------
    layer : :class:`~hwnn.ir.Conv2d`
    pe, simd : folding.
    ram_style : where the weight memory goes (:data:`~hwnn.rtl.mvau.RAM_STYLES`).
    multipliers : where the multipliers go, as the matrix-vector unit's.

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``; ``in_count`` is
        ``simd``, or ``pe`` for a depthwise convolution
    o_stream : ``Out(stream.Signature(Beat(pe, output width)))``
    window : :class:`~hwnn.rtl.window.SlidingWindowUnit`
    matrix : :class:`~hwnn.rtl.mvau.MatrixVectorUnit` (of the im2col layer), or for a
        depthwise convolution :class:`~hwnn.rtl.vvau.VectorVectorUnit`
    layer, pe, simd, lanes, in_count, out_count, in_width, out_width, cycles, latency,
    memory_bits, input_fifo_depth :
        As every dataflow unit has them (:mod:`hwnn.rtl.units`); :attr:`latency` is the
        window unit's plus the matrix-vector unit's.
    """

    #: A FIFO of three beats in front (the line buffer holds the rows the windows need): a
    #: :class:`~hwnn.rtl.fifo.FlagFIFO` of two passes only a beat every other cycle.
    input_fifo_depth = 3

    def __init__(self, layer: Conv2d, *, pe=1, simd=1, ram_style="auto", multipliers="dsp"):
        if not isinstance(layer, Conv2d):
            raise TypeError(f"layer must be a Conv2d layer, not {layer!r}")
        self.check_fold(layer, LayerFold(pe, simd, multipliers))
        self.layer, self.pe, self.simd, self.multipliers = layer, pe, simd, multipliers
        fmt = layer.input.format
        pad_code = int(fmt.encode(layer.input.zero_point)) if any(layer.padding) else 0
        geometry = dict(width=fmt.width, stride=layer.stride, padding=layer.padding,
                        pad_code=pad_code)
        if layer.depthwise:
            self.in_count = pe
            self.window = SlidingWindowUnit(layer.input_shape, layer.kernel, **geometry,
                                            in_count=pe, simd=pe, order="depthwise", taps=simd)
            self.matrix = VectorVectorUnit(layer, pe=pe, simd=simd, ram_style=ram_style,
                                           multipliers=multipliers)
        else:
            taps = _taps_per_beat(layer, multipliers)
            self.in_count = simd
            self.window = SlidingWindowUnit(layer.input_shape, layer.kernel, **geometry,
                                            in_count=simd, simd=simd, taps=taps)
            self.matrix = MatrixVectorUnit(layer.im2col(), pe=pe, simd=simd * taps,
                                           ram_style=ram_style, multipliers=multipliers)
        self.out_count = pe
        self.in_width, self.out_width = self.matrix.in_width, self.matrix.out_width
        super().__init__({
            "i_stream": In(stream.Signature(Beat(self.in_count, self.in_width))),
            "o_stream": Out(stream.Signature(Beat(pe, self.out_width))),
        })

    # Folding (the dataflow unit protocol, :mod:`hwnn.rtl.units`) -----------------------------

    @staticmethod
    def fold_options(layer: Conv2d) -> list[LayerFold]:
        """Every folding: ``pe`` divides the output channels, ``simd`` the input channels (a
        depthwise convolution's kernel positions)."""
        return [LayerFold(pe, simd) for pe in divisors(layer.out_channels)
                for simd in divisors(_simd_count(layer))]

    @staticmethod
    def fold_cycles(layer: Conv2d, fold: LayerFold) -> int:
        """Cycles per image folded as ``fold`` (see the class)."""
        (out_h, out_w), (height, width, channels) = layer.out_size, layer.input_shape
        taps = layer.kernel[0] * layer.kernel[1]
        if layer.depthwise:
            return max(out_h * out_w * (channels // fold.pe) * (taps // fold.simd),
                       height * width * channels // fold.pe)
        beat = fold.simd * _taps_per_beat(layer, fold.multipliers)
        return max(out_h * out_w * (layer.out_channels // fold.pe) * (taps * channels // beat),
                   height * width * channels // fold.simd)

    @staticmethod
    def fold_lanes(layer: Conv2d, fold: LayerFold) -> int:
        """Lanes (products per cycle) of ``fold``: ``pe * simd``, times ``kh * kw``
        hardwired."""
        return fold.lanes * _taps_per_beat(layer, fold.multipliers)

    @staticmethod
    def check_fold(layer: Conv2d, fold: LayerFold):
        """Raise TypeError/ValueError unless ``pe`` divides the output channels and ``simd``
        the input channels (a depthwise convolution's kernel positions)."""
        check_positive_int("ConvolutionUnit", "pe", fold.pe)
        check_positive_int("ConvolutionUnit", "simd", fold.simd)
        check_divides(layer, "pe", fold.pe, layer.out_channels, "output channels")
        check_divides(layer, "simd", fold.simd, _simd_count(layer),
                      "kernel positions" if layer.depthwise else "input channels")
        if fold.multipliers == "hardwired":
            check_hardwired(layer.name, fold.pe, fold.simd, layer.out_channels,
                            _simd_count(layer))

    # Members ----------------------------------------------------------------------------------

    @property
    def lanes(self) -> int:
        return self.matrix.lanes

    @property
    def cycles(self) -> int:
        """Cycles per image in steady state (see the class)."""
        return self.fold_cycles(self.layer, LayerFold(self.pe, self.simd, self.multipliers))

    @property
    def latency(self) -> int:
        """Cycles from an image's first input transfer to its first output transfer, for an
        idle unit with an always-ready output and a full-rate producer."""
        return self.window.latency + self.matrix.latency

    @property
    def memory_bits(self) -> dict:
        """Bits of on-chip memory by use: the matrix-vector unit's and the line buffer."""
        return self.matrix.memory_bits | {"line_buffer": self.window.memory_bits}

    def structure(self) -> Structure:
        """The matrix-vector unit's hardware, the window unit's and the output beat counter
        (:mod:`hwnn.rtl.structure`)."""
        beats = self._out_beats()
        return (self.matrix.structure().merge(self.window.structure())
                .merge(Structure({"register_bits": max(beats, 2).bit_length()})))

    def _out_beats(self) -> int:
        out_h, out_w = self.layer.out_size
        return out_h * out_w * self.layer.out_channels // self.pe

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = self.window
        m.submodules.matrix = self.matrix
        wiring.connect(m, wiring.flipped(self.i_stream), self.window.i_stream)
        wiring.connect(m, self.window.o_stream, self.matrix.i_stream)
        # The matrix-vector unit frames each window's outputs (a pixel's channels); count the
        # beats to frame each image instead.
        beats = self._out_beats()
        beat = Signal(range(beats))
        result = self.matrix.o_stream
        m.d.comb += [
            self.o_stream.valid.eq(result.valid),
            result.ready.eq(self.o_stream.ready),
            self.o_stream.payload.data.eq(result.payload.data),
            self.o_stream.payload.last.eq(beat == beats - 1),
        ]
        with m.If(self.o_stream.valid & self.o_stream.ready):
            m.d.sync += beat.eq(Mux(beat == beats - 1, 0, beat + 1))
        return m


def _taps_per_beat(layer: Conv2d, multipliers: str) -> int:
    """Kernel positions per beat of the window unit's output: a (not depthwise) convolution's
    whole window with hardwired weights, else one."""
    if multipliers == "hardwired" and not layer.depthwise:
        return layer.kernel[0] * layer.kernel[1]
    return 1


def _simd_count(layer: Conv2d) -> int:
    """What ``simd`` divides: the input channels, or a depthwise convolution's kernel
    positions."""
    return layer.kernel[0] * layer.kernel[1] if layer.depthwise else layer.in_channels
