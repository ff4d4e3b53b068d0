"""The ONNX writer: a :class:`~hwnn.quant.floatnet.FloatNetwork` as a float ONNX model, laid
out as ``torch.onnx.export`` writes the same PyTorch model, so that the ONNX frontend
(:mod:`.onnx_frontend`) reads it back as the same network. Needs the ``onnx`` package
(``hwnn[onnx]``).

The graph takes one input ``x``, a batch of vectors ``(N, F)`` or of images ``(N, C, H, W)``
(channels first, as PyTorch: a network of images is written so whatever its
``input_layout``), and has one output ``y``. Layer ``i`` (counted as in the IR, pools
included) becomes, in order:

* a convolution: ``Conv`` (weights ``(out, in / groups, kh, kw)``, explicit ``pads``,
  ``strides``, ``group``), then ``BatchNormalization`` if the layer has one, then ``Relu`` if
  its activation is ``relu``;
* a max pool: ``MaxPool`` (``kernel_shape``, ``strides``);
* a dense layer: ``Flatten`` (axis 1) when it takes an image, its columns permuted to
  PyTorch's ``(C, H, W)`` order (:func:`hwnn.ir.hwc_to_chw_columns`); ``Gemm`` (``transB``
  1, weights ``(out, in)``); then ``BatchNormalization`` and ``Relu`` as above.

Weights and parameters are float32 initializers named ``<layer>.weight``, ``<layer>.bias``
and ``<layer>.bn.scale`` (``.bias``, ``.mean``, ``.var``); nodes are named after their layer
(``conv0``, ``pool1``, ``dense2``, ``relu0``, ...). Only the activations ``identity`` and
``relu`` are written (the frontend reads no other); any other is refused.
"""

from pathlib import Path

import numpy as np

from ..ir.tensors import hwc_to_chw_columns
from .floatnet import FloatConv2d, FloatMaxPool2d, FloatNetwork

__all__ = ["onnx_model", "save_onnx", "to_onnx"]

#: The opset the writer declares: ``torch.onnx.export``'s default (PyTorch 2). Under opsets
#: 9 to 13 onnx's reference executor runs ``BatchNormalization`` in training mode.
OPSET = 17


def onnx_model(nodes, initializers, input_shape, output_shape, *, name="net",
               producer="hwnn"):
    """An ONNX model of ``nodes`` (a chain from input ``x`` to the first output of the last
    node) with ``initializers`` (name -> array; real arrays are stored as float32, integer
    ones as they are), input ``x`` of shape ``(N, *input_shape)`` and output of shape
    ``(N, *output_shape)``, ``N`` left symbolic."""
    from onnx import TensorProto, helper, numpy_helper

    def tensor(value, key):
        value = np.asarray(value)
        return numpy_helper.from_array(value.astype(np.float32) if value.dtype.kind == "f"
                                       else value, key)

    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT,
                                       ["N", *output_shape])],
        [tensor(value, key) for key, value in initializers.items()])
    return helper.make_model(graph, producer_name=producer,
                             opset_imports=[helper.make_opsetid("", OPSET)])


def _chw(shape) -> tuple[int, ...]:
    """A channels-last shape as PyTorch lays it out (a vector as it is)."""
    return (shape[2], *shape[:2]) if len(shape) == 3 else tuple(shape)


def to_onnx(network: FloatNetwork, *, name="net", producer="hwnn"):
    """The float ``network`` as an ``onnx.ModelProto`` (layout in the module docstring)."""
    from ..tools.toolchain import require
    require("Writing an ONNX model", "onnx")
    from onnx import helper

    if not isinstance(network, FloatNetwork):
        raise TypeError(f"to_onnx takes a FloatNetwork, not {network!r}")
    nodes, initializers = [], {}
    current, shape = "x", network.input_shape

    def add(op, inputs, layer_name, **attributes):
        nonlocal current
        nodes.append(helper.make_node(op, [current, *inputs], [f"{layer_name}.out"],
                                      name=layer_name, **attributes))
        current = f"{layer_name}.out"

    for index, layer in enumerate(network.layers):
        if isinstance(layer, FloatMaxPool2d):
            add("MaxPool", [], f"pool{index}", kernel_shape=list(layer.kernel),
                strides=list(layer.stride))
            shape = layer.output_shape
            continue
        if layer.activation not in ("identity", "relu"):
            raise ValueError(f"Layer {index} has activation {layer.activation!r}: the ONNX "
                             f"writer writes identity and relu only")
        if isinstance(layer, FloatConv2d):
            layer_name = f"conv{index}"
            top, bottom, left, right = layer.padding
            initializers[f"{layer_name}.weight"] = layer.weight.transpose(0, 3, 1, 2)
            initializers[f"{layer_name}.bias"] = layer.bias
            add("Conv", [f"{layer_name}.weight", f"{layer_name}.bias"], layer_name,
                kernel_shape=list(layer.weight.shape[1:3]), pads=[top, left, bottom, right],
                strides=list(layer.stride), group=layer.groups)
        else:
            layer_name = f"dense{index}"
            weight = layer.weight
            if len(shape) == 3:
                add("Flatten", [], f"flatten{index}", axis=1)
                weight = hwc_to_chw_columns(weight, shape)
            initializers[f"{layer_name}.weight"] = weight
            initializers[f"{layer_name}.bias"] = layer.bias
            add("Gemm", [f"{layer_name}.weight", f"{layer_name}.bias"], layer_name, transB=1)
        if layer.batchnorm is not None:
            parameters = {part: f"{layer_name}.bn.{part}"
                          for part in ("scale", "bias", "mean", "var")}
            initializers |= {parameters["scale"]: layer.batchnorm.gamma,
                             parameters["bias"]: layer.batchnorm.beta,
                             parameters["mean"]: layer.batchnorm.mean,
                             parameters["var"]: layer.batchnorm.var}
            add("BatchNormalization", list(parameters.values()), f"bn{index}",
                epsilon=float(layer.batchnorm.eps))
        if layer.activation == "relu":
            add("Relu", [], f"relu{index}")
        shape = layer.output_shape
    nodes[-1].output[0] = "y"
    return onnx_model(nodes, initializers, _chw(network.input_shape), _chw(shape), name=name,
                      producer=producer)


def save_onnx(network: FloatNetwork, path, *, name="net", producer="hwnn") -> Path:
    """Write the float ``network`` as an ONNX file (:func:`to_onnx`); return its path."""
    model = to_onnx(network, name=name, producer=producer)
    import onnx

    path = Path(path)
    onnx.save(model, str(path))
    return path
