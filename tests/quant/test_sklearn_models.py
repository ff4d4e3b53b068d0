"""Ordinary scikit-learn MLPs on the digits through every weight scheme.

scikit-learn's default ``MLPClassifier`` (one hidden layer of 100 ReLUs, L2 penalty) leaves dead
neurons whose weights decay to about 1e-15; each must quantize like any other neuron, under
every weight scheme, per tensor and per channel.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

from hwnn.ir.formats import signed_bits_for
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.convert import BIAS_HEADROOM_BITS
from hwnn.flow.report import float_predictions, golden_predictions
from hwnn.sim.golden import run_network

SEEDS = (0, 1, 2)
SCHEMES = [(f"int{bits}", per_channel) for bits in range(2, 17) for per_channel in (False, True)]
SCHEMES += [("ternary", False), ("binary", False)]


def _least_accuracy(weights, per_channel, float_accuracy):
    """The golden accuracy a scheme must reach (the float one is about 97.5%)."""
    if weights == "int2":      # ternary codes at the scale of the largest weight
        return 0.55 if per_channel else 0.15
    return {"int3": 0.93, "ternary": 0.88, "binary": 0.75}.get(weights, float_accuracy - 0.02)


@pytest.fixture(scope="module")
def digits_models():
    """Default-width MLPs trained briefly (a large step and small batches, so that dead neurons
    decay as they do in a full default training); per seed the float network, its float test
    accuracy, and the data."""
    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16, y, test_size=0.3,
                                                        random_state=0, stratify=y)
    models = {}
    for seed in SEEDS:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPClassifier(random_state=seed, max_iter=30, learning_rate_init=0.01,
                                  batch_size=64).fit(x_train, y_train)
        network = from_sklearn(model)
        accuracy = float((float_predictions(network, x_test) == y_test).mean())
        models[seed] = network, accuracy
    return models, (x_train, x_test, y_test)


def test_models_have_dead_neurons(digits_models):
    models, _ = digits_models
    for network, accuracy in models.values():
        assert network.layers[0].weight.shape == (100, 64)
        assert np.sum(np.abs(network.layers[0].weight).max(axis=1) < 1e-9) >= 2
        assert accuracy > 0.96


@pytest.mark.parametrize("weights, per_channel", SCHEMES)
def test_every_weight_scheme_quantizes_ordinary_mlps(digits_models, weights, per_channel):
    models, (x_train, x_test, y_test) = digits_models
    options = QuantOptions(weights=weights, per_channel=per_channel)
    for network, float_accuracy in models.values():
        quantized = quantize_network(network, x_train, options)
        accuracy = float((golden_predictions(quantized, x_test) == y_test).mean())
        assert accuracy >= _least_accuracy(weights, per_channel, float_accuracy)
        # A bias reaches at most 2**BIAS_HEADROOM_BITS times the weights' largest accumulator.
        hidden = quantized.layers[0]
        reach = 64 * hidden.weight_format.max_value * 255
        assert hidden.acc_bits <= signed_bits_for(-reach, reach) + BIAS_HEADROOM_BITS + 1
        # A dead neuron's output is a constant.
        dead = np.abs(network.layers[0].weight).max(axis=1) < 1e-9
        _, (trace, _) = run_network(quantized, quantized.quantize_input(x_test), trace=True)
        assert np.all(trace.outputs[:, dead] == trace.outputs[:1, dead])
