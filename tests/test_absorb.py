"""Moving pipeline flip-flops into ECP5 block RAM and DSP registers, on small Yosys-style
JSON netlists: what moves, how it is rewired, and everything that must stay."""

import copy
import json

import pytest

from hwnn.tools.absorb import absorb_file, absorb_registers

CLOCK, OTHER_CLOCK, ENABLE, RESET = 2, 3, 4, 5


class Builder:
    """A Yosys JSON netlist of one module ``top``, built cell by cell."""

    def __init__(self):
        self.cells, self.ports, self.next_bit = {}, {}, 100

    def bits(self, count):
        start, self.next_bit = self.next_bit, self.next_bit + count
        return list(range(start, start + count))

    def cell(self, name, kind, params, inputs, outputs):
        self.cells[name] = {
            "type": kind, "parameters": dict(params),
            "port_directions": {**{p: "input" for p in inputs}, **{p: "output" for p in outputs}},
            "connections": {**{p: [b] for p, b in inputs.items()},
                            **{p: [b] for p, b in outputs.items()}},
        }

    def flip_flop(self, name, d, *, clock=CLOCK, enable=None, reset=None, regset="RESET"):
        q = self.bits(1)[0]
        params = {"CEMUX": "CE" if enable is not None else "1 ", "CLKMUX": "CLK",
                  "GSR": "DISABLED", "LSRMUX": "LSR", "REGSET": regset}
        inputs = {"CLK": clock, "DI": d}
        if enable is not None:
            inputs["CE"] = enable
        if reset is not None:
            inputs["LSR"] = reset
        self.cell(name, "TRELLIS_FF", params, inputs, {"Q": q})
        return q

    def lut(self, name, *inputs):
        out = self.bits(1)[0]
        pins = dict(zip("ABCD"[:len(inputs)], inputs, strict=True))
        self.cell(name, "LUT4", {"INIT": "0" * 16}, pins, {"Z": out})
        return out

    def output(self, name, bits):
        self.ports[name] = {"direction": "output", "bits": list(bits)}

    def bram(self, name, width=9, clock=CLOCK, rst="0"):
        """A DP16KD reading ``width`` bits on port B (36: the pseudo-dual-port mode, DOA
        after DOB as Yosys maps a PDPW16KD); returns the data bits."""
        data = self.bits(width)
        outputs = [f"DOB{i}" for i in range(18)] + [f"DOA{i}" for i in range(18)]
        self.cell(name, "DP16KD",
                  {"DATA_WIDTH_A": format(width, "032b"), "DATA_WIDTH_B": format(width, "032b"),
                   "REGMODE_A": "NOREG", "REGMODE_B": "NOREG", "CLKBMUX": "CLKB"},
                  {"CLKB": clock, "CEB": "1", "OCEB": "1", "RSTB": rst, "CLKA": "0",
                   "OCEA": "0", "RSTA": "0"},
                  dict(zip(outputs[:width], data, strict=True)))
        return data

    def mult(self, name, a, b):
        """A MULT18X18D of operand bits ``a`` and ``b`` (padded with 0); returns 36 P bits."""
        product = self.bits(36)
        inputs = {f"A{i}": (a[i] if i < len(a) else "0") for i in range(18)}
        inputs |= {f"B{i}": (b[i] if i < len(b) else "0") for i in range(18)}
        inputs |= {"SIGNEDA": "1", "SIGNEDB": "1"}
        self.cell(name, "MULT18X18D", {}, inputs, {f"P{i}": bit for i, bit in enumerate(product)})
        return product

    def ice40_flip_flop(self, name, d, *, clock=CLOCK, enable=None):
        """An iCE40 flip-flop: ``SB_DFF``, or ``SB_DFFE`` with an ``enable``."""
        q = self.bits(1)[0]
        inputs = {"C": clock, "D": d} | ({} if enable is None else {"E": enable})
        self.cell(name, "SB_DFF" if enable is None else "SB_DFFE", {}, inputs, {"Q": q})
        return q

    def mac(self, name, a, b, *, ce="1", **params):
        """An SB_MAC16 multiplying 16-bit ``a`` by ``b`` (16x16 product on both output
        halves, as Yosys maps a signed multiplier); returns its 32 output bits."""
        product = self.bits(32)
        self.cells[name] = {
            "type": "SB_MAC16",
            "parameters": {"MODE_8x8": "0", "PIPELINE_16x16_MULT_REG2": "0",
                           "TOPOUTPUT_SELECT": "11", "BOTOUTPUT_SELECT": "11",
                           "A_SIGNED": "1", "B_SIGNED": "1", **params},
            "port_directions": {"A": "input", "B": "input", "CLK": "input", "CE": "input",
                                "IRSTBOT": "input", "O": "output"},
            "connections": {"A": list(a), "B": list(b), "CLK": ["0"], "CE": [ce],
                            "IRSTBOT": ["0"], "O": product},
        }
        return product

    def netlist(self):
        return {"modules": {"top": {"ports": copy.deepcopy(self.ports),
                                    "cells": copy.deepcopy(self.cells), "netnames": {}}}}


