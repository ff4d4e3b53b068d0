"""hwnn's hardwired layers against da4ml and hls4ml: the same integer weights, tools, device.

The networks: the digits MLP quantized four ways (int8, int4 and ternary weights, and binary
weights with binary activations) and, with ``--whole``, the demo's digits CNN (int8/uint8).

By default each MLP's first layer's constant matrix-vector product (the accumulators, no
output stage; ``--outputs N``: its first N outputs) is built one vector per cycle with no DSP
block:

- by hwnn: a one-layer network of those weights compiled with ``--fold hardwired``
  (:mod:`hwnn.rtl.cmvm`; the dataflow unit's stream interface, accumulator register and
  output FIFO come with it), and beside it hwnn's folded designs of ``--folds``;
- by da4ml (``pip install "hwnn[peers]"``; optional, like hls4ml: without them only hwnn's
  rows are printed): its tracer (``FixedVariableArray`` of the inputs' ranges times the
  matrix, which runs its CMVM solver; ``comb_trace``) and Verilog (``RTLModel``), pipelined
  at ``--cutoff`` (da4ml's latency cutoff, in its adder-delay units).

With ``--whole`` the subjects are the whole networks, every layer with its output stage
(thresholds, requantization, max pools): hwnn ``--fold hardwired`` (a convolution a whole
window a cycle, so the CNN takes an image in as many cycles as it has pixels) and ``--fold
auto`` within each of ``--max-lanes``; da4ml one inference per cycle, its tracer carrying
every layer (a convolution's product at every output pixel, thresholds as comparisons
summed, requantization as shifts and adds, clamps and pools by its comparisons).

First every design is checked against hwnn's golden model on random and extreme input
vectors: hwnn's Verilog and da4ml's in Icarus, and on first layers hls4ml's C++ emulation
(the layer as a QONNX graph through hls4ml's ONNX frontend, compiled with g++); a design
that differs is reported and not measured. Then all go through hwnn's register harness
(serial input, XOR-folded output) into YoWASP Yosys and nextpnr on the same device: LUT4s
(plain), carry cells, LUT4-equivalents (a CCU2C is two, a LUT RAM cell two) per product
(multiplication by a nonzero weight per inference), flip-flops (the harness's included), DSP
blocks, block RAM, Fmax, cycles per inference, latency (measured in Icarus for hwnn),
inferences per cycle per kLUT4-equivalent, inferences per second at Fmax and per
kLUT4-equivalent. nextpnr does not finish a whole 64 x 64 layer in useful time (README):
place and route ``--outputs 16`` (int8: 8), or measure whole layers and networks with
``--no-pnr``. Run it from the repository root:

    python benchmarks/peers.py [--device ecp5-85f] [--only NAME] [--outputs N]
                               [--folds PxS ...] [--cutoff 2] [--no-pnr]
    python benchmarks/peers.py --whole [--max-lanes N ...] [--only NAME] [--no-pnr]
"""

import argparse
import subprocess
import sys
import tempfile
from fractions import Fraction
from pathlib import Path

import numpy as np

from hwnn.flow.report import format_table

#: Random input vectors every design is checked on (extreme ones come with them).
CHECK_VECTORS = 64

#: hwnn's folded designs of a first layer measured by default beside the fully parallel ones
#: (PxS).
FOLDS = ("8x8", "16x8")

#: With ``--whole``, hwnn's folded designs measured by default beside the hardwired ones:
#: ``--fold auto`` within these lane budgets.
MAX_LANES = (64, 256)


def networks():
    """``{name: network}``: the digits MLP quantized four ways, and the demo's digits CNN with
    int8 weights and uint8 activations."""
    from hwnn.flow.demo import DIGITS_CNN, train_digits_mlp
    from hwnn.quant import QuantOptions, from_sklearn, load_npz, quantize_network
    model, (x_train, *_rest) = train_digits_mlp(0)
    float_network = from_sklearn(model)
    schemes = {"digits_int8": ("int8", "uint8"), "digits_int4": ("int4", "uint4"),
               "digits_ternary": ("ternary", "uint4"), "digits_binary": ("binary", "binary")}
    out = {name: quantize_network(float_network, x_train,
                                  QuantOptions(weights=weights, acts=acts), name=name)
           for name, (weights, acts) in schemes.items()}
    cnn = load_npz(DIGITS_CNN)
    out["digits_cnn_int8"] = quantize_network(cnn, x_train,
                                              QuantOptions(weights="int8", acts="uint8"),
                                              name="digits_cnn_int8")
    return out


