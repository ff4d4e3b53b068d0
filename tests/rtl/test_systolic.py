# amaranth: UnusedElaboratable=no
"""The systolic array in Amaranth's simulator against NumPy matrix products."""

from itertools import product

import numpy as np
import pytest
from amaranth import Module, Signal, signed
from amaranth.sim import Simulator

from hwnn.ir.formats import Format
from hwnn.rtl.systolic import SystolicArray, SystolicParams, max_pack, unpack_fields


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


@pytest.mark.parametrize("a_format, w_format, pack", [("int8", "int8", 1), ("int4", "int2n", 2),
                                                      ("int4", "int2n", 3)])
@pytest.mark.parametrize("cols", [3, 4])
def test_latency_and_full_throughput(a_format, w_format, pack, cols):
    # Packing keeps the latency: int4 x ternary sums of 4 terms (7 bits) pack 3.
    params = SystolicParams(4, cols, Format.parse(a_format), Format.parse(w_format), max_k=4,
                            pack=pack)
    rng = np.random.default_rng(0)
    dut = SystolicArray(params)
    # Skew and de-skew 4 + cols - 2 and four registers; 16 PEs register their choice of bank
    # (a cycle more), 12 choose directly.
    assert dut.latency == 4 + cols + 2 + (cols == 4)
    a = random_values(rng, params.a_format, (6, 4))
    w = random_values(rng, params.w_format, (4, cols))

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


# Packed narrow operands -------------------------------------------------------------------------

def extreme_tiles(rng, params, count):
    """Tiles whose activations and weights are all at their formats' extremes: each tile's
    activation rows hold one value (the minimum or the maximum), and each weight column one
    extreme or zero, so that column sums hit the most negative and the most positive sum of
    ``rows`` products, next to each other in a packed multiplier."""
    a_ends = (params.a_format.min_value, params.a_format.max_value)
    w_ends = (params.w_format.min_value, params.w_format.max_value, 0)
    tiles = []
    for a_end in a_ends:
        for _ in range(count):
            a = np.full((3, params.rows), a_end)
            w = np.tile(rng.choice(w_ends, size=params.cols), (params.rows, 1))
            tiles.append((a, w))
    return tiles


def sum_range(params):
    """The least and the greatest sum of ``rows`` products of the formats, by brute force
    over the extremes."""
    ends = [a * w for a in (params.a_format.min_value, params.a_format.max_value)
            for w in (params.w_format.min_value, params.w_format.max_value)]
    return params.rows * min(min(ends), 0), params.rows * max(max(ends), 0)


#: (rows, cols, a_format, w_format, pack): int4 pairs, ternary and binary-as-int2 weights in
#: threes, unsigned operands, columns that pack does not divide.
PACKED = [(8, 8, "int4", "int4", 2), (2, 4, "int4", "int4", 2), (3, 5, "int4", "int4", 2),
          (2, 6, "int4", "int2n", 3), (2, 7, "int4", "int2", 2), (4, 4, "uint4", "int2", 2),
          (3, 3, "int3", "uint3", 2), (1, 2, "int8", "int2n", 2), (2, 2, "uint2", "uint2", 2)]


