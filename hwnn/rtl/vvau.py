"""Vector-vector-activation unit: a depthwise convolution's arithmetic (FINN's VVAU).

Each channel of a depthwise convolution sees its own window only, so a pixel's work is ``C``
dot products of ``kh * kw`` terms, not the ``C x (kh * kw * C)`` matrix-vector product of
im2col. The unit folds it onto ``pe`` channels in parallel, each taking ``simd`` kernel
positions per beat: per output pixel, ``C / pe`` channel groups of ``kh * kw / simd`` beats.
It is the :class:`~hwnn.rtl.mvau.MatrixVectorUnit`'s engine (weight memory, lanes, adder
trees, accumulators, output stage) with an input beat per PE instead of one shared by all.
"""

from ..ir import Conv2d
from .mvau import MatrixVectorUnit
from .params import check_divides, check_positive_int

__all__ = ["VectorVectorUnit"]


class VectorVectorUnit(MatrixVectorUnit):
    """Streaming depthwise convolution arithmetic ``out[c] = stage(w[c] @ window[c] +
    bias[c])`` folded onto ``pe`` channels x ``simd`` kernel positions.

    An output pixel's input is ``(C / pe) * (kh * kw / simd)`` beats of ``pe * simd`` codes:
    for each group of ``pe`` channels in order, for each group of ``simd`` kernel positions in
    window order (row by row, left to right), one beat whose element ``c * simd + j`` is
    channel ``c`` of the group at position ``j`` of the group (each PE's inputs are
    contiguous, like its weights in a weight word): the
    :class:`~hwnn.rtl.window.SlidingWindowUnit`'s ``order="depthwise"`` stream. The output is
    the pixel's channels, ``pe`` per beat, as a :class:`~hwnn.rtl.mvau.MatrixVectorUnit`
    emits them (``last`` on the pixel's final beat). One pixel every :attr:`cycles` ``= (C /
    pe) * (kh * kw / simd)`` cycles; :attr:`latency` as the matrix-vector unit's.

    Parameters
    ----------
    layer : :class:`~hwnn.ir.Conv2d`, depthwise
    pe, simd : folding; ``pe`` divides the channels, ``simd`` the kernel positions.
    ram_style, multipliers : as the matrix-vector unit's.

    Members
    -------
    convolution : the depthwise :class:`~hwnn.ir.Conv2d`
    layer : its :meth:`~hwnn.ir.Conv2d.depthwise_im2col` (``C x kh * kw`` weights)
    The others as :class:`~hwnn.rtl.mvau.MatrixVectorUnit`'s; ``in_count`` is ``pe * simd``.
    """

    _shared_input = False

    def __init__(self, layer: Conv2d, *, pe=1, simd=1, ram_style="auto", multipliers="dsp"):
        if not isinstance(layer, Conv2d) or not layer.depthwise:
            raise TypeError(f"layer must be a depthwise Conv2d layer, not {layer!r}")
        check_positive_int("VectorVectorUnit", "pe", pe)
        check_positive_int("VectorVectorUnit", "simd", simd)
        check_divides(layer, "pe", pe, layer.in_channels, "channels")
        check_divides(layer, "simd", simd, layer.kernel[0] * layer.kernel[1],
                      "kernel positions")
        self.convolution = layer
        super().__init__(layer.depthwise_im2col(), pe=pe, simd=simd, ram_style=ram_style,
                         multipliers=multipliers)
