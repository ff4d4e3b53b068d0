"""Design-space exploration: sweep foldings or array sizes, synthesize each, keep the Pareto set.

:func:`sweep` lists the design points of an architecture
(:meth:`hwnn.arch.base.Architecture.points`; dataflow: the distinct foldings of lane budgets
1, 2, 4, ... up to the fully parallel design, for a device with multipliers in logic where
its DSP blocks run out; systolic: arrays 1x2 to 16x16; sparse: 1 to 16 PEs).
:func:`measure_point` generates one point, puts its accelerator in a register harness,
synthesizes it with YoWASP Yosys, checks that it fits the board's device, places and routes it
with nextpnr (unless ``place=False``), and returns a row: cycles per inference, the resources
measured and estimated (:mod:`hwnn.planning.estimate`, plus the harness's shift register and
output fold), Fmax, and the inferences per second the design reaches on the board
(``min(Fmax, board clock) / cycles``; at the board clock when it was not placed).
:func:`explore` runs the points on any ``concurrent.futures`` executor (local processes, or a
Dask cluster through ``distributed.Client.get_executor()``), reporting each finished point,
and :func:`write_results` writes ``explore.json``, ``explore.csv`` and ``pareto.png`` (LUT4 against
inferences per second, the Pareto-optimal points joined) into a folder, whole or not at all.
Until then, :class:`PartialResults` keeps the finished rows in the folder
(``explore.partial.json``), so that an interrupted run, run again with the same arguments,
measures only the points it had not finished.
"""

import csv
import io
import json
import math
import tempfile
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path

from ..arch import architecture
from ..folders import check_replaceable, honour_umask, replace_folder
from ..ir import Network

__all__ = ["PartialResults", "Point", "explore", "measure_point", "pareto", "sweep",
           "write_results"]

RESULTS = "explore.json"
PARTIAL = "explore.partial.json"

COLUMNS = ("point", "arch", "cycles", "lanes", "lut4", "ff", "dsp", "bram", "est_lut4",
           "est_ff", "est_dsp", "est_bram", "fits", "fmax_mhz", "inferences_per_second",
           "pareto", "yosys_s", "nextpnr_s", "error")


@dataclass(frozen=True)
class Point:
    """One design to try: ``options`` are :func:`hwnn.flow.generate.generate`'s for ``arch``."""
    label:   str
    arch:    str
    options: dict = field(default_factory=dict)


def sweep(network: Network, arch="dataflow", device=None) -> list[Point]:
    """The design points of ``arch`` for ``network``, smallest first; for ``device`` (a key
    of :data:`hwnn.tools.synth.DEVICES`) as the architecture builds them there
    (:meth:`~hwnn.arch.base.Architecture.for_device`: a dataflow folding's multipliers in
    logic where the device's DSP blocks run out)."""
    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    engine = architecture(arch)
    engine.check_layer_kinds(network)
    points = engine.points(network)
    if device is not None:
        points = [engine.for_device(network, label, options, device)
                  for label, options in points]
    return [Point(label, arch, options) for label, options in points]


def measure_point(network: Network, point: Point, device: str, clock_mhz: float,
                  place=True) -> dict:
    """One row of the exploration (see the module's description). A design that does not
    fit the device is a row with ``fits`` False and what is over in ``error``."""
    from .estimate import estimate, spram_placement
    from ..flow.generate import generate, load_design
    from ..tools.implement import write_harness
    from ..tools.synth import DEVICES, DoesNotFit, check_fit, place_and_route, synthesize
    from ..tools.toolchain import setup_env

    setup_env()
    family = DEVICES[device][0]
    guess = estimate(network, family, point.arch, **point.options)
    row = dict.fromkeys(COLUMNS, "") | {"point": point.label, "arch": point.arch,
                                         "pareto": False}
    with tempfile.TemporaryDirectory(prefix="hwnn-explore-") as folder:
        design = load_design(generate(network, Path(folder) / "design", arch=point.arch,
                                      **point.options))
        harness = _harness_cost(design.manifest)
        row |= {f"est_{name}": value + harness.get(name, 0) for name, value in guess.items()
                if f"est_{name}" in COLUMNS}
        row["cycles"] = design.manifest["cycles_per_inference"]
        row["lanes"] = design.manifest["lanes"]
        harness = write_harness(design, Path(folder) / "harness.v")
        fmax = None
        try:
            memories = spram_placement(network, family, point.arch, **point.options)
            if place:
                report, fmax, pnr_seconds = place_and_route(harness, "harness", device,
                                                            target_mhz=clock_mhz,
                                                            memories=memories)
                row["nextpnr_s"] = round(pnr_seconds, 1)
            else:
                report = synthesize(harness, "harness", family, memories=memories)
                check_fit(report, device)
            row["fits"] = True
        except DoesNotFit as error:
            report = error.report
            row |= {"fits": False, "error": str(error)}
    from ..tools.synth import utilization
    used = {name: value for name, (value, _) in utilization(report, device).items()}
    row |= {name: used[name] for name in ("lut4", "ff", "dsp", "bram")}
    row["yosys_s"] = round(report.seconds, 1)
    if row["fits"]:
        row["fmax_mhz"] = "" if fmax is None else round(fmax, 1)
        rate = clock_mhz if fmax is None else min(fmax, clock_mhz)
        row["inferences_per_second"] = round(rate * 1e6 / row["cycles"], 1)
    return row


