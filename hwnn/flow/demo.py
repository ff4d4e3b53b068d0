"""``hwnn demo``: the whole flow on scikit-learn's digits, with nothing downloaded.

Train an MLP on the 8x8 digits and load the small CNN shipped with hwnn (:data:`DIGITS_CNN`,
trained in NumPy by ``examples/train_digits_cnn.py`` on the same split), quantize each as
:data:`DEMO_ROWS` says (each with int8 weights and uint8 activations), load the binary MLP
trained quantization-aware with Brevitas (:data:`DIGITS_QAT_BINARY`; post-training
quantization to binary or ternary loses far more, see the README), compile each to a dataflow
design, stream the whole test set through the Verilog under cocotb, and print float / golden /
RTL accuracy next to the measured cycles per inference, latency, lanes and weight bits. Each
design folder keeps its simulation's logs, not the simulator's build (some 150 MB per design
with Verilator).
"""

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_ROWS", "DIGITS_CNN", "DIGITS_QAT_BINARY", "DemoRow", "demo_table",
           "digits_split", "run_demo", "train_digits_mlp"]

#: (model, weights, activations) of the demo's designs, in the table's order.
DEMO_ROWS = (("MLP", "int8", "uint8"), ("CNN", "int8", "uint8"))

#: The float CNN of the demo, in the ``.npz`` layout of :func:`hwnn.quant.load_npz` (inputs
#: (1, 8, 8) channels first): conv 3x3 1->8 padding 1, ReLU, max pool 2, conv 3x3 8->8
#: padding 1, ReLU, max pool 2, dense 32->10; trained by ``examples/train_digits_cnn.py`` on
#: the split of :func:`train_digits_mlp` with seed 0 (with another seed the demo's test set
#: holds images the CNN was trained on).
DIGITS_CNN = Path(__file__).with_name("digits_cnn.npz")

#: The binary MLP of ``examples/qat/binary_mlp.onnx`` (64 -> 64 -> 64 -> 10, binary weights
#: and activations, 8-bit input; trained quantization-aware with Brevitas by
#: ``examples/train_qat_digits.py`` on the split of :func:`digits_split`), imported by
#: :func:`hwnn.quant.load_qonnx` and saved as an hwnn network, which the demo reads without
#: onnx or qonnx. It has no float model: its ``float`` column is empty.
DIGITS_QAT_BINARY = Path(__file__).with_name("digits_qat_binary.hwnn.npz")


def digits_split(seed=0):
    """The demo's split of scikit-learn's digits: ``(x_train, x_test, y_train, y_test)``, 70%
    / 30% stratified (``random_state=seed``), pixels scaled to 0..1 as (N, 64) vectors (the
    images are ``x.reshape(-1, 1, 8, 8)``)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return tuple(train_test_split(x / 16.0, y, test_size=0.3, random_state=seed, stratify=y))


def train_digits_mlp(seed=0, hidden=(64, 32)):
    """Train an MLP on the training part of :func:`digits_split`.

    Returns ``(model, (x_train, x_test, y_train, y_test))``.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    split = digits_split(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden, max_iter=300, random_state=seed).fit(split[0], split[2])
    return model, tuple(split)


@dataclass(frozen=True)
class DemoRow:
    """Results of one model (``"MLP"``, ``"CNN"`` or ``"MLP-QAT"``) quantized with one
    scheme (``float_accuracy`` None when it has no float model)."""
    model:           str
    scheme:          str
    float_accuracy:  float | None
    golden_accuracy: float
    rtl_accuracy:    float
    mismatches:      int
    cycles:          float | None
    ideal_cycles:    int
    latency:         int | None
    lanes:           int
    weight_bits:     int
    design:          Path


