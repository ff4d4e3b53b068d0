"""A quantized network: a chain of layers, and its file.

Layers chain by shape: a layer takes the tensor the layer before it gives when its input shape
is that tensor's shape, or when it takes a vector (a 1-D input shape, like a dense layer's) of
the tensor's size: then it takes the tensor flattened in row-major order, channels fastest
(:mod:`hwnn.ir.tensors`), which is the order streams carry it in, so flattening costs nothing.
"""

import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path

import numpy as np

from ..errors import ParameterError
from .checks import check_name
from .formats import Rounding
from .layer import LAYER_KINDS
from .serialization import read_network, write_network
from .tensors import TensorFormat, shape_text

__all__ = ["Network", "takes"]


#: The float32 steps an input quantizer may apply before it scales (see
#: :meth:`Network.quantize_input`).
_INPUT_STEPS = {"add": lambda x, c: x + c, "sub": lambda x, c: x - c,
                "rsub": lambda x, c: c - x, "mul": lambda x, c: x * c, "div": lambda x, c: x / c}


def takes(input_shape, shape) -> bool:
    """Whether a layer of ``input_shape`` takes a tensor of ``shape``: the same shape, or a
    vector of as many codes (the tensor flattened)."""
    return (tuple(input_shape) == tuple(shape)
            or (len(input_shape) == 1 and input_shape[0] == math.prod(shape)))


@dataclass(frozen=True, eq=False)
class Network:
    """A quantized network: layers that chain (each layer takes the previous layer's output
    shape, as it is or flattened, see :func:`takes`, and format), a name, and free-form JSON
    ``info`` (where it came from, quantization options, float accuracy)."""
    name:   str
    layers: tuple
    info:   dict = field(default_factory=dict)

    def __post_init__(self):
        check_name(self.name, "Network name")
        layers = tuple(self.layers)
        if not layers:
            raise ValueError("A network needs at least one layer")
        for layer in layers:
            if not isinstance(layer, tuple(LAYER_KINDS.values())):
                raise TypeError(f"Network layers must be IR layers, not {layer!r}")
        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            raise ValueError(f"Layer names must be unique, not {names}")
        for before, after in pairwise(layers):
            if not takes(after.input_shape, before.output_shape):
                raise ValueError(f"Layer {after.name!r} takes {shape_text(after.input_shape)} "
                                 f"inputs but layer {before.name!r} gives "
                                 f"{shape_text(before.output_shape)}")
            if after.input != before.output:
                raise ValueError(f"Layer {after.name!r} expects inputs {after.input} but layer "
                                 f"{before.name!r} gives {before.output}")
        try:
            json.dumps(self.info, sort_keys=True)
        except (TypeError, ValueError) as error:
            raise TypeError(f"Network info must be JSON-serializable: {error}") from None
        object.__setattr__(self, "layers", layers)

    @property
    def input(self) -> TensorFormat:
        return self.layers[0].input

    @property
    def output(self) -> TensorFormat:
        return self.layers[-1].output

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input (the first layer's input shape)."""
        return self.layers[0].input_shape

    @property
    def output_shape(self) -> tuple[int, ...]:
        """Shape of one output (the last layer's output shape)."""
        return self.layers[-1].output_shape

    @property
    def in_features(self) -> int:
        """Input codes per inference (the input shape flattened)."""
        return math.prod(self.input_shape)

    @property
    def out_features(self) -> int:
        """Output codes per inference (the output shape flattened)."""
        return math.prod(self.output_shape)

    def quantize_input(self, x) -> np.ndarray:
        """Input codes of real inputs ``x``, one or more inputs of :attr:`input_shape` (round
        half to even, saturate). A network whose ``info`` has an ``input_quantizer``
        ``{"arithmetic": "float32", "rounding": <Rounding value>}`` (an imported QONNX
        model's) quantizes as that model does: first its ``steps``, if any (``[op, c]`` in
        order, in float32: ``add`` ``x + c``, ``sub`` ``x - c``, ``rsub`` ``c - x``, ``mul``
        ``x * c``, ``div`` ``x / c``; a model's input centering), then ``x / scale +
        zero_point`` in float32, then that rounding."""
        from ..quant.quantizers import QuantParams, quantize
        x = np.asarray(x, dtype=np.float64)
        shape = self.input_shape
        if x.shape[-len(shape):] != shape:
            if len(shape) == 1:
                raise ValueError(f"Inputs must have {self.in_features} features on the last "
                                 f"axis, not shape {x.shape}")
            raise ValueError(f"Inputs must have shape {shape_text(shape)} on the last axes, "
                             f"not shape {x.shape}")
        quantizer = self.info.get("input_quantizer")
        if quantizer is not None:
            f32 = np.float32
            x = x.astype(f32)
            for op, constant in quantizer.get("steps", ()):
                x = _INPUT_STEPS[op](x, f32(constant)).astype(f32)
        if self.input.format.kind == "bipolar":
            return np.where(x >= 0, 1, -1).astype(np.int64)
        if quantizer is not None:
            shifted = x / f32(self.input.scale) + f32(self.input.zero_point)
            return quantize(shifted.astype(np.float64), self.input.format, QuantParams(1.0, 0),
                            rounding=Rounding(quantizer["rounding"]))
        return quantize(x, self.input.format,
                        QuantParams(self.input.scale, self.input.zero_point))

    def dequantize_output(self, codes) -> np.ndarray:
        """Real values of output codes."""
        return self.output.dequantize(codes)

    # Files ------------------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the network to ``path`` (a ``.hwnn.npz``, see :mod:`hwnn.ir.serialization`)
        atomically; return the path."""
        path = Path(path)
        write_network(path, self.name, self.info, self.layers)
        return path

    @classmethod
    def load(cls, path) -> "Network":
        """Read a network written by :meth:`save`, validating everything (ValueError naming
        the file and what is wrong)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"No network file at {str(path)!r}")
        try:
            return cls(*read_network(path))
        except ParameterError as error:
            # Earlier versions of hwnn accepted any name.
            raise ValueError(f"{str(path)!r} is not a valid hwnn network: {error} (quantize the "
                             f"model again with another name)") from None
        # zipfile raises zlib.error for a corrupt deflate stream, RuntimeError for an encrypted
        # member and NotImplementedError (a RuntimeError) for an unknown compression method.
        except (ValueError, TypeError, KeyError, OSError, EOFError, RuntimeError,
                zipfile.BadZipFile, zlib.error) as error:
            raise ValueError(f"{str(path)!r} is not a valid hwnn network: {error}") from None
