"""The SPI flash of :class:`hwnn.sim.flash.SpiFlashModel` on the pins of a design under cocotb.

:func:`serve_flash` is the adapter any cocotb test can start. The module is also a cocotb test
module: :func:`read_flash_words` runs a :class:`~hwnn.rtl.flash.FlashReader`'s Verilog (ports
``clk``, ``rst``, ``cs``, ``sck``, ``copi``, ``cipo``, ``o_stream__*``, ``done``) against the
model. Its runner passes a JSON job in ``HWNN_FLASH_JOB``: the flash ``image`` (hex), its
``base``, whether it starts ``asleep`` and its ``wake_time`` (ns), the ``seed`` of the random
backpressure (:func:`~hwnn.sim.flash.ready_levels`), a time limit (``timeout_us``) and the
``results`` file. That receives the words taken, the clock edge each was taken at (the first
after reset is 1), and the model's commands and violations; comparing them with what was
expected happens in Python, outside the simulator. The test fails if the reader moves (a word,
CS or SCK) after ``done``.
"""

import json
import os
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly
from cocotb.utils import get_sim_time

from .flash import SpiFlashModel, ready_levels

__all__ = ["serve_flash"]

_JOB = json.loads(os.environ.get("HWNN_FLASH_JOB", "{}"))

#: Clock cycles watched after ``done`` rises, for a stray word or SCK edge.
_TAIL_CYCLES = 32


async def serve_flash(dut_cs, dut_sck, dut_copi, dut_cipo, model, *, cs_active_low=False,
                      time_unit="ns"):
    """Connect ``model`` (a :class:`~hwnn.sim.flash.SpiFlashModel`) to a design's flash pins
    (signal handles) for as long as the test runs: start it with ``cocotb.start_soon``.

    Whenever CS or SCK changes the model takes the levels of CS, SCK and COPI, and ``dut_cipo``
    gets its answer; the model's times are the simulation time in ``time_unit``. COPI is read
    when SCK or CS changes, so it must not change at the same time as SCK rises (mode 0 has it
    change while SCK is low). ``cs_active_low`` says that 0 on ``dut_cs`` selects the flash (a
    top with the CS# pin itself), else 1 does (the CS of a board resource, which inverts it).
    """
    dut_cipo.value = model.cipo
    while True:
        await First(dut_cs.value_change, dut_sck.value_change)
        cs = int(dut_cs.value) ^ int(cs_active_low)
        dut_cipo.value = model.step(cs, int(dut_sck.value), int(dut_copi.value),
                                    time=get_sim_time(time_unit))


@cocotb.test(timeout_time=float(_JOB.get("timeout_us", 1000)), timeout_unit="us")
async def read_flash_words(dut):
    job = _JOB
    model = SpiFlashModel(bytes.fromhex(job["image"]), base=job["base"], asleep=job["asleep"],
                          wake_time=job["wake_time"])
    levels = ready_levels(job["seed"])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    cocotb.start_soon(serve_flash(dut.cs, dut.sck, dut.copi, dut.cipo, model))
    dut.rst.value = 1
    dut.o_stream__ready.value = 0
    for _ in range(3):
        await FallingEdge(dut.clk)
    dut.rst.value = 0
    # ``edge`` counts the rising clock edges since reset (the first without it is 1). Inputs
    # are set on the falling edge and the handshake read, settled, for the rising edge that
    # follows.
    words, cycles, edge, tail = [], [], 1, None
    while tail != 0:
        await FallingEdge(dut.clk)
        edge += 1
        ready = next(levels)
        dut.o_stream__ready.value = ready
        await ReadOnly()
        valid = int(dut.o_stream__valid.value)
        if ready and valid:
            words.append(int(dut.o_stream__payload.value))
            cycles.append(edge)
        if tail is not None:
            tail -= 1
            assert not (valid or dut.cs.value or dut.sck.value) and dut.done.value, \
                f"the reader moved after done, before edge {edge}"
        elif dut.done.value:
            tail = _TAIL_CYCLES
    with open(job["results"], "w") as file:
        json.dump({"words": words, "cycles": cycles, "commands": model.commands,
                   "violations": model.violations}, file)
