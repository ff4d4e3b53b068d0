"""Pipeline registers into the block RAM and DSP registers of an ECP5 (and the DSP blocks of
an iCE40), on Yosys' netlist.

Yosys maps an ECP5 block RAM read port without its output register (``REGMODE NOREG``: 5.6 ns
from clock to data at speed grade 6) and a multiplier to a ``MULT18X18D`` without its input or
output registers (3.9 ns through it), even when the design registers the data right there;
the fabric flip-flop then sits one routing hop (1-3 ns, DSP blocks being sparse) away, and
no path through a block RAM or DSP block makes 150 MHz. :func:`absorb_registers` moves those
flip-flops into the blocks, cycle for cycle the same logic:

* a ``DP16KD`` read port each of whose used outputs feeds one flip-flop and nothing else
  becomes ``REGMODE OUTREG``, clocked by the port's clock and enabled (``OCE``) by those
  flip-flops' common enable (in the 36-bit pseudo-dual-port mode both REGMODEs, as nextpnr
  sets them for a ``PDPW16KD`` with ``REGMODE OUTREG``);
* a ``MULT18X18D`` each of whose used products feeds one flip-flop and nothing else gets its
  output register (``REG_OUTPUT_CLK``);
* a ``MULT18X18D`` operand whose bits all come from flip-flops (or are constant 0) gets its
  input register (``REG_INPUTA_CLK`` / ``REG_INPUTB_CLK``) fed from those flip-flops' inputs; a
  flip-flop left without other loads is removed.

A flip-flop qualifies when it starts at 0 and has no reset (``TRELLIS_FF`` with ``REGSET
RESET`` and no ``LSR``; the hwnn generators leave the reset off data registers for this), is
clocked on the rising edge, and shares its clock and enable with the others of its group;
the block registers also start at 0.

On an iCE40, Yosys maps a signed multiplier to an ``SB_MAC16`` whose 16x16 product leaves
unregistered even where the design registers it, when the register is wider than the product
(Amaranth sign-extends a product into its signal: two bits of one flip-flop); each product
register then takes a logic cell of its own (128 on a 2x4 array). A ``SB_MAC16`` in the
16x16 mode, both output halves the product, always enabled and never reset, each of whose
used product bits feeds one plain ``SB_DFF`` (which starts at 0, no enable, no reset) on its
clock gets its product register (``PIPELINE_16x16_MULT_REG2``) instead; and a ``SB_MAC16``
always enabled whose operand ``A`` (``B``) comes from plain ``SB_DFF`` flip-flops on its clock
(or constant 0), its input register never reset (``IRSTTOP``, ``IRSTBOT``), gets that input
register (``A_REG``, ``B_REG``) fed from the flip-flops' inputs, as on an ECP5.
"""

import json
import sys
from collections import defaultdict
from pathlib import Path

__all__ = ["REPORT_PREFIX", "absorb_file", "absorb_registers"]

#: The line ``python -m hwnn.tools.absorb NETLIST TOP`` prints its counts on, as JSON.
REPORT_PREFIX = "hwnn.tools.absorb: "

_BRAM_PORT_BITS = 18
_DSP_OPERAND_BITS = 18
_DSP_PRODUCT_BITS = 36
#: The data input of each kind of flip-flop that qualifies.
_DATA_PIN = {"TRELLIS_FF": "DI", "SB_DFF": "D"}


