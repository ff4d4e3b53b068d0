# amaranth: UnusedElaboratable=no
# (The estimator and the manifest build tops for their structure and never elaborate them.)
"""The dataflow architecture (FINN-style): a streaming unit per layer, folded onto lanes."""

from dataclasses import dataclass, field
from pathlib import Path

from ..ir import Network
from ..flow.report import format_table
from ..rtl.dataflow import DataflowAccelerator
from ..rtl.folding import (LayerFold, auto_folding, fold_from_file, fold_lanes, fully_parallel,
                           hardwired)
from ..rtl.mvau import RAM_STYLES
from ..rtl.units import UNITS, unit_class
from .base import Architecture, shape_change

__all__ = ["DATAFLOW", "DataflowParams", "resolve_folding"]


@dataclass(frozen=True)
class DataflowParams:
    """Options of a dataflow design.

    ``fold`` is ``"auto"``, ``"hardwired"`` (:func:`~hwnn.rtl.folding.hardwired`), the path
    of a JSON fold file, or one
    :class:`~hwnn.rtl.folding.LayerFold` per layer (kept as a tuple); the folding is checked
    against the network by :meth:`Dataflow.check`.
    """
    fold: str | Path | tuple = field(default="auto", metadata={
        "help": "'auto' (fastest within --max-lanes), 'hardwired' (fully parallel, dense "
                "and convolution weights as adder graphs) or a JSON fold file "
                "{layer: {\"pe\": P, \"simd\": S}} (add \"multipliers\": \"logic\" to build "
                "a layer's multipliers in logic, not DSP blocks, or \"hardwired\")"})
    max_lanes: int = field(default=256, metadata={"help": "lane budget for --fold auto"})
    ram_style: str = field(default="auto", metadata={
        "help": "where weight memories go: Yosys' choice (auto), block RAM, or logic",
        "choices": tuple(RAM_STYLES)})

    def __post_init__(self):
        if self.ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not "
                             f"{self.ram_style!r}")
        if not isinstance(self.max_lanes, int) or isinstance(self.max_lanes, bool):
            raise TypeError(f"max_lanes must be a positive integer, not {self.max_lanes!r}")
        if not isinstance(self.fold, str | Path):
            try:
                folding = tuple(self.fold)
            except TypeError:
                raise TypeError(f"fold must be 'auto', a fold file or a sequence of LayerFold, "
                                f"not {self.fold!r}") from None
            for entry in folding:
                if not isinstance(entry, LayerFold):
                    raise TypeError(f"Folding entries must be LayerFold, not {entry!r}")
            object.__setattr__(self, "fold", folding)


def resolve_folding(network: Network, fold, max_lanes) -> tuple[LayerFold, ...]:
    """The folding that ``fold`` (as :class:`DataflowParams` holds it: ``"auto"``, the
    fastest within ``max_lanes``, a fold-file path, or a tuple of :class:`LayerFold`) gives
    ``network``, checked against it (before any hardware is built)."""
    if fold == "auto":
        folding = auto_folding(network, max_lanes)
    elif fold == "hardwired":
        folding = hardwired(network)
    elif isinstance(fold, str | Path):
        folding = fold_from_file(network, fold)
    else:
        folding = fold
    if len(folding) != len(network.layers):
        raise ValueError(f"The folding needs one entry per layer ({len(network.layers)}), not "
                         f"{len(folding)}")
    for layer, entry in zip(network.layers, folding, strict=True):
        unit_class(layer).check_fold(layer, entry)
    return folding


class Dataflow(Architecture):
    """One streaming unit per layer (:class:`~hwnn.rtl.dataflow.DataflowAccelerator`,
    :mod:`hwnn.rtl.units`), folded by :class:`DataflowParams`."""
    name = "dataflow"
    Params = DataflowParams
    layer_kinds = frozenset(UNITS)

    def check(self, network, params):
        """``params`` with the folding chosen (``max_lanes``, spent on it, at its default: the
        same design, the same parameters)."""
        self.check_layer_kinds(network)
        return DataflowParams(fold=resolve_folding(network, params.fold, params.max_lanes),
                              ram_style=params.ram_style)

    def build(self, network, params):
        params = self.check(network, params)
        return DataflowAccelerator(network, params.fold, ram_style=params.ram_style)

    def manifest(self, network, top, params):
        return {
            "layers": [{"pe": unit.pe, "simd": unit.simd, "multipliers": fold.multipliers,
                        "lanes": unit.lanes, "cycles": unit.cycles, "latency": unit.latency,
                        "memory_bits": unit.memory_bits}
                       for unit, fold in zip(top.units, top.folding, strict=True)],
            "cycles_per_inference": top.cycles,
            "lanes": top.lanes,
            "folding": {layer.name: fold.as_dict()
                        for layer, fold in zip(network.layers, top.folding, strict=True)},
            "ram_style": params.ram_style,
        }

    def read(self, manifest, network):
        return DataflowParams(fold=tuple(LayerFold(**manifest["folding"][layer.name])
                                         for layer in network.layers),
                              ram_style=manifest["ram_style"])

    def points(self, network):
        """The distinct foldings of lane budgets 1, 2, 4, ... up to the fully parallel
        design."""
        most = sum(fold_lanes(layer, fold)
                   for layer, fold in zip(network.layers, fully_parallel(network), strict=True))
        points, seen, budget = [], set(), len(network.layers)
        while True:
            folding = auto_folding(network, min(budget, most))
            if folding not in seen:
                seen.add(folding)
                points.append((_label(folding), {"fold": folding}))
            if budget >= most:
                return points
            budget *= 2

    def for_device(self, network, label, options, device):
        """The folding with multipliers in logic (or hardwired, fully parallel) where its DSP
        blocks run out on ``device`` (:func:`~hwnn.planning.planner.logic_fallback`; labelled
        ``PxSL``, ``PxSH``)."""
        from ..planning.planner import logic_fallback
        folding = logic_fallback(network, options["fold"], device)
        return _label(folding), options | {"fold": folding}

    def summary(self, manifest):
        rows = [(layer["name"], shape_change(layer),
                 layer["pe"], layer["simd"], layer["lanes"], layer.get("multipliers", "dsp"),
                 layer["cycles"], layer["latency"], layer["stage"],
                 sum(layer["memory_bits"].values()))
                for layer in manifest["layers"]]
        return (format_table(("layer", "shape", "pe", "simd", "lanes", "multipliers",
                              "cycles", "latency", "stage", "memory bits"), rows,
                             right={2, 3, 4, 6, 7, 9})
                + f"\n\n{manifest['lanes']} lanes, {manifest['cycles_per_inference']} cycles "
                  f"per inference (slowest layer), {manifest['weight_bits']} weight bits")


def _label(folding) -> str:
    return " ".join(fold.label for fold in folding)


DATAFLOW = Dataflow()