def registered_bram(width=9, **ff_options):
    net = Builder()
    data = net.bram("ram", width=width)
    qs = [net.flip_flop(f"ff{i}", bit, **ff_options) for i, bit in enumerate(data)]
    net.output("q", qs)
    return net, qs


def cells(netlist):
    return netlist["modules"]["top"]["cells"]


@pytest.mark.parametrize("enable", [None, ENABLE], ids=["always", "enabled"])
def test_block_ram_output_register_takes_the_flip_flops(enable):
    net, qs = registered_bram(enable=enable)
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    assert counts == {"bram_output_registers": 1, "dsp_output_registers": 0,
                      "dsp_input_registers": 0, "flip_flops": 9}
    ram = cells(netlist)["ram"]
    assert ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["parameters"]["REGMODE_A"] == "NOREG"
    assert ram["connections"]["OCEB"] == ["1" if enable is None else ENABLE]
    assert [ram["connections"][f"DOB{i}"][0] for i in range(9)] == qs
    assert set(cells(netlist)) == {"ram"}


def test_pseudo_dual_port_block_ram_registers_all_36_bits_on_its_read_side():
    net, qs = registered_bram(width=36, enable=ENABLE)
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    assert counts["bram_output_registers"] == 1 and counts["flip_flops"] == 36
    ram = cells(netlist)["ram"]
    assert ram["parameters"]["REGMODE_A"] == ram["parameters"]["REGMODE_B"] == "OUTREG"
    assert ram["connections"]["OCEB"] == [ENABLE] and ram["connections"]["OCEA"] == ["0"]
    outputs = [f"DOB{i}" for i in range(18)] + [f"DOA{i}" for i in range(18)]
    assert [ram["connections"][port][0] for port in outputs] == qs


@pytest.mark.parametrize("case", [
    "second load", "reset", "starts at 1", "other clock", "different enables",
    "output port", "read reset", "already registered", "logic between", "wide port",
])
def test_block_ram_keeps_its_flip_flops_when_moving_them_would_change_the_logic(case):
    net = Builder()
    data = net.bram("ram", rst=RESET if case == "read reset" else "0")
    for i, bit in enumerate(data):
        options = {}
        if case == "reset" and i == 3:
            options["reset"] = RESET
        if case == "starts at 1" and i == 0:
            options["regset"] = "SET"
        if case == "other clock":
            options["clock"] = OTHER_CLOCK
        if case == "different enables" and i % 2:
            options["enable"] = ENABLE
        source = net.lut(f"lut{i}", bit) if case == "logic between" else bit
        net.flip_flop(f"ff{i}", source, **options)
    if case == "second load":
        net.lut("tap", data[4])
    if case == "output port":
        net.output("raw", [data[0]])
    if case == "already registered":
        net.cells["ram"]["parameters"]["REGMODE_B"] = "OUTREG"
    if case == "wide port":                          # no mode the pass knows
        net.cells["ram"]["parameters"]["DATA_WIDTH_B"] = format(36, "032b")
    netlist = net.netlist()
    before = copy.deepcopy(netlist)
    counts = absorb_registers(netlist, "top")
    assert counts["bram_output_registers"] == 0 and counts["flip_flops"] == 0
    assert netlist == before


