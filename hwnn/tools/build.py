"""Bitstreams for real boards with the pip-installed tools (YoWASP Yosys, nextpnr, packers).

:func:`build_board` puts a design folder's accelerator behind the host link on a board of
``boards/`` (:mod:`hwnn.boards`), runs the amaranth-boards build (synthesis, place and route,
packing) in ``<design>/build/<board>/``, and reports what nextpnr placed (used, available and
share of each resource), Fmax against the board clock, and inferences per second. A design
that does not fit raises :class:`~hwnn.tools.synth.DoesNotFit` naming what is over and by how
much: before any tool runs when its estimate is clearly over the device
(:func:`hwnn.tools.implement.check_estimate`, unless ``force``), else after nextpnr. The report is
also written to ``report.json`` beside the bitstream.
"""

import json
import re
import shutil
import subprocess
import sys
import time

from .absorb import REPORT_PREFIX
from .seeds import REPORT_PREFIX as SEEDS_PREFIX
from .rtlil import honor_no_rw_check
from ..boards import FLASH_OFFSET, BoardDesign, board, check_flash, flash_command, uart_divisor
from ..errors import ToolError
from ..flow.generate import Design, load_design
from .synth import (DEVICES, FAMILIES, DoesNotFit, abc9_failed, abc_flow, fmax_from_log,
                    spram_commands)

__all__ = ["build_board", "format_build_report"]

