"""cocotb test module: a :class:`~hwnn.sim.resets.ResetBench` on a generated design.

The runner (:func:`hwnn.sim.simulate.simulate_resets`) passes a JSON job in
``HWNN_RESET_JOB``: the bench's arguments, the words of the design's load stream if it has one
(fed again after every reset, :class:`~hwnn.sim.loader.WordLoader`), the file for the results
(the bench's trials and span) and a time limit. The bench's inputs are applied on the
falling edge and the handshakes read once they have settled, for the rising edge that
follows, as in :mod:`hwnn.sim.cocotb_stream`.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwnn.sim.loader import WordLoader, drive_cocotb
from hwnn.sim.resets import ResetBench

_JOB = json.loads(os.environ.get("HWNN_RESET_JOB", "{}"))


@cocotb.test(timeout_time=float(_JOB.get("timeout_us", 1000)), timeout_unit="us")
async def reset_at_any_cycle(dut):
    bench = ResetBench(**_JOB["bench"])
    loader = (WordLoader([int(word, 16) for word in _JOB["load"]], _JOB["bench"]["seed"])
              if _JOB.get("load") else None)
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    while not bench.done:
        await FallingEdge(dut.clk)
        rst, valid, word, ready = bench.drive()
        dut.rst.value = rst
        dut.i_stream__valid.value = valid
        dut.i_stream__payload.value = word
        dut.o_stream__ready.value = ready
        if loader is not None:
            load_ready = drive_cocotb(loader, dut)
        await ReadOnly()
        if loader is not None:
            loader.observe(rst, load_ready())
        valid = int(dut.o_stream__valid.value)
        bench.observe(int(dut.i_stream__ready.value), valid,
                      int(dut.o_stream__payload.value) if valid else 0)
    with open(_JOB["results"], "w") as file:
        json.dump({"trials": bench.trials, "span": bench.span}, file)
