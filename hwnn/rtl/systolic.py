"""Weight-stationary systolic array (TPU-style): ``rows x cols`` multiply-accumulate PEs.

Each PE ``(r, c)`` holds two weights (two banks) and computes ``psum_out = psum_in + a * w``,
with a register on each operand (the activation, and the weight of the row's bank) and one
after the multiplier, so that it maps onto a DSP block with its input and output registers
(:mod:`hwnn.tools.absorb`) and no multiplexer sits in front of the multiplier, and the product
registered once more in logic before the adder (DSP blocks stand far apart). In arrays of
:data:`CHOICE_REGISTER_CELLS` PEs or more, which spread over a device's rows of DSP blocks,
the choice of bank is registered in logic too, a cycle before the operand register, so that
only a route lies between it and the DSP block (the banks stay near their weight beats'
source): the bank bit runs a cycle ahead of its activations. Smaller arrays (those that fit
an iCE40UP5K's 8 DSP blocks, whose logic cells run out first) choose directly. Activations
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

Packed narrow operands (``pack > 1``, the packing of Xilinx WP521 for INT4): one multiplier
serves ``pack`` adjacent columns ``c = g * pack + j`` of a row, which share its activation.
Their weights form one operand ``W = sum_j w_j * 2**(j * k)`` with a field of
``k = acc_bits`` bits per column, so that ``a * W = sum_j (a * w_j) * 2**(j * k)`` and a
column group's partial sum carries each column's sum ``S_j`` in its own field, modulo
``2**(pack * k)``. Every ``S_j`` fits ``k`` signed bits (``acc_bits`` holds any sum of
``max_k`` products), so the fields come apart exactly at the bottom (:func:`unpack_fields`):
``S_j`` is field ``j`` plus the borrow the fields below took from it, as ``k`` signed bits.
Packing is exact by construction; it is allowed while the packed operand fits
:data:`DSP_OPERAND_BITS` (the multiplier of the narrower DSP block, so that it stays one
block: :func:`max_pack`). A weight beat's groups are packed as it enters (shifts and adds,
before the bank registers), so nothing new sits in front of a multiplier. The array keeps its
ports and its latency: a group's de-skew is as long as its first column's was, and its last
register holds the unpacked sums.
"""

from dataclasses import dataclass

from amaranth import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir.formats import Format, signed_bits_for
from .fanout import flavor
from .params import check_positive_int
from .structure import Multipliers, Structure

__all__ = ["CHOICE_REGISTER_CELLS", "DSP_OPERAND_BITS", "SystolicArray", "SystolicParams",
           "array_latency", "choice_registered", "max_pack",
           "unpack_fields"]


#: Default operand format.
INT8 = Format.int(8)

#: Widest packed operand: the iCE40's ``SB_MAC16`` multiplies 16 x 16 bits (the ECP5's
#: ``MULT18X18D`` 18 x 18), so a packed operand of up to 16 bits is one DSP block on both.
DSP_OPERAND_BITS = 16


