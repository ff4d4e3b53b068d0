"""The walk over a cleaned QONNX graph that builds an hwnn network: one handler per ONNX
op, each taking the node that continues the chain (see :mod:`hwnn.quant.qonnx_frontend` for
what each op may be and do).
"""

import math

import numpy as np

from ..ir import Conv2d, Dense, MaxPool2d, Network, TensorFormat
from ..ir.tensors import chw_to_hwc_columns
from .onnx_graph import node_attributes
from .qonnx_arith import BatchNormF32, QuantSpec
from .qonnx_layer import OpenLayer
from .qonnx_specs import INPUT_ROUNDING, multithreshold_spec, quant_spec, trunc_spec, where

__all__ = ["GraphImporter"]


class GraphImporter:
    """Builds the network of a cleaned qonnx ``ModelWrapper`` (:meth:`network`) and records
    ``tensors``: for the input quantizer, then for each layer, ``(tensor, spec)``, the
    cleaned graph's tensor holding the codes and the quantizer spec (None for the last
    layer's raw accumulator)."""

    def __init__(self, wrapper):
        self.wrapper = wrapper
        self.graph = wrapper.graph
        #: Quant nodes of constants, evaluated: output name -> (codes, spec).
        self.quantized = {}
        self.layers = []
        #: The input's, then per layer: the tensor holding the codes and their spec.
        self.tensors = []
        self.open = None
        self.in_spec = None
        self.input_rounding = None
        #: The scalar steps (``[op, constant]``) applied to the graph input before its Quant.
        self.input_steps = []
        #: The ONNX layout of the current image tensor: "chw" (N, C, H, W) or "hwc" (N, H, W,
        #: C), as the graph input is until a Transpose says otherwise; None for vectors.
        self.layout = None
        self.input_layout = None
        #: The (H, W, C) shape of an image flattened in (C, H, W) order, until a dense layer
        #: takes it (its columns are then permuted to hwnn's (H, W, C) order).
        self.flattened = None

    def network(self, name) -> Network:
        inputs = [value.name for value in self.graph.input
                  if self.wrapper.get_initializer(value.name) is None]
        if len(inputs) != 1:
            raise ValueError(f"The QONNX graph must have one input, not {inputs}")
        self.current = inputs[0]
        self.shape = self._input_shape(inputs[0])
        self.layout = self.input_layout = "chw" if len(self.shape) == 3 else None
        for node in self.graph.node:
            if self._constant_quant(node):
                continue
            if self.current not in node.input:
                raise ValueError(f"{where(node)} does not take the output of the node before "
                                 f"it ({self.current!r}): hwnn imports chains of layers")
            handler = getattr(self, f"_{node.op_type.lower()}", None)
            if handler is None:
                raise ValueError(f"{where(node)} is not supported: hwnn imports Quant, "
                                 f"BipolarQuant, MultiThreshold, Trunc, Conv, MatMul, Gemm, "
                                 f"Add, Sub, Mul, Div, BatchNormalization, Relu, MaxPool, "
                                 f"AveragePool, GlobalAveragePool, Flatten, Reshape, "
                                 f"Transpose, Identity and Dropout in a chain of layers")
            handler(node)
            self.current = node.output[0]
        outputs = [value.name for value in self.graph.output]
        if outputs != [self.current]:
            raise ValueError(f"The QONNX graph's outputs {outputs} are not the end of its "
                             f"chain of nodes, {self.current!r}")
        if self.open is not None:
            self._close_unquantized()
            self.tensors.append((self.current, None))
        if not any(isinstance(layer, (Dense, Conv2d)) for layer in self.layers):
            raise ValueError("The QONNX graph has no Conv, MatMul or Gemm node")
        # A model flattening its input image first takes it as a vector in its own order.
        layout = self.input_layout if len(self.layers[0].input_shape) == 3 else "vector"
        quantizer = {"arithmetic": "float32", "rounding": self.input_rounding.value}
        if self.input_steps:
            quantizer["steps"] = self.input_steps
        info = {"frontend": "qonnx", "producer": self.wrapper.model.producer_name,
                "input_layout": layout, "input_quantizer": quantizer}
        return Network(name, tuple(self.layers), info)

    def _input_shape(self, name):
        """The channels-last shape of one input: (F,) or, for images (N, C, H, W), (H, W, C)."""
        shape = self.wrapper.get_tensor_shape(name)
        if shape is None or len(shape) not in (2, 4) or not all(
                isinstance(size, int) and size > 0 for size in shape[1:]):
            raise ValueError(f"The QONNX graph input {name!r} must have shape (N, F) or "
                             f"(N, C, H, W) with known sizes, not {shape}")
        if len(shape) == 2:
            return (shape[1],)
        channels, height, width = shape[1:]
        return (height, width, channels)

    # Quantizers ----------------------------------------------------------------------------

    def _constant_quant(self, node) -> bool:
        """Evaluate a Quant node of a constant (weights, bias); False for any other node."""
        if (node.op_type not in ("Quant", "BipolarQuant")
                or self.wrapper.get_initializer(node.input[0]) is None):
            return False
        spec = quant_spec(self.wrapper, node)
        value = self.wrapper.get_initializer(node.input[0])
        try:
            codes = spec.codes(value)
        except ValueError:
            raise ValueError(f"{where(node)} scale of shape {spec.scale.shape} or zero point "
                             f"of shape {spec.zero_point.shape} does not fit its input of "
                             f"shape {value.shape}") from None
        self.quantized[node.output[0]] = (codes, spec)
        return True

    def _quant(self, node):
        spec = quant_spec(self.wrapper, node)
        if np.asarray(spec.scale).size != 1 or np.asarray(spec.zero_point).size != 1:
            raise ValueError(f"{where(node)} quantizes an activation per channel: hwnn "
                             f"imports per-tensor activation scales and zero points")
        spec = QuantSpec(spec.scale.reshape(()), spec.zero_point.reshape(()), spec.bits,
                         spec.signed, spec.narrow, spec.rounding)
        if self.open is not None:
            self._close_thresholds(spec, node)
            self.tensors.append((node.output[0], spec))
        elif self.in_spec is None and not self.layers:
            rounding = INPUT_ROUNDING.get(spec.rounding.upper())
            if rounding is None:
                raise ValueError(f"{where(node)} quantizes the input with rounding mode "
                                 f"{spec.rounding!r}: hwnn's input quantizer rounds "
                                 f"{', '.join(INPUT_ROUNDING)}")
            self.input_rounding = rounding
            self.tensors.append((node.output[0], spec))
        else:
            raise ValueError(f"{where(node)} quantizes a tensor that is already quantized")
        self.in_spec = spec

    _bipolarquant = _quant

    def _multithreshold(self, node):
        if self.open is None:
            raise ValueError(f"{where(node)} must threshold the output of a MatMul, Gemm or "
                             f"Conv node: hwnn takes the graph input's quantizer from a Quant "
                             f"node")
        spec = multithreshold_spec(self.wrapper, node, self.open.channels,
                                   "NCHW" if len(self.shape) == 3 else "NC")
        self._close_thresholds(spec, node)
        self.tensors.append((node.output[0], spec))
        self.in_spec = spec

    # Layers ---------------------------------------------------------------------------------

    def _weights(self, node, position):
        """The quantized constant input ``position`` of ``node``: (codes, spec)."""
        name = node.input[position] if len(node.input) > position else ""
        if name not in self.quantized:
            raise ValueError(f"{where(node)} input {name!r} is not quantized by a Quant node: "
                             f"hwnn imports quantized weights")
        codes, spec = self.quantized[name]
        return codes, spec

    def _start_layer(self, node, make, weights, spec, scale):
        """Open a layer (``make`` builds its IR kind) of ``weights`` and their broadcast
        ``scale``, both output channels first, on the current (quantized) tensor."""
        if self.in_spec is None:
            raise ValueError(f"{where(node)} takes an unquantized tensor: the graph input "
                             f"needs a Quant node")
        if self.open is not None:
            raise ValueError(f"{where(node)} follows a layer whose output is not quantized by "
                             f"a Quant node")
        if np.any(np.asarray(spec.zero_point) != 0):
            raise ValueError(f"{where(node)} weights have a nonzero zero point")
        rows = scale.reshape(len(scale), -1)
        if not np.all(rows == rows[:, :1]):
            raise ValueError(f"{where(node)} weight scale varies within an output channel: "
                             f"hwnn imports per-tensor or per-output-channel weight scales")
        self.open = OpenLayer(make, weights.astype(np.int64), spec,
                           rows[:, 0].astype(np.float64), self.in_spec)

    def _dense(self, node, codes, spec, scale):
        """Open a dense layer ``codes @ x`` (``codes`` and ``scale`` (out, in))."""
        if len(self.shape) != 1 or self.shape[0] != codes.shape[1]:
            raise ValueError(f"{where(node)} takes {codes.shape[1]} inputs but gets a tensor "
                             f"of shape {self.shape} (channels last): flatten images first")
        if self.flattened is not None:
            codes = chw_to_hwc_columns(codes, self.flattened)
            scale = chw_to_hwc_columns(scale, self.flattened)
            self.flattened = None
        self._start_layer(node, Dense, codes, spec, scale)
        self.shape = (codes.shape[0],)

    def _matmul(self, node):
        if node.input[0] != self.current:
            raise ValueError(f"{where(node)} must multiply its input by constant weights "
                             f"(x @ W)")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 2:
            raise ValueError(f"{where(node)} weights must be 2-d, not shape {codes.shape}")
        scale = np.broadcast_to(spec.scale, codes.shape)
        self._dense(node, codes.T, spec, scale.T)

    def _gemm(self, node):
        values = self._attributes(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
        if values["transA"] != 0 or values["alpha"] != 1.0 or values["beta"] != 1.0:
            raise ValueError(f"{where(node)} must have transA 0, alpha 1 and beta 1, not "
                             f"{values}")
        if node.input[0] != self.current:
            raise ValueError(f"{where(node)} must multiply its input by constant weights")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 2:
            raise ValueError(f"{where(node)} weights must be 2-d, not shape {codes.shape}")
        scale = np.broadcast_to(spec.scale, codes.shape)
        if not values["transB"]:
            codes, scale = codes.T, scale.T
        self._dense(node, codes, spec, scale)
        if len(node.input) > 2 and node.input[2]:
            self._set_bias(node, node.input[2])

    def _conv(self, node):
        if node.input[0] != self.current or len(self.shape) != 3:
            raise ValueError(f"{where(node)} must convolve the image before it with constant "
                             f"weights")
        self._expect_chw(node)
        codes, spec = self._weights(node, 1)
        if codes.ndim != 4:
            raise ValueError(f"{where(node)} weights must be 4-d (2-d convolution), not shape "
                             f"{codes.shape}")
        values = self._attributes(node, {
            "auto_pad": "NOTSET", "dilations": [1, 1], "group": 1,
            "kernel_shape": list(codes.shape[2:]), "pads": [0, 0, 0, 0], "strides": [1, 1]})
        if (values["auto_pad"] not in ("NOTSET", "VALID") or list(values["dilations"]) != [1, 1]
                or list(values["kernel_shape"]) != list(codes.shape[2:])):
            raise ValueError(f"{where(node)} must have explicit pads, dilations 1 and a "
                             f"kernel_shape matching its weights, not {values}")
        top, left, bottom, right = values["pads"]
        scale = np.broadcast_to(spec.scale, codes.shape).transpose(0, 2, 3, 1)
        height, width, _ = self.shape

        def make(**members):
            return Conv2d(in_size=(height, width), stride=tuple(values["strides"]),
                          padding=(top, bottom, left, right), groups=values["group"], **members)

        self._start_layer(node, make, codes.transpose(0, 2, 3, 1), spec, scale)
        kh, kw = codes.shape[2:]
        sh, sw = values["strides"]
        self.shape = ((height + top + bottom - kh) // sh + 1,
                      (width + left + right - kw) // sw + 1, codes.shape[0])
        if len(node.input) > 2 and node.input[2]:
            self._set_bias(node, node.input[2], vector=True)

    def _maxpool(self, node):
        if self.open is not None or len(self.shape) != 3:
            raise ValueError(f"{where(node)} must pool a quantized image (after its Quant)")
        self._expect_chw(node)
        values = self._attributes(node, {
            "auto_pad": "NOTSET", "ceil_mode": 0, "dilations": [1, 1], "kernel_shape": None,
            "pads": [0, 0, 0, 0], "storage_order": 0, "strides": None})
        if (values["kernel_shape"] is None or values["auto_pad"] not in ("NOTSET", "VALID")
                or any(values["pads"]) or values["ceil_mode"] or list(values["dilations"])
                != [1, 1] or len([name for name in node.output if name]) != 1):
            raise ValueError(f"{where(node)} must pool without padding, dilation, ceil_mode "
                             f"or indices, not {values}")
        height, width, channels = self.shape
        spec = self.in_spec
        strides = values["strides"] or values["kernel_shape"]
        try:
            pool = MaxPool2d(f"pool{len(self.layers)}", (height, width), channels,
                             tuple(values["kernel_shape"]),
                             TensorFormat(spec.format, float(spec.scale), int(spec.zero_point)),
                             tuple(strides))
        except ValueError as error:
            raise ValueError(f"{where(node)}: {error}") from None
        self.layers.append(pool)
        self.tensors.append((node.output[0], spec))
        self.shape = pool.output_shape

    def _averagepool(self, node):
        values = self._attributes(node, {
            "auto_pad": "NOTSET", "ceil_mode": 0, "count_include_pad": 0, "dilations": [1, 1],
            "kernel_shape": None, "pads": [0, 0, 0, 0], "strides": None})
        if (values["kernel_shape"] is None or values["auto_pad"] not in ("NOTSET", "VALID")
                or any(values["pads"]) or values["ceil_mode"]
                or list(values["dilations"]) != [1, 1]):
            raise ValueError(f"{where(node)} must average without padding, dilation or "
                             f"ceil_mode, not {values}")
        self._sum_pool(node, tuple(values["kernel_shape"]),
                       tuple(values["strides"] or values["kernel_shape"]))

    def _globalaveragepool(self, node):
        if len(self.shape) == 3:
            self._sum_pool(node, self.shape[:2], (1, 1))
        else:
            self._sum_pool(node, None, None)

    def _sum_pool(self, node, kernel, strides):
        """Open a layer summing each window of the quantized image: a depthwise convolution
        of weights 1, whose float32 step divides by the window's size as the average pool
        does; a quantizer (``Trunc`` or ``Quant``) must close it."""
        if self.open is not None or self.in_spec is None or len(self.shape) != 3:
            raise ValueError(f"{where(node)} must average a quantized image (after its "
                             f"quantizer)")
        self._expect_chw(node)
        height, width, channels = self.shape
        weights = np.ones((channels, *kernel, 1), dtype=np.int64)

        def make(**members):
            return Conv2d(in_size=(height, width), stride=strides, groups=channels, **members)

        unit = QuantSpec(np.float32(1), np.float32(0), 2, True, True, "ROUND")
        self._start_layer(node, make, weights, unit, np.ones(weights.shape))
        self.open.prefix = "avgpool"
        size = np.float32(math.prod(kernel))
        self.open.add_step("average", lambda y: y / size, (1 / np.float64(size), 0.0))
        self.shape = ((height - kernel[0]) // strides[0] + 1,
                      (width - kernel[1]) // strides[1] + 1, channels)

    def _trunc(self, node):
        if self.open is None:
            raise ValueError(f"{where(node)} must truncate an average pool's output (after "
                             f"AveragePool or GlobalAveragePool)")
        spec = trunc_spec(self.wrapper, node, self.open.code_range)
        self._close_thresholds(spec, node)
        self.tensors.append((node.output[0], spec))
        self.in_spec = spec

    def _attributes(self, node, defaults):
        return node_attributes(node, defaults, where(node))

    def _channel_constant(self, node, name, what, vector=False) -> np.ndarray:
        """The constant ``name`` (an initializer or an evaluated Quant) that ``node`` applies
        per channel, as float32 (channels,): a scalar, or a tensor along the channel axis
        (the last of (N, F), the second of (N, C, H, W); a vector of one value per channel
        when ``vector``, as a ``Conv`` bias)."""
        if name in self.quantized:
            codes, spec = self.quantized[name]
            value = spec.values(codes)
        else:
            value = self.wrapper.get_initializer(name)
            if value is None:
                raise ValueError(f"{where(node)} {what} {name!r} is not a constant (a residual "
                                 f"connection of two tensors is not supported)")
        value = np.asarray(value, dtype=np.float32)
        channels = self.open.channels
        along_channels = (value.shape[-1:] == (channels,) if vector or len(self.shape) == 1
                          else value.shape[-3:] == (channels, 1, 1))
        if value.size != 1 and (value.size != channels or not along_channels):
            raise ValueError(f"{where(node)} {what} of shape {value.shape} does not apply per "
                             f"channel to {channels} channels")
        return np.broadcast_to(value.reshape(-1), (channels,)).copy()

    def _in_layer(self, node):
        if self.open is None:
            raise ValueError(f"{where(node)} must come between a MatMul, Gemm or Conv node and "
                             f"the Quant of its output")

    def _set_bias(self, node, name, vector=False):
        constant = self._channel_constant(node, name, "bias", vector)
        self.open.add_step("add", lambda y: y + constant, (1.0, constant))

    def _operands(self, node):
        """The other operand of a binary op on the current tensor, and whether the current
        tensor is the first operand."""
        if list(node.input).count(self.current) != 1 or len(node.input) != 2:
            raise ValueError(f"{where(node)} must combine its input with a constant")
        first = node.input[0] == self.current
        return node.input[1 if first else 0], first

    def _on_input(self) -> bool:
        """Whether the current tensor is the graph input, not quantized yet."""
        return self.open is None and self.in_spec is None and not self.layers

    def _input_step(self, node, op, other):
        """Record a scalar step on the graph input (folded into the input quantizer)."""
        value = self.wrapper.get_initializer(other)
        if value is None or np.asarray(value).size != 1:
            raise ValueError(f"{where(node)} on the graph input must combine it with a scalar "
                             f"constant (hwnn folds it into the input quantizer)")
        value = np.float32(np.asarray(value).reshape(()))
        if op == "div" and value == 0:
            raise ValueError(f"{where(node)} divides by zero")
        self.input_steps.append([op, float(value)])

    def _add(self, node):
        other, _ = self._operands(node)
        if self._on_input():
            return self._input_step(node, "add", other)
        self._in_layer(node)
        self._set_bias(node, other)

    def _sub(self, node):
        other, first = self._operands(node)
        if self._on_input():
            return self._input_step(node, "sub" if first else "rsub", other)
        self._in_layer(node)
        constant = self._channel_constant(node, other, "operand")
        if first:
            self.open.add_step("sub", lambda y: y - constant, (1.0, -constant))
        else:
            self.open.add_step("sub", lambda y: constant - y, (-1.0, constant),
                               flips=np.ones(len(constant), dtype=bool))

    def _mul(self, node):
        other, _ = self._operands(node)
        if self._on_input():
            return self._input_step(node, "mul", other)
        self._in_layer(node)
        constant = self._channel_constant(node, other, "factor")
        self.open.add_step("mul", lambda y: y * constant, (constant, 0.0), flips=constant < 0)

    def _div(self, node):
        other, first = self._operands(node)
        if not first:
            raise ValueError(f"{where(node)} divides a constant by the tensor, which is not "
                             f"monotone: hwnn cannot represent it exactly")
        if self._on_input():
            return self._input_step(node, "div", other)
        self._in_layer(node)
        constant = self._channel_constant(node, other, "divisor")
        if np.any(constant == 0):
            raise ValueError(f"{where(node)} divides by zero")
        self.open.add_step("div", lambda y: y / constant, (1 / constant.astype(np.float64), 0.0),
                           flips=constant < 0)

    def _batchnormalization(self, node):
        self._in_layer(node)
        if len([name for name in node.output if name]) != 1:
            raise ValueError(f"{where(node)} must be in inference mode (one output)")
        values = self._attributes(node, {"epsilon": 1e-5, "momentum": 0.9,
                                         "training_mode": 0, "spatial": 1})
        if values["training_mode"] != 0 or values["spatial"] != 1:
            raise ValueError(f"{where(node)} must be in inference mode (training_mode 0, "
                             f"spatial 1)")
        params = [self.wrapper.get_initializer(name) for name in node.input[1:5]]
        if any(param is None for param in params):
            raise ValueError(f"{where(node)} parameters must be constants")
        batchnorm = BatchNormF32.from_parameters(*params, values["epsilon"])
        self.open.add_step("batchnorm", batchnorm, (batchnorm.a, batchnorm.b),
                           flips=batchnorm.a < 0)

    def _relu(self, node):
        self._in_layer(node)
        self.open.add_step("relu", lambda y: np.maximum(y, np.float32(0)))

    def _flatten(self, node):
        shape = self.wrapper.get_tensor_shape(node.output[0])
        if self.open is not None or shape is None or len(shape) != 2 or (
                shape[1] != math.prod(self.shape)):
            raise ValueError(f"{where(node)} must flatten a quantized tensor to (N, "
                             f"{math.prod(self.shape)}), not to {shape}")
        if len(self.shape) == 3 and self.layout == "chw" and (self.layers
                                                              or self.in_spec is not None):
            # An image inside the network flattened in (C, H, W) order: the dense layer after
            # it takes hwnn's (H, W, C) order.
            self.flattened = self.shape
        self.shape = (math.prod(self.shape),)
        self.layout = None

    _reshape = _flatten

    def _transpose(self, node):
        """Between NCHW and NHWC: the image stays, its ONNX layout changes. On the graph
        input, before any layer, an NHWC to NCHW Transpose says the input is NHWC, which is
        hwnn's own (H, W, C) order."""
        perm = list(self._attributes(node, {"perm": None})["perm"] or [])
        if self.open is not None or len(self.shape) != 3:
            raise ValueError(f"{where(node)} must permute a quantized image or the graph "
                             f"input image, not a vector or a layer's accumulator")
        to_hwc, to_chw = perm == [0, 2, 3, 1], perm == [0, 3, 1, 2]
        if to_chw and self.layout == "chw" and self.input_layout == "chw" and not self.layers:
            # The input (N, d1, d2, d3) was read as (N, C, H, W) = (d1, d2, d3): it is
            # (N, H, W, C) = (d1, d2, d3).
            height, width, channels = self.shape
            self.shape = (channels, height, width)
            self.input_layout = "hwc"
        elif (to_hwc and self.layout == "chw") or (to_chw and self.layout == "hwc"):
            self.layout = "hwc" if to_hwc else "chw"
        else:
            raise ValueError(f"{where(node)} permutes axes {perm} of an image laid out "
                             f"{'NCHW' if self.layout == 'chw' else 'NHWC'}: hwnn imports "
                             f"NCHW <-> NHWC transposes")

    def _expect_chw(self, node):
        if self.layout != "chw":
            raise ValueError(f"{where(node)} takes an NHWC image: ONNX's {node.op_type} takes "
                             f"NCHW")

    def _identity(self, node):
        pass

    _dropout = _identity

    # Closing layers ---------------------------------------------------------------------------

    def _close_thresholds(self, spec, node):
        layer, self.open = self.open, None
        self.layers.append(layer.with_thresholds(len(self.layers), where(node), spec))

    def _close_unquantized(self):
        layer, self.open = self.open, None
        last = where(self.wrapper.find_producer(self.current))
        self.layers.append(layer.with_accumulator(len(self.layers), last))
