"""Train a small float CNN on the 8x8 digits in pure NumPy and write it as an ONNX file and
as the ``.npz`` that ``hwnn demo`` ships.

Run it with ``python examples/train_digits_cnn.py`` (needs ``hwnn[onnx]``; no training
framework). The digits ship with scikit-learn, so nothing is downloaded. It trains

    conv 3x3, 1 -> 8 channels, padding 1, ReLU, max pool 2    8x8x1 -> 8x8x8 -> 4x4x8
    conv 3x3, 8 -> 8 channels, padding 1, ReLU, max pool 2    4x4x8 -> 4x4x8 -> 2x2x8
    flatten (C, H, W), dense 32 -> 10

on the demo's split of the digits (pixels / 16, 70% train / 30% test, stratified,
``random_state=0``, as :func:`hwnn.flow.demo.train_digits_mlp`), with softmax cross-entropy
and Adam, from a fixed seed; rounds the weights to float32 once and writes them twice:
``examples/digits_cnn.onnx``, laid out as ``torch.onnx.export`` writes a PyTorch model
(input ``x`` of shape (N, 1, 8, 8), ``Conv``, ``Relu``, ``MaxPool``, ``Flatten``, ``Gemm``,
float32 initializers), and ``hwnn/flow/digits_cnn.npz`` (:data:`hwnn.flow.demo.DIGITS_CNN`,
the layout of :func:`hwnn.quant.load_npz`, which ``hwnn demo`` reads without ``onnx``); it
prints the float test accuracy of each file, read back. Quantize it with, for example::

    hwnn quantize examples/digits_cnn.onnx --weights int8 --acts uint8 \\
        --calib calib.npy --test test.npz -o digits_cnn.hwnn.npz

(:func:`digits_split` gives the arrays of ``calib.npy``, the training images, and
``test.npz``, the test images ``x`` and labels ``y``). Training is deterministic: rerunning
the script rewrites the same files, byte for byte, on the same machine and NumPy build (a
different BLAS may round the float sums differently).
"""

import time
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

#: Output channels of the two convolutions. (4, 8) reaches 96.3% float but 93.5% with int4
#: weights; (8, 8) 98.1% and 94.6%, in about 6 s on one core.
CHANNELS = (8, 8)
#: Training settings: passes over the training set, batch size, Adam's step size, seed.
EPOCHS, BATCH, LEARNING_RATE, SEED = 60, 32, 1e-2, 0
#: Where the trained model goes as ONNX (the .npz goes to hwnn.flow.demo.DIGITS_CNN).
OUTPUT = Path(__file__).with_name("digits_cnn.onnx")


def digits_split():
    """The demo's split of sklearn's digits: ``(x_train, x_test, y_train, y_test)``, images
    (N, 1, 8, 8) in [0, 1] (PyTorch's layout) and labels 0..9."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    images, labels = load_digits(return_X_y=True)
    images = images.reshape(-1, 1, 8, 8) / 16.0
    return tuple(train_test_split(images, labels, test_size=0.3, random_state=0,
                                  stratify=labels))


# Layers on channels-last batches (N, H, W, C); weights in PyTorch's order. Each forward
# function returns its output and what its backward function needs.

def conv_forward(x, weight, bias):
    """3x3 convolution with padding 1: ``x`` (N, H, W, C), ``weight`` (O, C, 3, 3)."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    # (N, H, W, C, 3, 3) windows, flattened in the (C, ky, kx) order of a weight row.
    columns = sliding_window_view(padded, (3, 3), axis=(1, 2)).reshape(*x.shape[:3], -1)
    return columns @ weight.reshape(len(weight), -1).T + bias, (x.shape, columns)


def conv_backward(grad, weight, cache):
    """Gradients of the input, weight and bias of :func:`conv_forward`."""
    (n, height, width, channels), columns = cache
    grad_weight = (grad.reshape(-1, grad.shape[-1]).T @ columns.reshape(-1, columns.shape[-1]))
    grad_columns = (grad @ weight.reshape(len(weight), -1)).reshape(n, height, width, channels,
                                                                    3, 3)
    grad_padded = np.zeros((n, height + 2, width + 2, channels))
    for ky in range(3):
        for kx in range(3):
            grad_padded[:, ky:ky + height, kx:kx + width] += grad_columns[..., ky, kx]
    return (grad_padded[:, 1:-1, 1:-1], grad_weight.reshape(weight.shape),
            grad.sum(axis=(0, 1, 2)))


