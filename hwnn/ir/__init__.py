"""The quantized-network IR: the one contract between frontends, golden model and generators.

A :class:`Network` is a chain of layers, each of a registered layer kind (:mod:`.layer`; only
:class:`Dense` so far). Each layer holds integer weight codes, the formats and scales of its
input and output tensors (:mod:`.tensors`, with number formats in :mod:`.formats`), and the
output stage that turns its accumulator into output codes (:mod:`.stages`).
:meth:`Network.save` writes one ``.hwnn.npz`` file and :meth:`Network.load` reads it back
exactly (:mod:`.serialization`). Pure Python and NumPy.
"""

from .checks import check_name
from .dense import Dense
from .formats import Format, Overflow, Rounding, signed_bits_for
from .layer import LAYER_KINDS, Layer, layer_kind
from .network import Network
from .stages import MAX_PRODUCT_BITS, Requant, Thresholds, accumulator_range
from .tensors import TensorFormat

__all__ = ["LAYER_KINDS", "MAX_PRODUCT_BITS", "Dense", "Format", "Layer", "Network", "Overflow",
           "Requant", "Rounding", "TensorFormat", "Thresholds", "accumulator_range",
           "check_name", "layer_kind", "signed_bits_for"]
