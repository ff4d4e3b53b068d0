"""The QONNX frontend: a quantization-aware trained model (Brevitas, QKeras or HGQ, exported
to QONNX) into an hwnn :class:`~hwnn.ir.Network`, directly: the quantization comes from the
model's ``Quant`` nodes, nothing is calibrated. Needs ``qonnx`` and ``onnx``
(``hwnn[qonnx]``).

The graph is first cleaned and its shapes inferred with qonnx's own
:func:`qonnx.util.cleanup.cleanup_model`. It must then be a chain of layers:

============================== ============================================================
graph input                    ``(N, F)`` vectors or ``(N, C, H, W)`` images (the network
                               takes them channels last, ``(H, W, C)``; ``info`` records
                               ``input_layout`` ``"chw"``; an input that a ``Transpose``
                               ``(0, 3, 1, 2)`` makes NCHW before any layer is NHWC,
                               ``input_layout`` ``"hwc"``), optionally flattened, then a
                               ``Quant`` (the input quantizer: per-tensor scale, integer
                               zero point); the network takes its integer codes
``Add``, ``Sub``, ``Mul``,     on the graph input before its ``Quant``, with scalar
``Div`` on the input           constants (Brevitas' centering ``2x - 1``, ``x / 255``,
                               ``c - x``): folded into the input quantizer (``info``'s
                               ``input_quantizer`` ``steps``), in float32 as qonnx runs them
``Quant`` of a constant        weights (integer codes times a per-tensor or per-output-channel
                               scale, zero point 0) or a float bias (its value is used)
``MatMul``/``Gemm``            a dense layer ``x @ W`` (``Gemm``: ``transA`` 0, ``alpha`` and
                               ``beta`` 1, optional bias ``C``) with quantized weights
``Conv``                       2-d, ``group`` 1 or depthwise, dilations 1, explicit pads,
                               optional bias, quantized weights, on an NCHW image
``Add``, ``Sub``, ``Mul``,     between a layer's product and its quantizer, in any order:
``Div``,                       float constants (scalars or one per channel: biases, scales,
``BatchNormalization``,        centering), inference batch normalization, ReLU; each is
``Relu``                       monotone per channel (a negative factor or ``c - x`` makes a
                               channel descending); ``c / x`` is refused
``Quant`` of an activation     closes the layer: a :class:`~hwnn.ir.stages.Thresholds` stage
                               whose codes equal qonnx's for every accumulator value
``BipolarQuant``               a 1-bit signed ``Quant`` (``binary`` codes), on weights or
                               activations
``MultiThreshold`` (FINN)      closes the layer as a ``Quant`` does: thresholds per tensor
                               ``(1, T)`` or per channel ``(C, T)`` (any order), ``out_dtype``
                               an integer type of at least ``T + 1`` values (``BIPOLAR``,
                               ``TERNARY``, ``INTk``, ``UINTk``), ``out_scale > 0`` and
                               ``out_bias`` making its outputs the type's codes times a
                               scale; ``data_layout`` empty, ``NC`` or ``NCHW``
``MaxPool``                    on a quantized NCHW image (after its quantizer): a max pool
                               of codes, no padding
``AveragePool``,               on a quantized NCHW image (no padding, dilation or
``GlobalAveragePool``          ``ceil_mode``): opens a layer summing each window, a depthwise
                               convolution of weights 1 whose float32 step divides by the
                               window's size; a quantizer must close it (``Trunc``, or a
                               ``Quant``), a ``Mul`` by the window's size may come between
``Trunc``                      closes a layer as a ``Quant`` does, with qonnx's own function
                               of the node's version: 1 (unclamped: the codes' format is the
                               one the accumulator range needs) or 2 (clamped to the output
                               bit width); constant per-tensor parameters
``Transpose``                  ``(0, 2, 3, 1)`` or ``(0, 3, 1, 2)`` of a quantized image
                               (NCHW <-> NHWC), not inside a layer
``Flatten``, ``Reshape``       to ``(N, features)``; an image inside the network flattened in
                               ONNX's NCHW order has the dense layer after it take its columns
                               permuted to hwnn's ``(H, W, C)`` order (NHWC: as they are)
``Identity``, ``Dropout``      ignored
============================== ============================================================

The last layer may end without a quantizer: it outputs its accumulator, whose per-channel
scale dequantizes it. The steps after its product (bias, ``Mul``, ``Sub``, ``Div``, batch
normalization) compose into ``A * acc + B`` per channel: the output scale is ``|A|`` (a
channel whose ``A`` is negative has its weights negated, refused if the weight format is not
symmetric), and ``B / A`` is added to the accumulator rounded to whole steps, so the
dequantized logits are within half a step of qonnx's (exactly equal when ``B`` is a multiple
of the step, as Brevitas' bias quantizers make it). A final ``Relu`` becomes a
requantization stage of factor 1 clamping at 0; any other step after a ``Relu`` is refused.

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
non-integer zero point, a residual ``Add`` of two tensors) is refused with one line naming
the node and why.
"""

from pathlib import Path

from ..ir import Network
from .qonnx_importer import GraphImporter

__all__ = ["QONNX_DOMAINS", "from_qonnx", "import_qonnx", "is_qonnx", "is_qonnx_file",
           "load_qonnx", "read_onnx"]

#: The ONNX domains of QONNX's own ops, as exporters write them.
QONNX_DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")
_QONNX_OPS = ("Quant", "BipolarQuant", "Trunc", "MultiThreshold")


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
    cleaned graph's tensor that holds the codes and the spec of the node that quantized it
    (a :class:`~hwnn.quant.qonnx_arith.QuantSpec`, ``MultiThresholdSpec`` or ``TruncSpec``,
    each with ``scale``, ``zero_point`` and ``format``; None for the last layer's
    accumulator)."""
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
    importer = GraphImporter(wrapper)
    network = importer.network(name)
    return network, wrapper, importer.tensors

