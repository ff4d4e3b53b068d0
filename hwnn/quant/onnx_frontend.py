"""The ONNX frontend: a float ONNX model, as ``torch.onnx.export`` writes one, into a
:class:`~hwnn.quant.floatnet.FloatNetwork`. Needs the ``onnx`` package (``hwnn[onnx]``).

The graph must be a chain: each node takes the output of the node before it (weights and
other parameters are initializers or ``Constant`` nodes), from the one graph input to the one
graph output. The input is a batch of vectors ``(N, F)`` or of images ``(N, C, H, W)``, as
PyTorch lays them out: such a network's inputs are given channels first (``input_layout``
``"chw"``), and it takes them channels last inside. The nodes it imports:

================================ ==========================================================
``Conv``                         2-d, ``group`` 1 or depthwise (``group`` = channels in =
                                 channels out), dilations 1, explicit ``pads`` (or
                                 ``auto_pad`` ``NOTSET``/``VALID``), optional bias
``Gemm``                         a dense layer (``transA`` 0; ``alpha``, ``beta``, ``transB``
                                 applied), its bias ``C`` optional
``MatMul`` (+ ``Add``)           a dense layer ``x @ B``; an ``Add`` of a constant right after
                                 it is its bias
``BatchNormalization``           right after a ``Conv``, ``Gemm`` or ``MatMul`` (+ ``Add``):
                                 the layer's batch normalization, folded by the quantizer
``Relu``                         the activation of the layer before it (across pools and
                                 flattening, which commute with it)
``MaxPool``                      2-d, no padding, dilations 1, ``ceil_mode`` 0
``Flatten``, ``Reshape``         flattening an image (``Flatten`` on axis 1, ``Reshape`` to a
                                 constant ``(batch, features)`` shape, ``-1`` or ``0`` for the
                                 batch); PyTorch flattens ``(C, H, W)``, so the dense layer
                                 after it has its columns permuted once to hwnn's ``(H, W, C)``
                                 order (:func:`hwnn.ir.chw_to_hwc_columns`)
``Identity``, ``Dropout``        ignored (inference)
================================ ==========================================================

Anything else is refused with one line naming the node and its op.
"""

import dataclasses
import math
from pathlib import Path

import numpy as np

from ..ir.tensors import chw_to_hwc_columns, shape_text
from .onnx_graph import node_attributes
from .floatnet import BatchNorm, FloatConv2d, FloatDense, FloatMaxPool2d, FloatNetwork
from .qonnx_frontend import QONNX_DOMAINS

__all__ = ["SUPPORTED_OPS", "from_onnx", "load_onnx"]

#: The ONNX ops the frontend imports (see the module docstring).
SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "Add", "BatchNormalization", "Relu", "MaxPool",
                 "Flatten", "Reshape", "Identity", "Dropout", "Constant")


def load_onnx(path) -> FloatNetwork:
    """Float network of the float ONNX model in the file ``path``."""
    from ..tools.toolchain import require
    require("Reading an ONNX model", "onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    try:
        model = onnx.load(str(path))
    except Exception as error:  # protobuf decoding raises its own errors; report bad input
        raise ValueError(f"{str(path)!r} is not a readable ONNX model: {error}") from None
    try:
        network = from_onnx(model)
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}") from None
    return FloatNetwork(network.layers, network.info | {"file": path.name},
                        network.input_layout)


def from_onnx(model) -> FloatNetwork:
    """Float network of an ``onnx.ModelProto`` (see the module docstring for what it takes)."""
    return _Importer(model).network()


def _node_name(node, index) -> str:
    return repr(node.name) if node.name else f"#{index}"


