"""Bit-exact golden model: executes the IR on integer codes with int64 NumPy.

This is the reference every generated design is proven against. It never imports Amaranth.
Each layer kind has its golden function, registered on :func:`accumulate`.
"""

from .network import (LayerTrace, accumulate, conv2d_accumulate, dense_accumulate, layer_inputs,
                      maxpool2d_accumulate, output_stage, requantize, run_network, threshold)
from .window import windows

__all__ = ["LayerTrace", "accumulate", "conv2d_accumulate", "dense_accumulate", "layer_inputs",
           "maxpool2d_accumulate", "output_stage", "requantize", "run_network", "threshold",
           "windows"]
