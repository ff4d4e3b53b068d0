"""Pruning, weight sharing, Huffman sizes and the compressed sparse format."""

import numpy as np
import pytest

from hwnn.quant.compress import huffman_bits, kmeans_1d, prune_masks, share_weights
from hwnn.quant.csc import decode, encode


def test_prune_masks_per_layer_and_globally():
    small = np.array([[0.1, -0.5], [2.0, -0.05]])
    large = np.array([[3.0, -4.0, 0.2]])
    per_layer = prune_masks([small, large], 0.5)
    assert per_layer[0].tolist() == [[False, True], [True, False]]
    assert per_layer[1].tolist() == [[False, True, False]]    # round(1.5) = 2 removed
    # Globally the 0.2, 0.1 and 0.05 go first, then -0.5 (4 of 7 is round(3.5)).
    together = prune_masks([small, large], 0.5, scope="global")
    assert together[0].tolist() == [[False, False], [True, False]]
    assert together[1].tolist() == [[True, True, False]]


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_prune_masks_remove_exactly_the_fraction(sparsity):
    weights = np.random.default_rng(0).normal(size=(20, 30))
    mask = prune_masks([weights], sparsity)[0]
    assert (~mask).sum() == round(sparsity * weights.size)
    assert np.abs(weights[mask]).min() >= np.abs(weights[~mask]).max(initial=0)


@pytest.mark.parametrize("sparsity, scope, message", [
    (1.0, "layer", r"^sparsity must be a number in \[0, 1\), not 1.0$"),
    (-0.1, "layer", r"^sparsity must be a number in \[0, 1\), not -0.1$"),
    (0.5, "row", r"^Pruning scope must be 'layer' or 'global', not 'row'$"),
])
def test_prune_masks_refuse_bad_options(sparsity, scope, message):
    with pytest.raises(ValueError, match=message):
        prune_masks([np.ones((2, 2))], sparsity, scope=scope)


def test_kmeans_1d_finds_separated_clusters():
    values = np.array([1, 2, 3, 20, 21, 22, 40, 41])    # linear start: 1, 21, 41
    assert kmeans_1d(values, 3).tolist() == [2.0, 21.0, 40.5]
    assert kmeans_1d([3, 3, 7], 4).tolist() == [3, 7]     # fewer distinct values than clusters


def test_share_weights_keeps_zeros_and_uses_the_codebook():
    codes = np.random.default_rng(1).integers(-127, 128, size=(16, 32))
    codes[codes % 3 == 0] = 0
    shared, codebook = share_weights(codes, 3)
    assert len(codebook) <= 7 and 0 not in codebook    # with zero: a 3-bit index
    assert np.array_equal(shared == 0, codes == 0)
    assert set(shared[shared != 0].tolist()) <= set(codebook.tolist())
    # Every code moves to its nearest codebook entry.
    distance = np.abs(codes[..., None] - codebook).min(axis=-1)
    assert np.array_equal(np.abs(shared - codes)[codes != 0], distance[codes != 0])


def test_huffman_bits_on_hand_cases():
    assert huffman_bits([]) == 0
    assert huffman_bits([5, 5, 5]) == 3                 # one symbol: one bit each
    assert huffman_bits([0, 1]) == 2
    # Frequencies 4, 2, 1, 1: code lengths 1, 2, 3, 3 -> 4 + 4 + 3 + 3 = 14 bits.
    assert huffman_bits([0] * 4 + [1] * 2 + [2, 3]) == 14


@pytest.mark.parametrize("pes", [1, 2, 3, 8])
@pytest.mark.parametrize("index_bits", [1, 2, 4])
def test_csc_round_trips_with_padding_and_empty_columns(pes, index_bits):
    rng = np.random.default_rng(pes * 10 + index_bits)
    matrix = rng.integers(-7, 8, size=(40, 12)) * (rng.random((40, 12)) < 0.15)
    matrix[:, 3] = 0                                    # an all-zero column
    matrix[:, 5] = 0
    matrix[-1, 5] = 4                                   # a long gap that needs padding
    csc = encode(matrix, pes=pes, index_bits=index_bits)
    assert np.array_equal(decode(csc), matrix)
    longest = (1 << index_bits) - 1
    for pe in range(pes):
        assert np.all(csc.gaps[pe] <= longest)
        assert csc.pointers[pe][4] == csc.pointers[pe][3]     # column 3 stores nothing
    nonzeros = np.count_nonzero(matrix)
    assert int(csc.entries.sum()) == nonzeros + int(csc.padding.sum())


