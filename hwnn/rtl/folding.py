"""Folding of a dataflow design: how many lanes (``pe`` x ``simd``) each layer gets.

Each layer kind's unit (:mod:`hwnn.rtl.units`) says which folds it takes, how many cycles per
inference each one costs and how many lanes it spends (a dense layer with ``rows x cols``
weights folded to ``pe`` and ``simd`` takes ``(rows / pe) * (cols / simd)`` cycles on ``pe *
simd`` lanes); the design's throughput is set by its slowest layer. :func:`auto_folding`
picks, under a total lane budget, the folding with the fewest cycles per inference, then the
fewest lanes.
"""

import json
from pathlib import Path

from ..errors import ParameterError
from ..ir import Network
from .params import LayerFold
from .units import unit_class

__all__ = ["LayerFold", "auto_folding", "cycle_targets", "fold_from_file", "fold_from_mapping",
           "fold_lanes", "folding_cycles", "folding_for_cycles", "fully_parallel", "hardwired",
           "unfolded"]


def _cycles(layer, fold):
    return unit_class(layer).fold_cycles(layer, fold)


def fold_lanes(layer, fold: LayerFold) -> int:
    """Lanes that ``layer`` folded as ``fold`` spends (``pe * simd``; a pool's ``pe``)."""
    return unit_class(layer).fold_lanes(layer, fold)


def _options(layer, hardwired=False):
    """The folds ``layer``'s unit takes; with ``hardwired``, also its widest fold with hardwired
    weights where that takes fewer cycles (a convolution: a whole window a cycle)."""
    options = unit_class(layer).fold_options(layer)
    if hardwired and layer.kind in ("dense", "conv2d"):
        widest = max(options, key=lambda option: option.lanes)
        wired = LayerFold(widest.pe, widest.simd, "hardwired")
        if _cycles(layer, wired) < _cycles(layer, widest):
            options.append(wired)
    return options


def _cheapest(layer, target, hardwired=False):
    """The fold of ``layer`` with fewest lanes taking at most ``target`` cycles (ties: the
    most balanced pe/simd, then the larger simd)."""
    options = [fold for fold in _options(layer, hardwired) if _cycles(layer, fold) <= target]
    return min(options, key=lambda f: (fold_lanes(layer, f), abs(f.pe - f.simd), -f.simd))


def _fastest(layer, hardwired=False):
    """The fold of ``layer`` with the fewest cycles (ties: the fewest lanes)."""
    return min(_options(layer, hardwired),
               key=lambda f: (_cycles(layer, f), fold_lanes(layer, f)))


def unfolded(network: Network) -> tuple[LayerFold, ...]:
    """One lane per layer (pe = simd = 1)."""
    return tuple(LayerFold(1, 1) for _ in network.layers)


def fully_parallel(network: Network) -> tuple[LayerFold, ...]:
    """Every layer at its fastest fold (a dense layer: every weight its own lane, one cycle
    per vector)."""
    return tuple(_fastest(layer) for layer in network.layers)


def hardwired(network: Network) -> tuple[LayerFold, ...]:
    """Every dense and convolutional layer at its widest fold (each lane one weight) with its
    weights hardwired (``multipliers="hardwired"``: adder graphs, :mod:`hwnn.rtl.cmvm`, no
    weight memory; a convolution then takes a whole window a cycle); pools at their fastest
    fold."""
    def fold(layer):
        if layer.kind not in ("dense", "conv2d"):
            return _fastest(layer)
        widest = max(_options(layer), key=lambda option: option.lanes)
        return LayerFold(widest.pe, widest.simd, "hardwired")
    return tuple(fold(layer) for layer in network.layers)


def cycle_targets(network: Network, *, hardwired=False) -> list[int]:
    """Every cycles-per-inference figure a folding of ``network`` can have, fastest first;
    with ``hardwired``, counting the folds that only hardwired weights make faster."""
    fastest = max(_cycles(layer, _fastest(layer, hardwired)) for layer in network.layers)
    return sorted({_cycles(layer, fold) for layer in network.layers
                   for fold in _options(layer, hardwired)} - set(range(fastest)))


def folding_cycles(network: Network, folding) -> int:
    """Cycles per inference of ``network`` folded as ``folding``: its slowest layer's."""
    return max(_cycles(layer, fold) for layer, fold in zip(network.layers, folding, strict=True))


def folding_for_cycles(network: Network, cycles: int, *,
                       hardwired=False) -> tuple[LayerFold, ...]:
    """The folding with the fewest lanes in every layer that takes at most ``cycles`` per
    inference (at least the fully parallel design's); with ``hardwired``, a layer whose
    fastest fold is too slow gets its hardwired fold where that is fast enough."""
    return tuple(_cheapest(layer, cycles, hardwired) for layer in network.layers)


def auto_folding(network: Network, max_lanes: int) -> tuple[LayerFold, ...]:
    """The fastest folding whose total lanes stay within ``max_lanes``."""
    if not isinstance(max_lanes, int) or isinstance(max_lanes, bool):
        raise TypeError(f"max_lanes must be a positive integer, not {max_lanes!r}")
    minimum = len(network.layers)
    if max_lanes < minimum:
        raise ParameterError("max_lanes", "max_lanes", f"must be at least {minimum} (one lane "
                                                       f"per layer), not {max_lanes}")
    for target in cycle_targets(network):
        folds = folding_for_cycles(network, target)
        if sum(fold_lanes(layer, fold)
               for layer, fold in zip(network.layers, folds, strict=True)) <= max_lanes:
            return folds
    return unfolded(network)   # not reached: the slowest target is the unfolded design


def fold_from_mapping(network: Network, mapping) -> tuple[LayerFold, ...]:
    """Folding from ``{layer name: {"pe": P, "simd": S}}`` naming every layer; an entry may
    add ``"multipliers": "logic"`` or ``"hardwired"`` (or ``"dsp"``, the default): where the
    layer's multipliers go (:data:`~hwnn.rtl.params.MULTIPLIERS`)."""
    if not isinstance(mapping, dict):
        raise ValueError(f"A folding must map layer names to {{'pe': P, 'simd': S}}, not "
                         f"{type(mapping).__name__}")
    names = [layer.name for layer in network.layers]
    if unknown := sorted(set(mapping) - set(names)):
        raise ValueError(f"Folding names unknown layers {', '.join(map(repr, unknown))}; the "
                         f"network's layers are {', '.join(names)}")
    if missing := [name for name in names if name not in mapping]:
        raise ValueError(f"Folding is missing layers {', '.join(map(repr, missing))}")
    folds = []
    for name in names:
        entry = mapping[name]
        if not isinstance(entry, dict) or not {"pe", "simd"} <= set(entry) <= {
                "pe", "simd", "multipliers"}:
            raise ValueError(f"Folding of layer {name!r} must be {{'pe': P, 'simd': S}} with "
                             f"an optional 'multipliers', not {entry!r}")
        try:
            folds.append(LayerFold(**entry))
        except ValueError as error:
            raise ValueError(f"Folding of layer {name!r}: {error}") from None
    return tuple(folds)


def fold_from_file(network: Network, path) -> tuple[LayerFold, ...]:
    """Folding from a JSON file holding the mapping of :func:`fold_from_mapping`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No fold file at {str(path)!r}")
    try:
        mapping = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"Fold file {str(path)!r} is not valid JSON: {error}") from None
    return fold_from_mapping(network, mapping)