@dataclass(frozen=True)
class SystolicParams:
    """Shape and number formats of a systolic array.

    ``a_format`` and ``w_format`` are int formats of 2..16 bits (signed or unsigned); the
    accumulators are exactly wide enough for dot products of up to ``max_k`` terms. ``pack``
    adjacent columns share a multiplier (1: none; at most ``cols``, and the packed weight
    operand, :attr:`packed_w_format`, must fit :data:`DSP_OPERAND_BITS`).
    """
    rows:     int
    cols:     int
    a_format: Format = INT8
    w_format: Format = INT8
    max_k:    int = 256
    pack:     int = 1

    def __post_init__(self):
        for name in ("rows", "cols", "max_k", "pack"):
            check_positive_int("SystolicParams", name, getattr(self, name))
        for name in ("a_format", "w_format"):
            fmt = getattr(self, name)
            if not isinstance(fmt, Format):
                raise TypeError(f"SystolicParams {name} must be a Format, not {fmt!r}")
            if fmt.kind != "int" or not 2 <= fmt.bits <= 16:
                raise ValueError(f"SystolicParams {name} must be an int format of 2..16 bits, "
                                 f"not {fmt}")
        if self.pack > self.cols:
            raise ValueError(f"SystolicParams pack must be at most cols ({self.cols}), "
                             f"not {self.pack}")
        if self.pack > 1 and self.packed_w_format.bits > DSP_OPERAND_BITS:
            raise ValueError(f"SystolicParams pack must be at most {self.max_pack} for "
                             f"{self.a_format} x {self.w_format} sums of {self.max_k} terms "
                             f"(a packed weight of {DSP_OPERAND_BITS} bits), not {self.pack}")

    @property
    def acc_bits(self) -> int:
        """Signed accumulator width that holds any sum of ``max_k`` products."""
        ends = [a * w for a in (self.a_format.min_value, self.a_format.max_value)
                for w in (self.w_format.min_value, self.w_format.max_value)]
        return signed_bits_for(self.max_k * min(min(ends), 0), self.max_k * max(max(ends), 0))

    @property
    def groups(self) -> int:
        """Columns of multipliers: groups of ``pack`` columns (the last one padded with zero
        weights when ``pack`` does not divide ``cols``)."""
        return -(-self.cols // self.pack)

    @property
    def multipliers(self) -> int:
        """Multipliers of the array (``rows * groups``)."""
        return self.rows * self.groups

    @property
    def packed_w_format(self) -> Format:
        """Format of a multiplier's weight operand: ``pack`` weights, ``acc_bits`` apart,
        wide enough for every such sum (``w_format`` itself when ``pack`` is 1)."""
        if self.pack == 1:
            return self.w_format
        return _packed_format(self.w_format, self.pack, self.acc_bits)

    @property
    def psum_bits(self) -> int:
        """Width of a group's partial sums: a field of ``acc_bits`` per column."""
        return self.pack * self.acc_bits

    @property
    def max_pack(self) -> int:
        """The most columns a multiplier can serve for these formats (:func:`max_pack`)."""
        return max_pack(self.a_format, self.w_format, self.max_k, cols=self.cols)


def max_pack(a_format: Format, w_format: Format, max_k: int, *,
             operand_bits: int = DSP_OPERAND_BITS, cols: int | None = None) -> int:
    """The most products of ``a_format`` x ``w_format`` values one multiplier can compute at
    once, exactly, in dot products of up to ``max_k`` terms: weights ``acc_bits`` apart in an
    operand of at most ``operand_bits`` bits (and at most ``cols``, the array's columns).

    For example int4 x int4 in sums of 8 terms (11-bit sums) packs 2 (a 16-bit operand:
    ``-8 - 8 * 2**11`` needs 16 bits); ternary weights in sums of 2 int4 x ternary products (6
    bits) pack 3 (14 bits)."""
    field_bits = SystolicParams(1, 1, a_format, w_format, max_k).acc_bits
    pack = 1
    while ((cols is None or pack < cols)
           and _packed_format(w_format, pack + 1, field_bits).bits <= operand_bits):
        pack += 1
    return pack


def _packed_format(w_format: Format, pack: int, field_bits: int) -> Format:
    """Format of ``sum_j w_j * 2**(j * field_bits)`` for ``pack`` weights of ``w_format``."""
    scale = sum(1 << (j * field_bits) for j in range(pack))
    lo, hi = w_format.min_value * scale, w_format.max_value * scale
    return Format.int(signed_bits_for(lo, hi)) if w_format.signed else Format.uint(hi.bit_length())


def unpack_fields(psum: Value, pack: int, bits: int) -> list:
    """The ``pack`` sums of ``bits`` signed bits each that a packed partial sum ``psum``
    (``sum_j S_j * 2**(j * bits)``, modulo ``2**(pack * bits)``) carries: field ``j`` plus
    the borrow of the fields below it (1 when their sum is negative) is ``S_j``, as ``bits``
    signed bits; the borrow passes on when that sum reaches bit ``bits - 1`` or carries out."""
    fields, borrow = [], Const(0, 1)
    for j in range(pack):
        total = psum[j * bits:(j + 1) * bits] + borrow
        fields.append(total[:bits].as_signed())
        borrow = total[bits - 1] | total[bits]
    return fields

#: Arrays of this many PEs or more register each PE's choice of bank before its multiplier.
CHOICE_REGISTER_CELLS = 16


def choice_registered(rows: int, cols: int) -> bool:
    """Whether a ``rows x cols`` array registers its PEs' choice of bank (a cycle of latency)."""
    return rows * cols >= CHOICE_REGISTER_CELLS


def array_latency(rows: int, cols: int) -> int:
    """Cycles from a row vector's transfer to its sums on a ``rows x cols`` array: the skew
    and the de-skew (``rows - 1 + cols - 1``), the activations' cycle behind their bank bit
    where the choice of bank is registered (:func:`choice_registered`), and a PE's operand,
    product (twice) and sum registers (4)."""
    return rows + cols + 2 + choice_registered(rows, cols)


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

    #: The counts of :meth:`structure`.
    COUNTS = ("cells", "cell_bits", "register_bits")

    def structure(self) -> Structure:
        """The array's hardware (:mod:`hwnn.rtl.structure`): its multipliers, ``cells`` (its
        PEs), ``cell_bits`` (each multiplier's operand and partial-sum registers) and
        ``register_bits`` (its other registers, as :meth:`elaborate` makes them: each
        multiplier's two weight banks and its product, registered twice; the activations,
        banks and valid flags passed right; the skew of the activations and of the weight
        beats, the de-skew of the sums, unpacked last where columns are packed)."""
        p = self.params
        rows, cols, groups, pack = p.rows, p.cols, p.groups, p.pack
        a_bits, w_bits, psum_bits = p.a_format.bits, p.packed_w_format.bits, p.psum_bits
        product_bits = a_bits + w_bits + 1
        row_bits = max(rows - 1, 1).bit_length()
        chosen = int(choice_registered(rows, cols))
        structure = Structure.of(self.COUNTS)
        structure.add("cells", rows * cols)
        structure.multipliers.append(Multipliers("lanes", p.multipliers, p.a_format,
                                                 p.packed_w_format))
        structure.add("cell_bits", p.multipliers * (a_bits + w_bits + psum_bits))
        deskew = sum(max(cols - 1 - g - (pack > 1), 0) for g in range(groups))
        structure.add("register_bits",
                      p.multipliers * ((2 + chosen) * w_bits            # banks, choice,
                                       + 2 * product_bits)              # products
                      + rows * (groups - 1) * (a_bits + 2)              # passed right
                      + rows * (rows - 1) // 2 * (a_bits + 2)           # activation skew
                      + chosen * rows * a_bits                          # behind the bank
                      + groups * (groups - 1) // 2 * w_bits             # weight skew
                      + (groups - 1) * (row_bits + 2)
                      + deskew * psum_bits + (pack > 1) * cols * p.acc_bits
                      + 4 + chosen + cols - groups)                     # valid flags
        return structure

    def elaborate(self, platform):
        m = Module()
        p = self.params
        rows, cols, groups, pack = p.rows, p.cols, p.groups, p.pack
        a_shape = _operand_shape(p.a_format)
        w_shape = _operand_shape(p.packed_w_format)
        chosen = choice_registered(rows, cols)

        # Skew: row r sees the vector r cycles late, with its bank and valid bit (the bank in
        # the row's own copy: :func:`~hwnn.rtl.fanout.flavor`, so that Yosys does not merge the
        # rows' copies into one chain whose taps drive every PE of a diagonal, across the
        # device). Where the PEs register the bank's weight a cycle before the activation,
        # the activations start a cycle behind their bank bit.
        edge = []                                   # (a, bank, valid) entering group 0
        for r in range(rows):
            a = self.i_a.payload.a[r]
            if chosen:
                behind = Signal(a_shape, name=f"behind_a_{r}", reset_less=True)
                m.d.sync += behind.eq(a)
                a = behind
            bank, valid = self.i_a.payload.bank, self.i_a.valid
            init, reset_less, inverted = flavor(r)
            bank = bank ^ inverted
            for stage in range(r):
                a_next = Signal(a_shape, name=f"skew_a_{r}_{stage}", reset_less=True)
                bank_next = Signal(name=f"skew_bank_{r}_{stage}", init=init,
                                   reset_less=reset_less)
                valid_next = Signal(name=f"skew_valid_{r}_{stage}")
                m.d.sync += [a_next.eq(a), bank_next.eq(bank), valid_next.eq(valid)]
                a, bank, valid = a_next, bank_next, valid_next
            edge.append((a, bank, valid))

        # A group's weights, packed acc_bits apart (zero past the last column).
        packed = [sum((self.i_w.payload.w[g * pack + j] << (j * p.acc_bits)
                       for j in range(pack) if g * pack + j < cols), Const(0, w_shape))
                  for g in range(groups)]

        # Weight beats are skewed across the groups like activations; PE (r, g) takes the
        # beat of row r from its group's copy.
        weights = [[[Signal(w_shape, name=f"w{b}_{r}_{g}", reset_less=True) for b in range(2)]
                    for g in range(groups)] for r in range(rows)]
        row, bank, valid = self.i_w.payload.row, self.i_w.payload.bank, self.i_w.valid
        for g in range(groups):
            w = packed[g]
            for stage in range(g):
                w_next = Signal(w_shape, name=f"wskew_{g}_{stage}", reset_less=True)
                m.d.sync += w_next.eq(w)
                w = w_next
            if g > 0:
                row_next = Signal.like(row, name=f"wrow_{g}")
                bank_next = Signal(name=f"wbank_{g}")
                valid_next = Signal(name=f"wvalid_{g}")
                m.d.sync += [row_next.eq(row), bank_next.eq(bank), valid_next.eq(valid)]
                row, bank, valid = row_next, bank_next, valid_next
            for r in range(rows):
                for b in range(2):
                    with m.If(valid & (row == r) & (bank == b)):
                        m.d.sync += weights[r][g][b].eq(w)

        psum_shape = signed(p.psum_bits)
        above = [Const(0, psum_shape)] * groups     # partial sums entering row r, per group
        bottom_valid = None
        for r in range(rows):
            a, bank, valid = edge[r]
            init, reset_less, inverted = flavor(r)
            below = []
            for g in range(groups):
                # The weight of the bank (of the activation a cycle behind, registered in
                # logic, where chosen), registered operands, registered product (the DSP's
                # input and output registers), then the sum: every PE is two cycles later, so
                # the wavefront still lines up.
                w_chosen = Mux(bank, weights[r][g][1 - inverted], weights[r][g][inverted])
                if chosen:
                    w_register = Signal(w_shape, name=f"w_chosen_{r}_{g}", reset_less=True)
                    m.d.sync += w_register.eq(w_chosen)
                    w_chosen = w_register
                a_operand = Signal(a_shape, name=f"a_operand_{r}_{g}", reset_less=True)
                w_operand = Signal(w_shape, name=f"w_operand_{r}_{g}", reset_less=True)
                product = Signal(signed(len(a) + w_shape.width + 1), name=f"product_{r}_{g}",
                                 reset_less=True)
                # The product registered again in logic, beside the adder: DSP blocks are
                # sparse, and the route from one to its adder may take most of a cycle.
                product_late = Signal.like(product, name=f"product_late_{r}_{g}", reset_less=True)
                m.d.sync += [a_operand.eq(a), w_operand.eq(w_chosen),
                             product.eq(a_operand * w_operand), product_late.eq(product)]
                psum = Signal(psum_shape, name=f"psum_{r}_{g}", reset_less=True)
                m.d.sync += psum.eq(above[g] + product_late)
                below.append(psum)
                if g < groups - 1:                  # pass the activation to the right
                    a_next = Signal(a_shape, name=f"a_{r}_{g}", reset_less=True)
                    bank_next = Signal(name=f"bank_{r}_{g}", init=init, reset_less=reset_less)
                    valid_next = Signal(name=f"valid_{r}_{g}")
                    m.d.sync += [a_next.eq(a), bank_next.eq(bank), valid_next.eq(valid)]
                    a, bank, valid = a_next, bank_next, valid_next
                elif r == rows - 1:
                    if chosen:
                        chosen_valid = Signal(name="chosen_valid")
                        m.d.sync += chosen_valid.eq(valid)
                        valid = chosen_valid
                    operand_valid = Signal(name="operand_valid")
                    product_valid = Signal(name="product_valid")
                    late_valid = Signal(name="late_valid")
                    bottom_valid = Signal(name="bottom_valid")
                    m.d.sync += [operand_valid.eq(valid), product_valid.eq(operand_valid),
                                 late_valid.eq(product_valid), bottom_valid.eq(late_valid)]
            above = below

        # De-skew: group g leaves g cycles after group 0; delay it cols - 1 - g cycles (the
        # array's latency does not depend on pack), the last of them unpacking its sums.
        acc_shape = signed(p.acc_bits)
        for g in range(groups):
            value = above[g]
            delay = cols - 1 - g
            for stage in range(delay - (pack > 1)):
                delayed = Signal(psum_shape, name=f"deskew_{g}_{stage}", reset_less=True)
                m.d.sync += delayed.eq(value)
                value = delayed
            sums = unpack_fields(value, pack, p.acc_bits) if pack > 1 else [value]
            for j in range(pack):
                c = g * pack + j
                if c >= cols:
                    continue
                if pack > 1:
                    unpacked = Signal(acc_shape, name=f"sum_{c}", reset_less=True)
                    m.d.sync += unpacked.eq(sums[j])
                    sums[j] = unpacked
                m.d.comb += self.o_psum.payload[c].eq(sums[j])
        for stage in range(cols - groups):         # the last group's de-skew
            delayed = Signal(name=f"bottom_valid_{stage}")
            m.d.sync += delayed.eq(bottom_valid)
            bottom_valid = delayed
        m.d.comb += self.o_psum.valid.eq(bottom_valid)
        return m