def test_csc_interleaves_rows_across_pes_and_counts_bits():
    matrix = np.zeros((4, 1), dtype=np.int64)
    matrix[:, 0] = [1, 2, 3, 4]
    csc = encode(matrix, pes=2, index_bits=4)
    assert [v.tolist() for v in csc.values] == [[1, 3], [2, 4]]
    assert [g.tolist() for g in csc.gaps] == [[0, 0], [0, 0]]
    # 4 entries x (8 + 4) bits + 2 PEs x 2 pointers x 2 bits.
    assert csc.bits(8) == 4 * 12 + 2 * 2 * 2
    padded = np.zeros((20, 1), dtype=np.int64)
    padded[19, 0] = 5
    csc = encode(padded, index_bits=2)                  # gaps of at most 3: 19 zeros -> 4 pads
    assert csc.values[0].tolist() == [0, 0, 0, 0, 5] and csc.gaps[0].tolist() == [3, 3, 3, 3, 3]


def test_quantize_network_prunes_shares_and_the_ir_keeps_the_codebook(tmp_path):
    from hwnn.ir import Network
    from hwnn.quant import FloatDense, FloatNetwork, QuantOptions, quantize_network
    from hwnn.sim.golden import run_network

    rng = np.random.default_rng(3)
    network = FloatNetwork((FloatDense(rng.normal(size=(16, 12)), rng.normal(size=16), "relu"),
                            FloatDense(rng.normal(size=(4, 16)), np.zeros(4))))
    calib = rng.uniform(0, 1, size=(50, 12))
    options = QuantOptions(weights="int8", acts="uint8", prune=0.75, share=3)
    quantized = quantize_network(network, calib, options)
    for layer in quantized.layers:
        assert layer.sparsity >= 0.75
        assert len(layer.codebook) <= 7
        assert set(layer.weights[layer.weights != 0].tolist()) <= set(layer.codebook.tolist())
    path = quantized.save(tmp_path / "net.hwnn.npz")
    loaded = Network.load(path)
    assert [layer.codebook.tolist() for layer in loaded.layers] == \
        [layer.codebook.tolist() for layer in quantized.layers]
    codes = quantized.quantize_input(calib)
    assert np.array_equal(run_network(loaded, codes), run_network(quantized, codes))


@pytest.mark.parametrize("kwargs, message", [
    ({"prune": 1.0}, r"^prune must be a fraction in \[0, 1\), not 1.0$"),
    ({"prune_scope": "row"}, r"^prune_scope must be 'layer' or 'global', not 'row'$"),
    ({"share": 9}, r"^share must be 1..8 bits or None, not 9$"),
    ({"weights": "binary", "share": 2},
     r"^Binary weights can be neither pruned nor shared: \+-1 has no zero and only two values$"),
])
def test_quant_options_refuse_bad_compression(kwargs, message):
    from hwnn.quant import QuantOptions
    with pytest.raises(ValueError, match=message):
        QuantOptions(**kwargs)


def test_ir_refuses_weights_outside_their_codebook():
    from hwnn.ir import Dense
    from hwnn.quant.synthetic import random_dense

    layer = random_dense(np.random.default_rng(0), 4, 3, in_format="uint4",
                         weight_format="int4", stage="accumulator")
    fields = {**layer.__dict__, "codebook": np.array([1, 2])}
    with pytest.raises(ValueError, match="has nonzero weights that are not in its codebook"):
        Dense(**fields)
    with pytest.raises(ValueError, match="codebook must be sorted distinct nonzero codes"):
        Dense(**{**fields, "codebook": np.array([2, 1])})


def test_compression_table_adds_up():
    from hwnn.ir import Network
    from hwnn.quant.synthetic import random_dense
    from hwnn.flow.report import compression_table

    layer = random_dense(np.random.default_rng(0), 32, 8, in_format="uint4",
                         weight_format="int4", stage="accumulator")
    table = compression_table(Network("n", (layer,)))
    row = table.splitlines()[1].split()
    total = table.splitlines()[-1].split()
    nonzeros = int(np.count_nonzero(layer.weights))
    # dense bits, then nonzeros x 4-bit codes (no codebook), then CSC and Huffman sizes.
    assert row[:5] == ["dense", f"{100 * layer.sparsity:.1f}%", "-", str(32 * 8 * 4),
                       str(nonzeros * 4)]
    assert total[0] == "total" and total[1:5] == row[3:7]
    assert int(row[6]) <= int(row[5])          # Huffman coding never loses to plain CSC
