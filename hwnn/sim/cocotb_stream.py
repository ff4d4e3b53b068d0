"""cocotb test module: stream input beats through a generated design, record output beats.

The runner (:func:`hwnn.sim.simulate.simulate`) passes a JSON job in ``HWNN_SIM_JOB``: the
input beats (hex payloads, ``last`` included), how many output beats to collect, whether to
stall at random (seeded), the design's performance counters to read at the end, and the file
for the results (output payloads with their cycles, the cycle each input beat was accepted,
and the counters). Comparison with the golden model happens in Python, outside the simulator.
Handshakes are evaluated after the inputs have settled on the falling edge, for the rising
edge that follows, which is exact on every simulator.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly, RisingEdge

_JOB = json.loads(os.environ.get("HWNN_SIM_JOB", "{}"))
_TIMEOUT_US = float(_JOB.get("timeout_us", 1000))


@cocotb.test(timeout_time=_TIMEOUT_US, timeout_unit="us")
async def stream_vectors(dut):
    job = _JOB
    with open(job["beats"]) as file:
        beats = [int(word, 16) for word in json.load(file)]
    n_outputs = job["n_outputs"]
    rng = random.Random(job["seed"])
    stalls = job["seed"] is not None

    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i_stream__valid.value = 0
    dut.o_stream__ready.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0

    outputs, output_cycles, input_cycles = [], [], []
    next_input, offering, cycle = 0, False, 0
    while len(outputs) < n_outputs:
        await FallingEdge(dut.clk)
        cycle += 1
        if not offering and next_input < len(beats):
            # A producer may idle before offering a beat, never withdraw one it offers.
            offering = not (stalls and rng.random() < 0.3)
            if offering:
                dut.i_stream__payload.value = beats[next_input]
        dut.i_stream__valid.value = int(offering)
        ready = int(not stalls or rng.random() < 0.6)
        dut.o_stream__ready.value = ready
        await ReadOnly()
        if offering and dut.i_stream__ready.value:
            input_cycles.append(cycle)
            next_input += 1
            offering = False
        if ready and dut.o_stream__valid.value:
            outputs.append(format(int(dut.o_stream__payload.value), "x"))
            output_cycles.append(cycle)

    # Performance counters of the design, if it has any, after the last output.
    counters = {name: int(getattr(dut, name).value) for name in job.get("counters", [])}
    with open(job["results"], "w") as file:
        json.dump({"outputs": outputs, "output_cycles": output_cycles,
                   "input_cycles": input_cycles, "counters": counters}, file)
