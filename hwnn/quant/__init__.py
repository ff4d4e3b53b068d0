"""Quantization: float networks to integer networks (the IR, :mod:`hwnn.ir`). Pure Python and
NumPy (the ONNX frontend, :mod:`.onnx_frontend`, also needs the ``onnx`` package; the QONNX
frontend, :mod:`.qonnx_frontend`, which imports quantized models as they are, ``qonnx``)."""

from .convert import QuantOptions, quantize_network
from .floatnet import (ACTIVATIONS, BatchNorm, FloatConv2d, FloatDense, FloatMaxPool2d,
                       FloatNetwork)
from .frontends import from_sklearn, load_model, load_npz, save_npz
from .qonnx_frontend import from_qonnx, load_qonnx
from .quantizers import (QuantParams, affine_params, binarize, calibrate, dequantize, quantize,
                         ternarize)

__all__ = ["ACTIVATIONS", "BatchNorm", "FloatConv2d", "FloatDense", "FloatMaxPool2d",
           "FloatNetwork", "QuantOptions", "QuantParams", "affine_params", "binarize",
           "calibrate", "dequantize", "from_qonnx", "from_sklearn", "load_model", "load_npz",
           "load_qonnx", "quantize",
           "quantize_network", "save_npz", "ternarize"]
