"""Train a scikit-learn MLP on the 8x8 digits, quantize it three ways, compare accuracies.

Run it with ``python examples/digits_mlp.py``. The digits ship with scikit-learn, so nothing
is downloaded. It prints, for each scheme, the per-layer table and the accuracy of the float
model and of the golden model (the integer network exactly as the hardware computes it).
"""

from hwnn.flow.demo import train_digits_mlp
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.frontends import prune_sklearn
from hwnn.flow.report import compression_table, float_predictions, golden_predictions, layer_table

#: (weights, activations) schemes compared by this example.
SCHEMES = (("int8", "uint8"), ("int4", "uint4"), ("ternary", "uint4"))


def main(seed=0, verbose=True) -> dict:
    """Run the comparison; return ``{scheme: (float accuracy, golden accuracy)}``."""
    model, (x_train, x_test, _, y_test) = train_digits_mlp(seed)
    network = from_sklearn(model)
    float_accuracy = float((float_predictions(network, x_test) == y_test).mean())
    results = {}
    for weights, acts in SCHEMES:
        quantized = quantize_network(network, x_train, QuantOptions(weights=weights, acts=acts),
                                     name=f"digits_{weights}_{acts}")
        golden_accuracy = float((golden_predictions(quantized, x_test) == y_test).mean())
        results[f"{weights}/{acts}"] = (float_accuracy, golden_accuracy)
        if verbose:
            print(f"== weights {weights}, activations {acts}")
            print(layer_table(quantized))
            print(f"accuracy: float {100 * float_accuracy:.2f}%, "
                  f"golden {100 * golden_accuracy:.2f}%\n")
    # Deep Compression: prune 90% of the weights (iteratively, retraining the rest), then
    # share a 4-bit codebook per layer (15 nonzero codes and zero).
    model, (x_train, x_test, y_train, y_test) = train_digits_mlp(seed)
    pruned = from_sklearn(prune_sklearn(model, x_train, y_train, 0.9, scope="global"))
    compressed = quantize_network(pruned, x_train, QuantOptions(
        weights="int8", acts="uint8", prune=0.9, prune_scope="global", share=4),
        name="digits_pruned")
    golden_accuracy = float((golden_predictions(compressed, x_test) == y_test).mean())
    pruned_accuracy = float((float_predictions(pruned, x_test) == y_test).mean())
    results["int8/uint8 pruned 90% shared 4-bit"] = (pruned_accuracy, golden_accuracy)
    if verbose:
        print("== weights int8 pruned to 90% and shared (4-bit codebook), activations uint8")
        print(compression_table(compressed))
        print(f"accuracy: pruned float {100 * pruned_accuracy:.2f}%, "
              f"golden {100 * golden_accuracy:.2f}%\n")
    return results


if __name__ == "__main__":
    main()
