"""Layer-by-layer comparison of an imported QONNX model with qonnx's own executor.

:func:`check_qonnx` runs :func:`qonnx.core.onnx_exec.execute_onnx` on the cleaned model and
the golden model on the imported network, side by side on the same real inputs, and compares
every quantized tensor as integer codes: the input codes (qonnx's input quantizer against
:meth:`hwnn.ir.Network.quantize_input`), each layer's output codes, and the last layer's raw
accumulator against qonnx's outputs divided by its step (agreeing within one step). It answers
"my model and the hardware disagree: where?" with the first disagreement of each tensor.
"""

import math
from dataclasses import dataclass

import numpy as np

from ..flow.report import class_decisions
from ..sim.golden import run_network

__all__ = ["TensorCheck", "check_qonnx", "network_inputs"]


@dataclass(frozen=True)
class TensorCheck:
    """One tensor's comparison: ``agree`` of ``total`` codes equal (the last layer: within
    one accumulator step), and the first disagreement ``(input, position, channel, hwnn,
    qonnx)``, or None."""
    layer:  str
    tensor: str
    agree:  int
    total:  int
    first:  tuple | None

    def __str__(self):
        text = (f"{self.layer:<10} {self.tensor:<24} {self.agree}/{self.total} agree "
                f"({100 * self.agree / self.total:.2f}%)")
        if self.first is not None:
            sample, position, channel, ours, theirs = self.first
            text += (f"; first: input {sample}, element {position}, channel {channel}: "
                     f"hwnn {ours}, qonnx {theirs}")
        return text


def _compare(layer, tensor, ours, theirs, agree) -> TensorCheck:
    """``ours``, ``theirs`` (N, ..., C) channels last; ``agree`` the element-wise verdict."""
    channels = ours.shape[-1]
    flat = agree.reshape(len(agree), -1)
    first = None
    if not flat.all():
        sample, position = (int(i) for i in np.argwhere(~flat)[0])
        first = (sample, position, position % channels,
                 ours.reshape(len(ours), -1)[sample, position].item(),
                 theirs.reshape(len(theirs), -1)[sample, position].item())
    return TensorCheck(layer, tensor, int(flat.sum()), flat.size, first)


def _channels_last(array):
    return array.transpose(0, 2, 3, 1) if array.ndim == 4 else array


def _transposed_before(wrapper, tensor, graph_input) -> bool:
    """Whether a ``Transpose`` lies between the graph input and the input quantizer's output
    ``tensor`` (which is then NCHW, the input NHWC)."""
    name = wrapper.find_producer(tensor).input[0]
    while name != graph_input:
        producer = wrapper.find_producer(name)
        if producer.op_type == "Transpose":
            return True
        name = next(name for name in producer.input if wrapper.get_initializer(name) is None)
    return False


def network_inputs(network, x) -> np.ndarray:
    """Real inputs ``x`` (N inputs in the imported model's own layout) as ``network`` takes
    them: NCHW images (``info["input_layout"]`` ``"chw"``) channels last, then each input in
    the network's input shape (a model flattening its input first takes it in its own
    order)."""
    x = np.asarray(x, dtype=np.float32)
    if network.info.get("input_layout") == "chw" and x.ndim == 4:
        x = _channels_last(x)
    if x.ndim < 2 or math.prod(x.shape[1:]) != network.in_features:
        raise ValueError(f"The model takes inputs of {network.in_features} values, not shape "
                         f"{x.shape[1:]}")
    return x.reshape(len(x), *network.input_shape)


def check_qonnx(model, x, name="net"):
    """Import the QONNX ``model`` (an ``onnx.ModelProto``) and compare it, tensor by tensor,
    with qonnx's executor on the real inputs ``x`` (N inputs in the model's own layout).

    Returns ``(network, checks, predictions)``: the imported network, a :class:`TensorCheck`
    per quantized tensor (the input, then each layer) and the class decisions of qonnx and of
    the golden model, ``{"qonnx": ..., "golden": ..., "tied": ...}``, ``tied`` marking the
    inputs whose qonnx class is one of several golden outputs that tie exactly for the
    largest (float32 rounding, not the model, picked it).
    """
    from qonnx.core.onnx_exec import execute_onnx
    from qonnx.transformation.change_batchsize import ChangeBatchSize
    from qonnx.transformation.infer_shapes import InferShapes

    from .qonnx_frontend import import_qonnx

    network, wrapper, tensors = import_qonnx(model, name)
    x = np.asarray(x, dtype=np.float32)
    (graph_input,) = [value.name for value in wrapper.graph.input
                      if wrapper.get_initializer(value.name) is None]
    expected = tuple(wrapper.get_tensor_shape(graph_input)[1:])
    if x.ndim < 2 or x.shape[1:] != expected:
        raise ValueError(f"The model takes inputs of shape {expected}, not {x.shape[1:]}")
    wrapper = wrapper.transform(ChangeBatchSize(len(x))).transform(InferShapes())
    context = execute_onnx(wrapper, {graph_input: x}, return_full_exec_context=True)
    checks = []

    def codes_of(tensor, spec):
        return np.round(context[tensor] / spec.scale + spec.zero_point).astype(np.int64)

    tensor, spec = tensors[0]
    ours = network.quantize_input(network_inputs(network, x))
    theirs = codes_of(tensor, spec)
    if _transposed_before(wrapper, tensor, graph_input):
        theirs = _channels_last(theirs)     # an NHWC input transposed, then quantized
    theirs = network_inputs(network, theirs)
    checks.append(_compare("input", tensor, ours, theirs, ours == theirs))
    outputs, traces = run_network(network, ours, trace=True)
    for layer, trace, (tensor, spec) in zip(network.layers, traces, tensors[1:], strict=True):
        if spec is None:
            steps = _channels_last(context[tensor]) / layer.output.scale
            checks.append(_compare(layer.name, tensor, trace.outputs, np.round(steps).astype(
                np.int64), np.abs(trace.outputs - steps) <= 1))
        else:
            theirs = _channels_last(codes_of(tensor, spec)).reshape(trace.outputs.shape)
            checks.append(_compare(layer.name, tensor, trace.outputs, theirs,
                                   trace.outputs == theirs))
    logits = _channels_last(context[tensors[-1][0]])
    golden = network.dequantize_output(outputs).reshape(len(x), -1)
    theirs = class_decisions(logits.reshape(len(x), -1))
    # Outputs that tie exactly in the golden model are told apart in qonnx's float32
    # arithmetic by its rounding: either class is then right.
    tied = (golden.shape[1] > 1) & (golden[np.arange(len(x)), theirs] == golden.max(axis=1))
    predictions = {"qonnx": theirs, "golden": class_decisions(golden), "tied": tied}
    return network, checks, predictions
