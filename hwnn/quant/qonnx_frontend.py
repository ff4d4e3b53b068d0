"""The QONNX frontend: a quantization-aware trained model (Brevitas, QKeras or HGQ, exported
to QONNX) into an hwnn :class:`~hwnn.ir.Network`, directly: the quantization comes from the
model's ``Quant`` nodes, nothing is calibrated. Needs ``qonnx`` and ``onnx``
(``hwnn[qonnx]``).

The graph is first cleaned and its shapes inferred with qonnx's own
:func:`qonnx.util.cleanup.cleanup_model`. It must then be a chain of layers:

============================== ============================================================
graph input                    ``(N, F)`` vectors or ``(N, C, H, W)`` images (the network
                               takes them channels last, ``(H, W, C)``; ``info`` records
                               ``input_layout`` ``"chw"``), optionally flattened, then a
                               ``Quant`` (the input quantizer: per-tensor scale, integer
                               zero point); the network takes its integer codes
``Quant`` of a constant        weights (integer codes times a per-tensor or per-output-channel
                               scale, zero point 0) or a float bias (its value is used)
``MatMul``/``Gemm``            a dense layer ``x @ W`` (``Gemm``: ``transA`` 0, ``alpha`` and
                               ``beta`` 1, optional bias ``C``) with quantized weights
``Conv``                       2-d, ``group`` 1 or depthwise, dilations 1, explicit pads,
                               optional bias, quantized weights
``Add``, ``Sub``, ``Mul``,     between a layer's product and its ``Quant``, in any order:
``Div``,                       float constants (scalars or one per channel: biases, scales,
``BatchNormalization``,        centering), inference batch normalization, ReLU; each is
``Relu``                       monotone per channel (a negative factor or ``c - x`` makes a
                               channel descending); ``c / x`` is refused. Without a
                               ``Quant`` after it, the last layer takes only a bias ``Add``
``Quant`` of an activation     closes the layer: a :class:`~hwnn.ir.stages.Thresholds` stage
                               whose codes equal qonnx's for every accumulator value
``BipolarQuant``               a 1-bit signed ``Quant`` (``binary`` codes), on weights or
                               activations
``MaxPool``                    on a quantized image (after its ``Quant``): a max pool of
                               codes, no padding
``Flatten``, ``Reshape``       to ``(N, features)``; an image inside the network is flattened
                               in ONNX's ``(C, H, W)`` order, so the dense layer after it has
                               its columns permuted to hwnn's ``(H, W, C)`` order
``Identity``, ``Dropout``      ignored
============================== ============================================================

The last layer may end without a ``Quant``: it outputs its raw accumulator (no stage), whose
per-channel scale ``s_x * s_w`` dequantizes it; a float bias is added to the accumulator
rounded to whole accumulator steps, so the dequantized logits are within half a step of
qonnx's (exactly equal when the bias is a multiple of the step, as Brevitas' bias
quantizers make it).

Exactness: each threshold stage is found by a binary search over the layer's whole integer
accumulator range (:func:`hwnn.quant.threshold_search.search_thresholds`) on the very float32
chain qonnx's executor applies (:mod:`hwnn.quant.qonnx_arith`), which is monotone per channel
(descending where a negative factor, batch normalization scale or ``c - x`` reverses it). The
search is exact when the matrix product is, that is with power-of-two input and weight
scales; with other scales qonnx's own float32 matrix product depends on its summation order
and differs from the real product by a few units in the last place, so codes can differ where
a value falls that close to a quantizer's rounding boundary (none did on the Brevitas exports
the tests import). The network's ``info["input_quantizer"]`` makes
:meth:`hwnn.ir.Network.quantize_input` quantize real inputs as the model's input ``Quant``
does, in float32.

Anything else (another op, a ``Quant`` elsewhere, a per-channel activation scale, a
non-integer zero point) is refused with one line naming the node and why.
"""

import math
from pathlib import Path

import numpy as np

from ..ir import Conv2d, Dense, MaxPool2d, Network, TensorFormat
from ..ir.formats import Format, Rounding, signed_bits_for
from ..ir.stages import accumulator_range
from ..ir.tensors import chw_to_hwc_columns
from .onnx_graph import node_attributes
from .qonnx_arith import BatchNormF32, QuantSpec, matmul_value
from .threshold_search import search_thresholds

