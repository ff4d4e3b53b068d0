"""``hwnn demo``: the whole flow on scikit-learn's digits, with nothing downloaded.

Train an MLP on the 8x8 digits, quantize it (int8 weights with uint8 activations, and ternary
weights with 4-bit activations), compile each to a dataflow design, stream the whole test set
through the Verilog under cocotb, and print float / golden / RTL accuracy next to the measured
cycles per inference, latency, lanes and weight bits. Each design folder keeps its
simulation's logs, not the simulator's build (some 150 MB per design with Verilator).
"""

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEMO_SCHEMES", "DemoRow", "demo_table", "run_demo", "train_digits_mlp"]

#: (weights, activations) of the demo's two designs.
DEMO_SCHEMES = (("int8", "uint8"), ("ternary", "uint4"))


def train_digits_mlp(seed=0, hidden=(64, 32)):
    """Train an MLP on 70% of scikit-learn's digits (pixels scaled to 0..1).

    Returns ``(model, (x_train, x_test, y_train, y_test))``.
    """
    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    x, y = load_digits(return_X_y=True)
    x = x / 16.0
    split = train_test_split(x, y, test_size=0.3, random_state=seed, stratify=y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MLPClassifier(hidden, max_iter=300, random_state=seed).fit(split[0], split[2])
    return model, tuple(split)


@dataclass(frozen=True)
class DemoRow:
    """Results of one quantization scheme."""
    scheme:          str
    float_accuracy:  float
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
    """Run the demo, writing designs under ``out_dir``; return one row per scheme."""
    from .generate import earlier_results, generate, load_design, replacement_note
    from ..quant import QuantOptions, from_sklearn, quantize_network
    from .report import class_decisions, float_predictions
    from ..sim.golden import run_network
    from ..sim.simulate import simulate

    out_dir = Path(out_dir)
    started = time.monotonic()
    log("training a 64-64-32-10 MLP on scikit-learn's 8x8 digits ...")
    model, (x_train, x_test, _, y_test) = train_digits_mlp(seed)
    network = from_sklearn(model)
    float_accuracy = float((float_predictions(network, x_test) == y_test).mean())
    rows = []
    for weights, acts in DEMO_SCHEMES:
        scheme = f"{weights}/{acts}"
        name = f"digits_{weights}_{acts}"
        log(f"[{scheme}] quantizing, compiling a dataflow design (at most {max_lanes} lanes) "
            f"...")
        quantized = quantize_network(network, x_train, QuantOptions(weights=weights, acts=acts),
                                     name=name)
        earlier = earlier_results(out_dir / name)
        design = load_design(generate(quantized, out_dir / name, max_lanes=max_lanes))
        if note := replacement_note(design.path, earlier):
            log(f"[{scheme}] {note}")
        codes = quantized.quantize_input(x_test)
        golden = run_network(quantized, codes)
        log(f"[{scheme}] simulating {len(codes)} test images on the RTL with {simulator} ...")
        result = simulate(design, codes, simulator=simulator, keep_build=False,
                          log=lambda line, scheme=scheme: log(f"[{scheme}] {line}"))

        def accuracy(outputs, quantized=quantized):
            logits = quantized.dequantize_output(outputs)
            return float((class_decisions(logits) == y_test).mean())

        rows.append(DemoRow(scheme, float_accuracy, accuracy(golden), accuracy(result.outputs),
                            len(result.mismatches), result.cycles_per_inference,
                            result.expected_cycles, result.latency, design.manifest["lanes"],
                            design.manifest["weight_bits"], design.path))
    log(f"done in {time.monotonic() - started:.0f} s")
    return rows


def demo_table(rows) -> str:
    """The demo's result table."""
    from .report import format_table
    return format_table(
        ("scheme", "float", "golden", "RTL", "mismatches", "cycles/inf", "ideal", "latency",
         "lanes", "weight bits"),
        [(row.scheme, f"{100 * row.float_accuracy:.2f}%", f"{100 * row.golden_accuracy:.2f}%",
          f"{100 * row.rtl_accuracy:.2f}%", row.mismatches,
          "-" if row.cycles is None else f"{row.cycles:.1f}", row.ideal_cycles,
          "-" if row.latency is None else row.latency, row.lanes, row.weight_bits)
         for row in rows], right=set(range(1, 10)))
