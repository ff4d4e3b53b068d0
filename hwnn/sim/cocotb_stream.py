"""cocotb test module: stream input beats through a generated design, record output beats.

The runner (:func:`hwnn.sim.simulate.simulate`) passes a JSON job in ``HWNN_SIM_JOB``: the
input beats (hex payloads, ``last`` included), how many output beats to collect, whether to
stall at random (seeded), the words of the design's load stream if it has one (fed from the
start, :class:`~hwnn.sim.loader.WordLoader`), the design's performance counters to read at
the end, and the file for the results (output payloads with their cycles, the cycle each
input beat was accepted, and the counters). Comparison with the golden model happens in
Python, outside the simulator.
Handshakes are evaluated after the inputs have settled on the falling edge, for the rising edge
that follows, which is exact on every simulator. Without stalls, the cycles in which nothing
can happen (the input beat on offer is refused, or none is left and valid is already low, and
no output is valid) are skipped: the test sleeps until the design raises ``i_stream.ready`` or
``o_stream.valid`` (which, like all its outputs, change only at a rising clock edge while the
inputs hold still) and counts cycles by simulation time, so a design that works for hundreds of
cycles per input (a convolution) costs Python nothing in between.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, First, ReadOnly, RisingEdge
from cocotb.utils import get_sim_time

from hwnn.sim.loader import WordLoader, drive_cocotb

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

    loader = WordLoader([int(word, 16) for word in job["load"]], job["seed"]) \
        if job.get("load") else None
    outputs, output_cycles, input_cycles = [], [], []
    next_input, offering = 0, False
    await FallingEdge(dut.clk)
    first_fall = get_sim_time("ns")
    while True:
        cycle = 1 + round(get_sim_time("ns") - first_fall) // 10
        if not offering and next_input < len(beats):
            # A producer may idle before offering a beat, never withdraw one it offers.
            offering = not (stalls and rng.random() < 0.3)
            if offering:
                dut.i_stream__payload.value = beats[next_input]
        dut.i_stream__valid.value = int(offering)
        offered = offering
        ready = int(not stalls or rng.random() < 0.6)
        dut.o_stream__ready.value = ready
        loading = loader is not None and not loader.done
        if loader is not None:          # (valid low once every word is taken)
            load_ready = drive_cocotb(loader, dut)
        await ReadOnly()
        if loading:
            loader.observe(0, load_ready())
        if offering and dut.i_stream__ready.value:
            input_cycles.append(cycle)
            next_input += 1
            offering = False
        output_valid = dut.o_stream__valid.value
        if ready and output_valid:
            outputs.append(format(int(dut.o_stream__payload.value), "x"))
            output_cycles.append(cycle)
        if len(outputs) == n_outputs:
            break
        # Refused, or none left and none offered in this cycle (the cycle after the last
        # transfer must still drive valid low before the design may be left alone).
        input_waits = offering or (next_input == len(beats) and not offered)
        if not stalls and input_waits and not output_valid and not loading:
            # Nothing changes until the design raises one of these at a rising edge.
            await First(RisingEdge(dut.i_stream__ready), RisingEdge(dut.o_stream__valid))
        await FallingEdge(dut.clk)

    # Performance counters of the design, if it has any, after the last output.
    counters = {name: int(getattr(dut, name).value) for name in job.get("counters", [])}
    with open(job["results"], "w") as file:
        json.dump({"outputs": outputs, "output_cycles": output_cycles,
                   "input_cycles": input_cycles, "counters": counters}, file)