def accumulator_layer(network, outputs=None):
    """``network``'s first layer alone, its output the raw accumulators (no bias, no stage);
    with ``outputs``, only its first ``outputs`` output channels."""
    from hwnn.ir import Dense, Network, TensorFormat, accumulator_range
    from hwnn.ir.formats import Format, signed_bits_for
    layer = network.layers[0]
    weights = layer.weights[:outputs]
    bias = np.zeros(len(weights), dtype=layer.bias.dtype)
    lo, hi = accumulator_range(weights, bias, layer.input.format)
    output = TensorFormat(Format.int(signed_bits_for(lo.min(), hi.max())), np.ones(len(weights)))
    return Network(f"{network.name}_l0", (Dense(layer.name, weights, layer.weight_format,
                                                np.ones(len(weights)), bias, layer.input,
                                                output, None),))


def input_vectors(network, count, seed=0):
    """``count`` input vectors of ``network``: random, all-lowest, all-highest, and where the
    first layer is dense, for each of its first outputs the two that drive its accumulator to
    its ends."""
    fmt, size = network.input.format, network.in_features
    rng = np.random.default_rng(seed)
    lo, hi = fmt.level_value(0), fmt.level_value(fmt.levels - 1)
    vectors = [fmt.level_value(rng.integers(0, fmt.levels, size=size)) for _ in range(count)]
    vectors += [np.full(size, lo), np.full(size, hi)]
    first = network.layers[0]
    if first.kind == "dense":
        for row in first.weights[:8]:
            vectors += [np.where(row > 0, hi, lo), np.where(row > 0, lo, hi)]
    return np.array(vectors, dtype=np.int64)


def products(network) -> int:
    """Multiplications by a nonzero weight per inference (a convolution's at every output
    pixel)."""
    total = 0
    for layer in network.layers:
        if layer.kind == "dense":
            total += int(np.count_nonzero(layer.weights))
        elif layer.kind == "conv2d":
            total += int(np.count_nonzero(layer.weights)) * int(np.prod(layer.out_size))
    return total


# da4ml ----------------------------------------------------------------------------------------

def _value_range(fmt):
    """``(lowest, highest, step)`` of a format's values (binary: -1 and +1)."""
    if fmt.kind == "bipolar":
        return -1.0, 1.0, 2.0
    return float(fmt.min_value), float(fmt.max_value), float(fmt.step)


