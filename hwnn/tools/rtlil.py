"""Read-during-write freedom for the memories of an Amaranth RTLIL netlist.

hwnn marks a memory ``no_rw_check`` where the design never uses the data of a read that meets
a write to the same address in the same cycle (the systolic overlay's activation, accumulator
and output memories; the sliding-window unit's line buffers). Amaranth writes its
synchronous read ports as ``$memrd_v2`` cells with ``COLLISION_X_MASK`` 0, which asks for the
old data on such a collision; Yosys honours ``no_rw_check`` only where it merges a read's
output register itself (the Verilog path of ``hwnn synth``), so from RTLIL an iCE40 board build
emulated the old data around every such block RAM: a second register on the write data and a
comparison and choice on the read data (about 540 logic cells on the 2x4 overlay). This module
sets those read ports' ``COLLISION_X_MASK`` to all ones, as the attribute says.
"""

import re

__all__ = ["honor_no_rw_check"]

_MODULE = re.compile(r"^module (\S+)\n(.*?)^end\n", re.M | re.S)
_UNCHECKED = re.compile(r"^  attribute \\no_rw_check 1\n(?:  attribute .*\n)*"
                        r"  memory [^\n]* (\\\S+)\n", re.M)
_READ_PORT = re.compile(r"^  cell \$memrd_v2 \S+\n(?:    .*\n)*?  end\n", re.M)
_MEMID = re.compile(r'^    parameter \\MEMID "\\(\\\S+)"\n', re.M)
_COLLISION = re.compile(r"^(    parameter \\COLLISION_X_MASK )(\d+)'[01]+\n", re.M)


def honor_no_rw_check(text: str) -> str:
    """``text`` (RTLIL) with the ``COLLISION_X_MASK`` of every read port of a memory marked
    ``no_rw_check`` set to all ones (don't care which data a read that meets a write
    returns); everything else byte for byte as it was."""
    def module(match):
        unchecked = set(_UNCHECKED.findall(match.group(2)))
        if not unchecked:
            return match.group(0)

        def port(cell):
            memid = _MEMID.search(cell.group(0))
            if memid is None or memid.group(1) not in unchecked:
                return cell.group(0)
            return _COLLISION.sub(lambda mask: f"{mask.group(1)}{mask.group(2)}'"
                                               f"{'1' * int(mask.group(2))}\n", cell.group(0))
        return match.group(0).replace(match.group(2), _READ_PORT.sub(port, match.group(2)))
    return _MODULE.sub(module, text)
