"""Simulate a generated design on input vectors and compare it with the golden model.

:func:`simulate` streams every input vector back to back through the design, with Verilator
or Icarus under cocotb, or with Amaranth's simulator, optionally with seeded random stalls on
both streams, and returns a :class:`SimulationResult`: the outputs, the mismatches against the
golden model, and the measured cycles per inference (steady state) and latency.
:func:`simulate_resets` checks, on the same simulators, that a reset at any cycle leaves the
design as at power-on.
"""

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hwnn.arrays import check_codes
from hwnn.errors import ToolError
from hwnn.flow.generate import Design, load_design
from hwnn.sim.beats import beats_to_vectors, vectors_to_beats
from hwnn.sim.golden import run_network
from hwnn.sim.resets import ResetBench, check_trials, stream_words

__all__ = ["SIMULATORS", "Mismatch", "ResetResult", "SimulationError", "SimulationResult",
           "simulate", "simulate_resets"]

SIMULATORS = ("verilator", "icarus", "amaranth")


class SimulationError(ToolError):
    """A simulator could not build or run a design (the log file says why)."""


@dataclass(frozen=True)
class Mismatch:
    """One input whose output codes differ from the golden model's."""
    index:    int
    expected: list
    actual:   list
    layer:    str       # the layer whose outputs are compared (the network's last)

    def describe(self) -> str:
        channels = [i for i, (a, b) in enumerate(zip(self.expected, self.actual, strict=True))
                    if a != b]
        return (f"input {self.index}, layer {self.layer} (output): "
                f"expected {self.expected}, got {self.actual} (channels {channels} differ)")


@dataclass(frozen=True)
class SimulationResult:
    """Outputs of a simulation and their comparison with the golden model."""
    simulator:  str
    outputs:    np.ndarray
    expected:   np.ndarray
    mismatches: list
    cycles_per_inference: float | None   # steady state, None when too few inputs or stalled
    latency:    int | None                # first input beat to first output beat
    expected_cycles: float
    total_cycles: int
    counters:   dict = field(default_factory=dict)  # the design's performance counters
                                                    # (cocotb simulators only)
    waves:      Path | None = None                  # the waveform file, when asked for

    @property
    def passed(self) -> bool:
        return not self.mismatches

    def summary(self) -> str:
        count = len(self.expected)
        lines = [f"{self.simulator}: {count - len(self.mismatches)}/{count} inputs match the "
                 f"golden model" + ("" if self.passed else f", {len(self.mismatches)} MISMATCH")]
        if self.cycles_per_inference is not None:
            lines.append(f"cycles per inference {self.cycles_per_inference:.2f} (expected "
                         f"{self.expected_cycles:g}, ratio "
                         f"{self.cycles_per_inference / self.expected_cycles:.3f}), latency "
                         f"{self.latency} cycles, {self.total_cycles} cycles in all")
        return "\n".join(lines)


def _prepare(design, codes, simulator):
    """The :class:`Design` and its input codes as int64, after checking them
    (:func:`hwnn.arrays.check_codes`) and the simulator's name."""
    if simulator not in SIMULATORS:
        raise ValueError(f"Unknown simulator {simulator!r}; available: {', '.join(SIMULATORS)}")
    design = design if isinstance(design, Design) else load_design(design)
    return design, check_codes(design.network, codes)


def _work_dir(design, simulator, work_dir) -> Path:
    """Where a simulation keeps its builds and logs (default ``<design>/sim/<simulator>``)."""
    return (Path(work_dir) if work_dir is not None else design.path / "sim" / simulator).resolve()


