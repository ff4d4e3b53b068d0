"""The golden model (hwnn.sim.golden) on hand-computed networks."""

import numpy as np
import pytest

from hwnn.ir import Dense, Network, Requant, TensorFormat, Thresholds
from hwnn.ir.formats import Format
from hwnn.sim.golden import (LayerTrace, dense_accumulate, output_stage, requantize, run_network,
                             threshold)

UINT2, INT3 = Format.uint(2), Format.int(3)


def _tensor(fmt, zero_point=0):
    return TensorFormat(fmt, 1.0, zero_point)


# Layer a: uint2 -> uint2, rising thresholds.
#   acc0 = x0 - x1           thresholds -1, 0, 2
#   acc1 = 2 x0 + x1 - 1     thresholds  0, 3, 6
LAYER_A = Dense("a", [[1, -1], [2, 1]], Format.int(4), [1.0, 1.0], [0, -1], _tensor(UINT2),
                _tensor(UINT2), Thresholds([[-1, 0, 2], [0, 3, 6]], [False, False]), "relu")
# Layer b: uint2 -> binary; channel 0 rises (+1 iff acc >= 4), channels 1, 2 fall (+1 iff
# acc <= 0).
#   acc0 = x0 + x1, acc1 = x0 - x1, acc2 = -x0 + 1
LAYER_B = Dense("b", [[1, 1], [1, -1], [-1, 0]], Format.ternary(), [1.0] * 3, [0, 0, 1],
                _tensor(UINT2), _tensor(Format.binary()),
                Thresholds([[4], [0], [0]], [False, True, True]), "sign")
# Layer c: binary -> int3 by requantization, clamp [-2, 3], zero point -1.
#   acc0 = 2 x0 - x1 + 3 x2 + 1: (acc0 * 1 + 1) >> 1, i.e. round_half_up(acc0 / 2)
#   acc1 = x0 + x1 - 2 x2 - 1:   (acc1 * 1 + 2) >> 2, i.e. round_half_up(acc1 / 4)
LAYER_C = Dense("c", [[2, -1, 3], [1, 1, -2]], Format.int(4), [1.0, 1.0], [1, -1],
                _tensor(Format.binary()), _tensor(INT3, -1), Requant([1, 1], [1, 2], 4, -1, -2, 3),
                "relu")
# Layer d: int3 -> accumulator.  acc0 = x0 - 2 x1 + 4, acc1 = 3 x0 + x1 - 3
LAYER_D = Dense("d", [[1, -2], [3, 1]], Format.int(4), [1.0, 1.0], [4, -3], _tensor(INT3, -1),
                _tensor(Format.int(8)), None)
NETWORK = Network("hand", (LAYER_A, LAYER_B, LAYER_C, LAYER_D))

INPUTS = [[3, 1], [0, 2], [1, 1], [0, 0]]
EXPECTED = {  # name: (accumulators, outputs), by hand
    "a": ([[2, 6], [-2, 1], [0, 2], [0, -1]], [[3, 3], [0, 1], [2, 1], [2, 0]]),
    "b": ([[6, 0, -2], [1, -1, 1], [3, 1, -1], [2, 2, -1]],
          [[1, 1, 1], [-1, 1, -1], [-1, -1, 1], [-1, -1, 1]]),
    # 5/2 = 2.5 -> 3, -5/2 -> -2, 3/2 -> 2; -1/4 -> 0, 1/4 -> 0, -5/4 -> -1; then -1, clamp
    "c": ([[5, -1], [-5, 1], [3, -5], [3, -5]], [[2, -1], [-2, -1], [1, -2], [1, -2]]),
    "d": ([[8, 2], [4, -10], [9, -2], [9, -2]], [[8, 2], [4, -10], [9, -2], [9, -2]]),
}


def test_hand_network_end_to_end():
    outputs = run_network(NETWORK, INPUTS)
    assert outputs.dtype == np.int64
    assert outputs.tolist() == EXPECTED["d"][1]


def test_trace_returns_every_layer():
    outputs, traces = run_network(NETWORK, np.array(INPUTS, dtype=np.uint8), trace=True)
    assert [trace.name for trace in traces] == ["a", "b", "c", "d"]
    assert all(isinstance(trace, LayerTrace) for trace in traces)
    for trace in traces:
        acc, out = EXPECTED[trace.name]
        assert trace.acc.tolist() == acc, trace.name
        assert trace.outputs.tolist() == out, trace.name
        assert trace.acc.dtype == np.int64 and trace.outputs.dtype == np.int64
    assert np.array_equal(traces[-1].outputs, outputs)
    assert np.array_equal(outputs, run_network(NETWORK, INPUTS))


def test_each_stage_by_hand():
    x = np.array(INPUTS)
    for layer, previous in ((LAYER_A, x), (LAYER_B, EXPECTED["a"][1]),
                            (LAYER_C, EXPECTED["b"][1]), (LAYER_D, EXPECTED["c"][1])):
        acc = dense_accumulate(layer, previous)
        assert acc.tolist() == EXPECTED[layer.name][0]
        assert output_stage(layer, acc).tolist() == EXPECTED[layer.name][1]