@pytest.mark.parametrize("rows, cols, a_format, w_format, pack", PACKED)
def test_packed_tiles_match_numpy(rows, cols, a_format, w_format, pack):
    params = SystolicParams(rows, cols, Format.parse(a_format), Format.parse(w_format),
                            max_k=rows, pack=pack)
    assert params.groups == -(-cols // pack)
    rng = np.random.default_rng(rows * 11 + cols)
    tiles = extreme_tiles(rng, params, 3) + [
        (random_values(rng, params.a_format, (count, rows)),
         random_values(rng, params.w_format, (rows, cols))) for count in (5, 1, 3)]
    rng.shuffle(tiles)
    expected = np.concatenate([a @ w for a, w in tiles])
    # The extreme tiles reach both ends of a column's sums: the fields' worst case.
    assert (expected.min(), expected.max()) == sum_range(params)
    _, outputs, _ = run_tiles(params, tiles, None, seed=rows + cols)
    assert outputs.tolist() == expected.tolist()


@pytest.mark.parametrize("pack, bits", [(2, 3), (3, 3), (2, 4), (4, 2)])
def test_unpack_fields_recovers_every_combination_of_sums(pack, bits):
    # Every combination of pack sums of bits signed bits, packed modulo 2**(pack * bits).
    psum = Signal(pack * bits)
    m = Module()
    fields = [Signal(signed(bits), name=f"field_{j}") for j in range(pack)]
    m.d.comb += [field.eq(value) for field, value in
                 zip(fields, unpack_fields(psum, pack, bits), strict=True)]
    cases = list(product(range(-2 ** (bits - 1), 2 ** (bits - 1)), repeat=pack))

    async def bench(ctx):
        for sums in cases:
            ctx.set(psum, sum(s << (j * bits) for j, s in enumerate(sums)) % 2 ** (pack * bits))
            assert tuple(ctx.get(field) for field in fields) == sums

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("a_format, w_format, rows, pack", [
    # int4 x int4 sums of 8 terms need 11 bits: -8 - 8 * 2**11 needs 16 bits, a third
    # weight 27; sums of 2 terms 9 bits.
    ("int4", "int4", 8, 2), ("int4", "int4", 2, 2),
    # int4 x ternary sums of 2 terms need 6 bits: +-(1 + 2**6 + 2**12) needs 14 bits; sums
    # of 8 terms 8 bits: +-(1 + 2**8) 10 bits, +-(1 + 2**8 + 2**16) 18.
    ("int4", "int2n", 2, 3), ("int4", "int2n", 8, 2),
    # int8 x int8 sums of 8 terms need 19 bits: no room for a second weight.
    ("int8", "int8", 8, 1),
    # uint2 products (0..9) need 5 bits: 3 * (1 + 2**5 + 2**10) is 12 bits, a fourth 17.
    ("uint2", "uint2", 1, 3)])
def test_max_pack_is_the_largest_pack_allowed(a_format, w_format, rows, pack):
    a_format, w_format = Format.parse(a_format), Format.parse(w_format)
    assert max_pack(a_format, w_format, rows) == pack
    assert max_pack(a_format, w_format, rows, cols=1) == 1
    params = SystolicParams(rows, 8, a_format, w_format, max_k=rows, pack=pack)
    assert params.max_pack == pack
    assert params.packed_w_format.bits <= 16
    with pytest.raises(ValueError, match=r"^SystolicParams pack must be at most "):
        SystolicParams(rows, 8, a_format, w_format, max_k=rows, pack=pack + 1)


def test_packed_params_report_the_multipliers():
    params = SystolicParams(8, 8, Format.int(4), Format.int(4), max_k=8, pack=2)
    assert (params.groups, params.multipliers) == (4, 32)
    # Two 4-bit weights, the second 11 bits (one column's sum) up: -8 - 8 * 2**11 = -16392
    # needs 16 bits.
    assert params.packed_w_format == Format.int(16)
    assert params.psum_bits == 2 * 11
    assert SystolicParams(8, 8, Format.int(4), Format.int(4)).packed_w_format == Format.int(4)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"pack": 0}, ValueError, r"^SystolicParams pack must be a positive integer, not 0$"),
    ({"pack": 3}, ValueError, r"^SystolicParams pack must be at most cols \(2\), not 3$"),
    ({"pack": 2, "a_format": Format.int(8), "w_format": Format.int(8), "max_k": 8},
     ValueError, (r"^SystolicParams pack must be at most 1 for int8 x int8 sums of 8 terms "
                  r"\(a packed weight of 16 bits\), not 2$")),
])
def test_rejects_bad_packs(kwargs, error, message):
    with pytest.raises(error, match=message):
        SystolicParams(**({"rows": 2, "cols": 2} | kwargs))
