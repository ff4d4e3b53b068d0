"""Bit-exact golden model: executes the IR on integer codes with int64 NumPy.

This is the reference every generated design is proven against. It never imports Amaranth.
Each layer kind has its golden function, registered on :func:`accumulate`.
"""

from .network import (LayerTrace, accumulate, dense_accumulate, layer_inputs, output_stage,
                      requantize, run_network, threshold)

__all__ = ["LayerTrace", "accumulate", "dense_accumulate", "layer_inputs", "output_stage",
           "requantize", "run_network", "threshold"]
