# amaranth: UnusedElaboratable=no
"""The systolic array in Amaranth's simulator against NumPy matrix products."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from hwnn.ir.formats import Format
from hwnn.rtl.systolic import SystolicArray, SystolicParams


def run_tiles(params, tiles, rows_per_tile, seed):
    """Load each weight tile (double-buffered: the next one starts loading with the first row
    of the current one) and stream its activation rows with random idle cycles; return the
    output rows and their cycles."""
    dut = SystolicArray(params)
    rng = np.random.default_rng(seed)
    outputs, cycles = [], []
    total = sum(len(a) for a, _ in tiles)

    async def driver(ctx):
        # Load tile 0 into bank 0 first.
        async def load(tile, bank):
            for index, row in enumerate(tile):
                ctx.set(dut.i_w.payload, {"w": [int(v) for v in row], "row": index,
                                          "bank": bank})
                ctx.set(dut.i_w.valid, 1)
                await ctx.tick()
            ctx.set(dut.i_w.valid, 0)

        await load(tiles[0][1], 0)
        for index, (a_rows, _) in enumerate(tiles):
            bank = index % 2
            pending = list(a_rows)
            next_tile = tiles[index + 1][1] if index + 1 < len(tiles) else []
            loaded = 0
            while pending:
                if rng.random() < 0.2:
                    ctx.set(dut.i_a.valid, 0)          # an idle cycle in the stream of rows
                else:
                    row = pending.pop(0)
                    ctx.set(dut.i_a.payload, {"a": [int(v) for v in row], "bank": bank})
                    ctx.set(dut.i_a.valid, 1)
                # Load the next tile into the other bank meanwhile, one row per cycle.
                if loaded < len(next_tile):
                    ctx.set(dut.i_w.payload, {"w": [int(v) for v in next_tile[loaded]],
                                              "row": loaded, "bank": 1 - bank})
                    ctx.set(dut.i_w.valid, 1)
                    loaded += 1
                else:
                    ctx.set(dut.i_w.valid, 0)
                await ctx.tick()
            ctx.set(dut.i_a.valid, 0)
            while loaded < len(next_tile):              # fewer rows than the tile is tall
                ctx.set(dut.i_w.payload, {"w": [int(v) for v in next_tile[loaded]],
                                          "row": loaded, "bank": 1 - bank})
                ctx.set(dut.i_w.valid, 1)
                loaded += 1
                await ctx.tick()
            ctx.set(dut.i_w.valid, 0)

    async def monitor(ctx):
        cycle = 0
        while len(outputs) < total:
            _, _, valid, psum = await ctx.tick().sample(dut.o_psum.valid, dut.o_psum.payload)
            cycle += 1
            if valid:
                outputs.append([int(v) for v in psum])
                cycles.append(cycle)
            assert cycle < 100_000

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver)
    sim.add_testbench(monitor)
    sim.run()
    return dut, np.array(outputs), cycles


def random_values(rng, fmt, shape):
    return rng.integers(fmt.min_value, fmt.max_value + 1, size=shape)


@pytest.mark.parametrize("rows, cols", [(1, 1), (2, 3), (4, 4), (3, 2)])
@pytest.mark.parametrize("a_format, w_format", [("int8", "int8"), ("uint8", "int4"),
                                                ("int16", "uint2"), ("uint3", "uint16")])
def test_tiles_match_numpy(rows, cols, a_format, w_format):
    a_format, w_format = Format.parse(a_format), Format.parse(w_format)
    params = SystolicParams(rows, cols, a_format, w_format, max_k=rows)
    rng = np.random.default_rng(rows * 7 + cols)
    tiles = [(random_values(rng, a_format, (count, rows)),
              random_values(rng, w_format, (rows, cols))) for count in (5, 1, 3)]
    _, outputs, _ = run_tiles(params, tiles, None, seed=rows + cols)
    expected = np.concatenate([a @ w for a, w in tiles])
    assert outputs.tolist() == expected.tolist()


def test_latency_and_full_throughput():
    params = SystolicParams(4, 3, Format.int(8), Format.int(8), max_k=4)
    rng = np.random.default_rng(0)
    dut = SystolicArray(params)
    assert dut.latency == 4 + 3 + 1
    a = random_values(rng, params.a_format, (6, 4))
    w = random_values(rng, params.w_format, (4, 3))

    async def bench(ctx):
        for index, row in enumerate(w):
            ctx.set(dut.i_w.payload, {"w": [int(v) for v in row], "row": index, "bank": 0})
            ctx.set(dut.i_w.valid, 1)
            await ctx.tick()
        ctx.set(dut.i_w.valid, 0)
        seen = []
        for cycle in range(len(a) + dut.latency + 2):
            if cycle < len(a):
                ctx.set(dut.i_a.payload, {"a": [int(v) for v in a[cycle]], "bank": 0})
            ctx.set(dut.i_a.valid, int(cycle < len(a)))
            _, _, valid, psum = await ctx.tick().sample(dut.o_psum.valid, dut.o_psum.payload)
            if valid:
                seen.append((cycle, [int(v) for v in psum]))
        # Row i enters at cycle i and leaves latency cycles later, one row per cycle.
        assert [cycle for cycle, _ in seen] == [i + dut.latency for i in range(len(a))]
        assert [row for _, row in seen] == (a @ w).tolist()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_accumulator_width_is_exact():
    params = SystolicParams(2, 2, Format.int(8), Format.int(8), max_k=256)
    # 256 * (-128 * -128) = 2**22 needs 24 signed bits; 256 * (-128 * 127) fits in them too.
    assert params.acc_bits == 24
    assert SystolicParams(2, 2, Format.uint(8), Format.uint(8), max_k=1).acc_bits == 17


@pytest.mark.parametrize("kwargs, error, message", [
    ({"rows": 0, "cols": 2}, ValueError,
     r"^SystolicParams rows must be a positive integer, not 0$"),
    ({"rows": 2, "cols": True}, TypeError,
     r"^SystolicParams cols must be a positive integer, not True$"),
    ({"rows": 2, "cols": 2, "a_format": Format.int(17)}, ValueError,
     r"^SystolicParams a_format must be an int format of 2..16 bits, not int17$"),
    ({"rows": 2, "cols": 2, "w_format": Format.binary()}, ValueError,
     r"^SystolicParams w_format must be an int format of 2..16 bits, not binary$"),
    ({"rows": 2, "cols": 2, "w_format": "int8"}, TypeError,
     r"^SystolicParams w_format must be a Format, not 'int8'$"),
])
def test_rejects_bad_params(kwargs, error, message):
    with pytest.raises(error, match=message):
        SystolicParams(**kwargs)