def test_dsp_output_register_takes_the_flip_flops_of_the_used_product_bits():
    net = Builder()
    a = [net.flip_flop(f"a{i}", net.bits(1)[0]) for i in range(4)]
    b = [net.flip_flop(f"b{i}", net.bits(1)[0]) for i in range(4)]
    product = net.mult("mult", a, b)
    qs = [net.flip_flop(f"p{i}", product[i], enable=ENABLE) for i in range(8)]
    net.output("p", qs)
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    mult = cells(netlist)["mult"]
    assert mult["parameters"]["REG_OUTPUT_CLK"] == "CLK0"
    assert mult["parameters"]["REG_OUTPUT_CE"] == "CE0"
    assert mult["connections"]["CLK0"] == [CLOCK] and mult["connections"]["CE0"] == [ENABLE]
    assert mult["connections"]["RST0"] == ["0"]
    assert mult["port_directions"]["CE0"] == "input"
    assert [mult["connections"][f"P{i}"][0] for i in range(8)] == qs
    # The operands' flip-flops fed only the multiplier: they became its input registers.
    assert mult["parameters"]["REG_INPUTA_CLK"] == "CLK0"
    assert mult["parameters"]["REG_INPUTB_CLK"] == "CLK0"
    assert counts == {"bram_output_registers": 0, "dsp_output_registers": 1,
                      "dsp_input_registers": 2, "flip_flops": 16}
    assert set(cells(netlist)) == {"mult"}


def test_dsp_input_register_copies_a_shared_flip_flop_and_keeps_it_for_its_other_loads():
    net = Builder()
    a_sources = net.bits(3)
    a = [net.flip_flop(f"a{i}", bit, enable=ENABLE) for i, bit in enumerate(a_sources)]
    b = [net.flip_flop(f"b{i}", net.bits(1)[0], enable=ENABLE) for i in range(3)]
    # Sign extension: the top bit of A repeats.
    net.mult("mult", a + [a[-1]] * 3, b)
    net.lut("other", a[0])
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    mult = cells(netlist)["mult"]
    assert [mult["connections"][f"A{i}"][0] for i in range(6)] == (
        a_sources + [a_sources[-1]] * 3)
    assert mult["connections"]["A6"] == ["0"]
    assert mult["parameters"]["REG_INPUTA_CE"] == "CE1"
    assert mult["connections"]["CE1"] == [ENABLE] and mult["connections"]["CE2"] == [ENABLE]
    assert "a0" in cells(netlist)                     # still loaded by "other"
    assert not {"a1", "a2", "b0", "b1", "b2"} & set(cells(netlist))
    assert counts["dsp_input_registers"] == 2 and counts["flip_flops"] == 5


@pytest.mark.parametrize("case", ["constant one", "logic", "reset", "other clock"])
def test_dsp_operand_stays_unregistered_unless_every_bit_comes_from_a_plain_flip_flop(case):
    net = Builder()
    a = [net.flip_flop(f"a{i}", net.bits(1)[0],
                       reset=RESET if case == "reset" and i == 1 else None,
                       clock=OTHER_CLOCK if case == "other clock" and i == 2 else CLOCK)
         for i in range(3)]
    if case == "constant one":
        a.append("1")
    if case == "logic":
        a.append(net.lut("lut", a[0]))
    net.mult("mult", a, ["0"])
    netlist = net.netlist()
    before = copy.deepcopy(netlist)
    counts = absorb_registers(netlist, "top")
    assert counts["dsp_input_registers"] == 0
    assert netlist == before


def test_a_second_clock_is_not_mixed_into_a_dsp_block():
    net = Builder()
    a = [net.flip_flop(f"a{i}", net.bits(1)[0], clock=OTHER_CLOCK) for i in range(2)]
    product = net.mult("mult", a, ["0"])
    net.flip_flop("p0", product[0])                     # on CLOCK: output register first
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    mult = cells(netlist)["mult"]
    assert mult["parameters"].get("REG_OUTPUT_CLK") == "CLK0"
    assert "REG_INPUTA_CLK" not in mult["parameters"]
    assert counts["dsp_output_registers"] == 1 and counts["dsp_input_registers"] == 0


def test_file_is_rewritten_and_a_missing_module_is_refused(tmp_path):
    net, _ = registered_bram()
    path = tmp_path / "netlist.json"
    path.write_text(json.dumps(net.netlist()))
    assert absorb_file(path, "top")["bram_output_registers"] == 1
    assert json.loads(path.read_text())["modules"]["top"]["cells"]["ram"]["parameters"][
        "REGMODE_B"] == "OUTREG"
    with pytest.raises(ValueError, match=r"^The netlist has no module 'harness'$"):
        absorb_registers(net.netlist(), "harness")


