"""The parameters of QONNX's quantizer nodes, read from a cleaned qonnx ``ModelWrapper``:
``Quant`` and ``BipolarQuant`` as :class:`~hwnn.quant.qonnx_arith.QuantSpec`, FINN's
``MultiThreshold`` as :class:`~hwnn.quant.qonnx_arith.MultiThresholdSpec`, ``Trunc`` as
:class:`~hwnn.quant.qonnx_arith.TruncSpec`.
"""

import numpy as np

from ..ir.formats import Format, Rounding, signed_bits_for
from .onnx_graph import node_attributes
from .qonnx_arith import MultiThresholdSpec, QuantSpec, TruncSpec

__all__ = ["INPUT_ROUNDING", "multithreshold_spec", "quant_spec", "trunc_spec", "where"]

#: The rounding modes of an input ``Quant`` and the same rounding of hwnn's input quantizer
#: (:meth:`hwnn.ir.Network.quantize_input`).
INPUT_ROUNDING = {"ROUND": Rounding.HALF_EVEN, "HALF_EVEN": Rounding.HALF_EVEN,
                  "FLOOR": Rounding.FLOOR, "CEIL": Rounding.CEIL, "DOWN": Rounding.TOWARD_ZERO}


def where(node) -> str:
    """The node as error messages name it."""
    return f"QONNX node {node.name!r} ({node.op_type})"


def quant_spec(wrapper, node) -> QuantSpec:
    """The parameters of a ``Quant`` or ``BipolarQuant`` node (a ``BipolarQuant`` is a
    1-bit signed ``Quant``: ``+1`` for ``x >= 0``, else -1, times the scale)."""
    from qonnx.custom_op.general.intquant import resolve_rounding_mode
    from qonnx.custom_op.registry import getCustomOp
    arity = {"Quant": 4, "BipolarQuant": 2}.get(node.op_type)
    if arity is None:
        raise ValueError(f"{where(node)} is not supported: hwnn imports QONNX's Quant "
                         f"and BipolarQuant nodes")
    params = [wrapper.get_initializer(name) for name in node.input[1:]]
    if len(node.input) != arity or any(param is None for param in params):
        raise ValueError(f"{where(node)} must have constant scale"
                         + (", zero point and bit width" if arity == 4 else ""))
    scale, zero_point, bits = params if arity == 4 else (params[0], 0, 1)
    if np.asarray(bits).size != 1 or float(bits) != int(bits) or not 1 <= int(bits) <= 32:
        raise ValueError(f"{where(node)} bit width must be an integer 1..32, not "
                         f"{np.asarray(bits).tolist()}")
    scale = np.asarray(scale, dtype=np.float32)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"{where(node)} scale must be finite and positive")
    zero_point = np.asarray(zero_point, dtype=np.float32)
    if not np.all(zero_point == np.round(zero_point)):
        raise ValueError(f"{where(node)} zero point must be an integer, not "
                         f"{zero_point.tolist()}")
    if arity == 2:
        return QuantSpec(scale, zero_point, 1, True, False, "ROUND")
    op = getCustomOp(node)
    rounding = op.get_nodeattr("rounding_mode")
    try:
        resolve_rounding_mode(rounding)
    except ValueError:
        raise ValueError(f"{where(node)} rounding mode {rounding!r} is not one qonnx "
                         f"executes") from None
    return QuantSpec(scale, zero_point, int(bits), bool(op.get_nodeattr("signed")),
                     bool(op.get_nodeattr("narrow")), rounding)


def _dtype_format(name) -> Format | None:
    """The hwnn format of a qonnx integer ``DataType`` name (None for any other type)."""
    from qonnx.core.datatype import DataType
    if name == "BIPOLAR":
        return Format.binary()
    if name == "TERNARY":
        return Format.ternary()
    try:
        dtype = DataType[name]
    except KeyError:
        return None
    bits = dtype.bitwidth()
    if not dtype.is_integer() or not 1 <= bits <= Format.MAX_BITS or (dtype.signed()
                                                                      and bits < 2):
        return None
    return Format.int(bits) if dtype.signed() else Format.uint(bits)


