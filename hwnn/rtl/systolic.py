"""Weight-stationary systolic array (TPU-style): ``rows x cols`` multiply-accumulate PEs.

Each PE ``(r, c)`` holds two weights (two banks) and computes ``psum_out = psum_in + a * w``,
with a register on each operand (the activation, and the weight of the row's bank) and one
after the multiplier, so that it maps onto a DSP block with its input and output registers
(:mod:`hwnn.tools.absorb`) and no multiplexer sits in front of the multiplier; activations
move right, partial sums move down. Data registers have no reset (they start at 0), which
those DSP registers need. A caller presents one row vector ``a`` of
``rows`` values per cycle; the array skews it internally (row ``r`` is delayed ``r`` cycles),
and de-skews the column outputs, so that :attr:`latency` cycles later the row vector
``a @ W`` of ``cols`` sums comes out, all columns in the same cycle. Throughput is one row
vector per cycle.

Weights are double buffered: while rows use one bank, the other bank loads the next tile, one
weight row per cycle (``rows`` beats, each naming its row). A weight beat is skewed across the
columns like the activations, so PE ``(r, c)`` takes it ``c`` cycles after the beat, just as
an activation row entering at the same time would reach it. Every activation row names the
bank it multiplies with, and the bank travels with the data. Hence a tile boundary needs no
bubble: the load of a bank may begin the cycle after the last activation row that uses its
old contents, and must begin before the first row that uses the new ones (the rows of that
tile may overlap the rest of the load).
"""

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.formats import Format, signed_bits_for
from .params import check_positive_int

__all__ = ["SystolicArray", "SystolicParams", "array_latency"]


#: Default operand format.
INT8 = Format.int(8)


