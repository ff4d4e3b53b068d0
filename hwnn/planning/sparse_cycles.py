"""Cycle model of the sparse PE array (:mod:`hwnn.rtl.sparse`): estimated and ideal cycles
per layer, for given activations.

A layer takes about ``max(nonzero input activations, max over PEs of the entries in those
columns)`` cycles plus :func:`hwnn.rtl.sparse.layer_overhead`. Both functions take the
``activations``, every layer's input codes for ``N`` vectors (a sequence with one array of
shape ``(N, in_features)`` per layer, as :func:`hwnn.sim.golden.layer_inputs` returns them),
and only look at which are nonzero.
"""

import math

import numpy as np

from ..ir import Network
from ..rtl.sparse import SparseLayer, SparseParams, layer_overhead, plan_layers

__all__ = ["estimate", "ideal_cycles"]


def _nonzero(network: Network, activations) -> list[np.ndarray]:
    """Per layer, a boolean ``(N, in_features)`` mask of the nonzero ``activations``;
    ValueError unless they are one array per layer of the same ``N`` vectors."""
    if len(activations) != len(network.layers):
        raise ValueError(f"activations must hold one array per layer ({len(network.layers)}), "
                         f"not {len(activations)}")
    masks = [np.atleast_2d(np.asarray(x)) != 0 for x in activations]
    for layer, mask in zip(network.layers, masks, strict=True):
        if mask.shape != (len(masks[0]), layer.in_features):
            raise ValueError(f"activations of layer {layer.name!r} must have shape "
                             f"({len(masks[0])}, {layer.in_features}), not {mask.shape}")
    return masks


def _emission_cycles(active, words_at):
    """The cycle (from the scan's start) at which the scanner broadcasts each nonzero
    activation, and the scan's length: one cycle per nonzero, one per word without any."""
    cycle, emitted = 0, []
    for start in range(0, len(active), words_at):
        nonzero = np.flatnonzero(active[start:start + words_at])
        emitted.extend(range(cycle, cycle + len(nonzero)))
        cycle += max(len(nonzero), 1)
    return np.array(emitted, dtype=np.int64), cycle


def _busy_cycles(plan: SparseLayer, active, words_at) -> int:
    """Cycles until the scan and every PE are done, with queues that never fill: a PE
    finishes at ``max over k`` of (broadcast of its k-th column + its entries from column k
    on)."""
    emitted, scan = _emission_cycles(active, words_at)
    finish = scan
    columns = np.flatnonzero(active)
    for pointers in plan.csc.pointers:
        entries = np.diff(pointers)[columns]
        remaining = np.cumsum(entries[::-1])[::-1]
        if len(remaining):
            finish = max(finish, int(np.max(emitted + remaining)))
    return finish


def ideal_cycles(network: Network, params: SparseParams, activations) -> np.ndarray:
    """Per input vector and layer, the load-balanced ideal: the most entries (nonzeros and
    padding) any PE must process for the vector's nonzero ``activations``. Shape
    (N, layers)."""
    masks = _nonzero(network, activations)
    plans = plan_layers(network, params)
    return np.array([[int(plan.active_entries(mask[n]).max()) for plan, mask in
                      zip(plans, masks, strict=True)] for n in range(len(masks[0]))])


def estimate(network: Network, params: SparseParams, activations=None) -> dict:
    """Estimated cycles per layer and per inference: each layer takes the cycles until its scan
    and every PE are done, if the queues never filled (so the estimate ignores stalls of the
    broadcast: it holds for deep enough queues), plus
    :func:`~hwnn.rtl.sparse.layer_overhead`. Without ``activations`` every activation counts
    as nonzero (the dense-activation case); with them the estimate is averaged over their
    vectors.

    Returns ``{"layers": [cycles], "per_inference": cycles}``."""
    plans = plan_layers(network, params)
    overhead = layer_overhead(network, params)
    in_count = math.gcd(network.in_features, params.pes)
    if activations is None:
        actives = [[np.ones(layer.in_features, dtype=bool) for layer in network.layers]]
    else:
        masks = _nonzero(network, activations)
        actives = [[mask[n] for mask in masks] for n in range(len(masks[0]))]
    per_layer = np.zeros(len(plans))
    for active in actives:
        for index, (plan, columns) in enumerate(zip(plans, active, strict=True)):
            words_at = in_count if index == 0 else params.pes
            per_layer[index] += _busy_cycles(plan, columns, words_at) + overhead[index]
    per_layer /= len(actives)
    return {"layers": per_layer.tolist(), "per_inference": float(per_layer.sum())}