def _tree(terms, combine=lambda a, b: a + b):
    """``terms`` (da4ml variables or numbers) combined pairwise as a balanced tree: their sum,
    or with another ``combine`` (e.g. the largest)."""
    terms = list(terms)
    while len(terms) > 1:
        pairs = zip(terms[0:len(terms) - 1:2], terms[1::2], strict=True)
        terms = [combine(a, b) for a, b in pairs] + terms[len(terms) // 2 * 2:]
    return terms[0]


def _times(value, constant: int):
    """``value * constant`` as da4ml adders over ``value``'s shifts by the constant's signed
    digits (da4ml 0.6.0's own ``value * constant`` wrapped around on some requantization
    multipliers: 47891 on a 20-bit accumulator gave products 2**36 off)."""
    from hwnn.rtl.arith import signed_digits
    terms = [(value << shift) if sign > 0 else -(value << shift)
             for shift, sign in signed_digits(constant)]
    return _tree(terms)


def _clamp(value, lo: int, hi: int):
    """``value`` clamped to ``lo..hi`` by two ReLUs, then declared an integer of that range
    (exact: every value is in it). da4ml 0.6.0's own ``max_of``/``min_of`` against a constant
    (a multiplexer on the difference's sign) gave 0 instead of 255 for some values past 255 of
    a requantized accumulator whose scale factor da4ml had taken to 2**-32 (and so does its
    ``quantize(..., "SAT")``), and ReLU alone leaves da4ml a wider range than the clamp's."""
    low = (value - lo).relu() + lo
    clamped = low - (low - hi).relu()
    signed = lo < 0
    bits = max(hi.bit_length(), (-lo - 1).bit_length() if signed else 0)
    return clamped.quantize(int(signed), bits, 0, "WRAP", "TRN")


def _stage(layer, sums):
    """da4ml variables of ``layer``'s output values from its accumulators ``sums`` (every
    output pixel's channels in turn): the golden model's
    :func:`~hwnn.sim.golden.output_stage` (thresholds: the count of those reached, as a tree
    of comparisons; requantization: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo,
    hi)``)."""
    from hwnn.ir import Requant, Thresholds
    stage, fmt = layer.stage, layer.output.format
    channels = layer.output_shape[-1]

    def per_output(value, shape=()):              # a value per channel, repeated per pixel
        value = np.broadcast_to(value, (channels, *shape))
        return np.tile(value, (len(sums) // channels,) + (1,) * len(shape))

    if isinstance(stage, Thresholds):
        lowest, _, step = _value_range(fmt)
        values = per_output(stage.values, np.shape(stage.values)[-1:])
        return [_tree([(acc <= float(t)) if down else (acc >= float(t)) for t in row])
                * step + lowest for acc, row, down in
                zip(sums, values, per_output(stage.descending), strict=True)]
    if isinstance(stage, Requant):
        outputs = []
        for acc, multiplier, shift, zero_point in zip(
                sums, *(per_output(value) for value in
                        (stage.multiplier, stage.shift, stage.zero_point)), strict=True):
            scaled = _times(acc, int(multiplier))
            if shift:
                scaled = ((scaled + (1 << (int(shift) - 1))) >> int(shift)).quantize(
                    1, 62, 0, "WRAP", "TRN")                              # floor
            outputs.append(_clamp(scaled + int(zero_point), int(stage.lo), int(stage.hi)))
        return outputs
    return list(sums)


def _trace_layer(layer, values, shape):
    """da4ml variables of ``layer``'s outputs (flattened) from its inputs ``values``
    (flattened, of ``shape``): dense and convolutional layers by da4ml's constant
    matrix-vector products (a convolution at every output pixel, as one inference per cycle
    needs), max pools by comparisons, then the output stage."""
    from da4ml.trace import FixedVariableArray

    from hwnn.sim.golden.window import windows

    def matrix_product(inputs, weights):
        return list((FixedVariableArray(np.array(inputs, dtype=object))
                     @ np.asarray(weights, dtype=np.float64).T)._vars)

    if layer.kind == "dense":
        sums = matrix_product(values, layer.weights)
        return _stage(layer, [acc + float(b) if b else acc
                              for acc, b in zip(sums, layer.bias, strict=True)])
    # Windows of indices into ``values`` (-1: padding, the input's zero point), in the golden
    # model's order.
    index = np.arange(len(values)).reshape(shape)
    if layer.kind == "maxpool2d":
        picks = windows(index, layer.kernel, layer.stride)
        taps = picks.reshape(*picks.shape[:-1], -1, shape[-1])
        out = np.empty(taps.shape[:-2] + taps.shape[-1:], dtype=object)
        for position in np.ndindex(out.shape):
            chosen = [values[i] for i in taps[(*position[:-1], slice(None), position[-1])]]
            out[position] = _tree(chosen, lambda a, b: a.max_of(b))
        return list(out.ravel())
    pad = float(layer.input.zero_point)
    picks = windows(index, layer.kernel, layer.stride, layer.padding, -1)
    rows = [[values[i] if i >= 0 else pad for i in window] for window in
            picks.reshape(-1, picks.shape[-1])]
    if layer.depthwise:
        channels, sums = layer.in_channels, []
        for row in rows:
            for c in range(channels):
                sums.append(_tree([x * float(w) for x, w in zip(
                    row[c::channels], layer.weights_matrix[c], strict=True) if w]))
    else:
        sums = [acc for row in rows for acc in matrix_product(row, layer.weights_matrix)]
    bias = np.tile(layer.bias, len(rows))
    return _stage(layer, [acc + float(b) if b else acc
                          for acc, b in zip(sums, bias, strict=True)])


class Da4mlDesign:
    """da4ml's design of ``network`` (one inference per cycle), written to ``folder``: its
    tracer (``FixedVariableArray`` of the inputs' ranges through every layer, :func:`_trace_layer`;
    ``comb_trace``) and Verilog (``RTLModel``, pipelined at ``cutoff``). Members: ``top`` (its
    uniform-width wrapper, ports ``clk``, ``model_inp``, ``model_out``), ``sources``, the
    widths and fixed-point layout of the ports, ``bits`` (binary inputs, taken as bits, 0 for
    -1) and ``latency`` (registers, input to output)."""

    def __init__(self, network, folder, cutoff):
        from da4ml.codegen.rtl.rtl_model import RTLModel, get_io_kifs
        from da4ml.trace import FixedVariableArray, comb_trace
        count = network.in_features
        # Binary inputs come as bits b (0 for -1), as hwnn takes them: the value is 2b - 1.
        self.bits = network.input.format.kind == "bipolar"
        lowest, highest, step = (0.0, 1.0, 1.0) if self.bits else _value_range(
            network.input.format)
        inputs = FixedVariableArray.from_lhs(np.full(count, lowest), np.full(count, highest),
                                             np.full(count, step))
        values = [v * 2 - 1 for v in inputs._vars] if self.bits else list(inputs._vars)
        shape = network.input_shape
        for layer in network.layers:
            values = _trace_layer(layer, values, shape)
            shape = layer.output_shape
        outputs = FixedVariableArray(np.array(values, dtype=object), inputs.solver_options,
                                     hwconf=inputs.hwconf)
        solution = comb_trace(inputs, outputs)
        self.name = "peer"
        model = RTLModel(solution, self.name, folder, latency_cutoff=cutoff)
        model.write()
        self.pipeline = model._pipe if model._pipe is not None else solution
        self.top = f"{self.name}_wrapper"
        src = Path(folder) / "src"
        own = [*sorted(p for p in src.glob("*.v") if p.name != f"{self.name}.v"),
               src / f"{self.name}.v"]
        text = "".join(p.read_text() for p in own)
        # Only the library modules the design instantiates (Icarus cannot read them all).
        self.sources = [p for p in sorted(src.glob("static/*.v")) if f"{p.stem} " in text
                        or f"{p.stem} #" in text] + own
        (k_in, i_in, f_in), (k_out, i_out, f_out) = (
            [np.asarray(row) for row in kifs] for kifs in get_io_kifs(self.pipeline))
        self.in_width = int(max(k_in) + max(i_in) + max(f_in))
        self.in_frac = int(max(f_in))
        self.out_width = int(max(k_out) + max(i_out) + max(f_out))
        self.out_frac = int(max(f_out))
        self.inputs, self.outputs = count, len(values)
        self.latency = (len(self.pipeline.solutions) + 1 if model._pipe is not None else 0)

    def encode(self, vector) -> int:
        """The ``model_inp`` bits of an input vector."""
        word = 0
        for j, value in enumerate(vector):
            value = (int(value) + 1) // 2 if self.bits else int(value)
            field = (value << self.in_frac) & ((1 << self.in_width) - 1)
            word |= field << (j * self.in_width)
        return word

    def decode(self, word) -> list:
        """The output values in ``model_out``'s bits (fixed point: Fractions)."""
        values = []
        for j in range(self.outputs):
            field = (word >> (j * self.out_width)) & ((1 << self.out_width) - 1)
            if field >> (self.out_width - 1):
                field -= 1 << self.out_width
            values.append(Fraction(field, 1 << self.out_frac))
        return values


class NotBitExact(Exception):
    """da4ml's Verilog gave another value than the golden model (the message says where)."""


def check_da4ml(design: Da4mlDesign, vectors, expected, folder):
    """Run ``design``'s Verilog in Icarus on ``vectors`` and compare with ``expected`` (the
    golden model's outputs); raise :class:`NotBitExact` naming the first mismatch (input,
    output, both values)."""
    folder = Path(folder)
    hex_digits = -(-design.inputs * design.in_width // 4)
    (folder / "inputs.hex").write_text("".join(f"{design.encode(v):0{hex_digits}x}\n"
                                               for v in vectors))
    count = len(vectors)
    (folder / "tb.v").write_text(f"""`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [{design.inputs * design.in_width - 1}:0] inp;
  wire [{design.outputs * design.out_width - 1}:0] out;
  reg [{design.inputs * design.in_width - 1}:0] vectors [0:{count - 1}];
  integer i;
  {design.top} dut(.clk(clk), .model_inp(inp), .model_out(out));
  initial begin
    $readmemh("inputs.hex", vectors);
    for (i = 0; i < {count + design.latency + 2}; i = i + 1) begin
      inp = vectors[i < {count} ? i : {count - 1}];
      #1 clk = 1; #1 clk = 0; #1 $display("%h", out);
    end
    $finish;
  end
endmodule
""")
    sources = [str(path) for path in design.sources]
    lines = []
    for command in (["iverilog", "-g2012", "-o", "tb.vvp", "tb.v", *sources],
                    ["vvp", "-n", "tb.vvp"]):
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{command[0]} failed on da4ml's Verilog: "
                               f"{(result.stderr or result.stdout).strip()[-800:]}")
        lines = result.stdout.split()
    # After cycle t the output shows the vector of cycle t - latency + 1.
    outputs = [None if "x" in line.lower() else design.decode(int(line, 16)) for line in lines]
    got = outputs[design.latency - 1:design.latency - 1 + len(expected)]
    if None in got:
        raise NotBitExact(f"input {got.index(None)}: undefined (x) outputs")
    _compare(got, expected)


def da4ml_harness(design: Da4mlDesign, folder) -> Path:
    """One Verilog file: hwnn's register harness around da4ml's wrapper, and its sources."""
    from amaranth import ClockSignal, Instance, Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from hwnn.flow.generate import to_verilog
    from hwnn.rtl.harness import RegisterHarness

    class Peer(wiring.Component):
        def __init__(self):
            super().__init__({"inp": In(design.inputs * design.in_width),
                              "out": Out(design.outputs * design.out_width)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.peer = Instance(design.top, i_clk=ClockSignal(),
                                         i_model_inp=self.inp, o_model_out=self.out)
            return m

    text = to_verilog(RegisterHarness(Peer()), "harness")
    text += "".join(Path(source).read_text() + "\n" for source in design.sources)
    path = Path(folder) / "harness_da4ml.v"
    path.write_text(text)
    return path


# hls4ml ---------------------------------------------------------------------------------------

def qonnx_accumulators(layer):
    """A QONNX model of ``layer``'s accumulators ``x @ W.T``: the input and the weights each
    through a quantizer of their format (``Quant`` at unit scale and zero point, or
    ``BipolarQuant``), then a ``MatMul``."""
    from onnx import TensorProto, helper, numpy_helper
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.util.cleanup import cleanup_model
    domain = "qonnx.custom_op.general"
    constants, nodes = [], []

    def quantizer(name, source, fmt):
        constants.append(numpy_helper.from_array(np.array(1.0, np.float32), f"{name}_scale"))
        if fmt.kind == "bipolar":
            nodes.append(helper.make_node("BipolarQuant", [source, f"{name}_scale"], [name],
                                          domain=domain))
            return
        constants.extend(numpy_helper.from_array(np.array(value, np.float32), f"{name}_{what}")
                         for what, value in (("zero", 0.0), ("bits", float(fmt.bits))))
        nodes.append(helper.make_node(
            "Quant", [source, f"{name}_scale", f"{name}_zero", f"{name}_bits"], [name],
            domain=domain, signed=int(fmt.signed), narrow=int(fmt.narrow),
            rounding_mode="ROUND"))

    constants.append(numpy_helper.from_array(
        np.asarray(layer.weights, dtype=np.float32).T.copy(), "weights"))
    quantizer("x_q", "x", layer.input.format)
    quantizer("w_q", "weights", layer.weight_format)
    nodes.append(helper.make_node("MatMul", ["x_q", "w_q"], ["y"]))
    graph = helper.make_graph(
        nodes, "accumulators",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, layer.in_features])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, layer.out_features])],
        constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid(domain, 1)])
    return cleanup_model(ModelWrapper(model))