__all__ = ["QONNX_DOMAINS", "from_qonnx", "import_qonnx", "is_qonnx", "is_qonnx_file",
           "load_qonnx", "read_onnx"]

#: The ONNX domains of QONNX's own ops, as exporters write them.
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")
#: The rounding modes of an input ``Quant`` and the same rounding of hwnn's input quantizer
#: (:meth:`hwnn.ir.Network.quantize_input`).
_INPUT_ROUNDING = {"ROUND": Rounding.HALF_EVEN, "HALF_EVEN": Rounding.HALF_EVEN,
                   "FLOOR": Rounding.FLOOR, "CEIL": Rounding.CEIL, "DOWN": Rounding.TOWARD_ZERO}


def is_qonnx(model) -> bool:
    """Whether an ``onnx.ModelProto`` holds QONNX ops (a quantized model)."""
    return any(node.domain in QONNX_DOMAINS or (node.op_type in _QONNX_OPS and node.domain)
               for node in model.graph.node)


def read_onnx(path):
    """The ``onnx.ModelProto`` in the file ``path`` (a one-line ValueError if unreadable)."""
    from ..tools.toolchain import require
    require("Reading an ONNX model", "onnx")
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No model file at {str(path)!r}")
    try:
        return onnx.load(str(path))
    except Exception as error:  # protobuf decoding raises its own errors; report bad input
        raise ValueError(f"{str(path)!r} is not a readable ONNX model: {error}") from None


def is_qonnx_file(path) -> bool:
    """Whether the ONNX file ``path`` holds QONNX ops (needs only ``onnx``)."""
    return is_qonnx(read_onnx(path))


def load_qonnx(path, name="net") -> Network:
    """The hwnn network of the QONNX model in the file ``path`` (see the module docstring)."""
    from ..tools.toolchain import require
    require("Importing a QONNX model", "onnx", "qonnx")
    path = Path(path)
    model = read_onnx(path)
    try:
        network = from_qonnx(model, name)
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}") from None
    return Network(network.name, network.layers, network.info | {"file": path.name})


def from_qonnx(model, name="net") -> Network:
    """The hwnn network of a QONNX ``onnx.ModelProto`` or qonnx ``ModelWrapper``."""
    return import_qonnx(model, name)[0]


