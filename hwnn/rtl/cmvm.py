"""Constant matrix-vector multiplication as a graph of adders: ``y = W @ x`` with ``W`` fixed.

A layer whose weights never change (folded so far that each lane keeps one weight) needs no
multiplier and no weight memory: each product is a sum of shifted copies of its input, one
per signed digit of the weight (:func:`~hwnn.rtl.arith.signed_digits`). :func:`adder_graph`
shares those sums across the matrix in three ways:

* **multiples per input**: a weight ``w = c * 2**k`` (``c`` odd) multiplies input ``i`` by
  ``c`` and shifts; every output that has a weight of odd magnitude ``c`` on input ``i`` uses
  the same ``c * x[i]``, built once from the signed digits of ``c`` (a pair of digits that
  two multiples of one input share is built once too);
* **the outputs' sums**: each output is then the signed sum of shifted multiples, one per
  nonzero weight; while some sum of two terms (up to a shift and a sign) occurs in two or
  more places, the most frequent is built once and used by all of them (Hartley's
  common-subexpression elimination). Where the matrix is small enough
  (:data:`DIGIT_PAIRS`), the sums are also tried on one term per signed digit instead of one
  per weight, so that the sharing finds the multiples and the sums of several inputs'
  digits together (a fifth fewer adders on the digits MLP's int8 first layer), and the
  graph with fewer adders is kept;
* **outputs from outputs**: where two rows of the matrix are alike, one output can be the
  other plus the product of their difference, which has fewer signed digits (``+-1`` rows
  that differ in a quarter of their places: a quarter of the terms). Each row is built from
  scratch or from one row built from scratch, whichever :func:`_difference_bases` finds
  cheaper in signed digits, and the graph is kept only if it has fewer adders than the one
  without (this pays for ``+-1`` matrices, rarely for multi-bit ones).

:func:`summed_graph` makes the outputs' remaining sums adders too, and
:func:`pipelined_graph` builds the whole in Amaranth with a register after every
``levels_per_register`` adder levels, each signal as wide as its value's bounds.

The graph is plain data (:class:`AdderGraph`): :meth:`AdderGraph.evaluate` computes it on
integers (the reference the hardware is checked against), :attr:`AdderGraph.adders` counts
its two-input adders. A value is the signed sum of its two terms; a :class:`Term` is a value
shifted left and signed, so an adder with a negative term is a subtractor and no value is
ever negated on its own.
"""

import functools
import heapq
import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
from amaranth import *

from ..ir.formats import signed_bits_for
from .arith import signed_digits

__all__ = ["DIGIT_PAIRS", "AdderGraph", "Node", "SummedGraph", "Term", "adder_graph",
           "pipelined_graph", "summed_graph"]


@dataclass(frozen=True)
class Term:
    """``sign * (value << shift)``: ``value`` indexes the graph's values (its inputs first,
    then its nodes), ``sign`` is +1 or -1."""
    value: int
    shift: int = 0
    sign: int = 1


@dataclass(frozen=True)
class Node:
    """A two-input adder: the value ``left + right`` (each a :class:`Term`, at most one
    negative: a subtractor). Shared nodes have an unshifted positive ``left``
    (:meth:`_Builder.add`); an output's last adder may subtract a shifted ``left``
    (:func:`summed_graph`)."""
    left: Term
    right: Term


@dataclass(frozen=True)
class AdderGraph:
    """``inputs`` input values, ``nodes`` (value ``inputs + n`` is node ``n``, built from
    values before it) and ``outputs``, each the signed sum of its terms (0 without terms)
    plus, where ``bases[j]`` is not None, output ``bases[j]`` (itself without a base)."""
    inputs: int
    nodes: tuple[Node, ...]
    outputs: tuple[tuple[Term, ...], ...]
    bases: tuple[int | None, ...]

    def __post_init__(self):
        if len(self.bases) != len(self.outputs) or any(
                b is not None and self.bases[b] is not None for b in self.bases):
            raise ValueError(f"bases must name an output without a base for each output, "
                             f"not {self.bases}")

    @property
    def adders(self) -> int:
        """Two-input adders: the nodes and, per output, one fewer than its terms, and one
        more with a base (none for an output that is its base alone)."""
        return len(self.nodes) + sum(max(0, len(terms) - (base is None))
                                     for terms, base in zip(self.outputs, self.bases,
                                                            strict=True))

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
        for j, base in enumerate(self.bases):
            if base is not None:
                out[:, j] += out[:, base]
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

    def add_last(self, left: Term, right: Term) -> Term:
        """:meth:`add` for an output's last adder, positive where a term is: where the node
        :meth:`add` makes would be negated (its unshifted term negative), a node that
        subtracts that term from the other instead (no negation after the sum)."""
        lower = min(left, right, key=lambda t: (t.shift, t.value))
        if left.sign == right.sign or lower.sign > 0:
            return self.add(left, right)
        base = lower.shift
        node = Node(Term(left.value, left.shift - base, left.sign),
                    Term(right.value, right.shift - base, right.sign))
        if node not in self.known:
            self.known[node] = self.inputs + len(self.nodes)
            self.nodes.append(node)
        return Term(self.known[node], base)

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
    w = np.ascontiguousarray(w, dtype=np.int64)
    return _graph_of(w.tobytes(), w.shape, DIGIT_PAIRS)