class _Netlist:
    """One module of a Yosys JSON netlist with each net bit's driver and loads."""

    def __init__(self, module):
        self.cells = module["cells"]
        self.drivers, self.loads = {}, defaultdict(list)
        for name, cell in self.cells.items():
            for port, bits in cell["connections"].items():
                direction = cell.get("port_directions", {}).get(port, "input")
                for bit in bits:
                    if isinstance(bit, str):
                        continue
                    if direction == "output":
                        self.drivers[bit] = (name, port)
                    else:
                        self.loads[bit].append((name, port))
        for port in module.get("ports", {}).values():
            if port["direction"] != "input":
                for bit in port["bits"]:
                    self.loads[bit].append((None, None))

    def pin(self, cell, port):
        """The single bit on ``port`` of ``cell`` (``"0"`` when unconnected)."""
        bits = self.cells[cell]["connections"].get(port, ["0"])
        return bits[0]

    def flip_flop(self, name):
        """``(clock, enable)`` of a flip-flop that qualifies (see the module's description),
        else None."""
        cell = self.cells.get(name)
        if cell is not None and cell["type"] == "SB_DFF":
            return self.pin(name, "C"), "1"
        if cell is None or cell["type"] != "TRELLIS_FF":
            return None
        params = cell["parameters"]
        if (params.get("REGSET", "RESET") != "RESET" or params.get("CLKMUX", "CLK") != "CLK"
                or self.pin(name, "LSR") not in ("0", "x")):
            return None
        enable = params.get("CEMUX", "1").strip()
        if enable == "CE":
            enable = self.pin(name, "CE")
        elif enable != "1":
            return None
        return self.pin(name, "CLK"), enable

    def only_flip_flop_load(self, bit):
        """The flip-flop whose data input is ``bit``'s only load, or None."""
        loads = self.loads.get(bit, [])
        if (len(loads) == 1 and self.flip_flop(loads[0][0])
                and loads[0][1] == _DATA_PIN[self.cells[loads[0][0]]["type"]]):
            return loads[0][0]
        return None

    def common(self, flip_flops):
        """The ``(clock, enable)`` every one of ``flip_flops`` has, or None."""
        settings = {self.flip_flop(name) for name in flip_flops}
        return settings.pop() if len(settings) == 1 else None

    def output_register(self, cell, outputs):
        """``({output port: flip-flop}, (clock, enable))`` when every used one of ``outputs``
        feeds one qualifying flip-flop and nothing else, with a common clock and enable."""
        connections = self.cells[cell]["connections"]
        owned = {}
        for port in outputs:
            bits = connections.get(port, [])
            if not bits or isinstance(bits[0], str) or not self.loads.get(bits[0]):
                continue
            flip_flop = self.only_flip_flop_load(bits[0])
            if flip_flop is None:
                return None
            owned[port] = flip_flop
        setting = self.common(owned.values()) if owned else None
        return (owned, setting) if setting else None

    def take_outputs(self, cell, owned):
        """Connect ``cell``'s outputs to the nets of the flip-flops they fed; remove those."""
        for port, flip_flop in owned.items():
            q = self.cells[flip_flop]["connections"]["Q"]
            self.cells[cell]["connections"][port] = list(q)
            del self.cells[flip_flop]


def _integer(value):
    """An integer parameter of Yosys' JSON netlist: a string of binary digits (or a number)."""
    text = str(value)
    return int(text, 2) if text and set(text) <= {"0", "1"} else int(text)


def _read_ports(params):
    """A block RAM's read ports as ``(clock side, output ports, REGMODE sides)``: both sides
    in the true dual-port mode; in the 36-bit pseudo-dual-port mode (a ``PDPW16KD``, which
    nextpnr turns into this form) side B reads all 36 bits and one REGMODE sets both
    sides."""
    widths = [_integer(params.get(f"DATA_WIDTH_{side}", 18)) for side in "AB"]
    if widths[0] == 2 * _BRAM_PORT_BITS:
        outputs = [f"DO{side}{i}" for side in "AB" for i in range(_BRAM_PORT_BITS)]
        return [("B", outputs, "AB")]
    if max(widths) > _BRAM_PORT_BITS:
        return []
    return [(side, [f"DO{side}{i}" for i in range(_BRAM_PORT_BITS)], side) for side in "AB"]


def _cells(netlist, kind):
    """``(name, cell, parameters)`` of each cell of type ``kind``, in a stable list (the
    caller may delete others as it goes)."""
    return [(name, cell, cell["parameters"]) for name, cell in list(netlist.cells.items())
            if cell["type"] == kind]