def import_qonnx(model, name="net"):
    """``(network, wrapper, tensors)``: the hwnn network of a QONNX model (as
    :func:`from_qonnx`), the cleaned qonnx ``ModelWrapper`` it was read from, and for the
    input quantizer, then for each layer, the pair ``(tensor, spec)``: the name of the
    cleaned graph's tensor that holds the codes and the
    :class:`~hwnn.quant.qonnx_arith.QuantSpec` that quantized it (None for the last layer's
    raw accumulator)."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model

    wrapper = model if isinstance(model, ModelWrapper) else ModelWrapper(model)
    if not is_qonnx(wrapper.model):
        raise ValueError("The ONNX graph has no QONNX Quant node: import a float model with "
                         "hwnn.quant.load_model and --calib")
    try:
        wrapper = cleanup_model(wrapper)
    except Exception as error:  # qonnx's transformations raise anything on malformed graphs
        raise ValueError(f"qonnx could not clean up the graph: {error}") from None
    importer = _Importer(wrapper)
    network = importer.network(name)
    return network, wrapper, importer.tensors


def _where(node) -> str:
    return f"QONNX node {node.name!r} ({node.op_type})"


class _Layer:
    """An open weighted layer: its weights (output channels first, channels-last taps), the
    IR kind that will hold it (``make``, taking the common members as keywords), and the
    float32 steps qonnx applies after its accumulator, in order: ``(op, function,
    constant)``, each ``function`` monotone per channel (``descending`` says where the chain
    so far falls as the accumulator rises)."""

    def __init__(self, make, weights, weight_spec, weight_scale, in_spec):
        self.make, self.weights = make, weights
        self.weight_spec, self.weight_scale, self.in_spec = weight_spec, weight_scale, in_spec
        self.steps = []
        self.descending = np.zeros(len(weights), dtype=bool)

    def add_step(self, op, function, constant=None, flips=None):
        """Append a step; ``flips`` marks the channels where it reverses the direction."""
        self.steps.append((op, function, constant))
        if flips is not None:
            self.descending = self.descending ^ flips

    @property
    def acc_scale(self) -> np.ndarray:
        """Per channel ``s_x * s_w`` (float64 of the float32 scales, exact)."""
        return np.float64(self.in_spec.scale) * self.weight_scale

    def real_values(self, acc) -> np.ndarray:
        """The float32 values qonnx computes from accumulators ``acc`` (k, channels) up to
        the quantizer: the matrix product, then every step."""
        y = matmul_value(acc, self.acc_scale)
        for _, function, _ in self.steps:
            y = function(y).astype(np.float32)
        return y

    def acc_range(self, bias, in_format):
        """Per-channel accumulator bounds (padding inserts a code of the input format, so the
        bounds of the weights as a matrix hold for a convolution too)."""
        return accumulator_range(self.weights.reshape(len(self.weights), -1), bias, in_format)


class _Importer:
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
        for node in self.graph.node:
            if self._constant_quant(node):
                continue
            if self.current not in node.input:
                raise ValueError(f"{_where(node)} does not take the output of the node before "
                                 f"it ({self.current!r}): hwnn imports chains of layers")
            handler = getattr(self, f"_{node.op_type.lower()}", None)
            if handler is None:
                raise ValueError(f"{_where(node)} is not supported: hwnn imports Quant, "
                                 f"BipolarQuant, Conv, MatMul, Gemm, Add (bias), "
                                 f"BatchNormalization, Relu, MaxPool, Flatten, Reshape, "
                                 f"Identity and Dropout in a chain of layers")
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
        layout = "chw" if len(self.layers[0].input_shape) == 3 else "vector"
        info = {"frontend": "qonnx", "producer": self.wrapper.model.producer_name,
                "input_layout": layout, "input_quantizer": {
                    "arithmetic": "float32", "rounding": self.input_rounding.value}}
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

    # Quant nodes ---------------------------------------------------------------------------

    def _spec(self, node) -> QuantSpec:
        """The parameters of a ``Quant`` or ``BipolarQuant`` node (a ``BipolarQuant`` is a
        1-bit signed ``Quant``: ``+1`` for ``x >= 0``, else -1, times the scale)."""
        from qonnx.custom_op.general.intquant import resolve_rounding_mode
        from qonnx.custom_op.registry import getCustomOp
        arity = {"Quant": 4, "BipolarQuant": 2}.get(node.op_type)
        if arity is None:
            raise ValueError(f"{_where(node)} is not supported: hwnn imports QONNX's Quant "
                             f"and BipolarQuant nodes")
        params = [self.wrapper.get_initializer(name) for name in node.input[1:]]
        if len(node.input) != arity or any(param is None for param in params):
            raise ValueError(f"{_where(node)} must have constant scale"
                             + (", zero point and bit width" if arity == 4 else ""))
        scale, zero_point, bits = params if arity == 4 else (params[0], 0, 1)
        if np.asarray(bits).size != 1 or float(bits) != int(bits) or not 1 <= int(bits) <= 32:
            raise ValueError(f"{_where(node)} bit width must be an integer 1..32, not "
                             f"{np.asarray(bits).tolist()}")
        scale = np.asarray(scale, dtype=np.float32)
        if not np.all(np.isfinite(scale) & (scale > 0)):
            raise ValueError(f"{_where(node)} scale must be finite and positive")
        zero_point = np.asarray(zero_point, dtype=np.float32)
        if not np.all(zero_point == np.round(zero_point)):
            raise ValueError(f"{_where(node)} zero point must be an integer, not "
                             f"{zero_point.tolist()}")
        if arity == 2:
            return QuantSpec(scale, zero_point, 1, True, False, "ROUND")
        op = getCustomOp(node)
        rounding = op.get_nodeattr("rounding_mode")
        try:
            resolve_rounding_mode(rounding)
        except ValueError:
            raise ValueError(f"{_where(node)} rounding mode {rounding!r} is not one qonnx "
                             f"executes") from None
        return QuantSpec(scale, zero_point, int(bits), bool(op.get_nodeattr("signed")),
                         bool(op.get_nodeattr("narrow")), rounding)

    def _constant_quant(self, node) -> bool:
        """Evaluate a Quant node of a constant (weights, bias); False for any other node."""
        if (node.op_type not in ("Quant", "BipolarQuant")
                or self.wrapper.get_initializer(node.input[0]) is None):
            return False
        spec = self._spec(node)
        value = self.wrapper.get_initializer(node.input[0])
        try:
            codes = spec.codes(value)
        except ValueError:
            raise ValueError(f"{_where(node)} scale of shape {spec.scale.shape} or zero point "
                             f"of shape {spec.zero_point.shape} does not fit its input of "
                             f"shape {value.shape}") from None
        self.quantized[node.output[0]] = (codes, spec)
        return True

    def _quant(self, node):
        spec = self._spec(node)
        if np.asarray(spec.scale).size != 1 or np.asarray(spec.zero_point).size != 1:
            raise ValueError(f"{_where(node)} quantizes an activation per channel: hwnn "
                             f"imports per-tensor activation scales and zero points")
        spec = QuantSpec(spec.scale.reshape(()), spec.zero_point.reshape(()), spec.bits,
                         spec.signed, spec.narrow, spec.rounding)
        if self.open is not None:
            self._close_thresholds(spec, node)
            self.tensors.append((node.output[0], spec))
        elif self.in_spec is None and not self.layers:
            rounding = _INPUT_ROUNDING.get(spec.rounding.upper())
            if rounding is None:
                raise ValueError(f"{_where(node)} quantizes the input with rounding mode "
                                 f"{spec.rounding!r}: hwnn's input quantizer rounds "
                                 f"{', '.join(_INPUT_ROUNDING)}")
            self.input_rounding = rounding
            self.tensors.append((node.output[0], spec))
        else:
            raise ValueError(f"{_where(node)} quantizes a tensor that is already quantized")
        self.in_spec = spec

    _bipolarquant = _quant

    # Layers ---------------------------------------------------------------------------------

    def _weights(self, node, position):
        """The quantized constant input ``position`` of ``node``: (codes, spec)."""
        name = node.input[position] if len(node.input) > position else ""
        if name not in self.quantized:
            raise ValueError(f"{_where(node)} input {name!r} is not quantized by a Quant node: "
                             f"hwnn imports quantized weights")
        codes, spec = self.quantized[name]
        return codes, spec

    def _start_layer(self, node, make, weights, spec, scale):
        """Open a layer (``make`` builds its IR kind) of ``weights`` and their broadcast
        ``scale``, both output channels first, on the current (quantized) tensor."""
        if self.in_spec is None:
            raise ValueError(f"{_where(node)} takes an unquantized tensor: the graph input "
                             f"needs a Quant node")
        if self.open is not None:
            raise ValueError(f"{_where(node)} follows a layer whose output is not quantized by "
                             f"a Quant node")
        if np.any(np.asarray(spec.zero_point) != 0):
            raise ValueError(f"{_where(node)} weights have a nonzero zero point")
        rows = scale.reshape(len(scale), -1)
        if not np.all(rows == rows[:, :1]):
            raise ValueError(f"{_where(node)} weight scale varies within an output channel: "
                             f"hwnn imports per-tensor or per-output-channel weight scales")
        self.open = _Layer(make, weights.astype(np.int64), spec,
                           rows[:, 0].astype(np.float64), self.in_spec)

    def _dense(self, node, codes, spec, scale):
        """Open a dense layer ``codes @ x`` (``codes`` and ``scale`` (out, in))."""
        if len(self.shape) != 1 or self.shape[0] != codes.shape[1]:
            raise ValueError(f"{_where(node)} takes {codes.shape[1]} inputs but gets a tensor "
                             f"of shape {self.shape} (channels last): flatten images first")
        if self.flattened is not None:
            codes = chw_to_hwc_columns(codes, self.flattened)
            scale = chw_to_hwc_columns(scale, self.flattened)
            self.flattened = None
        self._start_layer(node, Dense, codes, spec, scale)
        self.shape = (codes.shape[0],)

    def _matmul(self, node):
        if node.input[0] != self.current:
            raise ValueError(f"{_where(node)} must multiply its input by constant weights "
                             f"(x @ W)")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 2:
            raise ValueError(f"{_where(node)} weights must be 2-d, not shape {codes.shape}")
        scale = np.broadcast_to(spec.scale, codes.shape)
        self._dense(node, codes.T, spec, scale.T)

    def _gemm(self, node):
        values = self._attributes(node, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
        if values["transA"] != 0 or values["alpha"] != 1.0 or values["beta"] != 1.0:
            raise ValueError(f"{_where(node)} must have transA 0, alpha 1 and beta 1, not "
                             f"{values}")
        if node.input[0] != self.current:
            raise ValueError(f"{_where(node)} must multiply its input by constant weights")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 2:
            raise ValueError(f"{_where(node)} weights must be 2-d, not shape {codes.shape}")
        scale = np.broadcast_to(spec.scale, codes.shape)
        if not values["transB"]:
            codes, scale = codes.T, scale.T
        self._dense(node, codes, spec, scale)
        if len(node.input) > 2 and node.input[2]:
            self._set_bias(node, node.input[2])

    def _conv(self, node):
        if node.input[0] != self.current or len(self.shape) != 3:
            raise ValueError(f"{_where(node)} must convolve the image before it with constant "
                             f"weights")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 4:
            raise ValueError(f"{_where(node)} weights must be 4-d (2-d convolution), not shape "
                             f"{codes.shape}")
        values = self._attributes(node, {
            "auto_pad": "NOTSET", "dilations": [1, 1], "group": 1,
            "kernel_shape": list(codes.shape[2:]), "pads": [0, 0, 0, 0], "strides": [1, 1]})
        if (values["auto_pad"] not in ("NOTSET", "VALID") or list(values["dilations"]) != [1, 1]
                or list(values["kernel_shape"]) != list(codes.shape[2:])):
            raise ValueError(f"{_where(node)} must have explicit pads, dilations 1 and a "
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
            raise ValueError(f"{_where(node)} must pool a quantized image (after its Quant)")
        values = self._attributes(node, {
            "auto_pad": "NOTSET", "ceil_mode": 0, "dilations": [1, 1], "kernel_shape": None,
            "pads": [0, 0, 0, 0], "storage_order": 0, "strides": None})
        if (values["kernel_shape"] is None or values["auto_pad"] not in ("NOTSET", "VALID")
                or any(values["pads"]) or values["ceil_mode"] or list(values["dilations"])
                != [1, 1] or len([name for name in node.output if name]) != 1):
            raise ValueError(f"{_where(node)} must pool without padding, dilation, ceil_mode "
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
            raise ValueError(f"{_where(node)}: {error}") from None
        self.layers.append(pool)
        self.tensors.append((node.output[0], spec))
        self.shape = pool.output_shape

    def _attributes(self, node, defaults):
        return node_attributes(node, defaults, _where(node))

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
                raise ValueError(f"{_where(node)} {what} {name!r} is not a constant (a residual "
                                 f"connection of two tensors is not supported)")
        value = np.asarray(value, dtype=np.float32)
        channels = len(self.open.weights)
        along_channels = (value.shape[-1:] == (channels,) if vector or len(self.shape) == 1
                          else value.shape[-3:] == (channels, 1, 1))
        if value.size != 1 and (value.size != channels or not along_channels):
            raise ValueError(f"{_where(node)} {what} of shape {value.shape} does not apply per "
                             f"channel to {channels} channels")
        return np.broadcast_to(value.reshape(-1), (channels,)).copy()

    def _in_layer(self, node):
        if self.open is None:
            raise ValueError(f"{_where(node)} must come between a MatMul, Gemm or Conv node and "
                             f"the Quant of its output")

    def _set_bias(self, node, name, vector=False):
        constant = self._channel_constant(node, name, "bias", vector)
        self.open.add_step("add", lambda y: y + constant, constant)

    def _operands(self, node):
        """The other operand of a binary op on the current tensor, and whether the current
        tensor is the first operand."""
        self._in_layer(node)
        if list(node.input).count(self.current) != 1 or len(node.input) != 2:
            raise ValueError(f"{_where(node)} must combine its input with a constant")
        first = node.input[0] == self.current
        return node.input[1 if first else 0], first

    def _add(self, node):
        other, _ = self._operands(node)
        self._set_bias(node, other)

    def _sub(self, node):
        other, first = self._operands(node)
        constant = self._channel_constant(node, other, "operand")
        if first:
            self.open.add_step("sub", lambda y: y - constant)
        else:
            self.open.add_step("sub", lambda y: constant - y,
                               flips=np.ones(len(constant), dtype=bool))

    def _mul(self, node):
        other, _ = self._operands(node)
        constant = self._channel_constant(node, other, "factor")
        self.open.add_step("mul", lambda y: y * constant, flips=constant < 0)

    def _div(self, node):
        other, first = self._operands(node)
        if not first:
            raise ValueError(f"{_where(node)} divides a constant by the tensor, which is not "
                             f"monotone: hwnn cannot represent it exactly")
        constant = self._channel_constant(node, other, "divisor")
        if np.any(constant == 0):
            raise ValueError(f"{_where(node)} divides by zero")
        self.open.add_step("div", lambda y: y / constant, flips=constant < 0)

    def _batchnormalization(self, node):
        self._in_layer(node)
        if len([name for name in node.output if name]) != 1:
            raise ValueError(f"{_where(node)} must be in inference mode (one output)")
        values = self._attributes(node, {"epsilon": 1e-5, "momentum": 0.9,
                                         "training_mode": 0, "spatial": 1})
        if values["training_mode"] != 0 or values["spatial"] != 1:
            raise ValueError(f"{_where(node)} must be in inference mode (training_mode 0, "
                             f"spatial 1)")
        params = [self.wrapper.get_initializer(name) for name in node.input[1:5]]
        if any(param is None for param in params):
            raise ValueError(f"{_where(node)} parameters must be constants")
        batchnorm = BatchNormF32.from_parameters(*params, values["epsilon"])
        self.open.add_step("batchnorm", batchnorm, flips=batchnorm.a < 0)

    def _relu(self, node):
        self._in_layer(node)
        self.open.add_step("relu", lambda y: np.maximum(y, np.float32(0)))

    def _flatten(self, node):
        shape = self.wrapper.get_tensor_shape(node.output[0])
        if self.open is not None or shape is None or len(shape) != 2 or (
                shape[1] != math.prod(self.shape)):
            raise ValueError(f"{_where(node)} must flatten a quantized tensor to (N, "
                             f"{math.prod(self.shape)}), not to {shape}")
        if len(self.shape) == 3 and (self.layers or self.in_spec is not None):
            # An image inside the network: the dense layer after it takes hwnn's order.
            self.flattened = self.shape
        self.shape = (math.prod(self.shape),)

    _reshape = _flatten

    def _identity(self, node):
        pass

    _dropout = _identity

    # Closing layers ---------------------------------------------------------------------------

    def _in_format(self, layer) -> TensorFormat:
        spec = layer.in_spec
        return TensorFormat(spec.format, float(spec.scale), int(spec.zero_point))

    def _zero_point_bias(self, layer) -> np.ndarray:
        """The accumulator bias that folds the input zero point: ``-zp * sum(row)``."""
        return -int(layer.in_spec.zero_point) * layer.weights.reshape(
            len(layer.weights), -1).sum(axis=1)

    def _append(self, layer, where, **members):
        name = f"{'dense' if layer.make is Dense else 'conv'}{len(self.layers)}"
        try:
            self.layers.append(layer.make(
                name=name, weights=layer.weights, weight_format=layer.weight_spec.format,
                weight_scale=layer.weight_scale, input=self._in_format(layer), **members))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    def _close_thresholds(self, spec, node):
        layer, self.open = self.open, None
        in_format = self._in_format(layer)
        out_format = spec.format
        bias = self._zero_point_bias(layer)
        lo, hi = layer.acc_range(bias, in_format.format)
        descending = layer.descending

        def level_of(acc):
            codes = spec.codes(layer.real_values(acc)).astype(np.int64)
            return out_format.value_level(codes)

        stage = search_thresholds(level_of, lo, hi, out_format.levels, descending)
        self._append(layer, _where(node), bias=bias, stage=stage,
                     output=TensorFormat(out_format, float(spec.scale), int(spec.zero_point)),
                     activation="relu" if any(op == "relu" for op, _, _ in layer.steps)
                     else "identity")

    def _close_unquantized(self):
        layer, self.open = self.open, None
        ops = [op for op, _, _ in layer.steps]
        if ops not in ([], ["add"]):
            raise ValueError(f"The last layer applies {', '.join(ops)} to its accumulator "
                             f"without a Quant after it: hwnn outputs the last layer's raw "
                             f"accumulator plus a bias")
        in_format = self._in_format(layer)
        bias = self._zero_point_bias(layer)
        if ops:
            constant = layer.steps[0][2]
            bias = bias + np.round(constant.astype(np.float64) / layer.acc_scale).astype(
                np.int64)
        lo, hi = layer.acc_range(bias, in_format.format)
        output = TensorFormat(Format.int(signed_bits_for(lo.min(), hi.max())), layer.acc_scale)
        self._append(layer, "The last layer", bias=bias, stage=None, output=output)
