"""Area, Fmax and throughput of a design folder on an FPGA, with the pip-installed tools.

:func:`synth_design` wraps the design's accelerator in a
:class:`~hwnn.rtl.harness.RegisterHarness` (so that its wide ports need no pins), synthesizes
it with YoWASP Yosys, checks that it fits the device, places and routes it with YoWASP
nextpnr, and reports the resources used (and as a share of the device), Fmax, and the
inferences per second that Fmax gives with the manifest's cycles per inference. The report is
also written to ``<design>/synth/<device>/report.json``.

Before any tool runs, :func:`check_estimate` refuses a design whose resource estimate
(:mod:`hwnn.planning.estimate`) is clearly over the device, so that Yosys does not spend many
minutes on a design that cannot fit (``force=True`` skips the check).
"""

import json

from ..flow.generate import Design, load_design, to_verilog
from .synth import CAPACITY, DEVICES, DoesNotFit, place_and_route, utilization

__all__ = ["ESTIMATE_MARGIN", "FAMILY_DEVICES", "check_estimate", "format_report",
           "packed_line", "synth_design", "write_harness"]

#: The device ``hwnn synth --family`` uses for each family.
FAMILY_DEVICES = {"ecp5": "ecp5-85f", "ice40": "ice40-up5k"}

#: :func:`check_estimate` refuses a design whose estimated LUT4s, flip-flops or DSP blocks are
#: more than this many times the device's. The estimator's worst error on held-out designs is
#: about 45% (README, "Performance"), so a design that fits is never refused. Block RAMs are
#: left to Yosys: their estimate is far off on some sparse designs.
ESTIMATE_MARGIN = 2
ESTIMATE_CHECKED = ("lut4", "ff", "dsp", "lc")


def check_estimate(design: Design, device, where=None):
    """Raise :class:`~hwnn.tools.synth.DoesNotFit` when the estimate of ``design``'s accelerator
    needs more than :data:`ESTIMATE_MARGIN` times ``device``'s LUT4s, flip-flops or DSP
    blocks; ``where`` names the target in the message (default: the device)."""
    from ..planning.estimate import estimate
    guess = estimate(design.network, DEVICES[device][0], design.manifest["arch"],
                     **design.options)
    capacity = CAPACITY[device]
    over = [f"{name.upper()} {guess[name]} of {capacity[name]} "
            f"({guess[name] / capacity[name]:.1f} times)"
            for name in ESTIMATE_CHECKED
            if name in capacity and guess[name] > ESTIMATE_MARGIN * capacity[name]]
    if over:
        raise DoesNotFit(f"The design does not fit the {where or device.upper()}: its estimate "
                         f"needs {', '.join(over)}, more than {ESTIMATE_MARGIN} times the "
                         f"device, so it was not synthesized (--force tries anyway)")


def write_harness(design: Design, path):
    """Write ``design``'s accelerator in a :class:`~hwnn.rtl.harness.RegisterHarness` (top
    module ``harness``) as Verilog to ``path``; return the path."""
    from ..rtl.harness import RegisterHarness
    path.write_text(to_verilog(RegisterHarness(design.accelerator()), "harness"))
    return path


def synth_design(design, device="ecp5-85f", *, target_mhz=None, force=False,
                 log=None) -> dict:
    """Synthesize, fit-check, place and route ``design`` (a folder or :class:`Design`) on
    ``device``; return and save the report (see the module's description). Unless
    ``force``, :func:`check_estimate` runs first. ``log(line)`` hears of each step."""
    if device not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; available: {', '.join(DEVICES)}")
    from ..planning.estimate import spram_placement
    design = design if isinstance(design, Design) else load_design(design)
    if not force:
        check_estimate(design, device)
    family = DEVICES[device][0]
    target = target_mhz or (150.0 if family == "ecp5" else 48.0)
    folder = design.path / "synth" / device
    folder.mkdir(parents=True, exist_ok=True)
    harness_path = write_harness(design, folder / "harness.v")
    if log is not None:
        log(f"synthesizing {design.top} for {device} with Yosys (a few minutes on large "
            f"designs) ...")
    report, fmax, pnr_seconds = place_and_route(
        harness_path, "harness", device, target_mhz=target, log=log,
        memories=spram_placement(design.network, family, design.manifest["arch"],
                                 **design.options))
    cycles = design.manifest["cycles_per_inference"]
    result = {
        "design": design.top, "arch": design.manifest["arch"], "device": device,
        "family": family,
        "utilization": {name: {"used": used, "available": available}
                        for name, (used, available) in utilization(report, device).items()},
        "cells": report.cells, "lut_mapper": report.mapper, "packed": report.packed,
        "fmax_mhz": fmax, "target_mhz": target,
        "cycles_per_inference": cycles,
        "inferences_per_second": fmax * 1e6 / cycles,
        "seconds": {"yosys": round(report.seconds, 1), "nextpnr": round(pnr_seconds, 1)},
        "note": "through a register harness (serial input, XOR-folded output): the area "
                "includes the harness's shift register, one flip-flop per input port bit",
    }
    (folder / "report.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


def packed_line(packed) -> str:
    """What :func:`hwnn.tools.absorb.absorb_registers` did, as a line (empty when nothing)."""
    if not packed or not packed.get("flip_flops"):
        return ""
    return (f"{packed['flip_flops']} pipeline flip-flops moved into block RAM / DSP registers "
            f"({packed['bram_output_registers']} block RAM outputs, "
            f"{packed['dsp_output_registers']} DSP outputs, "
            f"{packed['dsp_input_registers']} DSP operands)\n")


def format_report(result) -> str:
    """The report as text: resources with their share of the device, Fmax, throughput."""
    from ..flow.report import format_table
    rows = [(name.upper(), entry["used"], entry["available"],
             f"{100 * entry['used'] / entry['available']:.1f}%")
            for name, entry in result["utilization"].items()]
    table = format_table(("resource", "used", "available", "share"), rows, right={1, 2, 3})
    met = "met" if result["fmax_mhz"] >= result["target_mhz"] else "NOT met"
    return (f"{result['design']} ({result['arch']}) on {result['device'].upper()}\n{table}\n"
            f"Fmax {result['fmax_mhz']:.1f} MHz (target {result['target_mhz']:g} MHz: {met}); "
            f"{result['cycles_per_inference']:g} cycles per inference: "
            f"{result['inferences_per_second']:,.0f} inferences per second\n"
            f"{packed_line(result['packed'])}"
            f"Yosys {result['seconds']['yosys']:.0f} s, nextpnr "
            f"{result['seconds']['nextpnr']:.0f} s, LUT mapper {result['lut_mapper']}")
