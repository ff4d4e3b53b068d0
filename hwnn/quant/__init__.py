"""Quantization: float networks to integer networks (the IR, :mod:`hwnn.ir`). Pure Python and
NumPy."""

from .convert import QuantOptions, quantize_network
from .floatnet import ACTIVATIONS, BatchNorm, FloatDense, FloatNetwork
from .frontends import from_sklearn, load_model, load_npz, save_npz
from .quantizers import (QuantParams, affine_params, binarize, calibrate, dequantize, quantize,
                         ternarize)

__all__ = ["ACTIVATIONS", "BatchNorm", "FloatDense", "FloatNetwork", "QuantOptions",
           "QuantParams", "affine_params", "binarize", "calibrate", "dequantize", "from_sklearn",
           "load_model", "load_npz", "quantize", "quantize_network", "save_npz", "ternarize"]