def _absorb_bram(module, counts):
    netlist = _Netlist(module)
    for name, cell, params in _cells(netlist, "DP16KD"):
        for side, outputs, regmodes in _read_ports(params):
            if any(params.get(f"REGMODE_{mode}", "NOREG") != "NOREG" for mode in regmodes):
                continue
            if (params.get(f"CLK{side}MUX", f"CLK{side}") != f"CLK{side}"
                    or any(netlist.pin(name, f"RST{mode}") != "0" for mode in regmodes)):
                continue
            found = netlist.output_register(name, outputs)
            if found is None or found[1][0] != netlist.pin(name, f"CLK{side}"):
                continue
            owned, (_, enable) = found
            params.update({f"REGMODE_{mode}": "OUTREG" for mode in regmodes})
            _connect(cell, f"OCE{side}", enable)
            netlist.take_outputs(name, owned)
            counts["bram_output_registers"] += 1
            counts["flip_flops"] += len(owned)


def _connect(cell, pin, bit):
    """Drive input ``pin`` of ``cell`` with ``bit``."""
    cell["connections"][pin] = [bit]
    cell.setdefault("port_directions", {})[pin] = "input"


def _dsp_clock(cell, clock):
    """Whether ``cell``'s register clock CLK0 is ``clock`` (connecting it if free)."""
    current = cell["connections"].get("CLK0", ["0"])[0]
    if current in ("0", "x"):
        _connect(cell, "CLK0", clock)
        _connect(cell, "RST0", "0")
        return True
    return current == clock


def _absorb_dsp_outputs(module, counts):
    netlist = _Netlist(module)
    for name, cell, params in _cells(netlist, "MULT18X18D"):
        if params.get("REG_OUTPUT_CLK", "NONE") != "NONE" or params.get(
                "REG_PIPELINE_CLK", "NONE") != "NONE":
            continue
        found = netlist.output_register(name, [f"P{i}" for i in range(_DSP_PRODUCT_BITS)])
        if found is None:
            continue
        owned, (clock, enable) = found
        if not _dsp_clock(cell, clock):
            continue
        params.update(REG_OUTPUT_CLK="CLK0", REG_OUTPUT_CE="CE0", REG_OUTPUT_RST="RST0")
        _connect(cell, "CE0", enable)
        netlist.take_outputs(name, owned)
        counts["dsp_output_registers"] += 1
        counts["flip_flops"] += len(owned)


def _registered_operand(netlist, bits):
    """``(clock, enable)`` and the bits in front of the flip-flops when every bit of an
    operand (``bits``, as connected) comes from a qualifying flip-flop with a common clock and
    enable (or is constant 0 or undefined: a register starts at 0); else None."""
    if any(bit in ("1", "z") for bit in bits):          # a register would start at 0
        return None
    drivers = {bit: netlist.drivers.get(bit) for bit in bits if not isinstance(bit, str)}
    if not drivers or any(driver is None or driver[1] != "Q"
                          or not netlist.flip_flop(driver[0]) for driver in drivers.values()):
        return None
    setting = netlist.common(driver[0] for driver in drivers.values())
    if setting is None:
        return None
    inputs = [bit if isinstance(bit, str) else netlist.cells[drivers[bit][0]]["connections"][
                  _DATA_PIN[netlist.cells[drivers[bit][0]]["type"]]][0] for bit in bits]
    return setting, inputs, {driver[0] for driver in drivers.values()}


def _remove_unloaded(module, flip_flops, counts):
    """Remove those of ``flip_flops`` that drive nothing now (they fed only DSP operands)."""
    loads = _Netlist(module).loads
    for flip_flop in sorted(flip_flops):
        if not loads.get(module["cells"][flip_flop]["connections"]["Q"][0]):
            del module["cells"][flip_flop]
            counts["flip_flops"] += 1


def _absorb_dsp_inputs(module, counts):
    netlist = _Netlist(module)
    sources = set()
    for _name, cell, params in _cells(netlist, "MULT18X18D"):
        for operand, enable_pin in (("A", "CE1"), ("B", "CE2")):
            if params.get(f"REG_INPUT{operand}_CLK", "NONE") != "NONE":
                continue
            ports = [f"{operand}{i}" for i in range(_DSP_OPERAND_BITS)]
            found = _registered_operand(
                netlist, [cell["connections"].get(port, ["0"])[0] for port in ports])
            if found is None or not _dsp_clock(cell, found[0][0]):
                continue
            (_, enable), inputs, flip_flops = found
            for port, bit in zip(ports, inputs, strict=True):
                cell["connections"][port] = [bit]
            sources |= flip_flops
            params.update({f"REG_INPUT{operand}_CLK": "CLK0",
                           f"REG_INPUT{operand}_CE": enable_pin,
                           f"REG_INPUT{operand}_RST": "RST0"})
            _connect(cell, enable_pin, enable)
            counts["dsp_input_registers"] += 1
    _remove_unloaded(module, sources, counts)