def check_hls4ml(layer, vectors, expected, folder):
    """Convert :func:`qonnx_accumulators` with hls4ml's ONNX frontend (Vitis backend, its
    fixed-point types inferred from the quantizers), compile its C++ emulation with g++,
    ``predict`` ``vectors`` and compare with ``expected``; raise :class:`NotBitExact` naming
    the first mismatch. The default precision, which hls4ml gives the input and whatever it
    does not infer (the accumulators after a ``BipolarQuant``), is an integer as wide as the
    accumulators (hls4ml's own default, ``ap_fixed<16,6>``, holds neither uint8 pixels nor
    the sums)."""
    import contextlib
    import io

    import hls4ml
    model = qonnx_accumulators(layer)
    bits = max(layer.output.format.bits, layer.input.format.bits + 1)
    with contextlib.redirect_stdout(io.StringIO()):
        config = hls4ml.utils.config.config_from_onnx_model(
            model, granularity="name", backend="Vitis",
            default_precision=f"fixed<{bits},{bits}>")
        emulation = hls4ml.converters.convert_from_onnx_model(
            model, output_dir=str(Path(folder) / "hls4ml"), backend="Vitis",
            hls_config=config)
        emulation.compile()
        got = np.asarray(emulation.predict(np.asarray(vectors, dtype=np.float64)))
    _compare(got.reshape(len(vectors), -1), expected)


