"""Quantization: float networks to integer networks (the IR). Pure Python and NumPy."""

from .convert import QuantOptions, quantize_network
from .floatnet import ACTIVATIONS, BatchNorm, FloatDense, FloatNetwork
from .formats import Format, Overflow, Rounding
from .frontends import from_sklearn, load_model, load_npz, save_npz
from .ir import Dense, Network, Requant, TensorFormat, Thresholds
from .quantizers import (QuantParams, affine_params, binarize, calibrate, dequantize, quantize,
                         ternarize)

__all__ = ["ACTIVATIONS", "BatchNorm", "Dense", "FloatDense", "FloatNetwork", "Format",
           "Network", "Overflow", "QuantOptions", "QuantParams", "Requant", "Rounding",
           "TensorFormat", "Thresholds", "affine_params", "binarize", "calibrate", "dequantize",
           "from_sklearn", "load_model", "load_npz", "quantize", "quantize_network", "save_npz",
           "ternarize"]