def pool_forward(x):
    """2x2 max pool with stride 2 of ``x`` (N, H, W, C)."""
    n, height, width, channels = x.shape
    blocks = x.reshape(n, height // 2, 2, width // 2, 2, channels)
    out = blocks.max(axis=(2, 4))
    return out, blocks == out[:, :, None, :, None]


def pool_backward(grad, mask):
    """Gradient of the input of :func:`pool_forward`, to every maximum of a window (ties
    come from ReLU zeros, whose gradient ReLU blocks anyway)."""
    return (mask * grad[:, :, None, :, None]).reshape(len(grad), mask.shape[1] * 2,
                                                      mask.shape[3] * 2, -1)


def forward(params, x, *, cache=False):
    """Logits of images ``x`` (N, 1, 8, 8); with ``cache``, also what :func:`backward`
    needs."""
    h = x.transpose(0, 2, 3, 1)
    caches = []
    for index in range(2):
        z, conv_cache = conv_forward(h, params[f"conv{index}.weight"],
                                     params[f"conv{index}.bias"])
        h, mask = pool_forward(np.maximum(z, 0))
        caches.append((conv_cache, z > 0, mask))
    features = h.transpose(0, 3, 1, 2).reshape(len(x), -1)   # PyTorch flattens (C, H, W)
    logits = features @ params["fc.weight"].T + params["fc.bias"]
    return (logits, (caches, h.shape, features)) if cache else logits


def backward(params, grad_logits, caches):
    """Gradients of all parameters, given the gradient of the logits."""
    caches, shape, features = caches
    grads = {"fc.weight": grad_logits.T @ features, "fc.bias": grad_logits.sum(axis=0)}
    grad = (grad_logits @ params["fc.weight"]).reshape(shape[0], shape[3], *shape[1:3])
    grad = grad.transpose(0, 2, 3, 1)
    for index in (1, 0):
        conv_cache, active, mask = caches[index]
        grad = pool_backward(grad, mask) * active
        grad, grads[f"conv{index}.weight"], grads[f"conv{index}.bias"] = conv_backward(
            grad, params[f"conv{index}.weight"], conv_cache)
    return grads


def initial_params(rng):
    """He-initialized weights, zero biases."""
    shapes = {"conv0.weight": (CHANNELS[0], 1, 3, 3),
              "conv1.weight": (CHANNELS[1], CHANNELS[0], 3, 3),
              "fc.weight": (10, CHANNELS[1] * 2 * 2)}
    params = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shape[1:]))
        params[name] = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        params[name.replace("weight", "bias")] = np.zeros(shape[0])
    return params


def train(x, y, seed=SEED):
    """Parameters of the CNN trained on images ``x`` and labels ``y`` (Adam, softmax
    cross-entropy, shuffled mini-batches)."""
    rng = np.random.default_rng(seed)
    params = initial_params(rng)
    moments = {name: (np.zeros_like(value), np.zeros_like(value))
               for name, value in params.items()}
    beta1, beta2, step = 0.9, 0.999, 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(x))
        for start in range(0, len(x), BATCH):
            batch = order[start:start + BATCH]
            logits, caches = forward(params, x[batch], cache=True)
            probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
            probabilities /= probabilities.sum(axis=1, keepdims=True)
            probabilities[np.arange(len(batch)), y[batch]] -= 1.0
            grads = backward(params, probabilities / len(batch), caches)
            step += 1
            for name, grad in grads.items():
                first, second = moments[name]
                first += (1 - beta1) * (grad - first)
                second += (1 - beta2) * (grad * grad - second)
                params[name] -= (LEARNING_RATE * first / (1 - beta1 ** step)
                                 / (np.sqrt(second / (1 - beta2 ** step)) + 1e-8))
    return params


def float_network(params):
    """The trained CNN as an hwnn float network (channels last inside, inputs channels
    first)."""
    from hwnn.ir import chw_to_hwc_columns
    from hwnn.quant import FloatConv2d, FloatDense, FloatMaxPool2d, FloatNetwork

    layers, size, channels = [], (8, 8), 1
    for index in range(2):
        weight = params[f"conv{index}.weight"]
        layers += [FloatConv2d(weight.transpose(0, 2, 3, 1), params[f"conv{index}.bias"],
                               "relu", in_size=size, padding=(1, 1, 1, 1)),
                   FloatMaxPool2d(size, len(weight), (2, 2))]
        size, channels = (size[0] // 2, size[1] // 2), len(weight)
    layers.append(FloatDense(chw_to_hwc_columns(params["fc.weight"], (*size, channels)),
                             params["fc.bias"]))
    return FloatNetwork(tuple(layers), input_layout="chw")


def main(output=OUTPUT, npz_output=None) -> float:
    """Train, write the ONNX file ``output`` and the ``.npz`` file ``npz_output`` (default
    :data:`hwnn.flow.demo.DIGITS_CNN`) with the same float32 weights; return the test
    accuracy of the model they hold."""
    from hwnn.flow.demo import DIGITS_CNN
    from hwnn.quant import load_npz, save_npz
    from hwnn.quant.onnx_export import save_onnx
    from hwnn.quant.onnx_frontend import load_onnx

    x_train, x_test, y_train, y_test = digits_split()
    start = time.perf_counter()
    params = train(x_train, y_train)
    seconds = time.perf_counter() - start
    # ONNX holds float32: round once, so that both files hold exactly the same weights.
    network = float_network({name: value.astype(np.float32) for name, value in params.items()})
    print(f"trained in {seconds:.1f} s")
    accuracies = []
    for path, load in ((save_onnx(network, output, name="digits_cnn",
                                  producer="hwnn examples/train_digits_cnn.py"), load_onnx),
                       (save_npz(network, npz_output or DIGITS_CNN), load_npz)):
        # The file's weights, read back as hwnn reads them.
        accuracies.append(float(np.mean(load(path).forward(x_test).argmax(axis=1) == y_test)))
        print(f"wrote {path} ({path.stat().st_size} bytes); float test accuracy "
              f"{100 * accuracies[-1]:.2f}% on {len(y_test)} digits")
    if accuracies[0] != accuracies[1]:
        raise AssertionError(f"the ONNX and .npz files disagree: {accuracies}")
    return accuracies[0]


if __name__ == "__main__":
    main()