def _compare(got, expected):
    """Raise :class:`NotBitExact` at the first value of ``got`` (vectors x outputs) that is
    not ``expected``'s."""
    for index, (row, want) in enumerate(zip(got, expected, strict=True)):
        if list(row) != [int(v) for v in want]:
            bad = next(j for j, (a, b) in enumerate(zip(row, want, strict=True)) if a != b)
            raise NotBitExact(f"input {index}, output {bad}: expected {int(want[bad])}, got "
                              f"{row[bad]}")


# Rows -----------------------------------------------------------------------------------------

#: The measurement table's columns.
COLUMNS = ("network", "design", "LUT4", "carry", "LUT4 eq", "LUT4 eq / product", "FF", "DSP",
           "BRAM", "Fmax MHz", "cycles / inf", "latency", "inf/cycle per kLUT4 eq", "inf/s",
           "inf/s per kLUT4 eq")


def _row(name, design, report, fmax, cycles, latency, products):
    lut4_eq = report.lut4_equivalent + 2 * report.lutram     # LUT RAM: two LUT4s a cell
    rate = None if fmax is None else fmax * 1e6 / cycles
    return (name, design, report.lut4, report.carry, lut4_eq, f"{lut4_eq / products:.2f}",
            report.ff, report.dsp, report.bram, "-" if fmax is None else f"{fmax:.1f}",
            cycles, latency, f"{1000 / (lut4_eq * cycles):.4f}",
            "-" if rate is None else f"{rate / 1e6:.2f} M",
            "-" if rate is None else f"{rate / (lut4_eq / 1000) / 1e6:.3f} M")