def multithreshold_spec(wrapper, node, channels, layout) -> MultiThresholdSpec:
    """The parameters of a ``MultiThreshold`` node on a tensor of ``channels`` channels
    laid out as ``layout`` (``"NC"`` or ``"NCHW"``; its ``data_layout`` may be empty, which
    qonnx reads the same way)."""
    values = node_attributes(node, {"out_dtype": None, "out_scale": 1.0, "out_bias": 0.0,
                                    "data_layout": ""}, where(node))
    thresholds = wrapper.get_initializer(node.input[1]) if len(node.input) == 2 else None
    if thresholds is None:
        raise ValueError(f"{where(node)} must have one input and constant thresholds")
    thresholds = np.asarray(thresholds, dtype=np.float32)
    if thresholds.ndim != 2 or thresholds.shape[0] not in (1, channels) or np.any(
            np.isnan(thresholds)):
        raise ValueError(f"{where(node)} thresholds must be (1 or {channels} channels, T) "
                         f"numbers, not shape {thresholds.shape}")
    if values["data_layout"] not in ("", layout):
        raise ValueError(f"{where(node)} data_layout {values['data_layout']!r} does not "
                         f"describe its input, laid out {layout}")
    out_format = _dtype_format(values["out_dtype"])
    if out_format is None:
        raise ValueError(f"{where(node)} out_dtype {values['out_dtype']!r} is not an integer "
                         f"type hwnn holds (BIPOLAR, TERNARY, INT2..INT32, UINT1..UINT32)")
    if thresholds.shape[1] > out_format.levels - 1:
        raise ValueError(f"{where(node)} has {thresholds.shape[1]} thresholds, more than "
                         f"out_dtype {values['out_dtype']} has steps ({out_format.levels - 1})")
    out_scale, out_bias = np.float32(values["out_scale"]), np.float32(values["out_bias"])
    # out_scale * count + out_bias = (code - zero_point) * scale, code = min + step * count.
    zero_point = out_format.min_value - out_format.step * np.float64(out_bias) / out_scale
    if not (np.isfinite(out_scale) and out_scale > 0 and zero_point == np.round(zero_point)):
        raise ValueError(f"{where(node)} out_scale {float(out_scale)} and out_bias "
                         f"{float(out_bias)} must make its outputs the codes of "
                         f"{values['out_dtype']} times a positive scale, plus a whole "
                         f"number of steps")
    return MultiThresholdSpec(thresholds, out_format,
                              np.float32(out_scale / np.float32(out_format.step)),
                              np.float32(zero_point))


def trunc_spec(wrapper, node, code_range) -> TruncSpec:
    """The parameters of a ``Trunc`` node of the version the model imports (1 or 2), its
    parameters constants. ``code_range(function)`` gives the smallest and largest code that
    ``function`` (float32 values to codes) gives on the layer's accumulator range: the
    output format of a version 1 ``Trunc``, which does not clamp."""
    from qonnx.custom_op.general.trunc import trunc_v1, trunc_v2
    op = wrapper.get_customop_wrapper(node)
    version = op.onnx_opset_version
    arity = {1: 5, 2: 6}.get(version)
    params = [wrapper.get_initializer(name) for name in node.input[1:]]
    if arity is None or len(node.input) != arity or any(p is None for p in params):
        raise ValueError(f"{where(node)} must be a version 1 or 2 Trunc with constant scale, "
                         f"zero point, bit widths (and output scale)")
    params = [np.asarray(param, dtype=np.float32) for param in params]
    if any(param.size != 1 for param in params):
        raise ValueError(f"{where(node)} parameters must be scalars (per tensor)")
    rounding = op.get_nodeattr("rounding_mode")
    if version == 1:
        scale, zero_point, in_bits, out_bits = params

        def function(x):
            return trunc_v1(x, scale, zero_point, in_bits, out_bits, rounding)

        out_scale, out_zero_point = scale, zero_point
    else:
        scale, zero_point, in_bits, out_scale, out_bits = params
        narrow, signed = op.get_nodeattr("narrow"), op.get_nodeattr("signed")

        def function(x):
            return trunc_v2(x, scale, zero_point, in_bits, narrow, signed, out_scale,
                            out_bits, rounding)

        out_zero_point = zero_point / 2 ** np.round(np.log2(out_scale / scale))
    if not (np.isfinite(out_scale) and out_scale > 0 and out_zero_point == np.round(
            out_zero_point)):
        raise ValueError(f"{where(node)} must give codes times a positive scale, with an "
                         f"integer zero point")
    out_scale = out_scale.reshape(()).astype(np.float32)
    out_zero_point = out_zero_point.reshape(()).astype(np.float32)
    spec = TruncSpec(function, Format.int(2), out_scale, out_zero_point)
    if version == 2:
        bits = int(out_bits)
        out_format = (Format.int(bits, narrow=bool(narrow)) if signed else Format.uint(bits))
    else:
        low, high = code_range(spec.codes)
        out_format = (Format.uint(max(int(high).bit_length(), 1)) if low >= 0
                      else Format.int(signed_bits_for(low, high)))
    return TruncSpec(function, out_format, out_scale, out_zero_point)
