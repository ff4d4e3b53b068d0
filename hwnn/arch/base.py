"""What every architecture provides (:class:`Architecture`), and the manifest keys they share."""

import math
from abc import ABC, abstractmethod
from dataclasses import fields

__all__ = ["Architecture", "layer_keys", "shape_change"]


def layer_keys(layer) -> dict:
    """The keys of a layer's entry in ``manifest.json`` that every architecture writes:
    ``in_features`` and ``out_features`` (the codes of one input and one output, flattened),
    formats, stage and accumulator bits; for a layer on images also its ``kind``,
    ``input_shape`` and ``output_shape`` (``[H, W, C]``), ``kernel`` and ``stride``, and for a
    convolution ``padding`` and ``groups``. A pool has no weights (``weight_format`` null) and
    no stage (``"none"``)."""
    keys = {"name": layer.name, "in_features": math.prod(layer.input_shape),
            "out_features": math.prod(layer.output_shape),
            "weight_format": str(layer.weight_format) if hasattr(layer, "weight_format")
            else None,
            "input_format": str(layer.input.format), "output_format": str(layer.output.format),
            "stage": layer.stage_name if hasattr(layer, "weight_format") else "none",
            "acc_bits": layer.acc_bits}
    if len(layer.input_shape) > 1 or len(layer.output_shape) > 1:
        keys |= {"kind": layer.kind, "input_shape": list(layer.input_shape),
                 "output_shape": list(layer.output_shape)}
        keys |= {name: list(getattr(layer, name)) if isinstance(getattr(layer, name), tuple)
                 else getattr(layer, name)
                 for name in ("kernel", "stride", "padding", "groups") if hasattr(layer, name)}
    return keys


def shape_change(entry) -> str:
    """A manifest layer entry's shapes for a summary table: ``64->10``, or ``8x8x1->8x8x4``
    on images."""
    shapes = [entry.get(key, [entry[features]]) for key, features in
              (("input_shape", "in_features"), ("output_shape", "out_features"))]
    return "->".join("x".join(map(str, shape)) for shape in shapes)


class Architecture(ABC):
    """An architecture: how a network becomes one top component, and everything the commands
    need to know about it.

    A subclass sets :attr:`name` (the ``--arch`` value), :attr:`layer_kinds` unless it
    builds dense layers only, and :attr:`Params`, a frozen dataclass
    that validates itself: its fields are the architecture's options (the keyword arguments
    of :func:`hwnn.flow.generate.generate`, and the ``hwnn compile`` options, ``--max-lanes`` for
    ``max_lanes``, which take values of their default's type), each with its default (the
    only copy of it) and ``metadata["help"]`` (the option's help text; ``metadata["choices"]``
    when it takes a few words only).

    Members
    -------
    name : str
    layer_kinds : frozenset of str
    Params : the parameters dataclass.
    """
    name: str
    Params: type
    #: The layer kinds (names in :data:`hwnn.ir.LAYER_KINDS`) the architecture builds.
    layer_kinds = frozenset({"dense"})

    def check_layer_kinds(self, network):
        """Raise a ValueError naming the first layer of ``network`` whose kind is not one of
        :attr:`layer_kinds`."""
        for layer in network.layers:
            if layer.kind not in self.layer_kinds:
                raise ValueError(f"The {self.name} architecture cannot build layer "
                                 f"{layer.name!r} of kind {layer.kind!r} (it builds "
                                 f"{', '.join(sorted(self.layer_kinds))} layers)")

    def params(self, **options):
        """The :attr:`Params` with ``options``; a TypeError names an option that is not one."""
        names = [field.name for field in fields(self.Params)]
        for option in options:
            if option not in names:
                raise TypeError(f"{option!r} is not an option of the {self.name} architecture; "
                                f"its options: {', '.join(names)}")
        return self.Params(**options)

    def options(self, params) -> dict:
        """The options that give ``params`` (:meth:`params` inverted)."""
        return {field.name: getattr(params, field.name) for field in fields(params)}

    @abstractmethod
    def check(self, network, params):
        """``params`` resolved for ``network`` (what was left to choose, chosen), after checking
        that the architecture can build ``network`` (:meth:`check_layer_kinds` first) with
        them; ValueError otherwise."""

    @abstractmethod
    def build(self, network, params):
        """The top component (Amaranth) of ``network`` with ``params``, after :meth:`check`:
        ``i_stream`` and ``o_stream`` of :class:`~hwnn.rtl.layouts.Beat` payloads, and
        ``in_count`` and ``out_count``, the values per beat of each; and ``structure()``, its
        hardware as :mod:`hwnn.rtl.structure` describes it (what the resource estimator
        reads)."""

    @abstractmethod
    def manifest(self, network, top, params) -> dict:
        """The architecture's section of ``manifest.json`` for the component ``top`` built
        with ``params``: its own keys, and under ``"layers"`` one dictionary per layer with
        the keys beyond :func:`layer_keys`."""

    @abstractmethod
    def read(self, manifest, network):
        """The :attr:`Params` of the design whose manifest is ``manifest``, resolved for its
        ``network`` (:meth:`check`)."""

    def batch(self, params) -> int:
        """Vectors the design gathers before it works on them (1 when it takes them one at a
        time)."""
        return 1

    @abstractmethod
    def points(self, network) -> list[tuple[str, dict]]:
        """The design points ``hwnn explore`` tries for ``network``, smallest first: a label
        and the options of each."""

    def for_device(self, network, label, options, device) -> tuple[str, dict]:
        """The design point ``label`` with ``options`` (one of :meth:`points`) as it is built
        for ``device`` (a key of :data:`hwnn.tools.synth.DEVICES`): its label and options
        (unchanged unless the architecture adapts its points to a device)."""
        return label, options

    @abstractmethod
    def summary(self, manifest) -> str:
        """What ``hwnn compile`` prints about the design of ``manifest``: a table of the
        layers and a line of totals."""