def _implement(verilog, device, pnr):
    """``(report, fmax)`` of a harness: Yosys and nextpnr, or Yosys alone (Fmax None)."""
    from hwnn.tools.synth import DEVICES, place_and_route, synthesize
    if pnr:
        report, fmax, _ = place_and_route(verilog, "harness", device)
        return report, fmax
    return synthesize(verilog, "harness", DEVICES[device][0]), None


def build_hwnn(network, fold, folder):
    """hwnn's design of ``network`` folded as ``fold`` (a LayerFold per layer) in ``folder``."""
    from hwnn.flow.generate import generate, load_design
    return load_design(generate(network, Path(folder), fold=fold))


def check_hwnn(design, vectors) -> int:
    """Run hwnn's Verilog of ``design`` in Icarus on ``vectors`` (its cocotb testbench, which
    compares every output with the golden model); raise :class:`NotBitExact` on a mismatch.
    Returns the latency measured (first input beat to first output beat)."""
    from hwnn.sim.simulate import simulate
    result = simulate(design, vectors, simulator="icarus", keep_build=False)
    if result.mismatches:
        first = result.mismatches[0]
        raise NotBitExact(f"{len(result.mismatches)} vectors differ, the first {first}")
    return result.latency


def measure_hwnn(design, device, pnr, folder):
    """``(report, fmax, cycles per inference)`` of an hwnn design."""
    from hwnn.tools.implement import write_harness
    harness = write_harness(design, Path(folder) / f"harness_{Path(design.path).name}.v")
    return (*_implement(harness, device, pnr), design.manifest["cycles_per_inference"])


