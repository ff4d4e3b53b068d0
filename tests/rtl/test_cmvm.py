"""The adder graph of a constant matrix-vector product: exact on every weight format, and
sharing what it promises."""

import numpy as np
import pytest
from amaranth import Module, Signal, signed, unsigned
from amaranth.back import rtlil
from amaranth.sim import Simulator

from hwnn.rtl import cmvm
from hwnn.rtl.arith import signed_digits
from hwnn.rtl.cmvm import AdderGraph, Term, adder_graph, pipelined_graph, summed_graph


def _exact(w, x):
    return np.array([[sum(int(a) * int(b) for a, b in zip(row, vec, strict=True))
                      for row in w] for vec in x], dtype=object)


@pytest.mark.parametrize("low, high, shape", [
    (-128, 127, (16, 24)),          # int8
    (-8, 7, (10, 33)),              # int4
    (-1, 1, (12, 20)),              # ternary
    (-32768, 32767, (5, 7)),        # int16: long signed-digit forms
])
@pytest.mark.parametrize("x_low, x_high", [(0, 255), (-128, 127), (-(1 << 30), 1 << 30)])
def test_graph_computes_the_product_exactly(low, high, shape, x_low, x_high):
    rng = np.random.default_rng(abs(low) + shape[1])
    w = rng.integers(low, high + 1, size=shape)
    w[0] = 0                                    # an output with no terms
    w[1, ::2] = low                             # the most negative weight
    w[:, 1] = 0                                 # an unused input
    x = rng.integers(x_low, x_high + 1, size=(9, shape[1]))
    x[0], x[1] = x_low, x_high                  # extreme inputs
    graph = adder_graph(w)
    assert (graph.evaluate(x) == _exact(w, x)).all()
    assert graph.outputs[0] == ()


def test_sums_common_to_outputs_are_built_once():
    """+-1 weights have no multiples to share, but pairs of inputs that several outputs add
    (or subtract) alike: far fewer adders than one per term."""
    w = np.where(np.random.default_rng(1).random((16, 32)) < 0.5, -1, 1)
    graph = adder_graph(w)
    assert graph.adders < 0.6 * 16 * 31
    x = np.random.default_rng(2).integers(-100, 100, size=(6, 32))
    assert (graph.evaluate(x) == _exact(w, x)).all()
    # Two outputs that share everything but a sign: their common part is built once.
    w = np.array([[1, 2, 3, 5, 7], [1, 2, 3, 5, -7]])
    assert adder_graph(w).adders <= adder_graph(w[:1]).adders + 1


def test_an_input_multiple_is_built_once_for_every_output_that_uses_it():
    # Column 0 holds 3, 6, -3 and 12: one node (x0 + 2 x0, or 4 x0 - x0) serves all four.
    w = np.array([[3, 1], [6, 0], [-3, 0], [12, 1]])
    graph = adder_graph(w)
    assert len(graph.nodes) == 1
    assert graph.adders == 1 + 1 + 0 + 0 + 1
    x = np.array([[5, 7], [-2, 11]])
    assert (graph.evaluate(x) == _exact(w, x)).all()
    # Each output takes that one node, shifted by the weight's power of two, with the
    # weight's sign (the same sign relation for all four).
    node = graph.inputs
    terms = [[t for t in graph.outputs[j] if t.value == node] for j in range(4)]
    assert [len(t) for t in terms] == [1, 1, 1, 1]
    assert [t[0].shift for t in terms] == [0, 1, 0, 2]
    assert len({t[0].sign * int(np.sign(w[j, 0])) for j, t in enumerate(terms)}) == 1


def test_multiples_share_pairs_of_digits():
    # 85 = 0b1010101 and 21 = 0b10101 share x + 4x, and 85's other pair (16x + 64x) is the
    # same node shifted: 3 nodes instead of 3 + 2.
    w = np.array([[85], [21]])
    graph = adder_graph(w)
    separate = sum(len(signed_digits(c)) - 1 for c in (85, 21))
    assert len(graph.nodes) < separate
    x = np.arange(-3, 4)[:, None]
    assert (graph.evaluate(x) == _exact(w, x)).all()


