"""Train three quantization-aware networks on the 8x8 digits with Brevitas and export them to
QONNX for ``hwnn quantize`` (and :func:`hwnn.quant.load_qonnx`):

====================== ==========================================================================
``binary_mlp.onnx``    64 -> 64 -> 64 -> 10, binary (+-1) weights everywhere, batch
                       normalization and binary (+-1) activations after each hidden layer
                       (a BNN: XNOR and popcount in hardware after the first layer)
``ternary_mlp.onnx``   64 -> 64 -> 64 -> 10, ternary weights ({-1, 0, +1} times a scale per
                       output neuron), batch normalization and 2-bit unsigned activations
``int4_cnn.onnx``      conv 3x3 1 -> 16, padding 1, BN, 4-bit ReLU, max pool 2; conv 3x3
                       16 -> 32, padding 1, BN, 4-bit ReLU, max pool 2; dense 128 -> 10;
                       4-bit weights (a scale per output channel)
====================== ==========================================================================

Each takes the pixels (0..16 scaled to 0..1) through an 8-bit unsigned input quantizer with a
power-of-two scale (it learns 2^-7: pixel k becomes code 8k, exactly); its last layer outputs
its accumulator (the logits; an Int32 bias where it has one). They are trained on the demo's
split of scikit-learn's digits (70% / 30%, stratified, ``random_state=0``, as
:func:`hwnn.flow.demo.digits_split`; nothing is downloaded) with Adam and cross-entropy, on the
CPU (one thread, deterministic algorithms), from fixed seeds, in 40-60 s each, and written to
``examples/qat/`` (30-45 kB each: one self-contained file of float32 weights without doc
strings or metadata) with ``qat_accuracy.json``: each network's test accuracy as PyTorch
computes it with Brevitas' quantizers (the accuracy the training reached, which hwnn's golden
model and RTL are compared against).

The binary MLP, imported by :func:`hwnn.quant.load_qonnx`, is also written as
``hwnn/flow/digits_qat_binary.hwnn.npz`` (:data:`hwnn.flow.demo.DIGITS_QAT_BINARY`), which
``hwnn demo`` runs without onnx or qonnx.

Run it with ``python examples/train_qat_digits.py [NAME ...]`` (default: all three; needs
``pip install hwnn[train,qonnx]``: torch, brevitas and onnxoptimizer, which nothing else in
hwnn needs, and qonnx; written with torch 2.14.1, brevitas 0.13.4). Then, for example::

    hwnn quantize examples/qat/binary_mlp.onnx --test test.npz --check -o binary_mlp.hwnn.npz

(``test.npz``: the test images ``x``, shaped as the model takes them, and labels ``y``).
"""

import json
import time
from itertools import pairwise
from pathlib import Path

import onnx
import torch
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import (Int8WeightPerChannelFloat, Int32Bias, SignedBinaryActPerTensorConst,
                            SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFixedPoint)
from torch import nn

from hwnn.flow.demo import DIGITS_QAT_BINARY, digits_split
from hwnn.quant import load_qonnx

#: Where the exported networks and their accuracies go.
OUTPUT = Path(__file__).with_name("qat")
ACCURACY_FILE = "qat_accuracy.json"


def input_quant():
    """The input quantizer: 8-bit unsigned codes, a power-of-two scale (learned)."""
    return qnn.QuantIdentity(act_quant=Uint8ActPerTensorFixedPoint, return_quant_tensor=True)


class MLP(nn.Module):
    """64 -> ``hidden`` -> 10: each hidden layer a QuantLinear without bias (``weights``: its
    quantizer keywords), a batch normalization and the activation quantizer ``activation()``;
    the last layer a QuantLinear with ``weights`` and the keywords ``out``."""

    def __init__(self, weights, activation, out, hidden=(64, 64)):
        super().__init__()
        sizes = (64, *hidden)
        self.inp = input_quant()
        self.hidden = nn.Sequential(*(
            module for fan_in, fan_out in pairwise(sizes)
            for module in (qnn.QuantLinear(fan_in, fan_out, bias=False, **weights),
                           nn.BatchNorm1d(fan_out), activation())))
        self.out = qnn.QuantLinear(sizes[-1], 10, **weights, **out)

    def forward(self, x):
        return self.out(self.hidden(self.inp(x)))


def binary_mlp():
    """Binary weights (scale 1; the last layer's a constant 1/8, so that its logits have a
    trainable size) and binary activations, no biases."""
    return MLP({"weight_quant": SignedBinaryWeightPerTensorConst},
               lambda: qnn.QuantIdentity(act_quant=SignedBinaryActPerTensorConst,
                                         return_quant_tensor=True),
               {"bias": False, "weight_scaling_const": 0.125})


