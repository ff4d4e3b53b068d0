"""The parameters of QONNX's quantizer nodes, read from a cleaned qonnx ``ModelWrapper``:
``Quant`` and ``BipolarQuant`` as :class:`~hwnn.quant.qonnx_arith.QuantSpec`.
"""

import numpy as np

from ..ir.formats import Rounding
from .qonnx_arith import QuantSpec

__all__ = ["INPUT_ROUNDING", "quant_spec", "where"]

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