def test_nodes_only_use_values_before_them_and_terms_are_signed():
    w = np.random.default_rng(3).integers(-128, 128, size=(12, 12))
    graph = adder_graph(w)
    for n, node in enumerate(graph.nodes):
        for term in (node.left, node.right):
            assert 0 <= term.value < graph.inputs + n and term.sign in (1, -1)
        assert node.left.shift == 0 and node.left.sign == 1
    assert all(isinstance(t, Term) and t.sign in (1, -1)
               for terms in graph.outputs for t in terms)


@pytest.mark.parametrize("bad", [np.ones((2, 2)), np.ones(3, dtype=int), [[1.5]]])
def test_bad_weights_are_refused(bad):
    with pytest.raises(TypeError, match="2-D integer array"):
        adder_graph(bad)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match=r"shape \(batch, 3\)"):
        adder_graph(np.ones((2, 3), dtype=int)).evaluate(np.ones((2, 4), dtype=int))


@pytest.mark.parametrize("low, high, shape, x_shape", [
    (-128, 127, (6, 9), unsigned(8)),
    (-8, 7, (5, 12), signed(4)),
    (-1, 1, (4, 7), signed(8)),
    (-3, -1, (3, 4), unsigned(3)),       # every weight negative: outputs negated at the end
])
@pytest.mark.parametrize("per_register", [1, 2, 3])
def test_pipelined_graph_is_exact_at_its_depth(low, high, shape, x_shape, per_register):
    rng = np.random.default_rng(shape[1])
    w = rng.integers(low, high + 1, size=shape)
    w[0] = 0
    _check_pipelined(w, x_shape, per_register, rng)


@pytest.mark.parametrize("per_register", [1, 2])
def test_pipelined_graph_of_outputs_built_from_outputs_is_exact(per_register):
    w = _alike_rows(np.random.default_rng(5), 6, 20, 3)
    w[3] = -w[3]                             # a row alike to the others up to its sign
    assert any(base is not None for base in adder_graph(w).bases)
    _check_pipelined(w, unsigned(8), per_register, np.random.default_rng(6))


def _alike_rows(rng, rows, columns, flips):
    """+-1 rows: a random one, and copies of it with ``flips`` signs flipped."""
    w = np.tile(rng.choice([-1, 1], size=columns), (rows, 1))
    for row in w[1:]:
        row[rng.choice(columns, flips, replace=False)] *= -1
    return w


def test_outputs_are_built_from_alike_outputs():
    w = _alike_rows(np.random.default_rng(3), 8, 32, 3)
    graph = adder_graph(w)
    assert [base is None for base in graph.bases].count(False) == 7
    # The first row's 31 adders, then each other row: its 3 differences added to the first.
    assert graph.adders <= 31 + 7 * 3
    x = np.random.default_rng(4).integers(0, 256, size=(30, 32))
    assert (graph.evaluate(x) == _exact(w, x)).all()
    # Unlike rows are built from scratch.
    assert all(base is None for base in adder_graph(np.eye(5, dtype=int)).bases)