@dataclass(frozen=True)
class SystolicParams:
    """Shape and number formats of a systolic array.

    ``a_format`` and ``w_format`` are int formats of 2..16 bits (signed or unsigned); the
    accumulators are exactly wide enough for dot products of up to ``max_k`` terms.
    """
    rows:     int
    cols:     int
    a_format: Format = INT8
    w_format: Format = INT8
    max_k:    int = 256

    def __post_init__(self):
        for name in ("rows", "cols", "max_k"):
            check_positive_int("SystolicParams", name, getattr(self, name))
        for name in ("a_format", "w_format"):
            fmt = getattr(self, name)
            if not isinstance(fmt, Format):
                raise TypeError(f"SystolicParams {name} must be a Format, not {fmt!r}")
            if fmt.kind != "int" or not 2 <= fmt.bits <= 16:
                raise ValueError(f"SystolicParams {name} must be an int format of 2..16 bits, "
                                 f"not {fmt}")

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width that holds any sum of ``max_k`` products."""
        ends = [a * w for a in (self.a_format.min_value, self.a_format.max_value)
                for w in (self.w_format.min_value, self.w_format.max_value)]
        return signed_bits_for(self.max_k * min(min(ends), 0), self.max_k * max(max(ends), 0))


def array_latency(rows: int, cols: int) -> int:
    """Cycles from a row vector's transfer to its sums on a ``rows x cols`` array: the skew
    and the de-skew (``rows - 1 + cols - 1``) and a PE's operand, product and sum registers
    (3)."""
    return rows + cols + 1


def _operand_shape(fmt: Format):
    return signed(fmt.bits) if fmt.signed else unsigned(fmt.bits)


class ActivationRow(data.StructLayout):
    """One row vector of activations and the weight bank it multiplies with."""

    def __init__(self, params: SystolicParams):
        super().__init__({
            "a":    data.ArrayLayout(_operand_shape(params.a_format), params.rows),
            "bank": unsigned(1),
        })


class WeightRow(data.StructLayout):
    """One row of a weight tile, its row index and the bank it loads into."""

    def __init__(self, params: SystolicParams):
        super().__init__({
            "w":    data.ArrayLayout(_operand_shape(params.w_format), params.cols),
            "row":  range(params.rows),
            "bank": unsigned(1),
        })


class SystolicArray(wiring.Component):
    """``rows x cols`` weight-stationary array computing ``a @ W`` for a row vector per cycle.

    Links carry no backpressure (``always_ready``): the wavefront moves every cycle.

    Members
    -------
    i_a : ``In(stream.Signature(ActivationRow(params), always_ready=True))``
        A row vector of ``rows`` activations and the bank of weights to use.
    i_w : ``In(stream.Signature(WeightRow(params), always_ready=True))``
        Row ``row`` of a weight tile (``cols`` weights) for the bank named; a load is the
        ``rows`` beats of rows ``0 .. rows - 1`` in consecutive cycles.
    o_psum : ``Out(stream.Signature(ArrayLayout(signed(acc_bits), cols), always_ready=True))``
        ``a @ W`` for each row vector, :attr:`latency` cycles after it entered.
    """

    def __init__(self, params: SystolicParams):
        if not isinstance(params, SystolicParams):
            raise TypeError(f"params must be a SystolicParams, not {params!r}")
        self.params = params
        super().__init__({
            "i_a":    In(stream.Signature(ActivationRow(params), always_ready=True)),
            "i_w":    In(stream.Signature(WeightRow(params), always_ready=True)),
            "o_psum": Out(stream.Signature(data.ArrayLayout(signed(params.acc_bits),
                                                            params.cols), always_ready=True)),
        })

    @property
    def latency(self) -> int:
        """Cycles from a row vector's transfer on ``i_a`` to its result on ``o_psum``."""
        return array_latency(self.params.rows, self.params.cols)

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rows, cols = p.rows, p.cols
        a_shape, w_shape = _operand_shape(p.a_format), _operand_shape(p.w_format)

        # Skew: row r sees the vector r cycles late, with its bank and valid bit.
        edge = []                                   # (a, bank, valid) entering column 0
        for r in range(rows):
            a, bank, valid = self.i_a.payload.a[r], self.i_a.payload.bank, self.i_a.valid
            for stage in range(r):
                a_next = Signal(a_shape, name=f"skew_a_{r}_{stage}", reset_less=True)
                bank_next = Signal(name=f"skew_bank_{r}_{stage}")
                valid_next = Signal(name=f"skew_valid_{r}_{stage}")
                m.d.sync += [a_next.eq(a), bank_next.eq(bank), valid_next.eq(valid)]
                a, bank, valid = a_next, bank_next, valid_next
            edge.append((a, bank, valid))

        # Weight beats are skewed across the columns like activations; PE (r, c) takes the
        # beat of row r from its column's copy.
        weights = [[[Signal(w_shape, name=f"w{b}_{r}_{c}", reset_less=True) for b in range(2)]
                    for c in range(cols)] for r in range(rows)]
        w, row, bank, valid = (None, self.i_w.payload.row, self.i_w.payload.bank,
                               self.i_w.valid)
        for c in range(cols):
            w = self.i_w.payload.w[c]
            for stage in range(c):
                w_next = Signal(w_shape, name=f"wskew_{c}_{stage}", reset_less=True)
                m.d.sync += w_next.eq(w)
                w = w_next
            if c > 0:
                row_next = Signal.like(row, name=f"wrow_{c}")
                bank_next = Signal(name=f"wbank_{c}")
                valid_next = Signal(name=f"wvalid_{c}")
                m.d.sync += [row_next.eq(row), bank_next.eq(bank), valid_next.eq(valid)]
                row, bank, valid = row_next, bank_next, valid_next
            for r in range(rows):
                for b in range(2):
                    with m.If(valid & (row == r) & (bank == b)):
                        m.d.sync += weights[r][c][b].eq(w)

        psum_shape = signed(p.acc_bits)
        above = [Const(0, psum_shape)] * cols       # partial sums entering row r, per column
        bottom_valid = None
        for r in range(rows):
            a, bank, valid = edge[r]
            below = []
            for c in range(cols):
                # Registered operands (the weight of the row's bank), registered product (the
                # DSP's input and output registers), then the sum: every PE is two cycles
                # later, so the wavefront still lines up.
                a_operand = Signal(a_shape, name=f"a_operand_{r}_{c}", reset_less=True)
                w_operand = Signal(w_shape, name=f"w_operand_{r}_{c}", reset_less=True)
                product = Signal(signed(len(a) + w_shape.width + 1), name=f"product_{r}_{c}",
                                 reset_less=True)
                m.d.sync += [a_operand.eq(a),
                             w_operand.eq(Mux(bank, weights[r][c][1], weights[r][c][0])),
                             product.eq(a_operand * w_operand)]
                psum = Signal(psum_shape, name=f"psum_{r}_{c}", reset_less=True)
                m.d.sync += psum.eq(above[c] + product)
                below.append(psum)
                if c < cols - 1:                    # pass the activation to the right
                    a_next = Signal(a_shape, name=f"a_{r}_{c}", reset_less=True)
                    bank_next = Signal(name=f"bank_{r}_{c}")
                    valid_next = Signal(name=f"valid_{r}_{c}")
                    m.d.sync += [a_next.eq(a), bank_next.eq(bank), valid_next.eq(valid)]
                    a, bank, valid = a_next, bank_next, valid_next
                elif r == rows - 1:
                    operand_valid = Signal(name="operand_valid")
                    product_valid = Signal(name="product_valid")
                    bottom_valid = Signal(name="bottom_valid")
                    m.d.sync += [operand_valid.eq(valid), product_valid.eq(operand_valid),
                                 bottom_valid.eq(product_valid)]
            above = below

        # De-skew: column c leaves c cycles after column 0; delay it cols - 1 - c cycles.
        for c in range(cols):
            value = above[c]
            for stage in range(cols - 1 - c):
                delayed = Signal(psum_shape, name=f"deskew_{c}_{stage}", reset_less=True)
                m.d.sync += delayed.eq(value)
                value = delayed
            m.d.comb += self.o_psum.payload[c].eq(value)
        m.d.comb += self.o_psum.valid.eq(bottom_valid)
        return m
