"""The QONNX frontend: a quantization-aware trained model (Brevitas, QKeras or HGQ, exported
to QONNX) into an hwnn :class:`~hwnn.ir.Network`, directly: the quantization comes from the
model's ``Quant`` nodes, nothing is calibrated. Needs ``qonnx`` and ``onnx``
(``hwnn[qonnx]``).

The graph is first cleaned and its shapes inferred with qonnx's own
:func:`qonnx.util.cleanup.cleanup_model`. It must then be a chain of dense layers (MLPs):

============================== ============================================================
graph input                    ``Flatten``/``Reshape`` to ``(N, F)`` allowed, then a
                               ``Quant`` (the input quantizer: per-tensor scale, integer
                               zero point); the network takes its integer codes
``Quant`` of a constant        weights (integer codes times a per-tensor or per-output-channel
                               scale, zero point 0) or a float bias (its value is used)
``MatMul``/``Gemm``            a dense layer ``x @ W`` (``Gemm``: ``transA`` 0, ``alpha`` and
                               ``beta`` 1, optional bias ``C``) with quantized weights
``Add``                        a constant float bias right after a ``MatMul``
``BatchNormalization``         after the bias (inference mode)
``Relu``                       after the bias or the batch normalization
``Quant`` of an activation     closes the layer: a :class:`~hwnn.ir.stages.Thresholds` stage
                               whose codes equal qonnx's for every accumulator value
``BipolarQuant``               a 1-bit signed ``Quant`` (``binary`` codes), on weights or
                               activations
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
(descending where the batch normalization's scale is negative). The search is exact when the
matrix product is, that is with power-of-two input and weight scales; with other scales
qonnx's own float32 matrix product depends on its summation order and differs from the real
product by a few units in the last place, so codes can differ where a value falls that close
to a quantizer's rounding boundary.

Anything else (another op, a ``Quant`` elsewhere, a per-channel activation scale, a
non-integer zero point) is refused with one line naming the node and why.
"""

from pathlib import Path

import numpy as np

from ..ir import Dense, Network, TensorFormat
from ..ir.formats import Format, signed_bits_for
from ..ir.stages import accumulator_range
from .qonnx_arith import BatchNormF32, QuantSpec, matmul_value
from .threshold_search import search_thresholds

__all__ = ["QONNX_DOMAINS", "from_qonnx", "is_qonnx", "is_qonnx_file", "load_qonnx"]

#: The ONNX domains of QONNX's own ops, as exporters write them.
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")
_IGNORED = ("Identity", "Dropout")


def is_qonnx(model) -> bool:
    """Whether an ``onnx.ModelProto`` holds QONNX ops (a quantized model)."""
    return any(node.domain in QONNX_DOMAINS or (node.op_type in _QONNX_OPS and node.domain)
               for node in model.graph.node)


def _read(path):
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
    return is_qonnx(_read(path))


def load_qonnx(path, name="net") -> Network:
    """The hwnn network of the QONNX model in the file ``path`` (see the module docstring)."""
    from ..tools.toolchain import require
    require("Importing a QONNX model", "onnx", "qonnx")
    path = Path(path)
    model = _read(path)
    try:
        network = from_qonnx(model, name)
    except ValueError as error:
        raise ValueError(f"{str(path)!r}: {error}") from None
    return Network(network.name, network.layers, network.info | {"file": path.name})


def from_qonnx(model, name="net") -> Network:
    """The hwnn network of a QONNX ``onnx.ModelProto`` or qonnx ``ModelWrapper``."""
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
    return _Importer(wrapper).network(name)


def _where(node) -> str:
    return f"QONNX node {node.name!r} ({node.op_type})"


class _Layer:
    """An open dense layer: its weights and the float32 chain after its accumulator."""

    def __init__(self, weights, weight_spec, weight_scale, in_spec):
        self.weights, self.weight_spec, self.weight_scale = weights, weight_spec, weight_scale
        self.in_spec = in_spec
        self.bias = None
        self.batchnorm = None
        self.relu = False
        self.last = "matmul"

    @property
    def acc_scale(self) -> np.ndarray:
        """Per channel ``s_x * s_w`` (float64 of the float32 scales, exact)."""
        return np.float64(self.in_spec.scale) * self.weight_scale

    def real_values(self, acc) -> np.ndarray:
        """The float32 values qonnx computes from accumulators ``acc`` (k, channels) up to
        the quantizer: matrix product, bias, batch normalization, ReLU."""
        y = matmul_value(acc, self.acc_scale)
        if self.bias is not None:
            y = (y + self.bias).astype(np.float32)
        if self.batchnorm is not None:
            y = self.batchnorm(y)
        if self.relu:
            y = np.maximum(y, np.float32(0))
        return y


