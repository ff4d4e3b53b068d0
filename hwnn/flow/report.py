"""Plain-text reports: the per-layer table of a quantized network and accuracies."""

import numpy as np

from ..ir import Conv2d, Dense, MaxPool2d, Network
from ..ir.tensors import shape_text
from ..quant.floatnet import FloatNetwork

__all__ = ["class_decisions", "class_indices", "compression_table", "float_predictions",
           "format_table", "golden_predictions", "layer_table"]


def format_table(header, rows, *, right=()) -> str:
    """Columns padded to their widest cell; the columns numbered in ``right`` right-aligned."""
    cells = [list(map(str, header)), *[list(map(str, row)) for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [cell.rjust(width) if index in right else cell.ljust(width)
                 for index, (cell, width) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _sides(values) -> str:
    """``"1"`` for equal values, else ``"1x2"``."""
    return str(values[0]) if len(set(values)) == 1 else shape_text(values)


def _window(layer) -> str:
    """A convolution's or pool's kernel, stride and padding (``"3x3 s1 p1"``, ``"2x2 s2"``,
    ``dw`` for a depthwise convolution); empty for a dense layer."""
    if isinstance(layer, Dense):
        return ""
    text = f"{shape_text(layer.kernel)} s{_sides(layer.stride)}"
    if isinstance(layer, Conv2d):
        if any(layer.padding):
            text += f" p{_sides(layer.padding)}"
        if layer.depthwise:
            text += " dw"
    return text


def layer_table(network: Network) -> str:
    """One row per layer: shape, window (kernel, stride, padding) when the network has
    convolutions or pools, formats, output stage, weight sparsity, memory bits, acc bits. A
    pool has no weights and no stage (``-``)."""
    windowed = any(not isinstance(layer, Dense) for layer in network.layers)
    rows = []
    for layer in network.layers:
        pool = isinstance(layer, MaxPool2d)
        row = [layer.name, f"{shape_text(layer.input_shape)}->{shape_text(layer.output_shape)}",
               "-" if pool else str(layer.weight_format), str(layer.input.format),
               str(layer.output.format), "max" if pool else layer.stage_name,
               "-" if pool else f"{100 * np.mean(layer.weights == 0):.1f}%",
               layer.weight_bits, "-" if pool else layer.acc_bits]
        rows.append(row[:2] + [_window(layer)] * windowed + row[2:])
    total = sum(layer.weight_bits for layer in network.layers)
    rows.append(["total"] + [""] * (6 + windowed) + [total, ""])
    header = ["layer", "shape", *["window"] * windowed, "weights", "inputs", "outputs", "stage",
              "zeros", "weight bits", "acc bits"]
    return format_table(header, rows, right={6 + windowed, 7 + windowed, 8 + windowed})


def class_indices(labels, info: dict) -> np.ndarray:
    """Output indices of class labels: their positions in the model's class list when it has
    one (labels of any type that are members of it), else the labels themselves, which must
    then be integers."""
    labels = np.asarray(labels)
    classes = info.get("classes")
    if classes is None:
        if labels.dtype.kind not in "iu":
            raise ValueError(f"Test labels must be output indices (integers) for a model without "
                             f"a class list, not {labels.dtype} values")
        return labels.astype(np.int64)
    lookup = {label: index for index, label in enumerate(classes)}
    missing = sorted({label.item() for label in labels} - set(lookup))
    if missing:
        raise ValueError(f"Test labels {missing[:5]} are not classes of the model ({classes})")
    return np.array([lookup[label.item()] for label in labels], dtype=np.int64)


def class_decisions(outputs) -> np.ndarray:
    """Class indices of real network outputs (samples x outputs): the arg-max, or for a single
    output (a two-class logistic classifier's logit) 1 where it is above 0 and 0 elsewhere."""
    outputs = np.asarray(outputs)
    if outputs.shape[-1] == 1:
        return (outputs[..., 0] > 0).astype(np.int64)
    return np.argmax(outputs, axis=-1)


def float_predictions(network: FloatNetwork, x) -> np.ndarray:
    """Class indices of the float network (see :func:`class_decisions`)."""
    return class_decisions(network.forward(x))


def golden_predictions(network: Network, x) -> np.ndarray:
    """Class indices of the golden model on real inputs (:func:`class_decisions` of the
    dequantized outputs)."""
    from ..sim.golden import run_network
    codes = run_network(network, network.quantize_input(x))
    return class_decisions(network.dequantize_output(codes))


def compression_table(network: Network, *, index_bits=4) -> str:
    """Per weighted layer and in total: dense weight bits; pruned + shared bits (a codebook
    index, or the code, per nonzero, plus the codebook); compressed-sparse-column bits (of a
    convolution's im2col matrix) with ``index_bits`` relative row indices, padding and column
    pointers; the same entries Huffman-coded; and the ratio of dense to Huffman-coded size."""
    from ..quant.compress import huffman_bits
    from ..quant.csc import encode

    rows, totals = [], np.zeros(4, dtype=np.int64)
    for layer in network.layers:
        if isinstance(layer, MaxPool2d):
            continue
        width = layer.weight_format.width
        shared = isinstance(layer, Dense) and layer.codebook is not None
        value_bits = max(len(layer.codebook).bit_length(), 1) if shared else width
        book = len(layer.codebook) * width if shared else 0
        nonzeros = int(np.count_nonzero(layer.weights))
        matrix = layer.weights_matrix if isinstance(layer, Conv2d) else layer.weights
        csc = encode(matrix, index_bits=index_bits)
        symbols = np.concatenate(csc.values)
        if shared:    # store codebook indices, with one index for padding's zero
            symbols = np.searchsorted(np.concatenate([[0], layer.codebook]), symbols)
        pointers = csc.bits(value_bits) - int(csc.entries.sum()) * (value_bits + index_bits)
        figures = np.array([layer.weight_bits, nonzeros * value_bits + book,
                            csc.bits(value_bits) + book,
                            huffman_bits(symbols) + huffman_bits(np.concatenate(csc.gaps))
                            + pointers + book])
        totals += figures
        rows.append((layer.name, f"{100 * (1 - nonzeros / layer.weights.size):.1f}%",
                     len(layer.codebook) if shared else "-", *figures,
                     f"{figures[0] / figures[3]:.1f}x"))
    rows.append(("total", "", "", *totals, f"{totals[0] / totals[3]:.1f}x"))
    return format_table(("layer", "zeros", "codebook", "dense bits", "pruned+shared",
                         f"CSC ({index_bits}-bit index)", "Huffman", "ratio"), rows,
                        right=set(range(1, 8)))
