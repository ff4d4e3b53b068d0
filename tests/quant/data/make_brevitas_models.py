"""Write the small Brevitas networks the QONNX tests import (needs torch and brevitas, which
the tests themselves do not):

* ``brevitas_mlp_tensor.onnx`` (per-tensor weight scales) and ``brevitas_mlp_channel.onnx``
  (per-channel), both 64 -> 32 -> 16 -> 10 with an 8-bit signed input quantizer, 4-bit
  weights, Int32 biases, a BatchNorm1d with every third gamma negated, 4-bit QuantReLUs;
* ``brevitas_cnn.onnx``: (1, 8, 8) images, conv 3x3 pad 1 (1 -> 8) + BatchNorm2d (every
  other gamma negated) + 4-bit QuantReLU + max pool 2, depthwise conv 3x3 + 4-bit QuantReLU,
  flatten, linear 32 -> 10; 4-bit per-channel weights, Int32 biases.

All scales are float (not powers of two). The weights are PyTorch's seeded initialization and
the batch statistics come from five random batches: the networks are untrained, which is
enough to compare arithmetic.

Run from this folder: ``python make_brevitas_models.py`` (torch 2.13, brevitas 0.13.4,
onnxoptimizer).
"""

from pathlib import Path

import onnx
import torch
import torch.nn as nn
from brevitas import nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import Int8WeightPerChannelFloat, Int8WeightPerTensorFloat, Int32Bias


class MLP(nn.Module):
    def __init__(self, weight_quant):
        super().__init__()
        linear = {"bias": True, "weight_quant": weight_quant, "weight_bit_width": 4,
                  "bias_quant": Int32Bias}
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.fc1 = qnn.QuantLinear(64, 32, **linear)
        self.bn1 = nn.BatchNorm1d(32)
        self.relu1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.fc2 = qnn.QuantLinear(32, 16, **linear)
        self.relu2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.fc3 = qnn.QuantLinear(16, 10, **linear)

    def forward(self, x):
        x = self.relu1(self.bn1(self.fc1(self.inp(x))))
        return self.fc3(self.relu2(self.fc2(x)))


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        weights = {"weight_quant": Int8WeightPerChannelFloat, "weight_bit_width": 4,
                   "bias_quant": Int32Bias}
        self.inp = qnn.QuantIdentity(bit_width=8, return_quant_tensor=True)
        self.conv1 = qnn.QuantConv2d(1, 8, 3, padding=1, **weights)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = qnn.QuantConv2d(8, 8, 3, groups=8, **weights)
        self.relu2 = qnn.QuantReLU(bit_width=4, return_quant_tensor=True)
        self.fc = qnn.QuantLinear(8 * 2 * 2, 10, **weights)

    def forward(self, x):
        x = self.pool1(self.relu1(self.bn1(self.conv1(self.inp(x)))))
        return self.fc(torch.flatten(self.relu2(self.conv2(x)), 1))


def export(name, model, shape, batchnorm, negate):
    """Seed, gather batch statistics, negate some gammas, export ``model`` to NAME.onnx."""
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(256, *shape))
        batchnorm.weight[::negate] *= -1
    model.eval()
    path = Path(f"{name}.onnx")
    export_qonnx(model, input_t=torch.randn(1, *shape), export_path=str(path))
    # One self-contained file (torch writes the weights beside it), without doc strings.
    exported = onnx.load(str(path))
    for node in exported.graph.node:
        node.doc_string = ""
    Path(f"{path}.data").unlink(missing_ok=True)
    onnx.save(exported, str(path), save_as_external_data=False)


def main():
    for name, weight_quant in (("tensor", Int8WeightPerTensorFloat),
                               ("channel", Int8WeightPerChannelFloat)):
        torch.manual_seed(0)
        model = MLP(weight_quant)
        export(f"brevitas_mlp_{name}", model, (64,), model.bn1, 3)
    torch.manual_seed(1)
    model = CNN()
    export("brevitas_cnn", model, (1, 8, 8), model.bn1, 2)


if __name__ == "__main__":
    main()