def registered_mac(**options):
    """A MAC whose low 17 product bits each feed a flip-flop (16 of them: bits 15 and 16
    share one, as a sign-extended product does after Yosys' merging)."""
    net = Builder()
    product = net.mac("mac", net.bits(16), net.bits(16), **options.pop("mac", {}))
    qs = [net.ice40_flip_flop(f"p{i}", product[i], **options) for i in range(16)]
    net.output("p", qs + qs[15:])
    return net, product, qs


def test_ice40_mac_product_register_takes_the_flip_flops():
    net, _, qs = registered_mac()
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    mac = cells(netlist)["mac"]
    assert mac["parameters"]["PIPELINE_16x16_MULT_REG2"] == "1"
    assert mac["connections"]["CLK"] == [CLOCK]
    assert mac["connections"]["O"][:16] == qs
    assert counts == {"bram_output_registers": 0, "dsp_output_registers": 1,
                      "dsp_input_registers": 0, "flip_flops": 16}
    assert set(cells(netlist)) == {"mac"}


@pytest.mark.parametrize("case", ["enabled", "other load", "block enable", "8x8 mode",
                                  "registered", "other clock"])
def test_ice40_mac_keeps_its_flip_flops_when_moving_them_would_change_the_logic(case):
    mac = {"block enable": {"ce": ENABLE}, "8x8 mode": {"MODE_8x8": "1"},
           "registered": {"PIPELINE_16x16_MULT_REG2": "1"}}.get(case, {})
    net, product, _ = registered_mac(mac=mac, **({"enable": ENABLE} if case == "enabled"
                                                  else {}))
    if case == "other load":
        net.lut("lut", product[3])
    if case == "other clock":
        net.cells["mac"]["connections"]["CLK"] = [OTHER_CLOCK]
    netlist = net.netlist()
    before = copy.deepcopy(netlist)
    assert absorb_registers(netlist, "top")["flip_flops"] == 0
    assert netlist == before


def test_ice40_mac_operand_registers_take_the_flip_flops():
    net = Builder()
    a_sources, b_sources = net.bits(8), net.bits(8)
    a = [net.ice40_flip_flop(f"a{i}", bit) for i, bit in enumerate(a_sources)]
    b = [net.ice40_flip_flop(f"b{i}", bit) for i, bit in enumerate(b_sources)]
    # A signed (its top bit repeated), B unsigned (zeros above); a0 also feeds logic.
    net.mac("mac", a + [a[-1]] * 8, b + ["0"] * 8)
    net.lut("other", a[0])
    netlist = net.netlist()
    counts = absorb_registers(netlist, "top")
    mac = cells(netlist)["mac"]
    assert mac["parameters"]["A_REG"] == "1" and mac["parameters"]["B_REG"] == "1"
    assert mac["connections"]["A"] == a_sources + [a_sources[-1]] * 8
    assert mac["connections"]["B"] == b_sources + ["0"] * 8
    assert mac["connections"]["CLK"] == [CLOCK]
    assert "a0" in cells(netlist)                     # still loaded by "other"
    assert not {f"a{i}" for i in range(1, 8)} & set(cells(netlist))
    assert not {f"b{i}" for i in range(8)} & set(cells(netlist))
    assert counts == {"bram_output_registers": 0, "dsp_output_registers": 0,
                      "dsp_input_registers": 2, "flip_flops": 15}


@pytest.mark.parametrize("case", ["enabled", "constant one", "logic", "other clock",
                                  "block enable", "input reset", "registered"])
def test_ice40_mac_operand_stays_unregistered_unless_moving_it_keeps_the_logic(case):
    net = Builder()
    a = [net.ice40_flip_flop(f"a{i}", net.bits(1)[0],
                             enable=ENABLE if case == "enabled" and i == 1 else None,
                             clock=OTHER_CLOCK if case == "other clock" and i == 2 else CLOCK)
         for i in range(4)]
    if case == "constant one":
        a.append("1")
    if case == "logic":
        a.append(net.lut("lut", a[0]))
    mac = {"block enable": {"ce": ENABLE}, "registered": {"A_REG": "1"}}.get(case, {})
    net.mac("mac", a + ["0"] * (16 - len(a)), ["0"] * 16, **mac)
    if case == "input reset":
        net.cells["mac"]["connections"]["IRSTTOP"] = [RESET]
    netlist = net.netlist()
    before = copy.deepcopy(netlist)
    assert absorb_registers(netlist, "top")["dsp_input_registers"] == 0
    assert netlist == before