class _Importer:
    """The state of one import: the float layers so far, the channels-last shape of the
    current tensor (the output of the node before), and how that tensor came about."""

    def __init__(self, model):
        from onnx import numpy_helper
        self._to_array = numpy_helper.to_array
        self.graph = model.graph
        self.producer = model.producer_name
        self.constants = {tensor.name: self._to_array(tensor)
                          for tensor in self.graph.initializer}
        self.layers = []
        #: The last op that made the current tensor: "input", "layer" (a weighted layer, its
        #: bias still open to an Add when "matmul"), "batchnorm", "relu", "pool", "flatten".
        self.last = "input"
        #: The channels-last shape of an image flattened in (C, H, W) order, until a dense
        #: layer takes it.
        self.flattened = None

    # The chain -----------------------------------------------------------------------------

    def network(self) -> FloatNetwork:
        inputs = [value for value in self.graph.input if value.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"The ONNX graph must have one input, not "
                             f"{', '.join(value.name for value in inputs) or 'none'}")
        self.current = inputs[0].name
        self.shape, layout = self._input_shape(inputs[0])
        for index, node in enumerate(self.graph.node):
            self.where = f"ONNX node {_node_name(node, index)} ({node.op_type})"
            if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED_OPS:
                domain = f" of domain {node.domain!r}" if node.domain else ""
                if node.domain in QONNX_DOMAINS:
                    raise ValueError(f"{self.where}{domain} is not supported in a float model: "
                                     f"import a QONNX model with hwnn.quant.load_qonnx (hwnn "
                                     f"quantize without --calib)")
                raise ValueError(f"{self.where}{domain} is not supported: hwnn imports "
                                 f"{', '.join(SUPPORTED_OPS)}")
            if node.op_type == "Constant":
                self._constant(node)
                continue
            data = [name for name in node.input if name == self.current]
            if not data:
                raise ValueError(f"{self.where} does not take the output of the node before "
                                 f"it ({self.current!r}): hwnn imports chains of layers")
            getattr(self, f"_{node.op_type.lower()}")(node)
            self.current = node.output[0]
        outputs = [value.name for value in self.graph.output]
        if outputs != [self.current]:
            raise ValueError(f"The ONNX graph's outputs {outputs} are not the end of its chain "
                             f"of nodes, {self.current!r}")
        if not self.layers:
            raise ValueError("The ONNX graph has no Conv, Gemm or MatMul node")
        return FloatNetwork(tuple(self.layers), {"frontend": "onnx", "producer": self.producer},
                            layout)

    def _input_shape(self, value):
        dims = value.type.tensor_type.shape.dim
        sizes = [dim.dim_value if dim.HasField("dim_value") else None for dim in dims]
        if len(sizes) not in (2, 4) or None in sizes[1:] or 0 in sizes[1:]:
            text = ", ".join("?" if size is None else str(size) for size in sizes)
            raise ValueError(f"The ONNX graph input {value.name!r} must have shape (N, F) or "
                             f"(N, C, H, W) with known sizes, not ({text})")
        if len(sizes) == 2:
            return (sizes[1],), "hwc"
        channels, height, width = sizes[1:]
        return (height, width, channels), "chw"

    # Parameters ----------------------------------------------------------------------------

    def _constant(self, node):
        attributes = {attribute.name: attribute for attribute in node.attribute}
        if set(attributes) != {"value"}:
            raise ValueError(f"{self.where} must hold a tensor 'value', not "
                             f"{', '.join(sorted(attributes))}")
        self.constants[node.output[0]] = self._to_array(attributes["value"].t)

    def _parameter(self, node, position, what, default=None):
        """The constant input ``position`` of ``node`` as float64 (``default`` if absent)."""
        if len(node.input) <= position or not node.input[position]:
            if default is None:
                raise ValueError(f"{self.where} has no {what}")
            return default
        name = node.input[position]
        if name not in self.constants:
            raise ValueError(f"{self.where} has {what} {name!r}, which is not a constant (an "
                             f"initializer or a Constant node)")
        return np.asarray(self.constants[name], dtype=np.float64)

    def _attributes(self, node, defaults):
        return node_attributes(node, defaults, self.where)

    def _require(self, condition, what):
        if not condition:
            raise ValueError(f"{self.where}: {what}")

    def _image(self):
        self._require(len(self.shape) == 3, f"takes a vector of {self.shape[0]}, not an image")
        return self.shape

    def _add_layer(self, make, last="layer"):
        """Append the layer ``make()`` returns (its errors named after the node), which must
        take the current tensor, and note that ``last`` made the new current tensor."""
        try:
            layer = make()
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.where}: {error}") from None
        self._require(layer.input_shape == self.shape,
                      f"takes {shape_text(layer.input_shape)} inputs but gets "
                      f"{shape_text(self.shape)}")
        self.layers.append(layer)
        self.shape, self.last = layer.output_shape, last

    def _open_layer(self):
        """The last weighted layer, when the current tensor is its output before any
        activation."""
        self._require(self.last in ("layer", "matmul"),
                      "must directly follow a Conv, Gemm or MatMul node")
        return self.layers[-1]

    # Ops ------------------------------------------------------------------------------------

    def _conv(self, node):
        height, width, _ = self._image()
        weight = self._parameter(node, 1, "weights")
        self._require(weight.ndim == 4, f"weights must be 4-d (2-d convolution), not shape "
                                        f"{weight.shape}")
        bias = self._parameter(node, 2, "bias", np.zeros(weight.shape[0]))
        attributes = self._attributes(node, {
            "auto_pad": "NOTSET", "dilations": [1, 1], "group": 1,
            "kernel_shape": list(weight.shape[2:]), "pads": [0, 0, 0, 0], "strides": [1, 1]})
        self._require(attributes["auto_pad"] in ("NOTSET", "VALID"),
                      f"auto_pad must be NOTSET or VALID, not {attributes['auto_pad']!r}")
        self._require(list(attributes["dilations"]) == [1, 1],
                      f"dilations must be 1, not {list(attributes['dilations'])}")
        self._require(list(attributes["kernel_shape"]) == list(weight.shape[2:]),
                      f"kernel_shape {list(attributes['kernel_shape'])} does not match its "
                      f"weights of shape {weight.shape}")
        top, left, bottom, right = attributes["pads"]
        self._add_layer(lambda: FloatConv2d(
            weight.transpose(0, 2, 3, 1), bias, in_size=(height, width),
            stride=tuple(attributes["strides"]), padding=(top, bottom, left, right),
            groups=attributes["group"]))

    def _dense(self, weight, bias, last):
        """A dense layer ``weight @ x + bias`` (``weight`` (out, in)) on the current tensor."""
        self._require(len(self.shape) == 1, f"takes an image {shape_text(self.shape)}: "
                                            f"flatten it first")
        self._require(weight.ndim == 2 and weight.shape[1] == self.shape[0],
                      f"weights of shape {weight.shape} do not take {self.shape[0]} inputs")
        if self.flattened is not None:
            weight = chw_to_hwc_columns(weight, self.flattened)
            self.flattened = None
        self._add_layer(lambda: FloatDense(weight, bias), last)

    def _gemm(self, node):
        attributes = self._attributes(node, {"alpha": 1.0, "beta": 1.0, "transA": 0,
                                             "transB": 0})
        self._require(attributes["transA"] == 0, "transA must be 0")
        matrix = self._parameter(node, 1, "weights")
        self._require(matrix.ndim == 2, f"weights must be 2-d, not shape {matrix.shape}")
        weight = attributes["alpha"] * (matrix if attributes["transB"] else matrix.T)
        bias = self._parameter(node, 2, "bias", np.zeros(1))
        try:
            bias = np.broadcast_to(attributes["beta"] * bias, (1, weight.shape[0]))[0]
        except ValueError:
            raise ValueError(f"{self.where}: bias of shape {bias.shape} does not fit "
                             f"{weight.shape[0]} outputs") from None
        self._dense(weight, bias, "layer")

    def _matmul(self, node):
        self._require(node.input[0] == self.current, "must multiply its input by constant "
                                                     "weights (x @ B)")
        matrix = self._parameter(node, 1, "weights")
        self._require(matrix.ndim == 2, f"weights must be 2-d, not shape {matrix.shape}")
        self._dense(matrix.T, np.zeros(matrix.shape[1]), "matmul")

    def _add(self, node):
        self._require(self.last == "matmul", "adds a bias only right after a MatMul node")
        (position,) = [position for position, name in enumerate(node.input)
                       if name != self.current] or [None]
        self._require(position is not None, "must add a constant bias")
        layer = self.layers[-1]
        bias = self._parameter(node, position, "bias")
        self._require(bias.size == layer.bias.size and bias.shape[-1:] == layer.bias.shape,
                      f"bias of shape {bias.shape} does not fit {layer.bias.size} outputs")
        self.layers[-1] = dataclasses.replace(layer, bias=layer.bias + bias.reshape(-1))
        self.last = "layer"

    def _batchnormalization(self, node):
        layer = self._open_layer()
        attributes = self._attributes(node, {"epsilon": 1e-5, "momentum": 0.9,
                                             "training_mode": 0, "spatial": 1})
        self._require(attributes["training_mode"] == 0 and attributes["spatial"] == 1,
                      "must be in inference mode (training_mode 0, spatial 1)")
        self._require(len([name for name in node.output if name]) == 1,
                      "must have one output (inference)")
        gamma, beta, mean, var = (self._parameter(node, position, what) for position, what in
                                  enumerate(("scale", "bias", "mean", "var"), start=1))
        try:
            batchnorm = BatchNorm(gamma, beta, mean, var, float(attributes["epsilon"]))
            self.layers[-1] = dataclasses.replace(layer, batchnorm=batchnorm)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{self.where}: {error}") from None
        self.last = "batchnorm"

    def _relu(self, node):
        self._attributes(node, {})
        # Pools and flattening commute with a monotone activation: it is the last layer's.
        weighted = [index for index, layer in enumerate(self.layers)
                    if not isinstance(layer, FloatMaxPool2d)]
        self._require(weighted and self.layers[weighted[-1]].activation == "identity",
                      "must follow a Conv, Gemm or MatMul node without an activation")
        self.layers[weighted[-1]] = dataclasses.replace(self.layers[weighted[-1]],
                                                        activation="relu")
        self.last = "relu"

    def _maxpool(self, node):
        height, width, channels = self._image()
        attributes = self._attributes(node, {
            "auto_pad": "NOTSET", "ceil_mode": 0, "dilations": [1, 1], "kernel_shape": None,
            "pads": [0, 0, 0, 0], "storage_order": 0, "strides": [1, 1]})
        self._require(attributes["kernel_shape"] is not None, "has no kernel_shape")
        self._require(attributes["auto_pad"] in ("NOTSET", "VALID") and not any(
            attributes["pads"]), f"must not pad (pads {list(attributes['pads'])})")
        self._require(attributes["ceil_mode"] == 0, "ceil_mode must be 0")
        self._require(list(attributes["dilations"]) == [1, 1], "dilations must be 1")
        self._require(len([name for name in node.output if name]) == 1,
                      "must not output indices")
        self._add_layer(lambda: FloatMaxPool2d((height, width), channels,
                                               tuple(attributes["kernel_shape"]),
                                               tuple(attributes["strides"])), "pool")

    def _flatten(self, node):
        attributes = self._attributes(node, {"axis": 1})
        self._require(attributes["axis"] == 1, f"axis must be 1, not {attributes['axis']}")
        self._flatten_current()

    def _reshape(self, node):
        self._attributes(node, {"allowzero": 0})
        target = self._parameter(node, 1, "shape").astype(np.int64).tolist()
        features = math.prod(self.shape)
        self._require(len(target) == 2 and target[0] in (-1, 0, 1)
                      and target[1] in (-1, features) and target != [-1, -1],
                      f"reshapes only to (batch, {features}) (flattening), not {target}")
        self._flatten_current()

    def _flatten_current(self):
        if len(self.shape) == 3:
            self.flattened = self.shape
            self.shape = (math.prod(self.shape),)
        self.last = "flatten"

    def _identity(self, node):
        self._attributes(node, {})

    def _dropout(self, node):
        self._attributes(node, {"seed": 0, "ratio": 0.5})

