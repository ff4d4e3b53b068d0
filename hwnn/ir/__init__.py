"""The quantized-network IR: the one contract between frontends, golden model and generators.

A :class:`Network` is a chain of layers, each of a registered layer kind (:mod:`.layer`):
:class:`Dense`, :class:`Conv2d` and :class:`MaxPool2d`. Each layer holds integer weight codes,
the formats and scales of its input and output tensors (:mod:`.tensors`, with number formats
in :mod:`.formats`), and the output stage that turns its accumulator into output codes
(:mod:`.stages`). Tensors are channels last (an image is ``(H, W, C)``); a layer that takes a
vector takes the tensor before it flattened in row-major order, channels fastest (code
``(y, x, c)`` of an ``(H, W, C)`` image is element ``(y * W + x) * C + c``; see
:func:`chw_to_hwc_columns` and :func:`hwc_to_chw_columns` for PyTorch's order).
:meth:`Network.save` writes one ``.hwnn.npz`` file and :meth:`Network.load` reads it back
exactly (:mod:`.serialization`). Pure Python and NumPy.
"""

from .checks import check_name
from .conv import Conv2d
from .dense import Dense
from .formats import Format, Overflow, Rounding, signed_bits_for
from .layer import LAYER_KINDS, Layer, layer_kind
from .network import Network
from .pool import MaxPool2d
from .stages import MAX_PRODUCT_BITS, Requant, Thresholds, accumulator_range
from .tensors import TensorFormat, chw_to_hwc_columns, hwc_to_chw_columns

__all__ = ["LAYER_KINDS", "MAX_PRODUCT_BITS", "Conv2d", "Dense", "Format", "Layer", "MaxPool2d",
           "Network", "Overflow", "Requant", "Rounding", "TensorFormat", "Thresholds",
           "accumulator_range", "check_name", "chw_to_hwc_columns", "hwc_to_chw_columns",
           "layer_kind", "signed_bits_for"]