def test_single_vectors_match_the_batch():
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 4, (64, 2))
    outputs, traces = run_network(NETWORK, batch, trace=True)
    for row, x in enumerate(batch):
        single, single_traces = run_network(NETWORK, x, trace=True)
        assert single.shape == (2,)
        assert np.array_equal(single, outputs[row])
        for trace, single_trace in zip(traces, single_traces, strict=True):
            assert np.array_equal(trace.acc[row], single_trace.acc)
            assert np.array_equal(trace.outputs[row], single_trace.outputs)
    # Each single vector also agrees with the hand-computed table.
    for x, expected in zip(INPUTS, EXPECTED["d"][1], strict=True):
        assert run_network(NETWORK, np.array(x, dtype=np.int32)).tolist() == expected


def test_signed_levels_rising_and_descending():
    # int2 outputs: levels 0..3 are values -2..1.
    stage = Thresholds([[-1, 0, 1], [1, 0, -1]], [False, True])
    acc = np.array([[-5, -5], [0, 0], [1, 1], [5, 5]])
    # rising: #(t <= acc) = 0, 2, 3, 3; falling: #(acc <= t) = 3, 2, 1, 0
    assert threshold(acc, stage, Format.int(2)).tolist() == [[-2, 1], [0, 0], [1, -1], [1, -2]]
    assert threshold(acc, stage, Format.uint(2)).tolist() == [[0, 3], [2, 2], [3, 1], [3, 0]]


def test_bipolar_outputs_with_descending_thresholds():
    # acc = x0 + x1 on uint2; channel 0: +1 iff acc <= 2; channel 1: +1 iff acc >= 2.
    layer = Dense("bip", [[1, 1], [1, 1]], Format.int(2), [1.0, 1.0], [0, 0], _tensor(UINT2),
                  _tensor(Format.binary()), Thresholds([[2], [2]], [True, False]))
    network = Network("bip", (layer,))
    codes = [[0, 0], [1, 1], [2, 1], [3, 3], [0, 2]]
    assert run_network(network, codes).tolist() == [[1, -1], [1, 1], [-1, 1], [-1, 1], [1, 1]]


def test_requant_stage_with_zero_shift_and_clamp():
    # acc = 3 x; M = 5, s = 0 (no rounding term), zero point 2, clamp [0, 20].
    layer = Dense("r", [[3]], Format.int(3), [1.0], [0], _tensor(Format.int(4)),
                  _tensor(Format.uint(5), 2), Requant([5], [0], 3, 2, 0, 20))
    network = Network("r", (layer,))
    codes = [[-8], [-1], [0], [1], [2], [7]]
    # 15 x + 2: -118 -> 0, -13 -> 0, 2, 17, 32 -> 20, 107 -> 20
    assert run_network(network, codes).tolist() == [[0], [0], [2], [17], [20], [20]]
    assert requantize([[-1]], layer.stage).tolist() == [[0]]


def test_binary_input_network():
    # Binary inputs with binary weights: acc = dot of +-1 vectors.
    layer = Dense("x", [[1, -1, 1], [-1, -1, -1]], Format.binary(), [1.0, 1.0], [0, 1],
                  _tensor(Format.binary()), _tensor(Format.int(4)), None)
    network = Network("x", (layer,))
    assert run_network(network, [[1, 1, 1], [-1, 1, -1], [1, -1, -1]]).tolist() == \
        [[1, -2], [-3, 2], [1, 2]]


@pytest.mark.parametrize("codes, error, message", [
    (np.array([1.0, 2.0]), TypeError, (r"^Input codes must be integers, not float64 values; "
                                       r"quantize real inputs with Network\.quantize_input\(\)$")),
    ([[0.5, 1]], TypeError, r"^Input codes must be integers, not float64 values"),
    (np.array([True, False]), TypeError, r"^Input codes must be integers, not bool values"),
    ([1, 2, 3], ValueError, r"^Input codes must have shape \(2,\) or \(N, 2\), not \(3,\)$"),
    (np.zeros((4, 3), dtype=int), ValueError, (r"^Input codes must have shape \(2,\) or \(N, 2\), "
                                               r"not \(4, 3\)$")),
    (np.zeros((2, 2, 2), dtype=int), ValueError, (r"^Input codes must have shape \(2,\) or "
                                                  r"\(N, 2\), not \(2, 2, 2\)$")),
    (5, ValueError, r"^Input codes must have shape \(2,\) or \(N, 2\), not \(\)$"),
    ([[0, 1], [2, 4]], ValueError, (r"^Input 1 holds code 4, which is outside the input format "
                                    r"uint2 \(0\.\.3\)$")),
    ([-1, 0], ValueError, (r"^Input 0 holds code -1, which is outside the input format uint2 "
                           r"\(0\.\.3\)$")),
    ([[0, 0], [1, 1], [3, 3], [9, -7]], ValueError, r"^Input 3 holds code 9, "),
])
def test_rejects_bad_inputs(codes, error, message):
    with pytest.raises(error, match=message):
        run_network(NETWORK, codes)


def test_rejects_bad_binary_inputs_and_non_networks():
    network = Network("c", (LAYER_C,))
    with pytest.raises(ValueError, match=r"^Input 1 holds code 0, which is outside the input "
                                         r"format binary \(-1\.\.1\)$"):
        run_network(network, [[1, -1, 1], [1, 0, 1]])
    with pytest.raises(TypeError, match=r"^network must be a Network, not 'hand'$"):
        run_network("hand", INPUTS)