_UTILISATION = re.compile(r"^Info:\s+([A-Z0-9_]+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def _utilization(log):
    """nextpnr's last device utilisation table."""
    tables, current = [], {}
    for name, used, available in _UTILISATION.findall(log):
        if name in current:
            tables.append(current)
            current = {}
        current[name] = (int(used), int(available))
    tables.append(current)
    return tables[-1]


#: The build script's tool steps, by how their lines start, and what progress calls them.
_STEPS = (('"$YOSYS"', "synthesis (Yosys)"), ('"$NEXTPNR_', "place and route (nextpnr)"),
          ('"$ICEPACK"', "packing (icepack)"), ('"$ECPPACK"', "packing (ecppack)"))
_STEP_MARK = "hwnn-step: "


def _prepare_script(script, absorb, seeds=1, targets=()):
    """Make the build script announce each tool step on its output (:data:`_STEP_MARK`) and,
    with ``absorb``, move pipeline flip-flops into block RAM and DSP registers
    (:mod:`hwnn.tools.absorb`) between Yosys and nextpnr; with ``seeds`` over 1, place and
    route with that many seeds and keep the one with the most room against the clock
    frequencies ``targets`` (MHz; :mod:`hwnn.tools.seeds`)."""
    lines = []
    for line in script.read_text().splitlines():
        step = next((name for start, name in _STEPS if line.startswith(start)), None)
        if step is not None:
            lines.append(f"echo '{_STEP_MARK}{step}'")
        if seeds > 1 and line.startswith('"$NEXTPNR_'):
            line = (f'"{sys.executable}" -m hwnn.tools.seeds {seeds} '
                    f'{",".join(f"{mhz:.6g}" for mhz in targets)} -- {line}')
        lines.append(line)
        if absorb and step == _STEPS[0][1]:
            lines.append(f'"{sys.executable}" -m hwnn.tools.absorb top.json top')
    if sum(line.startswith(_STEPS[0][0]) for line in lines) != 1:
        raise ToolError(f"Unexpected build script {script}: no single Yosys step")
    script.write_text("\n".join(lines) + "\n")


def _abc9_failed(folder, family) -> bool:
    """Whether the build in ``folder`` stopped in Yosys (no netlist written) with one of
    ABC9's failures (:func:`~hwnn.tools.synth.abc9_failed`, by its report's end), which the
    classic ABC mapper avoids on ``family``."""
    report = folder / "top.rpt"
    return (FAMILIES[family]["abc_fallback"] and not (folder / "top.json").exists()
            and report.is_file() and abc9_failed(report.read_text(errors="replace")[-2000:]))


def _use_abc(script):
    """Rewrite the Yosys ``script`` (``top.ys``) to map LUTs with ABC (its one ``synth_``
    command as :func:`~hwnn.tools.synth.abc_flow`)."""
    lines = script.read_text().splitlines()
    synth = [index for index, line in enumerate(lines) if line.strip().startswith("synth_")]
    if len(synth) != 1:
        raise ToolError(f"Unexpected Yosys script {script}: no single synth_ command")
    lines[synth[0]] = abc_flow(lines[synth[0]].strip())
    script.write_text("\n".join(lines) + "\n")


def _run_script(folder, log, started):
    """Run ``build_top.sh`` in ``folder``: its return code and output (stdout and stderr),
    telling ``log`` of each tool step as it starts (and the seconds since ``started``, a
    ``time.monotonic()``)."""
    output = []
    with subprocess.Popen(["sh", "build_top.sh"], cwd=folder, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            if line.startswith(_STEP_MARK):
                log(f"  {line[len(_STEP_MARK):].strip()} ... "
                    f"({time.monotonic() - started:.0f} s so far)")
            else:
                output.append(line)
    return process.returncode, "".join(output)


def build_board(design, board_name, *, baud=115200, clock_mhz=None, force=False,
                seeds=1, log=None) -> dict:
    """Build the bitstream of ``design`` (a folder or :class:`Design`) for ``board_name``, at
    the board's clock or, with ``clock_mhz``, at the nearest frequency its PLL makes;
    ``log(line)`` hears of each tool step as it starts. With ``seeds`` over 1, place and route
    runs with that many seeds and keeps the fastest (:mod:`hwnn.tools.seeds`).

    ValueError, before anything is built, unless ``baud`` is a positive integer that the
    clock can make (at least 4 clock cycles per bit) and ``seeds`` a positive integer."""
    for name, value in (("baud", baud), ("seeds", seeds)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    from .implement import check_estimate
    from ..planning.estimate import spram_placement
    from ..rtl.clocking import pll_settings
    from .toolchain import setup_env

    setup_env()
    target = board(board_name)
    design = design if isinstance(design, Design) else load_design(design)
    load = design.manifest.get("load")
    if load is not None:
        check_flash(target)
    if not force:
        check_estimate(design, target.device, f"{board_name} ({target.device.upper()})")
    platform = target.make_platform()
    board_clock = platform.default_clk_frequency
    pll = (None if clock_mhz is None or clock_mhz * 1e6 == board_clock else
           pll_settings(DEVICES[target.device][0], board_clock, clock_mhz * 1e6))
    # A baud rate too fast for the host link's clock (the board's) fails before anything is
    # built.
    uart_divisor(board_clock, baud, board_name)
    top = BoardDesign(design, target, baud=baud, pll=pll)
    folder = design.path / "build" / board_name
    if folder.exists():
        shutil.rmtree(folder)
    # A design slower than the board clock still gets its bitstream and report, which says
    # so (and `hwnn build` exits 1).
    options = dict(target.build_options)
    options["nextpnr_opts"] = " ".join(("--timing-allow-fail",
                                        options.get("nextpnr_opts", ""))).strip()
    family = DEVICES[target.device][0]
    placed = spram_placement(design.network, family, design.manifest["arch"], host_link=True,
                             **design.options)
    if spram := spram_commands(placed, family):
        options["script_after_read"] = spram
        options["synth_opts"] = " ".join((options.get("synth_opts", ""), "-spram")).strip()
    plan = platform.prepare(top, name="top", **options)
    plan.extract(folder)
    netlist = folder / "top.il"
    netlist.write_text(honor_no_rw_check(netlist.read_text()))
    clock = top.clock_hz(platform) / 1e6
    _prepare_script(folder / "build_top.sh", absorb=True, seeds=seeds,
                    targets=[clock] if pll is None else [clock, board_clock / 1e6])
    started = time.monotonic()
    log = log or (lambda line: None)
    returncode, output = _run_script(folder, log, started)
    if returncode != 0 and _abc9_failed(folder, family):
        log("  Yosys' ABC9 LUT mapper failed (a fault of the tool, not of the design): "
            "synthesis again with ABC ...")
        _use_abc(folder / "top.ys")
        returncode, output = _run_script(folder, log, started)
    seconds = time.monotonic() - started
    log_path = folder / "top.tim"
    tool_log = (log_path.read_text() if log_path.is_file() else "") + output
    used = _utilization(tool_log)
    if returncode != 0:
        over = [f"{name} {count} of {available} (+{count - available})"
                for name, (count, available) in used.items() if count > available]
        if over:
            raise DoesNotFit(f"The design does not fit the {board_name} "
                             f"({target.device.upper()}): it needs {', '.join(over)}; compile "
                             f"it with less parallelism (--max-lanes, --pes or --array)")
        # Yosys (run quiet) writes its errors to its report only.
        report = folder / "top.rpt"
        tool_log += report.read_text() if report.is_file() else ""
        errors = [line for line in tool_log.splitlines() if "ERROR" in line]
        raise ToolError(f"The {board_name} build failed: "
                        f"{(errors[-1] if errors else tool_log.strip()[-300:]).strip()} "
                        f"(logs in {folder})")
    packed = [json.loads(line[len(REPORT_PREFIX):]) for line in output.splitlines()
              if line.startswith(REPORT_PREFIX)]
    sweep = [json.loads(line[len(SEEDS_PREFIX):]) for line in output.splitlines()
             if line.startswith(SEEDS_PREFIX)]
    # The accelerator's clock, and the host link's (the board clock) where a PLL makes the
    # accelerator's: each clock net is known by the frequency nextpnr was asked for.
    fmax = fmax_from_log(tool_log, clock)
    link_fmax = fmax if pll is None else fmax_from_log(tool_log, board_clock / 1e6)
    cycles = design.manifest["cycles_per_inference"]
    bitstream = next(folder / name for name in ("top.bit", "top.bin")
                     if (folder / name).is_file())
    report = {
        "design": design.top, "arch": design.manifest["arch"], "board": board_name,
        "device": target.device, "baud": baud,
        "utilization": {name: {"used": count, "available": available}
                        for name, (count, available) in used.items() if count},
        "board_clock_mhz": board_clock / 1e6,
        "pll": None if pll is None else {"output_mhz": pll.output / 1e6, **pll.parameters},
        "clock_mhz": clock, "fmax_mhz": fmax, "link_fmax_mhz": link_fmax,
        "timing_met": (fmax is not None and fmax >= clock and link_fmax is not None
                       and link_fmax >= board_clock / 1e6),
        "cycles_per_inference": cycles,
        "inferences_per_second_at_clock": clock * 1e6 / cycles,
        "inferences_per_second_at_fmax": None if fmax is None else fmax * 1e6 / cycles,
        "bitstream": bitstream.name, "seconds": round(seconds, 1),
        "packed": packed[0] if packed else {},
        "seeds": sweep[0] if sweep else None,
        "flash": None if load is None else {
            "image": str(design.path / load["image"]), "offset": FLASH_OFFSET,
            "command": flash_command(target, design.path / load["image"])},
    }
    (folder / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def format_build_report(report) -> str:
    """The build report as text."""
    from .implement import packed_line
    from ..flow.report import format_table
    rows = [(name, entry["used"], entry["available"],
             f"{100 * entry['used'] / entry['available']:.1f}%")
            for name, entry in report["utilization"].items()]
    table = format_table(("resource", "used", "available", "share"), rows, right={1, 2, 3})

    def timing(fmax, name, mhz):
        met = fmax is not None and fmax >= mhz
        return (f"Fmax {'unknown' if fmax is None else f'{fmax:.1f} MHz'} against the {name} "
                f"{mhz:g} MHz: {'met' if met else 'NOT met: the design may fail at this clock'}")

    board_mhz = report["board_clock_mhz"]
    clock_name = ("board clock" if report["pll"] is None else
                  f"PLL clock (from the {board_mhz:g} MHz board clock)")
    lines = [(f"{report['design']} ({report['arch']}) on {report['board']} "
              f"({report['device'].upper()}), host link at {report['baud']} baud"), table,
             timing(report["fmax_mhz"], clock_name, report["clock_mhz"])]
    if report["pll"] is not None:
        lines.append("host link: " + timing(report["link_fmax_mhz"], "board clock", board_mhz))
    lines += [(f"{report['cycles_per_inference']:g} cycles per inference: "
               f"{report['inferences_per_second_at_clock']:,.0f} inferences per second at the "
               f"{clock_name}"
               + (f", {report['inferences_per_second_at_fmax']:,.0f} at Fmax"
                  if report["inferences_per_second_at_fmax"] else "")),
              f"bitstream {report['bitstream']}, {report['seconds']:.0f} s"]
    if sweep := report.get("seeds"):
        tried = ", ".join("failed" if mhz is None else f"{mhz:.1f}"
                          for mhz in sweep["fmax_mhz"].values())
        lines.insert(-1, f"place and route: seed {sweep['best']} of {sweep['seeds']} kept "
                         f"(Fmax by seed, MHz: {tried})")
    if flash := report.get("flash"):
        lines.append(f"the weights load from the flash at start-up: write them there once "
                     f"with {flash['command']}")
    if packed := packed_line(report.get("packed")):
        lines.insert(-1, packed.rstrip("\n"))
    return "\n".join(lines)