class _Importer:
    def __init__(self, wrapper):
        self.wrapper = wrapper
        self.graph = wrapper.graph
        #: Quant nodes of constants, evaluated: output name -> (codes, spec, node).
        self.quantized = {}
        self.layers = []
        self.open = None
        self.in_spec = None

    def network(self, name) -> Network:
        inputs = [value.name for value in self.graph.input
                  if self.wrapper.get_initializer(value.name) is None]
        if len(inputs) != 1:
            raise ValueError(f"The QONNX graph must have one input, not {inputs}")
        self.current = inputs[0]
        for node in self.graph.node:
            if self._constant_quant(node):
                continue
            if self.current not in node.input:
                raise ValueError(f"{_where(node)} does not take the output of the node before "
                                 f"it ({self.current!r}): hwnn imports chains of layers")
            handler = getattr(self, f"_{node.op_type.lower()}", None)
            if handler is None:
                raise ValueError(f"{_where(node)} is not supported: hwnn imports Quant, "
                                 f"BipolarQuant, MatMul, Gemm, Add (bias), BatchNormalization, "
                                 f"Relu, Flatten, Reshape, Identity and Dropout in a chain of "
                                 f"dense layers")
            handler(node)
            self.current = node.output[0]
        outputs = [value.name for value in self.graph.output]
        if outputs != [self.current]:
            raise ValueError(f"The QONNX graph's outputs {outputs} are not the end of its "
                             f"chain of nodes, {self.current!r}")
        if self.open is not None:
            self._close_unquantized()
        if not self.layers:
            raise ValueError("The QONNX graph has no MatMul or Gemm node")
        info = {"frontend": "qonnx", "producer": self.wrapper.model.producer_name}
        return Network(name, tuple(self.layers), info)

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
        self.quantized[node.output[0]] = (codes, spec, node)
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
        elif self.in_spec is None and not self.layers:
            self.in_spec = spec
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
        codes, spec, _ = self.quantized[name]
        return codes, spec

    def _start_layer(self, node, weights, spec, scale):
        """Open a dense layer ``weights @ x`` (``weights`` and ``scale`` broadcast, (out, in)
        oriented) on the current (quantized) tensor."""
        if self.in_spec is None:
            raise ValueError(f"{_where(node)} takes an unquantized tensor: the graph input "
                             f"needs a Quant node")
        if self.open is not None:
            raise ValueError(f"{_where(node)} follows a layer whose output is not quantized by "
                             f"a Quant node")
        shape = self.wrapper.get_tensor_shape(self.current)
        if shape is None or len(shape) != 2 or shape[1] != weights.shape[1]:
            raise ValueError(f"{_where(node)} takes a tensor of shape {shape}: hwnn imports "
                             f"dense layers on (N, {weights.shape[1]}) vectors")
        if np.any(np.asarray(spec.zero_point) != 0):
            raise ValueError(f"{_where(node)} weights have a nonzero zero point")
        if not np.all(scale == scale[:, :1]):
            raise ValueError(f"{_where(node)} weight scale varies along the input axis: hwnn "
                             f"imports per-tensor or per-output-channel weight scales")
        self.open = _Layer(weights.astype(np.int64), spec, scale[:, 0].astype(np.float64),
                           self.in_spec)

    def _matmul(self, node):
        if node.input[0] != self.current:
            raise ValueError(f"{_where(node)} must multiply its input by constant weights "
                             f"(x @ W)")
        codes, spec = self._weights(node, 1)
        if codes.ndim != 2:
            raise ValueError(f"{_where(node)} weights must be 2-d, not shape {codes.shape}")
        scale = np.broadcast_to(spec.scale, codes.shape)
        self._start_layer(node, codes.T, spec, scale.T)

    def _gemm(self, node):
        from qonnx.util.basic import get_by_name
        attributes = {name: get_by_name(node.attribute, name) for name in
                      ("alpha", "beta", "transA", "transB")}
        values = {name: (attribute.f if name in ("alpha", "beta") else attribute.i)
                  if attribute is not None else (1.0 if name in ("alpha", "beta") else 0)
                  for name, attribute in attributes.items()}
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
        self._start_layer(node, codes, spec, scale)
        if len(node.input) > 2 and node.input[2]:
            self._set_bias(node, node.input[2])

    def _add(self, node):
        if self.open is None or self.open.last != "matmul":
            raise ValueError(f"{_where(node)} adds a bias only right after a MatMul node (a "
                             f"residual Add is not supported)")
        (other,) = [name for name in node.input if name != self.current] or [None]
        if other is None:
            raise ValueError(f"{_where(node)} must add a constant bias")
        self._set_bias(node, other)

    def _set_bias(self, node, name):
        if name in self.quantized:
            codes, spec, _ = self.quantized[name]
            bias = spec.values(codes)
        else:
            bias = self.wrapper.get_initializer(name)
            if bias is None:
                raise ValueError(f"{_where(node)} bias {name!r} is not a constant")
        bias = np.asarray(bias, dtype=np.float32)
        channels = self.open.weights.shape[0]
        if bias.size not in (1, channels):
            raise ValueError(f"{_where(node)} bias of shape {bias.shape} does not fit "
                             f"{channels} outputs")
        self.open.bias = np.broadcast_to(bias.reshape(-1), (channels,)).copy()
        self.open.last = "bias"

    def _batchnormalization(self, node):
        from qonnx.util.basic import get_by_name
        if self.open is None or self.open.last not in ("matmul", "bias"):
            raise ValueError(f"{_where(node)} must follow a MatMul or Gemm node (and its bias)")
        if len([name for name in node.output if name]) != 1:
            raise ValueError(f"{_where(node)} must be in inference mode (one output)")
        params = [self.wrapper.get_initializer(name) for name in node.input[1:5]]
        if any(param is None for param in params):
            raise ValueError(f"{_where(node)} parameters must be constants")
        epsilon = get_by_name(node.attribute, "epsilon")
        self.open.batchnorm = BatchNormF32.from_parameters(
            *params, epsilon.f if epsilon is not None else 1e-5)
        self.open.last = "batchnorm"

    def _relu(self, node):
        if self.open is None or self.open.relu:
            raise ValueError(f"{_where(node)} must follow a MatMul or Gemm node (its bias and "
                             f"batch normalization)")
        self.open.relu = True
        self.open.last = "relu"

    def _flatten(self, node):
        shape = self.wrapper.get_tensor_shape(node.output[0])
        if self.open is not None or shape is None or len(shape) != 2:
            raise ValueError(f"{_where(node)} must flatten a quantized tensor to (N, "
                             f"features), not to {shape}")

    _reshape = _flatten

    def _identity(self, node):
        pass

    _dropout = _identity

    # Closing layers ---------------------------------------------------------------------------

    def _name(self) -> str:
        return f"dense{len(self.layers)}"

    def _in_format(self, layer) -> TensorFormat:
        spec = layer.in_spec
        return TensorFormat(spec.format, float(spec.scale), int(spec.zero_point))

    def _zero_point_bias(self, layer) -> np.ndarray:
        """The accumulator bias that folds the input zero point: ``-zp * sum(row)``."""
        return -int(layer.in_spec.zero_point) * layer.weights.sum(axis=1)

    def _close_thresholds(self, spec, node):
        layer, self.open = self.open, None
        in_format = self._in_format(layer)
        out_format = spec.format
        bias = self._zero_point_bias(layer)
        lo, hi = accumulator_range(layer.weights, bias, in_format.format)
        descending = (layer.batchnorm.a < 0 if layer.batchnorm is not None
                      else np.zeros(len(lo), dtype=bool))

        def level_of(acc):
            codes = spec.codes(layer.real_values(acc)).astype(np.int64)
            return out_format.value_level(codes)

        stage = search_thresholds(level_of, lo, hi, out_format.levels, descending)
        try:
            self.layers.append(Dense(
                self._name(), layer.weights, layer.weight_spec.format, layer.weight_scale, bias,
                in_format, TensorFormat(out_format, float(spec.scale), int(spec.zero_point)),
                stage, "relu" if layer.relu else "identity"))
        except ValueError as error:
            raise ValueError(f"{_where(node)}: {error}") from None

    def _close_unquantized(self):
        layer, self.open = self.open, None
        if layer.batchnorm is not None or layer.relu:
            raise ValueError("The last layer applies a BatchNormalization or Relu without a "
                             "Quant after it: hwnn outputs the last layer's raw accumulator, "
                             "scaled and biased")
        in_format = self._in_format(layer)
        bias = self._zero_point_bias(layer)
        if layer.bias is not None:
            bias = bias + np.round(layer.bias.astype(np.float64) / layer.acc_scale).astype(
                np.int64)
        lo, hi = accumulator_range(layer.weights, bias, in_format.format)
        output = TensorFormat(Format.int(signed_bits_for(lo.min(), hi.max())), layer.acc_scale)
        self.layers.append(Dense(self._name(), layer.weights, layer.weight_spec.format,
                                 layer.weight_scale, bias, in_format, output, None))
