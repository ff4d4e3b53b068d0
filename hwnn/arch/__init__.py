"""The architectures a network can be built as, by name: one module each.

Each module holds an :class:`~hwnn.arch.base.Architecture`: its parameters dataclass (the
options of :func:`hwnn.flow.generate.generate` and ``hwnn compile``, with their only defaults) and
how to check a network, build the top component, write and read its part of
``manifest.json``, describe it to the resource estimator, list its ``hwnn explore`` points and
summarize it. ``generate``, ``simulate``, ``estimate``, ``explore`` and the ``hwnn`` command
reach the architectures only through :func:`architecture`.
"""

from .base import Architecture
from .dataflow import DATAFLOW
from .sparse import SPARSE
from .systolic import SYSTOLIC

__all__ = ["ARCHITECTURES", "Architecture", "architecture"]

#: The architectures by name, in the order ``hwnn compile --help`` lists them.
ARCHITECTURES = {arch.name: arch for arch in (DATAFLOW, SYSTOLIC, SPARSE)}


def architecture(name) -> Architecture:
    """The architecture called ``name``; a ValueError naming the known ones otherwise."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {name!r}; available: "
                         f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
