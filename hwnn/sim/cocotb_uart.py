"""cocotb test module: exchange host-link frames with a simulated board top over its UART.

The runner (:func:`hwnn.sim.uart.simulate_board`) passes a JSON job in ``HWNN_SIM_JOB``: the
byte sequences to send on ``rx`` (hex), one after the other, each followed by waiting for the
reply bytes it expects (``expect``: how many bytes to collect before the next sequence); the
bit time in cycles of the link's clock (``clk`` at 10 ns, or with ``link`` a clock of its own:
its clock and reset ports and period, reset after ``clk``'s as on a board); the board's flash
if it has one (its image file, base address and wake-up time in cycles, served by
:func:`hwnn.sim.cocotb_flash.serve_flash`); and the results file, which receives every byte
the board sent on ``tx``. The UART is modelled here, in the
testbench: 8N1, LSB first, sampled mid-bit.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge

from hwnn.sim.cocotb_flash import serve_flash
from hwnn.sim.flash import SpiFlashModel

_JOB = json.loads(os.environ.get("HWNN_SIM_JOB", "{}"))
_TIMEOUT_US = float(_JOB.get("timeout_us", 10_000))


@cocotb.test(timeout_time=_TIMEOUT_US, timeout_unit="us")
async def exchange_frames(dut):
    job = _JOB
    divisor = job["divisor"]
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    if flash := job.get("flash"):
        with open(flash["image"], "rb") as file:
            # The reader runs on the link's clock: its wake-up wait counts those cycles.
            period = job["link"]["period_ns"] if job.get("link") else 10
            model = SpiFlashModel(file.read(), base=flash["base"], asleep=True,
                                  wake_time=period * flash["wake_time"])
        cocotb.start_soon(serve_flash(dut.flash_cs, dut.flash_sck, dut.flash_copi,
                                      dut.flash_cipo, model))
    resets = [(dut.clk, dut.rst)]
    if link := job.get("link"):
        link_clock = getattr(dut, link["clk"])
        cocotb.start_soon(Clock(link_clock, link["period_ns"], unit="ns").start())
        resets.append((link_clock, getattr(dut, link["rst"])))
    for _, reset in resets:
        reset.value = 1
    dut.rx.value = 1
    for clock, reset in resets:
        await ClockCycles(clock, 3)
        reset.value = 0
    uart_clock = resets[-1][0]
    received = []

    async def receive():
        while True:
            await FallingEdge(uart_clock)
            if int(dut.tx.value) == 0:
                await ClockCycles(uart_clock, divisor // 2, rising=False)
                byte = 0
                for i in range(8):
                    await ClockCycles(uart_clock, divisor, rising=False)
                    byte |= int(dut.tx.value) << i
                await ClockCycles(uart_clock, divisor, rising=False)
                received.append(byte)

    cocotb.start_soon(receive())
    for exchange in job["exchanges"]:
        for byte in bytes.fromhex(exchange["send"]):
            for bit in [0, *((byte >> i) & 1 for i in range(8)), 1]:
                dut.rx.value = bit
                await ClockCycles(uart_clock, divisor)
        wanted = len(received) + exchange["expect"]
        while len(received) < wanted:
            await FallingEdge(uart_clock)
    with open(job["results"], "w") as file:
        json.dump({"received": bytes(received).hex()}, file)