@functools.lru_cache(maxsize=16)
def _graph_of(data: bytes, shape: tuple, digit_pairs: int) -> AdderGraph:
    """:func:`adder_graph` of the int64 matrix in ``data``, kept for the next call: the
    planner and the generator ask for the same layers' graphs (seconds each for the larger
    ones); ``digit_pairs`` is :data:`DIGIT_PAIRS` at the call."""
    w = np.frombuffer(data, dtype=np.int64).reshape(shape)
    plain = _shared_graph(w, (None,) * len(w), digit_pairs)
    bases = _difference_bases(w)
    if all(base is None for base in bases):
        return plain
    below = np.array([w[base] if base is not None else np.zeros_like(row)
                      for row, base in zip(w, bases, strict=True)])
    derived = _shared_graph(w - below, bases, digit_pairs)
    return derived if derived.adders < plain.adders else plain


#: Pairs of signed digits (over all rows) up to which :func:`adder_graph` also tries sharing
#: digits rather than multiples: time grows with the square of a row's digits (a 64 x 64
#: int8 matrix, 620,000 pairs: some 10 s; 128 x 128, 4.9 million: 2 minutes).
DIGIT_PAIRS = 1_000_000


def _shared_graph(w, bases, digit_pairs) -> AdderGraph:
    """The graph of ``w @ x`` with shared sums, its outputs on ``bases``: the rows start as
    one term per weight (a multiple of its input, shared) and, with at most ``digit_pairs``
    pairs of digits in all, as one term per signed digit too (the sharing then finds
    multiples and sums of digits of several inputs at once); the fewer adders win."""
    graphs = [_shared(w, bases, digits=False)]
    counts = _signed_digit_counts(w)
    per_row = counts.sum(axis=1)
    if counts.max(initial=0) > 1 and int((per_row * (per_row - 1) // 2).sum()) <= digit_pairs:
        graphs.append(_shared(w, bases, digits=True))
    return min(graphs, key=lambda graph: graph.adders)


def _shared(w, bases, *, digits) -> AdderGraph:
    """The rows of :func:`_rows_of_digits` or :func:`_rows_of_multiples`, their common pairs
    shared."""
    builder = _Builder(w.shape[1])
    rows = _rows_of_digits(w) if digits else _rows_of_multiples(builder, w)
    _share_pairs(builder, rows)
    return AdderGraph(w.shape[1], tuple(builder.nodes), tuple(tuple(row) for row in rows),
                      tuple(bases))


def _rows_of_multiples(builder: _Builder, w) -> list[list[Term]]:
    """A term per nonzero weight: its input's multiple by the weight's odd part (built once
    per input and odd magnitude from its signed digits), shifted and signed."""
    multiples = {}                          # (input, odd magnitude) -> term
    for i in range(w.shape[1]):
        for c in sorted({_odd_part(abs(int(v)))[0] for v in w[:, i] if v}):
            digits = [Term(i, shift, sign) for shift, sign in signed_digits(c)]
            multiples[i, c] = builder.sum(digits)
    rows = []
    for row in w:
        terms = []
        for i in np.flatnonzero(row):
            value = int(row[i])
            c, k = _odd_part(abs(value))
            t = multiples[int(i), c]
            terms.append(Term(t.value, t.shift + k, t.sign * (1 if value > 0 else -1)))
        rows.append(terms)
    return rows


def _rows_of_digits(w) -> list[list[Term]]:
    """A term per signed digit of each weight: its input, shifted and signed."""
    return [[Term(int(i), shift, sign if row[i] > 0 else -sign)
             for i in np.flatnonzero(row) for shift, sign in signed_digits(abs(int(row[i])))]
            for row in w]


def _signed_digit_counts(values) -> np.ndarray:
    """The nonzero digits of each integer's canonical signed-digit form, elementwise: the
    bits above bit 0 where ``3 * n`` and ``n`` differ (``n`` its magnitude)."""
    n = np.abs(np.asarray(values, dtype=np.int64))
    differ = ((3 * n) ^ n) >> 1
    count = np.zeros(n.shape, dtype=np.int64)
    while differ.any():
        count += differ & 1
        differ >>= 1
    return count


def _difference_bases(w) -> list[int | None]:
    """For each row of ``w``, the row it is built from (None: from scratch). A row costs its
    signed digits from scratch, or one adder plus the signed digits of its difference from
    a row built from scratch. Prim's algorithm on these costs, with the root (scratch) as
    start and no row built on a row that has a base itself (an output waits for at most
    one other)."""
    digits = _signed_digit_counts(w).sum(axis=1)
    best = digits.astype(np.float64)            # each row's cheapest cost so far, and how
    via = [None] * len(w)
    bases, left = [None] * len(w), set(range(len(w)))
    while left:
        j = min(left, key=lambda r: (best[r], r))
        left.remove(j)
        bases[j] = via[j]
        if via[j] is not None or not left:
            continue
        rest = sorted(left)
        cost = _signed_digit_counts(w[rest] - w[j]).sum(axis=1) + 1
        for r, c in zip(rest, cost, strict=True):
            if c < best[r]:
                best[r], via[r] = c, j
    return bases


def _pair_key(first: Term, second: Term) -> tuple:
    """What two terms' sum is up to a shift and a sign: the node :meth:`_Builder.add` makes."""
    if (first.shift, first.value) > (second.shift, second.value):
        first, second = second, first
    return (first.value, second.value, second.shift - first.shift, first.sign * second.sign)


def _find_pair(row, key):
    """Positions ``(i, j)``, ``i < j``, of two terms of ``row`` whose pair is ``key``; None."""
    first_value, second_value, distance, sign = key
    where = defaultdict(list)
    for position, term in enumerate(row):
        where[term.value, term.shift].append(position)
    for i, term in enumerate(row):
        if term.value != first_value:
            continue
        for j in where.get((second_value, term.shift + distance), ()):
            if j != i and row[j].sign == term.sign * sign and _pair_key(term, row[j]) == key:
                return min(i, j), max(i, j)
    return None


def _share_pairs(builder: _Builder, rows):
    """Common subexpressions across the outputs (Hartley's method): while some sum of two
    terms (up to a shift and a sign, :func:`_pair_key`) occurs in two or more places, the
    most frequent becomes a node and every place takes it instead of its two terms. ``rows``
    (lists of terms) are changed in place; the counts are kept up to date as terms come and
    go, so each replacement costs the length of its row."""
    count = Counter()                       # pair key -> pairs of terms with it, everywhere
    places = defaultdict(set)               # pair key -> rows holding such a pair
    for r, row in enumerate(rows):
        for a, b in itertools.combinations(row, 2):
            key = _pair_key(a, b)
            count[key] += 1
            places[key].add(r)
    heap = [(-n, key) for key, n in count.items() if n >= 2]
    heapq.heapify(heap)

    def forget(row, term):
        """Drop the pairs of ``term`` with the rest of ``row``."""
        for other in row:
            key = _pair_key(term, other)
            count[key] -= 1

    while heap:
        negative, key = heapq.heappop(heap)
        if -negative != count[key] or count[key] < 2:
            if count[key] >= 2:
                heapq.heappush(heap, (-count[key], key))
            continue
        for r in sorted(places.pop(key)):
            row = rows[r]
            while True:
                pair = _find_pair(row, key)
                if pair is None:
                    break
                second = row.pop(pair[1])
                first = row.pop(pair[0])
                forget(row, first)
                forget(row, second)
                count[key] -= 1                              # the pair itself
                made = builder.add(first, second)
                for other in row:
                    new = _pair_key(made, other)
                    count[new] += 1
                    places[new].add(r)
                    if count[new] >= 2:
                        heapq.heappush(heap, (-count[new], new))
                row.append(made)


@dataclass(frozen=True)
class SummedGraph:
    """An :class:`AdderGraph` whose output sums are adders too: ``nodes`` (the graph's, then
    those of the sums, each with its ``level``: the adders on its longest path from an
    input), and one term per output (None: the output is 0). An output's value is its term's;
    a negative term costs a negation after the last adder."""
    inputs: int
    nodes: tuple[Node, ...]
    levels: tuple[int, ...]
    outputs: tuple[Term | None, ...]

    @property
    def depth(self) -> int:
        """Adder levels from the inputs to the outputs, a negation counted as one: at least
        one."""
        ends = [self.levels[t.value] + (t.sign < 0) for t in self.outputs if t is not None]
        return max([1, *ends])

    def stages(self, levels_per_register=1) -> int:
        """Registers from the inputs to the outputs of :func:`pipelined_graph` with a register
        after every ``levels_per_register`` adder levels."""
        return -(-self.depth // levels_per_register)

    def ranges(self, lo, hi) -> list[tuple[int, int]]:
        """Bounds of each value (inputs first) for inputs in ``[lo, hi]``: exact for a multiple
        of one value, else the sum of its terms' bounds."""
        ranges = [(int(lo), int(hi))] * self.inputs

        def term(t):
            a, b = (v * t.sign << t.shift for v in ranges[t.value])
            return min(a, b), max(a, b)

        for node in self.nodes:
            if node.left.value == node.right.value:      # a multiple: exact
                factor = ((node.left.sign << node.left.shift)
                          + (node.right.sign << node.right.shift))
                ranges.append(tuple(sorted(v * factor for v in ranges[node.left.value])))
                continue
            (a_lo, a_hi), (b_lo, b_hi) = term(node.left), term(node.right)
            ranges.append((a_lo + b_lo, a_hi + b_hi))
        return ranges

    def register_bits(self, lo, hi, levels_per_register=1) -> tuple[int, int]:
        """``(adder_bits, register_bits)`` of :func:`pipelined_graph` on inputs in ``[lo, hi]``:
        the bits of its adders and negations, and of its registers."""
        plan = _Plan(self, lo, hi, levels_per_register)
        adder_bits = sum(plan.width[self.inputs:]) + sum(
            plan.negation_width(t) for t in self.outputs if t is not None and t.sign < 0)
        return adder_bits, sum(width * registers for width, registers
                               in zip(plan.width + plan.negations, plan.registers(),
                                      strict=True))


def summed_graph(graph: AdderGraph) -> SummedGraph:
    """``graph`` with each output's terms summed by adders, the two that are ready first
    (lowest level) first, so that the sums are as shallow as the terms allow."""
    builder = _Builder(graph.inputs)
    for node in graph.nodes:                # the graph's nodes, known to the sums' adders
        builder.add(node.left, node.right)
    levels = [0] * graph.inputs
    for node in graph.nodes:
        levels.append(1 + max(levels[node.left.value], levels[node.right.value]))
    outputs = [None] * len(graph.outputs)
    # Outputs without a base first: the others add them.
    for j in sorted(range(len(graph.outputs)), key=lambda j: graph.bases[j] is not None):
        base = graph.bases[j]
        terms = list(graph.outputs[j]) + ([outputs[base]] if base is not None
                                          and outputs[base] is not None else [])
        terms = sorted(terms, key=lambda t: levels[t.value])
        while len(terms) > 1:
            first, second, *terms = terms
            made = (builder.add(first, second) if terms
                    else builder.add_last(first, second))
            if made.value == len(levels):
                levels.append(1 + max(levels[first.value], levels[second.value]))
            index = next((i for i, t in enumerate(terms)
                          if levels[t.value] > levels[made.value]), len(terms))
            terms.insert(index, made)
        outputs[j] = terms[0] if terms else None
    return SummedGraph(graph.inputs, tuple(builder.nodes), tuple(levels), tuple(outputs))


def _shape(lo, hi):
    """The narrowest shape holding ``[lo, hi]``."""
    return signed(signed_bits_for(lo, hi)) if lo < 0 else unsigned(max(1, int(hi).bit_length()))


class _Plan:
    """Where :func:`pipelined_graph` puts things: the stage of each value (its adder's level
    over ``levels_per_register``, rounded up; inputs 1), the stage where each is last used,
    and the widths. Stage ``s`` computes from values registered ``s - 1`` times."""

    def __init__(self, graph: SummedGraph, lo, hi, levels_per_register):
        self.graph, self.per = graph, levels_per_register
        self.ranges = graph.ranges(lo, hi)
        self.width = [_shape(*r).width for r in self.ranges]
        self.stage = [self.stage_of(level) for level in graph.levels]
        self.last = self.stages = graph.stages(levels_per_register)
        negative = [t for t in graph.outputs if t is not None and t.sign < 0]
        self.negations = [self.negation_width(t) for t in negative]

    def stage_of(self, level):
        """The stage of an adder at ``level``; the inputs are used in the first stage."""
        return max(1, -(-level // self.per))

    def negation_range(self, term):
        lo, hi = self.ranges[term.value]
        return -(hi << term.shift), -(lo << term.shift)

    def negation_width(self, term):
        return _shape(*self.negation_range(term)).width

    def negation_stage(self, term):
        return self.stage_of(self.graph.levels[term.value] + 1)

    def registers(self) -> list[int]:
        """Registers after each value (inputs and nodes, then the negations): from its stage
        to the last stage that uses it (the outputs: one after the last stage)."""
        graph, used = self.graph, list(self.stage)
        for index, node in enumerate(graph.nodes, start=graph.inputs):
            for value in (node.left.value, node.right.value):
                used[value] = max(used[value], self.stage[index])
        negations = []
        for term in graph.outputs:
            if term is None:
                continue
            if term.sign < 0:
                used[term.value] = max(used[term.value], self.negation_stage(term))
                negations.append(self.stages + 1 - self.negation_stage(term))
            else:
                used[term.value] = max(used[term.value], self.stages + 1)
        return [u - s for u, s in zip(used, self.stage, strict=True)] + negations


def pipelined_graph(m, graph: SummedGraph, inputs, lo, hi, *, name,
                    levels_per_register=1) -> list:
    """Build ``graph`` in ``m`` on ``inputs`` (Values in ``[lo, hi]``, one per graph input):
    its adders in stages of ``levels_per_register`` levels with a register (no reset) after
    each stage, a value delayed by registers to the stage where it is used, every signal
    exactly as wide as its value's range; returns the outputs,
    :meth:`SummedGraph.stages` registers after the inputs (a zero output is a constant)."""
    plan = _Plan(graph, lo, hi, levels_per_register)
    values = [Value.cast(value) for value in inputs]
    chains = [[] for _ in inputs]

    def at(value, stage):
        """``value`` for use in ``stage``: itself in its own stage, else registered."""
        chain = chains[value]
        while len(chain) < stage - plan.stage[value]:
            register = Signal.like(values[value], reset_less=True,
                                   name=f"{name}_v{value}_r{len(chain)}")
            m.d.sync += register.eq(chain[-1] if chain else values[value])
            chain.append(register)
        return chain[stage - plan.stage[value] - 1] if stage > plan.stage[value] else \
            values[value]

    for index, node in enumerate(graph.nodes, start=graph.inputs):
        stage = plan.stage[index]
        left, right = (at(t.value, stage) << t.shift if t.shift else at(t.value, stage)
                       for t in (node.left, node.right))
        if node.left.sign < 0:
            left, right = right, left
        # Chained adders within a stage stay two-operand adders: Yosys would otherwise merge
        # them into one multi-operand adder, which maps to more LUTs (README, hardwired).
        total = Signal(_shape(*plan.ranges[index]), name=f"{name}_n{index}",
                       attrs={"keep": 1} if levels_per_register > 1 else {})
        m.d.comb += total.eq(left + right if node.left.sign == node.right.sign
                             else left - right)
        values.append(total)
        chains.append([])
    outputs = []
    for j, term in enumerate(graph.outputs):
        if term is None:
            outputs.append(Const(0))
        elif term.sign > 0:
            value = at(term.value, plan.stages + 1)
            outputs.append(value << term.shift if term.shift else value)
        else:
            stage = plan.negation_stage(term)
            value = at(term.value, stage)
            negated = Signal(_shape(*plan.negation_range(term)), name=f"{name}_neg{j}")
            m.d.comb += negated.eq(-(value << term.shift if term.shift else value))
            for copy in range(plan.stages + 1 - stage):
                register = Signal.like(negated, reset_less=True, name=f"{name}_out{j}_{copy}")
                m.d.sync += register.eq(negated)
                negated = register
            outputs.append(negated)
    return outputs