def _check_pipelined(w, x_shape, per_register, rng):
    """:func:`pipelined_graph` of ``w`` gives ``w @ x`` exactly, ``stages`` cycles late."""
    shape = w.shape
    graph = summed_graph(adder_graph(w))
    lo, hi = ((-(1 << (x_shape.width - 1)), (1 << (x_shape.width - 1)) - 1) if x_shape.signed
              else (0, (1 << x_shape.width) - 1))
    m = Module()
    inputs = [Signal(x_shape, name=f"x{i}") for i in range(shape[1])]
    outputs = pipelined_graph(m, graph, inputs, lo, hi, name="g",
                              levels_per_register=per_register)
    vectors = rng.integers(lo, hi + 1, size=(40, shape[1]))
    vectors[0], vectors[1] = lo, hi
    expected = _exact(w, vectors)
    depth = graph.stages(per_register)
    assert depth == -(-graph.depth // per_register)
    sim = Simulator(m)
    sim.add_clock(1e-6)

    async def bench(ctx):
        for index in range(len(vectors) + depth):
            if index < len(vectors):
                for signal, value in zip(inputs, vectors[index], strict=True):
                    ctx.set(signal, int(value))
            await ctx.tick()
            if 0 <= index - depth + 1 < len(vectors):
                got = [ctx.get(value) for value in outputs]
                want = list(expected[index - depth + 1])
                assert got == want, f"vector {index - depth + 1}: expected {want}, got {got}"

    sim.add_testbench(bench)
    sim.run()


def test_summed_graph_levels_and_ranges():
    w = np.array([[1, 2, 3, -4], [0, 0, 0, 0], [-5, 0, 0, 0]])
    graph = summed_graph(adder_graph(w))
    assert graph.outputs[1] is None
    for index, node in enumerate(graph.nodes, start=graph.inputs):
        assert graph.levels[index] == 1 + max(graph.levels[node.left.value],
                                              graph.levels[node.right.value])
    # The ranges bound every value (interval arithmetic: a multiple such as 3x = 4x - x is
    # bounded as if its two terms were independent, so bounds may be wider, never narrower).
    ranges = graph.ranges(0, 10)
    out = graph.outputs[0]
    lo, hi = sorted(v * out.sign << out.shift for v in ranges[out.value])
    assert lo <= -40 and hi >= 60


@pytest.mark.parametrize("per_register, kept", [(1, False), (2, True)])
def test_adders_chained_within_a_stage_are_kept_apart(per_register, kept):
    # Yosys merges chained adders into one multi-operand adder unless their sum is kept.
    graph = summed_graph(adder_graph(np.array([[3, 5, 7, 1], [1, 1, 1, 1]])))
    m = Module()
    inputs = [Signal(unsigned(4), name=f"x{i}") for i in range(4)]
    pipelined_graph(m, graph, inputs, 0, 15, name="g", levels_per_register=per_register)
    text = rtlil.convert(m, ports=inputs)
    assert ("attribute \\keep 1\n  wire" in text) == kept


@pytest.mark.parametrize("bases", [(None,), (1, 0), (None, 1), (None, None, 1)])
def test_bases_that_are_not_outputs_without_a_base_are_refused(bases):
    with pytest.raises(ValueError, match="bases"):
        AdderGraph(2, (), ((), ()), bases)


@pytest.mark.parametrize("per_register", [1, 2])
def test_an_output_with_a_positive_term_is_not_negated_after_its_sum(per_register):
    # -x0 + 2 x1 and 2 x0 - x1: the last adder subtracts (its left term shifted in the
    # second), where a shared node would be the negated x0 - 2 x1.
    w = np.array([[-1, 2], [2, -1], [-3, 5], [-1, -1]])
    graph = summed_graph(adder_graph(w))
    assert [t.sign for t in graph.outputs] == [1, 1, 1, -1]
    _check_pipelined(w, signed(6), per_register, np.random.default_rng(7))


def test_sharing_digits_of_several_inputs_takes_fewer_adders(monkeypatch):
    w = np.random.default_rng(8).integers(-128, 128, size=(16, 24))
    x = np.random.default_rng(9).integers(0, 256, size=(30, 24))
    digits = adder_graph(w)
    monkeypatch.setattr(cmvm, "DIGIT_PAIRS", 0)             # multiples per input only
    multiples = adder_graph(w)
    assert digits.adders < multiples.adders
    for graph in (digits, multiples):
        assert (graph.evaluate(x) == _exact(w, x)).all()