def measure_da4ml(design: Da4mlDesign, device, pnr, folder):
    """``(report, fmax, cycles per inference)`` of da4ml's design."""
    return (*_implement(da4ml_harness(design, folder), device, pnr), 1)


def _verdict(verdicts, check, *arguments):
    """Run ``check(*arguments)``; append what it found to ``verdicts``; its result, or None
    if it found a mismatch."""
    try:
        result = check(*arguments)
    except NotBitExact as error:
        verdicts.append(f"differs: {error}")
        return None
    verdicts.append("exact")
    return True if result is None else result


def _folds(folding):
    """A folding as hwnn names it: each layer's fold label."""
    return " ".join(fold.label for fold in folding)


def _fold(text):
    """``PxS`` as a LayerFold (multipliers in DSP blocks), or an argparse error."""
    from hwnn.rtl.params import LayerFold
    try:
        pe, simd = (int(part) for part in text.lower().split("x"))
        return LayerFold(pe, simd)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a fold is PxS (e.g. 8x8), not {text!r}") from None


def _whole_folds(network, budgets):
    """hwnn's folded designs of a whole network beside the hardwired one: ``--fold auto``
    within each lane budget (the distinct ones), and where some layer of the hardwired design
    is faster only hardwired (a convolution), the planner's folding at the hardwired design's
    rate (``folding_for_cycles(..., hardwired=True)``: the other layers as few lanes as that
    rate allows)."""
    from hwnn.rtl.folding import (auto_folding, folding_cycles, folding_for_cycles,
                                  hardwired)
    folds = {}
    for lanes in budgets:
        folds.setdefault(auto_folding(network, lanes), f"auto {lanes} lanes")
    rate = folding_cycles(network, hardwired(network))
    matched = folding_for_cycles(network, rate, hardwired=True)
    if any(fold.multipliers == "hardwired" for fold in matched):
        folds.setdefault(matched, f"planned at {rate} cycles")
    return [(label, folding) for folding, label in folds.items()]


