"""Deep Compression in the quantizer: magnitude pruning, weight sharing, and size reports.

* :func:`prune_masks` keeps the largest-magnitude weights, removing a ``sparsity`` fraction per
  layer or over all layers together (global).
* :func:`share_weights` replaces the nonzero integer codes of a layer by the nearest of at most
  ``2**bits - 1`` shared codes found by one-dimensional k-means (linear initialization, as in
  Deep Compression); zeros stay zero, so with zero a weight is one of ``2**bits`` codes: a
  ``bits``-bit codebook index, index 0 meaning zero (what the sparse hardware stores). The
  golden model then runs the shared codes densely.
* :func:`huffman_bits` is the size of a symbol stream under an optimal prefix code.
"""

import heapq
from collections import Counter

import numpy as np

__all__ = ["huffman_bits", "kmeans_1d", "prune_masks", "share_weights"]


def _check_fraction(sparsity):
    if isinstance(sparsity, bool) or not isinstance(sparsity, int | float) \
            or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be a number in [0, 1), not {sparsity!r}")


def prune_masks(weights, sparsity, *, scope="layer") -> list[np.ndarray]:
    """Masks (True keeps a weight) removing the ``sparsity`` fraction of smallest magnitudes.

    ``scope`` is ``"layer"`` (each layer loses that fraction) or ``"global"`` (one magnitude
    threshold over all layers). Ties at the threshold are broken by position, so exactly
    ``round(sparsity * size)`` weights go.
    """
    _check_fraction(sparsity)
    if scope not in ("layer", "global"):
        raise ValueError(f"Pruning scope must be 'layer' or 'global', not {scope!r}")
    weights = [np.asarray(w, dtype=np.float64) for w in weights]
    if scope == "layer":
        return [_smallest_removed(np.abs(w).ravel(), sparsity).reshape(w.shape)
                for w in weights]
    flat = np.concatenate([np.abs(w).ravel() for w in weights])
    keep = _smallest_removed(flat, sparsity)
    masks, start = [], 0
    for w in weights:
        masks.append(keep[start:start + w.size].reshape(w.shape))
        start += w.size
    return masks


def _smallest_removed(magnitudes, sparsity):
    remove = round(sparsity * magnitudes.size)
    keep = np.ones(magnitudes.size, dtype=bool)
    keep[np.argsort(magnitudes, kind="stable")[:remove]] = False
    return keep


def kmeans_1d(values, clusters, *, iterations=100) -> np.ndarray:
    """Centroids of one-dimensional k-means with linear initialization between the extremes
    (deterministic); fewer than ``clusters`` when there are fewer distinct values."""
    values = np.asarray(values, dtype=np.float64).ravel()
    distinct = np.unique(values)
    if distinct.size <= clusters:
        return distinct
    centroids = np.linspace(values.min(), values.max(), clusters)
    for _ in range(iterations):
        nearest = np.argmin(np.abs(values[:, None] - centroids[None, :]), axis=1)
        updated = np.array([values[nearest == k].mean() if np.any(nearest == k)
                            else centroids[k] for k in range(clusters)])
        if np.allclose(updated, centroids):
            break
        centroids = updated
    return np.sort(centroids)


def share_weights(codes, bits) -> tuple[np.ndarray, np.ndarray]:
    """Nonzero ``codes`` replaced by the nearest of at most ``2**bits - 1`` shared integer
    codes (with zero, ``2**bits`` codes: a ``bits``-bit index).

    Returns ``(shared codes, codebook)``; the codebook is sorted, holds no zero, and every
    nonzero shared code is one of its entries.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= 8:
        raise ValueError(f"Weight-sharing bits must be 1..8, not {bits!r}")
    codes = np.asarray(codes, dtype=np.int64)
    nonzero = codes[codes != 0]
    if nonzero.size == 0:
        return codes.copy(), np.zeros(0, dtype=np.int64)
    centroids = np.unique(np.round(kmeans_1d(nonzero, (1 << bits) - 1)).astype(np.int64))
    centroids = centroids[centroids != 0]
    if centroids.size == 0:          # every centroid rounded to zero: keep the extremes
        centroids = np.unique(np.sign(nonzero))
    nearest = centroids[np.argmin(np.abs(codes[..., None] - centroids), axis=-1)]
    return np.where(codes != 0, nearest, 0), centroids


def huffman_bits(symbols) -> int:
    """Bits of ``symbols`` under an optimal (Huffman) prefix code; one symbol costs 1 bit."""
    counts = Counter(np.asarray(symbols).ravel().tolist())
    if not counts:
        return 0
    if len(counts) == 1:
        return sum(counts.values())
    heap = list(counts.values())
    heapq.heapify(heap)
    total = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        total += merged        # every merge adds one bit to each symbol below it
        heapq.heappush(heap, merged)
    return total
