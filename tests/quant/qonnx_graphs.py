"""QONNX graphs built node by node with ``onnx.helper`` for the QONNX import tests, and
qonnx's executor to run them.

``Quant`` nodes are written as Brevitas exports them (domain ``qonnx.custom_op.general``,
attributes ``signed``, ``narrow``, ``rounding_mode``; scale, zero point and bit width as
float32 initializers).
"""

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.transformation.infer_shapes import InferShapes

DOMAIN = "qonnx.custom_op.general"


class Builder:
    """Nodes and initializers of a QONNX graph taking ``x``."""

    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def const(self, value):
        self.count += 1
        name = f"c{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(self, op, inputs, domain="", **attributes):
        self.count += 1
        out = f"t{self.count}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=f"{op}_{self.count}",
                                           domain=domain, **attributes))
        return out

    def quant(self, x, scale, zero_point, bits, signed=True, narrow=False, rounding="ROUND"):
        return self.node("Quant", [x, self.const(scale), self.const(zero_point),
                                   self.const(bits)], DOMAIN, signed=int(signed),
                         narrow=int(narrow), rounding_mode=rounding)

    def bipolar(self, x, scale):
        return self.node("BipolarQuant", [x, self.const(scale)], DOMAIN)

    def multithreshold(self, x, thresholds, out_dtype, **attributes):
        return self.node("MultiThreshold", [x, self.const(thresholds)], DOMAIN,
                         out_dtype=out_dtype, **attributes)

    def model(self, output, batch, features, outputs):
        """The model of (batch, features) inputs and (batch, outputs) outputs."""
        return self.graph(output, [batch, features], [batch, outputs])

    def graph(self, output, input_shape, output_shape):
        graph = helper.make_graph(
            self.nodes, "qnn", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                              input_shape)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, output_shape)],
            self.inits)
        model = helper.make_model(graph, producer_name="hwnn-tests", opset_imports=[
            helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)])
        model.ir_version = 8
        return model


def pow2(rng, size=None, low=-7, high=-2):
    return 2.0 ** rng.integers(low, high, size=size)


def run_qonnx(model, inputs):
    """Every tensor of qonnx's execution of ``model`` (shapes inferred, nothing else changed)
    on ``inputs``."""
    wrapper = ModelWrapper(model).transform(InferShapes())
    return execute_onnx(wrapper, {"x": inputs}, return_full_exec_context=True)


def qonnx_codes(context, model, name, quant=None):
    """The integer codes of the tensor ``name`` that the Quant node ``quant`` (by its output;
    by default ``name``) quantized."""
    (node,) = [node for node in model.graph.node if node.output[0] == (quant or name)]
    initial = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    scale = initial[node.input[1]]
    zero_point = initial[node.input[2]] if node.op_type == "Quant" else 0
    return np.round(context[name] / scale + zero_point).astype(np.int64)


def bias_bn_relu(b, rng, y, channels):
    """Bias, batch normalization with alternating signs of gamma, Relu."""
    y = b.node("Add", [y, b.const(rng.normal(0, 3, channels))])
    gamma = rng.uniform(0.2, 3, channels) * np.array([1, -1, 1, -1, 1, -1])
    y = b.node("BatchNormalization", [y, b.const(gamma), b.const(rng.normal(0, 1, channels)),
                                      b.const(rng.normal(0, 2, channels)),
                                      b.const(rng.uniform(0.5, 3, channels))])
    return b.node("Relu", [y])


def single_layer(rng, in_bits, act, *, w_scale, chain=bias_bn_relu, quantizer=None):
    """One layer of 2 inputs of ``in_bits`` signed bits (scale 2**-3), weights ``[1,
    2**in_bits]`` for every channel: its accumulator ``x0 + 2**in_bits * x1`` takes every
    value of its range exactly once over all inputs (:func:`every_input`). ``chain(builder,
    rng, y, channels)`` adds the nodes between the accumulator and the activation quantizer:
    a Quant of ``act`` = (bits, signed, narrow, rounding), or ``quantizer(builder, y)``."""
    b = Builder()
    channels = 6
    x = b.quant("x", 2.0 ** -3, 0, in_bits, True)
    weights = np.array([[1.0], [2.0 ** in_bits]]) * np.ones((1, channels)) * w_scale
    w_bits = in_bits + 2
    y = b.node("MatMul", [x, b.quant(b.const(weights), w_scale, 0, w_bits, True, True)])
    y = chain(b, rng, y, channels)
    if quantizer is None:
        bits, signed, narrow, rounding = act
        out = b.quant(y, rng.uniform(0.01, 0.2), 0, bits, signed, narrow, rounding)
    else:
        out = quantizer(b, y)
    return b.model(out, (2 ** in_bits) ** 2, 2, channels), out


def every_input(in_bits):
    """The input codes of :func:`single_layer` whose accumulators are its whole range, and
    their real values."""
    half = 2 ** (in_bits - 1)
    grid = np.arange(-half, half)
    codes = np.stack(np.meshgrid(grid, grid, indexing="ij"), axis=-1).reshape(-1, 2)
    return codes, (codes * np.float32(2.0 ** -3)).astype(np.float32)