def _absorb_mac_inputs(module, counts):
    netlist = _Netlist(module)
    sources = set()
    for name, cell, params in _cells(netlist, "SB_MAC16"):
        if netlist.pin(name, "CE") != "1":
            continue
        for operand, reset in (("A", "IRSTTOP"), ("B", "IRSTBOT")):
            if _integer(params.get(f"{operand}_REG", 0)) or netlist.pin(name, reset) != "0":
                continue
            found = _registered_operand(netlist, cell["connections"][operand])
            clock = netlist.pin(name, "CLK")
            if found is None or clock not in ("0", "x", found[0][0]):
                continue
            _connect(cell, "CLK", found[0][0])
            cell["connections"][operand] = found[1]
            sources |= found[2]
            params[f"{operand}_REG"] = "1"
            counts["dsp_input_registers"] += 1
    _remove_unloaded(module, sources, counts)


def _absorb_mac_products(module, counts):
    netlist = _Netlist(module)
    for name, cell, params in _cells(netlist, "SB_MAC16"):
        if (_integer(params.get("PIPELINE_16x16_MULT_REG2", 0))
                or _integer(params.get("MODE_8x8", 0))
                or any(_integer(params.get(f"{half}OUTPUT_SELECT", 0)) != 3
                       for half in ("TOP", "BOT"))
                or netlist.pin(name, "CE") != "1" or netlist.pin(name, "IRSTBOT") != "0"):
            continue
        product = cell["connections"]["O"]
        owned = {}
        for index, bit in enumerate(product):
            if isinstance(bit, str) or not netlist.loads.get(bit):
                continue
            owned[index] = netlist.only_flip_flop_load(bit)
        if not owned or None in owned.values():
            continue
        setting = netlist.common(owned.values())
        clock = netlist.pin(name, "CLK")
        if setting is None or clock not in ("0", "x", setting[0]):
            continue
        _connect(cell, "CLK", setting[0])
        params["PIPELINE_16x16_MULT_REG2"] = "1"
        for index, flip_flop in owned.items():
            product[index] = netlist.cells[flip_flop]["connections"]["Q"][0]
            del netlist.cells[flip_flop]
        counts["dsp_output_registers"] += 1
        counts["flip_flops"] += len(owned)


def absorb_registers(netlist: dict, top: str) -> dict:
    """Move the qualifying flip-flops of module ``top`` of ``netlist`` (Yosys' JSON netlist,
    changed in place) into block RAM output and DSP input/output registers. Returns the counts:
    ``bram_output_registers``, ``dsp_output_registers``, ``dsp_input_registers`` (ports or
    operands registered) and ``flip_flops`` (fabric flip-flops removed)."""
    if top not in netlist.get("modules", {}):
        raise ValueError(f"The netlist has no module {top!r}")
    counts = dict.fromkeys(("bram_output_registers", "dsp_output_registers",
                            "dsp_input_registers", "flip_flops"), 0)
    module = netlist["modules"][top]
    # Block RAM first: its output register is worth more than a DSP input register fed by it.
    for step in (_absorb_bram, _absorb_dsp_outputs, _absorb_dsp_inputs, _absorb_mac_products,
                 _absorb_mac_inputs):
        step(module, counts)
    return counts


def absorb_file(path, top) -> dict:
    """:func:`absorb_registers` on a JSON netlist file, rewritten in place."""
    path = Path(path)
    netlist = json.loads(path.read_text())
    counts = absorb_registers(netlist, top)
    path.write_text(json.dumps(netlist))
    return counts


if __name__ == "__main__":     # the board build scripts run it between Yosys and nextpnr
    if len(sys.argv) != 3:
        sys.exit("usage: python -m hwnn.tools.absorb NETLIST.json TOP")
    print(REPORT_PREFIX + json.dumps(absorb_file(sys.argv[1], sys.argv[2]), sort_keys=True))