def _steady_state(output_cycles, beats_per_vector, count, group):
    """Cycles per inference over the second half of the vectors (the pipeline is full),
    counted in whole groups of ``group`` vectors (a systolic design's batches)."""
    ends = output_cycles[beats_per_vector - 1::beats_per_vector]
    groups = count // group
    if count < 4 or groups < 2:
        return None
    start = (groups // 2) * group
    stop = groups * group
    return (ends[stop - 1] - ends[start - 1]) / (stop - start)


def _handshake_bound(design) -> int:
    """Cycles any one handshake may take at most: a whole batch (systolic) or many inference
    times, with room for stalls."""
    return math.ceil(100 * design.manifest["cycles_per_inference"] * design.batch) + 1000


#: Where each simulator writes its waveforms (relative to the work folder; ``{top}`` the
#: design's top module), and the name :func:`simulate` gives them there.
WAVES = {"amaranth": ("waves.vcd", "waves.vcd"), "verilator": ("dump.vcd", "waves.vcd"),
         "icarus": ("build/{top}.fst", "waves.fst")}


def _run_amaranth(design, beats, n_outputs, seed, waves, work):
    from hwnn.sim.pysim import load_of, run_stream
    top = design.accelerator()
    input_cycles = []
    payloads, cycles = run_stream(top, i_stream=top.i_stream, o_stream=top.o_stream,
                                  inputs=beats, n_outputs=n_outputs, seed=seed,
                                  vcd=str(work / WAVES["amaranth"][0]) if waves else None,
                                  timeout=_handshake_bound(design),
                                  input_cycles=input_cycles, load=load_of(top))
    return [int(payload.data) for payload in payloads], cycles, input_cycles, {}


def _run_cocotb(design, simulator, beats, n_outputs, seed, waves, work, log):
    data_bits = design.manifest["input"]["last_bit"]
    words = [format(beat["data"] | (beat["last"] << data_bits), "x") for beat in beats]
    work.mkdir(parents=True, exist_ok=True)
    (work / "beats.json").write_text(json.dumps(words))
    results = work / "results.json"
    results.unlink(missing_ok=True)
    budget = ((design.manifest["cycles_per_inference"] * (len(beats) + 10)
               + 2 * len(design.load_words() or ()))
              * (4 if seed is not None else 1) + _handshake_bound(design))
    counters = [name for names in design.manifest.get("counters", {}).values()
                for name in names]
    job = {"beats": str(work / "beats.json"), "n_outputs": n_outputs, "seed": seed,
           "load": _load_words(design), "results": str(results), "counters": counters,
           "timeout_us": math.ceil(0.01 * (budget + 200 * len(design.manifest["layers"])
                                           + 2000))}
    log(f"building the design for {simulator} ...")
    started = time.monotonic()
    runner = build_cocotb(simulator, design.verilog.resolve(), design.top, work, waves=waves)
    log(f"built in {time.monotonic() - started:.0f} s; simulating ...")
    runner.test(hdl_toplevel=design.top, test_module="hwnn.sim.cocotb_stream",
                build_dir=work / "build", test_dir=work, results_xml=str(work / "results.xml"),
                extra_env={"HWNN_SIM_JOB": json.dumps(job)}, waves=waves,
                log_file=work / "sim.log")
    if not results.is_file():
        raise SimulationError(f"The {simulator} simulation ended without results (timed out or "
                              f"failed); see {work / 'sim.log'}")
    data = json.loads(results.read_text())
    out_bits = design.manifest["output"]["last_bit"]
    return ([int(word, 16) & ((1 << out_bits) - 1) for word in data["outputs"]],
            data["output_cycles"], data["input_cycles"], data["counters"])


def _load_words(design) -> list[str]:
    """The words of the design's load stream, as hex (none without one)."""
    return [format(word, "x") for word in design.load_words() or ()]


def build_cocotb(simulator, source, top, work, *, waves=False):
    """Build Verilog ``source`` (top module ``top``) for cocotb in ``work/build``; return the
    runner, ready for ``runner.test`` with a test module of :mod:`hwnn.sim`."""
    from cocotb_tools.runner import get_runner

    from hwnn.tools.toolchain import require_build_tools
    if simulator == "verilator":
        require_build_tools("Simulation with Verilator")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise ValueError("Icarus Verilog (iverilog) is not installed; on Debian/Ubuntu: "
                         "apt-get install iverilog (or use --simulator verilator)")
    runner = get_runner(simulator)
    build_args = ["-Wno-fatal"] if simulator == "verilator" else []
    # The runner reuses an Icarus build whose sources have not changed, even one made with
    # other options (waveforms or not): the options of the build are kept beside it.
    options = work / "build" / "hwnn-options.json"
    wanted = json.dumps({"waves": waves})
    same = options.is_file() and options.read_text() == wanted
    options.unlink(missing_ok=True)
    # Designs simulate for thousands of cycles, not billions: an unoptimized C++ build of the
    # model is a third faster to make and fast enough to run.
    makeflags = os.environ.get("MAKEFLAGS", "")
    os.environ["MAKEFLAGS"] = f"{makeflags} OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0".strip()
    try:
        runner.build(sources=[source], hdl_toplevel=top, build_dir=work / "build",
                     build_args=build_args, timescale=("1ns", "1ps"), waves=waves,
                     always=not same, log_file=work / "build.log")
    except RuntimeError as error:
        raise SimulationError(f"{simulator} could not build the design ({error}); see "
                              f"{work / 'build.log'}") from None
    finally:
        os.environ["MAKEFLAGS"] = makeflags
    options.write_text(wanted)
    # The simulator imports the test module through the caller's sys.path.
    package_root = str(Path(__file__).resolve().parents[2])
    if package_root not in sys.path:
        sys.path.insert(0, package_root)
    return runner


def simulate(design, codes, *, simulator="verilator", backpressure=False, seed=1, waves=False,
             work_dir=None, keep_build=True, log=None) -> SimulationResult:
    """Stream input ``codes`` (N x features) through the design and compare every output with
    the golden model.

    ``design`` is a design folder path or a :class:`~hwnn.flow.generate.Design`. With
    ``backpressure`` both streams stall at random (seeded by ``seed``). ``work_dir`` (default
    ``<design>/sim/<simulator>``) holds builds, logs and, with ``waves``, the waveforms
    (``waves.vcd``, or ``waves.fst`` from Icarus; the result's ``waves``). The simulator's
    build (``build/``, some 150 MB for a Verilator model) is kept for the next run unless
    ``keep_build`` is false. ``log(line)`` hears when the build starts and ends (cocotb
    simulators: building a Verilator model takes 10-20 s).
    """
    design, codes = _prepare(design, codes, simulator)
    network = design.network
    manifest = design.manifest
    first, last = manifest["input"], manifest["output"]
    beats = vectors_to_beats(codes, network.input.format, first["values_per_beat"])
    n_outputs = len(codes) * last["beats_per_vector"]
    work = _work_dir(design, simulator, work_dir)
    stall_seed = seed if backpressure else None
    written, kept = (work / name.format(top=design.top) for name in WAVES[simulator])
    written.unlink(missing_ok=True)
    if waves:
        kept.unlink(missing_ok=True)
    try:
        if simulator == "amaranth":
            work.mkdir(parents=True, exist_ok=True)
            words, output_cycles, input_cycles, counters = _run_amaranth(
                design, beats, n_outputs, stall_seed, waves, work)
        else:
            words, output_cycles, input_cycles, counters = _run_cocotb(
                design, simulator, beats, n_outputs, stall_seed, waves, work,
                log or (lambda line: None))
        if waves:
            if not written.is_file():
                raise SimulationError(f"{simulator} wrote no waveforms ({written} is missing)")
            written.replace(kept)
    finally:
        if not keep_build:
            shutil.rmtree(work / "build", ignore_errors=True)
    outputs = beats_to_vectors(words, network.output.format, last["values_per_beat"],
                               network.out_features)
    expected = run_network(network, codes)
    mismatches = [Mismatch(int(i), expected[i].tolist(), outputs[i].tolist(),
                           network.layers[-1].name)
                  for i in np.nonzero(np.any(outputs != expected, axis=1))[0]]
    steady = None if backpressure else _steady_state(output_cycles, last["beats_per_vector"],
                                                     len(codes), design.batch)
    latency = None if backpressure else output_cycles[0] - input_cycles[0]
    return SimulationResult(simulator, outputs, expected, mismatches, steady, latency,
                            manifest["cycles_per_inference"], output_cycles[-1], counters,
                            kept if waves else None)


@dataclass(frozen=True)
class ResetResult:
    """Outcome of :func:`simulate_resets`."""
    simulator:    str
    span:         int | None  # cycles the first trial's vectors took without a reset
    reset_points: list        # per later trial, the cycle of that trial at which rst rose
    mismatches:   list        # messages naming the trial, the reset, the input and the codes

    @property
    def passed(self) -> bool:
        return not self.mismatches


def simulate_resets(design, codes, *, simulator="verilator", seed=1, points=64,
                    work_dir=None) -> ResetResult:
    """Check that a reset at any cycle leaves the design as at power-on.

    Runs a :class:`~hwnn.sim.resets.ResetBench` on input ``codes`` (N x features) in one
    simulation: vectors stream with seeded random stalls, ``rst`` rises at up to ``points``
    cycles across the time the first vectors take, and every output after each reset must
    equal the golden model's for the vectors streamed after it. ``work_dir`` is that of
    :func:`simulate` (whose builds it reuses).
    """
    design, codes = _prepare(design, codes, simulator)
    network, manifest = design.network, design.manifest
    out_count = manifest["output"]["values_per_beat"]
    bound = _handshake_bound(design)
    arguments = {"vectors": stream_words(codes, network.input.format,
                                         manifest["input"]["values_per_beat"]),
                 "out_beats": manifest["output"]["beats_per_vector"], "seed": seed,
                 "points": points, "timeout": bound}
    if simulator == "amaranth":
        from hwnn.sim.pysim import run_bench
        bench = ResetBench(**arguments)
        run_bench(design.accelerator(), bench, seed=seed)
        trials, span = bench.trials, bench.span
    else:
        work = _work_dir(design, simulator, work_dir)
        work.mkdir(parents=True, exist_ok=True)
        results = work / "resets.json"
        results.unlink(missing_ok=True)
        job = {"bench": arguments, "load": _load_words(design), "results": str(results),
               "timeout_us": math.ceil(0.01 * 4 * bound * (points + 1))}
        runner = build_cocotb(simulator, design.verilog.resolve(), design.top, work)
        runner.test(hdl_toplevel=design.top, test_module="hwnn.sim.cocotb_reset",
                    build_dir=work / "build", test_dir=work,
                    results_xml=str(work / "resets.xml"),
                    extra_env={"HWNN_RESET_JOB": json.dumps(job)}, log_file=work / "resets.log")
        if not results.is_file():
            raise SimulationError(f"The {simulator} reset simulation ended without results "
                                  f"(timed out or failed); see {work / 'resets.log'}")
        data = json.loads(results.read_text())
        trials, span = data["trials"], data["span"]
    return ResetResult(simulator, span, [trial["reset_at"] for trial in trials[1:]],
                       check_trials(network, codes, trials, out_count))