def _subjects(every, args, parser):
    """``[(label, network, [(fold label, folding)])]``: what to measure, by the options: each
    network's first layer (its accumulators, ``--outputs``) with hwnn's folds ``--folds``
    beside it, or with ``--whole`` each whole network with ``--fold auto`` within each of
    ``--max-lanes`` beside it."""
    from hwnn.rtl.mvau import check_folding
    chosen = {name: network for name, network in every.items()
              if (args.only is None or name == args.only)
              and (args.whole or network.layers[0].kind == "dense")}
    if not chosen:
        parser.error(f"{args.only} has no dense first layer to measure alone: use --whole")
    if args.whole:
        return [(f"{name} (whole)", network, _whole_folds(network, args.max_lanes))
                for name, network in chosen.items()]
    first = accumulator_layer(next(iter(every.values())), args.outputs).layers[0]
    for fold in args.folds:                 # every MLP's first layer has this shape
        try:
            check_folding(first, fold.pe, fold.simd)
        except ValueError as error:
            parser.error(f"--folds {fold.label}: {error}")
    subjects = []
    for name, network in chosen.items():
        one = accumulator_layer(network, args.outputs)
        layer = one.layers[0]
        subjects.append((f"{name} {layer.in_features}x{layer.out_features} (first layer)", one,
                         [(fold.label, (fold,)) for fold in args.folds]))
    return subjects


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="ecp5-85f")
    parser.add_argument("--only", default=None, help="one network by name")
    parser.add_argument("--whole", action="store_true",
                        help="whole networks (every layer and output stage), not first layers")
    parser.add_argument("--cutoff", type=float, default=2.0,
                        help="da4ml's latency cutoff (its pipeline stages' depth)")
    parser.add_argument("--folds", type=_fold, nargs="*", default=[_fold(f) for f in FOLDS],
                        metavar="PxS", help="hwnn's folded designs of a first layer to measure "
                        f"beside the fully parallel ones (default: {' '.join(FOLDS)})")
    parser.add_argument("--max-lanes", type=int, nargs="*", default=list(MAX_LANES),
                        metavar="N", help="with --whole, hwnn's folded designs (--fold auto "
                        f"within N lanes) beside the hardwired ones (default: "
                        f"{' '.join(map(str, MAX_LANES))})")
    parser.add_argument("--outputs", type=int, default=None, metavar="N",
                        help="only the first N outputs of a first layer (default: all 64)")
    parser.add_argument("--no-pnr", action="store_true", help="Yosys only (no Fmax)")
    args = parser.parse_args()
    if args.outputs is not None and not 1 <= args.outputs <= 64:
        parser.error(f"--outputs must be between 1 and 64, not {args.outputs}")
    if args.whole and args.outputs is not None:
        parser.error("--outputs applies to first layers, not to --whole networks")
    if any(lanes < 3 for lanes in args.max_lanes):
        parser.error(f"--max-lanes must be at least 3 (a lane per layer), not "
                     f"{min(args.max_lanes)}")
    from hwnn.rtl.folding import hardwired
    from hwnn.sim.golden import run_network
    from hwnn.tools.toolchain import setup_env
    setup_env()
    peers = {}
    for module in ("da4ml", "hls4ml"):
        try:
            peers[module] = __import__(module).__version__
        except ImportError:
            print(f'{module} is not installed (pip install "hwnn[peers]"): left out',
                  file=sys.stderr)
    every = networks()
    if args.only is not None and args.only not in every:
        parser.error(f"--only must be one of {', '.join(every)}, not {args.only!r}")
    checks, rows = [], []
    for name, network, folds in _subjects(every, args, parser):
        count = products(network)
        vectors = input_vectors(network, CHECK_VECTORS)
        expected = run_network(network, vectors)
        verdicts = []
        with tempfile.TemporaryDirectory(prefix="hwnn-peers-") as folder:
            print(f"  {name}: hwnn hardwired ...", file=sys.stderr, flush=True)
            design = build_hwnn(network, hardwired(network), Path(folder) / "hwnn")
            latency = _verdict(verdicts, check_hwnn, design, vectors)
            if latency is not None:
                rows.append(_row(name, "hwnn hardwired", *measure_hwnn(
                    design, args.device, not args.no_pnr, folder), latency, count))
            if "da4ml" in peers:
                print(f"  {name}: da4ml ...", file=sys.stderr, flush=True)
                peer = Da4mlDesign(network, Path(folder) / "da4ml", args.cutoff)
                if _verdict(verdicts, check_da4ml, peer, vectors, expected,
                            Path(folder) / "da4ml"):
                    rows.append(_row(name, "da4ml", *measure_da4ml(
                        peer, args.device, not args.no_pnr, folder), peer.latency, count))
            if "hls4ml" in peers:
                if args.whole:
                    verdicts.append("-")
                else:
                    print(f"  {name}: hls4ml C++ emulation ...", file=sys.stderr, flush=True)
                    _verdict(verdicts, check_hls4ml, network.layers[0], vectors, expected,
                             folder)
            for label, folding in folds:
                print(f"  {name}: hwnn {label} ...", file=sys.stderr, flush=True)
                design = build_hwnn(network, folding,
                                    Path(folder) / f"hwnn_{label.replace(' ', '_')}")
                latency = _verdict(verdicts, check_hwnn, design, vectors)
                if latency is not None:
                    rows.append(_row(name, f"hwnn {_folds(folding)}", *measure_hwnn(
                        design, args.device, not args.no_pnr, folder), latency, count))
        checks.append((name, *verdicts))
    tools = (["hwnn hardwired (Icarus)"]
             + [f"{tool} {peers[tool]} ({how})" for tool, how in
                (("da4ml", "Verilog, Icarus"), ("hls4ml", "C++ emulation, g++")) if tool in peers]
             + [f"hwnn {label}" for label, _ in folds])
    print(f"Against hwnn's golden model ({CHECK_VECTORS} random and "
          f"{len(vectors) - CHECK_VECTORS} extreme input vectors; hls4ml on first layers only):")
    print(format_table(("network", *tools), checks))
    print()
    print(format_table(COLUMNS, rows))


if __name__ == "__main__":
    main()