def _harness_cost(manifest) -> dict:
    """What the register harness adds, from the design's ports: a flip-flop per input port
    bit (and the output's), a LUT4 per three output bits folded by exclusive-or."""
    from ..rtl.engine import COUNTER_BITS          # the systolic and sparse counters
    in_bits = manifest["input"]["payload_bits"] + 2                  # + valid, output ready
    counters = sum(len(names) for names in manifest.get("counters", {}).values())
    out_bits = manifest["output"]["payload_bits"] + 2 + COUNTER_BITS * counters
    return {"ff": in_bits + 1, "lut4": math.ceil(out_bits / 3)}


def pareto(rows) -> list[int]:
    """Indices of the rows that fit and that no other fitting row beats on both LUT4 (fewer)
    and inferences per second (more)."""
    fitting = [(i, row["lut4"], row["inferences_per_second"]) for i, row in enumerate(rows)
               if row["fits"] is True]
    return sorted(i for i, lut, rate in fitting
                  if not any((l2 <= lut and r2 >= rate) and (l2 < lut or r2 > rate)
                             for _, l2, r2 in fitting))


class PartialResults:
    """The rows of an exploration into ``out_dir`` finished so far, kept in its
    ``explore.partial.json`` as they come (:meth:`add`), for the run ``meta`` describes (the
    network, points and options). ``rows`` maps point labels to the rows an interrupted run
    with the same ``meta`` left; ``discarded`` counts those of a run with other arguments,
    which are dropped. ``out_dir`` must be missing, empty or an exploration's folder."""

    def __init__(self, out_dir, meta):
        check_replaceable(out_dir, (RESULTS, PARTIAL), "exploration")
        self.path = Path(out_dir) / PARTIAL
        self.meta = meta
        self.rows = {}
        self.discarded = 0
        if self.path.is_file():
            saved = json.loads(self.path.read_text())
            if saved["meta"] == meta:
                self.rows = {row["point"]: row for row in saved["rows"]}
            else:
                self.discarded = len(saved["rows"])

    def add(self, row):
        """Keep ``row`` if it is a measurement (fits or not), not a tool failure."""
        if row["fits"] not in (True, False):
            return
        self.rows[row["point"]] = row
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=f".{PARTIAL}.")
        with open(handle, "w") as file:
            json.dump({"meta": self.meta, "rows": list(self.rows.values())}, file)
        honour_umask(temporary)
        Path(temporary).replace(self.path)


def explore(network: Network, points, device: str, clock_mhz: float, executor, *,
            place=True, progress=None, finished=None) -> list[dict]:
    """Measure every point on ``executor`` (a ``concurrent.futures.Executor``); rows in the
    order of ``points`` with ``pareto`` marked. ``finished`` maps the labels of points
    measured before to their rows, which are taken as they are. ``progress(done, total,
    row)`` is called as each point finishes. A point whose tools fail becomes a row with
    ``error`` set."""
    finished = finished or {}
    rows = [finished.get(point.label) for point in points]
    futures = {executor.submit(measure_point, network, point, device, clock_mhz, place): index
               for index, point in enumerate(points) if rows[index] is None}
    for done, future in enumerate(as_completed(futures), len(points) - len(futures) + 1):
        index = futures[future]
        try:
            rows[index] = future.result()
        except Exception as error:        # a tool failure on one point: keep the others
            point = points[index]
            rows[index] = dict.fromkeys(COLUMNS, "") | {
                "point": point.label, "arch": point.arch, "fits": "", "pareto": False,
                "error": f"{type(error).__name__}: {error}"}
        if progress is not None:
            progress(done, len(points), rows[index])
    for row in rows:
        row["pareto"] = False
    for index in pareto(rows):
        rows[index]["pareto"] = True
    return rows


def _plot(rows, title, path):
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5), dpi=100)
    fitting = [row for row in rows if row["fits"] is True]
    axes.scatter([row["lut4"] for row in fitting],
                 [row["inferences_per_second"] for row in fitting], color="tab:blue",
                 label="design points")
    front = sorted((row for row in fitting if row["pareto"]), key=lambda row: row["lut4"])
    axes.plot([row["lut4"] for row in front], [row["inferences_per_second"] for row in front],
              color="tab:red", marker="o", label="Pareto front")
    for row in fitting:
        axes.annotate(row["point"], (row["lut4"], row["inferences_per_second"]), fontsize=7,
                      xytext=(4, 4), textcoords="offset points")
    axes.set_xlabel("LUT4")
    axes.set_ylabel("inferences per second")
    axes.set_yscale("log")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})
    pyplot.close(figure)


def write_results(rows, out_dir, *, title, meta) -> Path:
    """Write ``explore.json`` (``meta`` and the rows), ``explore.csv`` and ``pareto.png`` to
    ``out_dir``, whole or not at all; an existing folder is replaced only if it holds an
    earlier exploration."""
    def fill(folder):
        (folder / RESULTS).write_text(
            json.dumps(meta | {"points": rows}, indent=2, sort_keys=True) + "\n")
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        (folder / "explore.csv").write_text(text.getvalue())
        _plot(rows, title, folder / "pareto.png")

    return replace_folder(out_dir, (RESULTS, PARTIAL), "exploration", fill)