def run_demo(out_dir="hwnn-demo", *, simulator="verilator", max_lanes=128, seed=0,
             log=print) -> list[DemoRow]:
    """Run the demo, writing designs under ``out_dir``; return one row per entry of
    :data:`DEMO_ROWS`, then the row of :data:`DIGITS_QAT_BINARY` (model ``"MLP-QAT"``)."""
    from ..ir import Network
    from ..quant import from_sklearn, load_npz

    out_dir = Path(out_dir)
    started = time.monotonic()
    log("training a 64-64-32-10 MLP on scikit-learn's 8x8 digits ...")
    model, (x_train, x_test, _, y_test) = train_digits_mlp(seed)
    networks = {"MLP": from_sklearn(model), "CNN": load_npz(DIGITS_CNN)}
    rows = [_demo_row(model_name, networks[model_name], weights, acts, (x_train, x_test, y_test),
                      out_dir / f"digits_{model_name.lower()}_{weights}_{acts}",
                      simulator=simulator, max_lanes=max_lanes, log=log)
            for model_name, weights, acts in DEMO_ROWS]
    rows.append(_design_row("MLP-QAT", "binary/binary", Network.load(DIGITS_QAT_BINARY), None,
                            (x_test, y_test), out_dir / "digits_mlp_qat_binary",
                            simulator=simulator, max_lanes=max_lanes, log=log))
    log(f"done in {time.monotonic() - started:.0f} s")
    return rows


def _demo_row(model_name, network, weights, acts, split, folder, *, simulator, max_lanes,
              log) -> DemoRow:
    """One :class:`DemoRow`: the float ``network``'s accuracy, then ``network`` quantized
    with ``weights`` / ``acts`` on the training images and run as :func:`_design_row` says.
    ``split`` is ``(x_train, x_test, y_test)``, images as the float network takes them
    (:meth:`FloatNetwork.check_inputs`)."""
    from ..quant import QuantOptions, quantize_network
    from .report import float_predictions

    x_train, x_test, y_test = split
    scheme = f"{weights}/{acts}"
    log(f"[{model_name} {scheme}] quantizing ...")
    quantized = quantize_network(network, x_train, QuantOptions(weights=weights, acts=acts),
                                 name=folder.name)
    float_accuracy = float((float_predictions(network, x_test) == y_test).mean())
    return _design_row(model_name, scheme, quantized, float_accuracy,
                       (network.check_inputs(x_test), y_test), folder, simulator=simulator,
                       max_lanes=max_lanes, log=log)


def _design_row(model_name, scheme, quantized, float_accuracy, test, folder, *, simulator,
                max_lanes, log) -> DemoRow:
    """The :class:`DemoRow` of the quantized network ``quantized``: compiled into ``folder``
    and run on the test set ``test`` = ``(x_test, y_test)`` (real inputs as
    :meth:`Network.quantize_input` takes them) by the golden model and the RTL."""
    from ..sim.golden import run_network
    from ..sim.simulate import simulate
    from .generate import earlier_results, generate, load_design, replacement_note
    from .report import class_decisions

    x_test, y_test = test
    label = f"{model_name} {scheme}"
    log(f"[{label}] compiling a dataflow design (at most {max_lanes} lanes) ...")
    earlier = earlier_results(folder)
    design = load_design(generate(quantized, folder, max_lanes=max_lanes))
    if note := replacement_note(design.path, earlier):
        log(f"[{label}] {note}")
    codes = quantized.quantize_input(x_test).reshape(len(x_test), -1)
    golden = run_network(quantized, codes)
    log(f"[{label}] simulating {len(codes)} test images on the RTL with {simulator} ...")
    result = simulate(design, codes, simulator=simulator, keep_build=False,
                      log=lambda line: log(f"[{label}] {line}"))

    def accuracy(outputs):
        return float((class_decisions(quantized.dequantize_output(outputs)) == y_test).mean())

    return DemoRow(model_name, scheme, float_accuracy, accuracy(golden),
                   accuracy(result.outputs), len(result.mismatches),
                   result.cycles_per_inference, result.expected_cycles, result.latency,
                   design.manifest["lanes"], design.manifest["weight_bits"], design.path)


def demo_table(rows) -> str:
    """The demo's result table."""
    from .report import format_table
    return format_table(
        ("model", "scheme", "float", "golden", "RTL", "mismatches", "cycles/inf", "ideal",
         "latency", "lanes", "weight bits"),
        [(row.model, row.scheme,
          "-" if row.float_accuracy is None else f"{100 * row.float_accuracy:.2f}%",
          f"{100 * row.golden_accuracy:.2f}%", f"{100 * row.rtl_accuracy:.2f}%", row.mismatches,
          "-" if row.cycles is None else f"{row.cycles:.1f}", row.ideal_cycles,
          "-" if row.latency is None else row.latency, row.lanes, row.weight_bits)
         for row in rows], right=set(range(2, 11)))
