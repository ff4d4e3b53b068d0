"""Bit-exact golden model: executes the IR on integer codes with int64 NumPy.

This is the reference every generated design is proven against. It never imports Amaranth.
"""

from .network import LayerTrace, dense_accumulate, output_stage, requantize, run_network, threshold

__all__ = ["LayerTrace", "dense_accumulate", "output_stage", "requantize", "run_network",
           "threshold"]
