"""Constant matrix-vector multiplication as a graph of adders: ``y = W @ x`` with ``W`` fixed.

A layer whose weights never change (folded so far that each lane keeps one weight) needs no
multiplier and no weight memory: each product is a sum of shifted copies of its input, one
per signed digit of the weight (:func:`~hwnn.rtl.arith.signed_digits`). :func:`adder_graph`
shares those sums across the matrix in two ways:

* **multiples per input**: a weight ``w = c * 2**k`` (``c`` odd) multiplies input ``i`` by
  ``c`` and shifts; every output that has a weight of odd magnitude ``c`` on input ``i`` uses
  the same ``c * x[i]``, built once from the signed digits of ``c`` (a pair of digits that
  two multiples of one input share is built once too);
* **the outputs' sums**: each output is then the signed sum of shifted multiples, one per
  nonzero weight.

The graph is plain data (:class:`AdderGraph`): :meth:`AdderGraph.evaluate` computes it on
integers (the reference the hardware is checked against), :attr:`AdderGraph.adders` counts
its two-input adders. A value is the signed sum of its two terms; a :class:`Term` is a value
shifted left and signed, so an adder with a negative term is a subtractor and no value is
ever negated on its own.
"""

from dataclasses import dataclass

import numpy as np

from .arith import signed_digits

__all__ = ["AdderGraph", "Node", "Term", "adder_graph"]


@dataclass(frozen=True)
class Term:
    """``sign * (value << shift)``: ``value`` indexes the graph's values (its inputs first,
    then its nodes), ``sign`` is +1 or -1."""
    value: int
    shift: int = 0
    sign: int = 1


@dataclass(frozen=True)
class Node:
    """A two-input adder: the value ``left + right`` (each a :class:`Term`)."""
    left: Term
    right: Term


@dataclass(frozen=True)
class AdderGraph:
    """``inputs`` input values, ``nodes`` (value ``inputs + n`` is node ``n``, built from
    values before it) and ``outputs``, each the signed sum of its terms (0 without terms)."""
    inputs: int
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[Term, ...], ...]

    @property
    def adders(self) -> int:
        """Two-input adders: the nodes and, per output, one fewer than its terms."""
        return len(self.nodes) + sum(max(0, len(terms) - 1) for terms in self.outputs)

    def evaluate(self, x) -> np.ndarray:
        """The outputs for each row of ``x`` (``(batch, inputs)`` integers), exactly, as
        Python integers in an object array of shape ``(batch, outputs)``."""
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.inputs:
            raise ValueError(f"x must have shape (batch, {self.inputs}), not {x.shape}")
        values = [x[:, i].astype(object) for i in range(self.inputs)]

        def term(t: Term):
            return t.sign * (values[t.value] * (1 << t.shift))

        for node in self.nodes:
            values.append(term(node.left) + term(node.right))
        out = np.zeros((x.shape[0], len(self.outputs)), dtype=object)
        for j, terms in enumerate(self.outputs):
            for t in terms:
                out[:, j] += term(t)
        return out


def _odd_part(magnitude: int) -> tuple[int, int]:
    """``(c, k)`` with ``magnitude == c << k`` and ``c`` odd."""
    shift = (magnitude & -magnitude).bit_length() - 1
    return magnitude >> shift, shift


class _Builder:
    """Nodes, each made once: a sum of two terms is looked up before it is added."""

    def __init__(self, inputs):
        self.inputs, self.nodes, self.known = inputs, [], {}

    def add(self, left: Term, right: Term) -> Term:
        """A term equal to ``left + right``: a node normalized so that its first term is
        unshifted and positive (``left + right == sign * (node << shift)``)."""
        if (left.shift, left.value) > (right.shift, right.value):
            left, right = right, left
        base, sign = left.shift, left.sign
        key = (left.value, right.value, right.shift - base, right.sign * sign)
        if key not in self.known:
            self.known[key] = self.inputs + len(self.nodes)
            self.nodes.append(Node(Term(left.value), Term(right.value, key[2], key[3])))
        return Term(self.known[key], base, sign)

    def sum(self, terms: list[Term]) -> Term:
        """One term equal to the sum of ``terms`` (at least one), built as a balanced tree."""
        while len(terms) > 1:
            terms = ([self.add(terms[i], terms[i + 1]) for i in range(0, len(terms) - 1, 2)]
                     + terms[len(terms) - len(terms) % 2:])
        return terms[0]


def adder_graph(weights) -> AdderGraph:
    """The :class:`AdderGraph` of ``y = weights @ x`` for an integer matrix ``weights`` of
    shape ``(outputs, inputs)`` (see the module's description)."""
    w = np.asarray(weights)
    if w.ndim != 2 or not np.issubdtype(w.dtype, np.integer):
        raise TypeError(f"weights must be a 2-D integer array, not {w.dtype} of shape "
                        f"{w.shape}")
    outputs, inputs = w.shape
    builder = _Builder(inputs)
    multiples = {}                          # (input, odd magnitude) -> term
    for i in range(inputs):
        for c in sorted({_odd_part(abs(int(v)))[0] for v in w[:, i] if v}):
            digits = [Term(i, shift, sign) for shift, sign in signed_digits(c)]
            multiples[i, c] = builder.sum(digits)
    rows = []
    for j in range(outputs):
        terms = []
        for i in np.flatnonzero(w[j]):
            value = int(w[j, i])
            c, k = _odd_part(abs(value))
            t = multiples[int(i), c]
            terms.append(Term(t.value, t.shift + k, t.sign * (1 if value > 0 else -1)))
        rows.append(tuple(terms))
    return AdderGraph(inputs, tuple(builder.nodes), tuple(rows))