def ternary_mlp():
    """Ternary weights ({-1, 0, +1}, a float scale per output neuron), 2-bit unsigned
    activations; the last layer has an Int32 bias."""
    return MLP({"weight_quant": Int8WeightPerChannelFloat, "weight_bit_width": 2},
               lambda: qnn.QuantReLU(bit_width=2, return_quant_tensor=True),
               {"bias": True, "bias_quant": Int32Bias})


class Int4CNN(nn.Module):
    """The demo CNN's shape, wider: 4-bit weights (a float scale per output channel), batch
    normalization and 4-bit ReLUs; the dense layer has an Int32 bias."""

    def __init__(self, channels=(16, 32)):
        super().__init__()
        weights = {"weight_quant": Int8WeightPerChannelFloat, "weight_bit_width": 4}
        first, second = channels
        self.inp = input_quant()
        self.features = nn.Sequential(
            qnn.QuantConv2d(1, first, 3, padding=1, bias=False, **weights),
            nn.BatchNorm2d(first),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            nn.MaxPool2d(2),
            qnn.QuantConv2d(first, second, 3, padding=1, bias=False, **weights),
            nn.BatchNorm2d(second),
            qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
            nn.MaxPool2d(2))
        self.out = qnn.QuantLinear(second * 2 * 2, 10, bias=True, bias_quant=Int32Bias,
                                   **weights)

    def forward(self, x):
        return self.out(torch.flatten(self.features(self.inp(x)), 1))


#: name -> (function making the model, input shape of one image, epochs, Adam's step size, seed).
NETWORKS = {
    "binary_mlp": (binary_mlp, (64,), 100, 1e-2, 0),
    "ternary_mlp": (ternary_mlp, (64,), 100, 1e-2, 0),
    "int4_cnn": (Int4CNN, (1, 8, 8), 40, 5e-3, 0),
}
BATCH = 64


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(dim=1) == y).float().mean())


def train(name, split):
    """Train the network ``name`` of :data:`NETWORKS`; return it and its test accuracy."""
    make, shape, epochs, step, seed = NETWORKS[name]
    x_train, x_test, y_train, y_test = (torch.tensor(array) for array in split)
    x_train = x_train.float().reshape(-1, *shape)
    x_test = x_test.float().reshape(-1, *shape)
    torch.manual_seed(seed)
    model = make()
    optimizer = torch.optim.Adam(model.parameters(), lr=step)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x_train), generator=generator)
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
        schedule.step()
    return model, accuracy(model, x_test, y_test)


def export(model, shape, path):
    """Export ``model`` to QONNX as one self-contained file without doc strings or the
    exporter's metadata (class names, stack traces with local paths)."""
    model.eval()
    export_qonnx(model, input_t=torch.zeros(1, *shape), export_path=str(path))
    Path(f"{path}.data").unlink(missing_ok=True)
    onnx.save(strip_metadata(onnx.load(str(path))), str(path), save_as_external_data=False)


def strip_metadata(model):
    """``model`` (an ``onnx.ModelProto``, changed in place) without doc strings and
    ``metadata_props`` on its graph, nodes and values."""
    graph = model.graph
    for item in (graph, *graph.node, *graph.input, *graph.output, *graph.value_info,
                 *graph.initializer):
        if hasattr(item, "metadata_props"):
            del item.metadata_props[:]
        if hasattr(item, "doc_string"):
            item.doc_string = ""
    return model


def main(output=OUTPUT, names=tuple(NETWORKS), shipped=DIGITS_QAT_BINARY):
    """Train and export the networks ``names`` into the folder ``output``; write the binary
    MLP, imported, to ``shipped`` too (None: not), for ``hwnn demo``."""
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    split = digits_split(0)
    results = {}
    for name in names:
        started = time.monotonic()
        model, test_accuracy = train(name, split)
        export(model, NETWORKS[name][1], output / f"{name}.onnx")
        results[name] = round(test_accuracy, 6)
        if name == "binary_mlp" and shipped is not None:
            load_qonnx(output / f"{name}.onnx", "digits_mlp_qat_binary").save(shipped)
        print(f"{name}: {100 * test_accuracy:.2f}% on {len(split[1])} test images (Brevitas, "
              f"PyTorch), trained in {time.monotonic() - started:.0f} s")
    accuracy_path = output / ACCURACY_FILE
    recorded = json.loads(accuracy_path.read_text()) if accuracy_path.is_file() else {}
    accuracy_path.write_text(json.dumps(recorded | results, indent=2, sort_keys=True) + "\n")
    return results


if __name__ == "__main__":
    import sys
    main(names=tuple(sys.argv[1:]) or tuple(NETWORKS))
