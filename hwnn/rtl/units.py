"""The dataflow engine's units: one per layer kind, chosen here by the layer's kind.

A unit computes one layer as a streaming component, built as ``Unit(layer, pe=P, simd=S,
ram_style=R, multipliers=M)`` (``M``: where its multipliers go, DSP blocks or logic,
:data:`~hwnn.rtl.params.MULTIPLIERS`; a unit without multipliers ignores it), with

- ``i_stream``: ``In(stream.Signature(Beat(in_count, in_width)))``, one inference's input
  tensor after another in stream order (raster order, channels fastest; framing by count,
  the input ``last`` is ignored), and ``o_stream``: ``Out(stream.Signature(Beat(out_count,
  out_width)))``, each output tensor in the same order with ``last`` on its final beat;
- members ``layer``, ``pe``, ``simd``, ``lanes``, ``in_count``, ``out_count``, ``in_width``,
  ``out_width``, ``cycles`` (per inference, in steady state), ``latency`` (first input
  transfer to first output transfer, idle unit, full-rate producer, ready consumer),
  ``memory_bits`` (``{use: bits}``), ``input_fifo_depth`` (the FIFO the unit wants in front
  of it) and ``structure()`` (:mod:`hwnn.rtl.structure`);
- static methods that say how the unit folds: ``fold_options(layer)`` (every
  :class:`~hwnn.rtl.params.LayerFold` it takes), ``fold_cycles(layer, fold)``,
  ``fold_lanes(layer, fold)`` and ``check_fold(layer, fold)`` (TypeError/ValueError naming
  the layer and what the fold must divide).

========== ============================================ ============ =========================
kind       unit                                         fold         cycles per inference
========== ============================================ ============ =========================
dense      :class:`~hwnn.rtl.mvau.MatrixVectorUnit`     pe | out,    (out / pe) * (in / simd)
                                                        simd | in
conv2d     :class:`~hwnn.rtl.convunit.ConvolutionUnit`  pe | C_out,  OH * OW * (C_out / pe) *
                                                        simd | C_in  (kh * kw * C_in / simd)
(depthwise :class:`~hwnn.rtl.vvau.VectorVectorUnit`     pe | C,      OH * OW * (C / pe) *
conv2d)                                                 simd |       (kh * kw / simd)
                                                        kh * kw
maxpool2d  :class:`~hwnn.rtl.poolunit.PoolingUnit`      pe = simd    H * W * C / pe
                                                        | C
========== ============================================ ============ =========================

(A convolution whose stride skips more pixels than its kernel covers waits for its input
instead: ``H * W * C_in / simd`` cycles when that is more, ``H * W * C / pe`` for a depthwise
one.)
"""

from .convunit import ConvolutionUnit
from .mvau import MatrixVectorUnit
from .poolunit import PoolingUnit

__all__ = ["UNITS", "unit_class"]

#: The unit class of each layer kind the dataflow engine builds.
UNITS = {"dense": MatrixVectorUnit, "conv2d": ConvolutionUnit, "maxpool2d": PoolingUnit}


def unit_class(layer) -> type:
    """The unit class for ``layer``; a ValueError naming its kind if there is none."""
    kind = getattr(layer, "kind", None)
    if kind not in UNITS:
        raise ValueError(f"The dataflow engine has no unit for layer "
                         f"{getattr(layer, 'name', layer)!r} of kind {kind!r} (it builds "
                         f"{', '.join(sorted(UNITS))} layers)")
    return UNITS[kind]
