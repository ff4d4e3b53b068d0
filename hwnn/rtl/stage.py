"""The output stage of a layer: accumulators to output values, as the IR says.

:class:`OutputStage` serves ``lanes`` channels per cycle: a group ``g`` of accumulators holds
channels ``g * lanes .. g * lanes + lanes - 1`` (channels past the layer's last are padding and
give unspecified values). Per-channel parameters live in ROMs indexed by the group:

* thresholds: ``level = #(t <= acc)`` (``#(acc <= t)`` on descending channels), output value
  ``out_format.min_value + step * level``, found by a binary search over the sorted
  thresholds (see below);
* requantization: ``clamp(((acc * M + 2**(s-1)) >> s) + zero_point, lo, hi)``, with a constant
  shift when the layer's shifts are all equal;
* no stage: the value is the accumulator.

A ``pipelined`` stage (the dataflow engine's) registers every parameter read before it is used
(a block RAM output register), multiplies each 16-bit piece of the accumulator separately
(one DSP block per piece, registered at its output and again in logic) and rounds, shifts
and clamps in two steps: three more cycles for requantization.

With ``logic_multipliers`` the requantization products are built in logic
(:func:`~hwnn.rtl.arith.logic_product`: shifts and adds, never a DSP block), with a register
after each level of their adder tree (:func:`product_cycles`: at least the two cycles of the
DSP products, more for a long constant or a wide multiplier), for devices whose DSP blocks the
datapath takes (an iCE40UP5K has eight); a layer whose channels share one multiplier
(per-tensor scaling) multiplies by that constant, one adder per signed digit
(:func:`~hwnn.rtl.arith.signed_digits`), with no multiplier ROM.

A threshold stage with ``n`` thresholds per channel searches them in ``k = n.bit_length()``
steps, as FINN's ``thresholding_binary_search`` does: step ``j`` compares the accumulator with
one threshold, read from the lane's ROM of step ``j`` (``2**j`` words per group) at the
address made of the group and the ``j`` level bits found so far, and finds the next level bit.
A descending channel (thresholds in descending order, ``level = #(acc <= t)``) stores
``u = min(t + 1, hi + 1)`` in the same order and inverts each comparison (``acc <= t`` is
``not u <= acc``), one XOR per step and lane; missing thresholds (``n < 2**k - 1``) are the
largest threshold code on ascending channels and the smallest on descending ones, so that
they never count. A step takes a cycle (a ROM read), two
when ``pipelined`` (the read registered); so a threshold stage has ``k + 1`` cycles of
latency, ``2 * k + 1`` pipelined, one comparator per step and lane, and ROMs of
``2**k - 1`` thresholds per channel in all.
"""

import numpy as np
from amaranth import *
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..ir import Dense, Requant, Thresholds
from ..ir.formats import Format, signed_bits_for
from ..ir.packing import pack_values
from .arith import adder_tree, logic_product, signed_digits, tree_levels
from .structure import Memory, Multipliers, Structure, varying_columns

__all__ = ["PIECE_BITS", "OutputStage", "accumulator_pieces", "parameter_bits",
           "parameter_words", "product_cycles", "reads_parameters", "search_steps",
           "stage_latency", "stage_structure"]

#: Accumulator bits per requantization multiplier of a pipelined stage: a piece and the
#: multiplier fit one ECP5 MULT18X18D or iCE40 SB_MAC16 for multipliers of up to 16 bits.
PIECE_BITS = 16


def search_steps(layer: Dense) -> int:
    """Steps of the binary search of ``layer``'s threshold stage (0 without thresholds)."""
    if not isinstance(layer.stage, Thresholds):
        return 0
    return layer.stage.values.shape[1].bit_length()


def _search_words(layer: Dense, lanes: int) -> list[list[list[int]]]:
    """The threshold ROM images, ``[step][lane] -> [word]`` (see the module's description):
    word ``g * 2**j + q`` of step ``j`` is threshold ``(2 * q + 1) * 2**(k - j - 1)`` (from
    1) of the lane's channel in group ``g``."""
    stage = layer.stage
    if not isinstance(stage, Thresholds):
        return []
    channels = -(-layer.out_features // lanes) * lanes
    t_fmt = Format.int(layer.threshold_bits)
    steps = search_steps(layer)
    # Padded to 2**steps - 1 thresholds, and to whole groups, with a code that never counts:
    # above every accumulator on ascending channels, below every one on descending ones.
    descending = np.zeros(channels, dtype=bool)
    descending[:layer.out_features] = stage.descending
    search = np.where(descending[:, None], t_fmt.min_value, t_fmt.max_value)
    search = np.repeat(search, (1 << steps) - 1, axis=1)
    hi = layer.acc_range[1]
    search[:layer.out_features, :stage.values.shape[1]] = np.where(
        stage.descending[:, None], np.minimum(stage.values + 1, hi[:, None] + 1), stage.values)
    patterns = t_fmt.encode(search)
    roms = []
    for step in range(steps):
        span = 1 << (steps - step)
        compared = patterns[:, span // 2 - 1::span]
        roms.append([[int(word) for word in compared[p::lanes].reshape(-1)]
                     for p in range(lanes)])
    return roms


def constant_multiplier(layer: Dense, logic_multipliers: bool) -> int | None:
    """The requantization multiplier all of ``layer``'s channels share, where its stage
    multiplies by it as a constant (in logic); None otherwise."""
    stage = layer.stage
    if (logic_multipliers and isinstance(stage, Requant)
            and np.all(stage.multiplier == stage.multiplier[0])):
        return int(stage.multiplier[0])
    return None


def _group_words(layer: Dense, lanes: int, logic_multipliers=False) -> dict:
    """The ROM images with a word per group: ``{name: (width, [word])}``, a field per lane,
    channels past the last padded with zeros."""
    stage = layer.stage
    groups = -(-layer.out_features // lanes)

    def per_group(columns, width):
        columns = np.concatenate([columns, np.zeros(groups * lanes - len(columns),
                                                    dtype=columns.dtype)])
        return (lanes * width, [pack_values(columns[g * lanes:(g + 1) * lanes], width)
                                for g in range(groups)])

    words = {}
    if isinstance(stage, Thresholds) and np.any(stage.descending):
        words["descending"] = per_group(stage.descending.astype(np.int64), 1)
    elif isinstance(stage, Requant):
        if constant_multiplier(layer, logic_multipliers) is None:
            words["multiplier"] = per_group(stage.multiplier, stage.mult_bits)
        if np.any(stage.shift != stage.shift[0]):
            words["shift"] = per_group(stage.shift, 6)
    return words


def parameter_words(layer: Dense, lanes: int, logic_multipliers=False) -> dict:
    """ROM images of a layer's output-stage parameters for ``lanes`` channels:
    ``{name: (width, [word per address])}``. Requantization parameters and threshold
    directions have a word per group (a field per lane); the thresholds a ROM per search step
    ``j`` and lane ``p``, ``thresholds{j}_{p}``, with ``2**j`` words per group (see the
    module's description)."""
    words = _group_words(layer, lanes, logic_multipliers)
    for step, lane_words in enumerate(_search_words(layer, lanes)):
        for p, rom in enumerate(lane_words):
            words[f"thresholds{step}_{p}"] = (layer.threshold_bits, rom)
    return words


def accumulator_pieces(acc_bits: int) -> list[tuple[int, int, bool]]:
    """The pieces a pipelined stage multiplies separately: ``(offset, width, signed)`` for
    each, least significant first; all but the top one :data:`PIECE_BITS` wide and
    unsigned."""
    count = -(-acc_bits // PIECE_BITS)
    return [(k * PIECE_BITS, min(PIECE_BITS, acc_bits - k * PIECE_BITS), k == count - 1)
            for k in range(count)]


def _delayed(m, value, cycles, name, reset_less=False):
    """``value`` ``cycles`` registers later."""
    for cycle in range(cycles):
        register = Signal.like(value, name=f"{name}_{cycle}", reset_less=reset_less)
        m.d.sync += register.eq(value)
        value = register
    return value


def reads_parameters(layer: Dense, logic_multipliers=False) -> bool:
    """Whether ``layer``'s :class:`OutputStage` reads parameter ROMs (its accumulators then
    wait for the read): thresholds, or requantization by per-channel multipliers or shifts;
    not a requantization by constants, nor a layer without a stage."""
    return (isinstance(layer.stage, Thresholds)
            or bool(_group_words(layer, 1, logic_multipliers)))


def _parameter_wait(layer: Dense, pipelined: bool, logic_multipliers: bool) -> int:
    """Cycles the accumulators wait for the stage's parameters (none without ROMs)."""
    return 1 + pipelined if reads_parameters(layer, logic_multipliers) else 0


def product_cycles(layer: Dense, pipelined=False, logic_multipliers=False) -> int:
    """Cycles of a requantization product in ``layer``'s :class:`OutputStage`: one, two when
    ``pipelined``; built in logic and pipelined, one per level of its adder tree (at least
    two), so that no cycle holds more than one carry chain."""
    cycles = 2 if pipelined else 1
    if pipelined and logic_multipliers and isinstance(layer.stage, Requant):
        constant = constant_multiplier(layer, logic_multipliers)
        terms = layer.stage.mult_bits if constant is None else len(signed_digits(constant))
        cycles = max(cycles, tree_levels(max(terms, 1)))
    return cycles


def stage_latency(layer: Dense, pipelined=False, logic_multipliers=False) -> int:
    """Cycles from an input group to its output values in ``layer``'s :class:`OutputStage`:
    the wait for its parameters, then the computation and the output register."""
    wait = _parameter_wait(layer, pipelined, logic_multipliers)
    if layer.stage is None:
        return wait + 1
    if isinstance(layer.stage, Requant):
        return wait + product_cycles(layer, pipelined, logic_multipliers) + (2 if pipelined
                                                                             else 1)
    return search_steps(layer) * (2 if pipelined else 1) + 1


def parameter_bits(layer: Dense, lanes: int) -> int:
    """Bits of output-stage parameter ROM for ``lanes`` channels per word."""
    return sum(width * len(words) for width, words in parameter_words(layer, lanes).values())


def stage_structure(layer: Dense, lanes: int, pipelined=False,
                    logic_multipliers=False) -> Structure:
    """The hardware of ``layer``'s :class:`OutputStage` on ``lanes`` channels: its parameter
    ROMs (use ``"parameters"``), its requantization multipliers (one per accumulator piece
    when ``pipelined`` or, counted by the same pieces, in logic with ``logic_multipliers``;
    in logic, multipliers by constants say their partial products, ``terms``)
    and counts: ``compare_bits`` (threshold comparator bits, a bit against
    a threshold bit that is the same at every address counted half), ``requant_bits``
    (accumulator and multiplier bits per lane) and ``pipeline_bits`` (the registers of a
    search's later steps, and a pipelined stage's registered parameters, accumulators and
    products)."""
    structure = Structure()
    stage, acc_bits = layer.stage, layer.acc_bits
    words = parameter_words(layer, lanes, logic_multipliers)
    if isinstance(stage, Thresholds):
        for name, (width, rom) in words.items():
            if name.startswith("thresholds"):
                varying = varying_columns(rom, width)
                structure.add("compare_bits", varying + 0.5 * (width - varying))
        steps = search_steps(layer)
        structure.add("pipeline_bits",
                      (2 if pipelined else 1) * lanes * (steps - 1) * (acc_bits + steps / 2))
    elif isinstance(stage, Requant):
        pieces = (accumulator_pieces(acc_bits) if pipelined or logic_multipliers
                  else [(0, acc_bits, True)])
        constant = constant_multiplier(layer, logic_multipliers)
        terms = None if constant is None else len(signed_digits(constant))
        # In logic, a stage of one group multiplies each lane by a constant (a one-word ROM):
        # its partial products are the multiplier's one bits.
        per_lane = logic_multipliers and constant is None and layer.out_features <= lanes
        for _, width, is_signed in pieces:
            piece = Format.int(width) if is_signed else Format.uint(width)
            if per_lane:
                structure.multipliers += [
                    Multipliers("requant", 1, piece, Format.uint(stage.mult_bits), logic=True,
                                terms=bin(int(multiplier)).count("1"))
                    for multiplier in stage.multiplier]
            else:
                structure.multipliers.append(Multipliers(
                    "requant", lanes, piece, Format.uint(stage.mult_bits),
                    logic=logic_multipliers, terms=terms))
        structure.add("requant_bits", lanes * (acc_bits + stage.mult_bits))
        if pipelined:   # the pieces' products, at the multipliers and again; the scaled value
            structure.add("pipeline_bits", lanes * (acc_bits + 2 * len(pieces) * stage.mult_bits))
    if pipelined and reads_parameters(layer, logic_multipliers):
        # The registered parameters and the accumulators waiting beside them.
        structure.add("pipeline_bits",
                      sum(width for width, _ in words.values()) + lanes * acc_bits)
    structure.memories += [Memory("parameters", len(rom), width, rom)
                           for width, rom in words.values()]
    return structure


class OutputStage(wiring.Component):
    """Output stage of ``layer`` for ``lanes`` channels per cycle.

    An input is a group of accumulators with the group index and a ``tag`` that is passed
    through untouched; :attr:`latency` cycles later the output values come out with the tag.
    One group per cycle; no backpressure (``always_ready``). ``pipelined`` trades latency for
    short paths (see the module's description); the data registers it adds have no reset, so
    that synthesis may move them into block RAM and DSP registers. ``logic_multipliers``
    builds the requantization products in logic rather than DSP blocks (same latency).

    Members
    -------
    i_acc : ``In(stream.Signature({"acc", "group", "tag"}, always_ready=True))``
    o_values : ``Out(stream.Signature({"values", "tag"}, always_ready=True))``
        ``values`` are signed, :attr:`value_bits` wide.
    """

    def __init__(self, layer: Dense, lanes: int, *, tag_bits: int = 1, pipelined=False,
                 logic_multipliers=False):
        if not isinstance(layer, Dense):
            raise TypeError(f"layer must be a Dense layer, not {layer!r}")
        for name, flag in (("pipelined", pipelined), ("logic_multipliers", logic_multipliers)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be True or False, not {flag!r}")
        self.layer, self.lanes, self.pipelined = layer, lanes, pipelined
        self.logic_multipliers = logic_multipliers
        self.groups = -(-layer.out_features // lanes)
        out_fmt = layer.output.format
        self.value_bits = (out_fmt.bits if layer.stage is None
                           else signed_bits_for(out_fmt.min_value, out_fmt.max_value))
        super().__init__({
            "i_acc": In(stream.Signature(data.StructLayout({
                "acc":   data.ArrayLayout(signed(layer.acc_bits), lanes),
                "group": range(self.groups),
                "tag":   unsigned(tag_bits),
            }), always_ready=True)),
            "o_values": Out(stream.Signature(data.StructLayout({
                "values": data.ArrayLayout(signed(self.value_bits), lanes),
                "tag":    unsigned(tag_bits),
            }), always_ready=True)),
        })

    @property
    def latency(self) -> int:
        """Cycles from an input group to its output values."""
        return stage_latency(self.layer, self.pipelined, self.logic_multipliers)

    def parameter_words(self) -> dict:
        """ROM images: ``{name: (width, [word per group])}``."""
        return parameter_words(self.layer, self.lanes, self.logic_multipliers)

    def structure(self) -> Structure:
        """This stage's hardware (:func:`stage_structure`)."""
        return stage_structure(self.layer, self.lanes, self.pipelined, self.logic_multipliers)

    def _read(self, m, name, width, words, address):
        """The word of ROM ``name`` at ``address``, registered like every parameter (one
        cycle later, two when pipelined)."""
        rom = m.submodules[name] = memory.Memory(shape=unsigned(width), depth=len(words),
                                                 init=[int(word) for word in words])
        port = rom.read_port()
        m.d.comb += port.addr.eq(address)
        return _delayed(m, port.data, int(self.pipelined), name, reset_less=True)

    def _search(self, m, acc, flips):
        """Each lane's level, by the binary search of the module's description over the lane's
        search thresholds (``#(u <= acc)``, each comparison inverted where the lane's ``flips``
        bit, its channel's descending flag, is set; None: ascending); ``acc`` and ``flips`` are
        one step after the input, and the levels come :func:`search_steps` steps after it."""
        layer, cycles = self.layer, self._cycles
        group = self.i_acc.payload.group
        levels = [Cat() for _ in range(self.lanes)]
        roms = _search_words(layer, self.lanes)
        for step, lane_words in enumerate(roms):
            # The address: the group and the level bits found so far, for the next read.
            thresholds = [self._read(m, f"thresholds{step}_{p}", layer.threshold_bits, words,
                                     Cat(level, group)).as_signed()
                          for p, (words, level) in enumerate(zip(lane_words, levels,
                                                                 strict=True))]
            if step:
                acc = [_delayed(m, a, cycles, f"acc_{step}_{p}", self.pipelined)
                       for p, a in enumerate(acc)]
                levels = [_delayed(m, level, cycles, f"level_{step}_{p}", self.pipelined)
                          for p, level in enumerate(levels)]
                if flips is not None:
                    flips = [_delayed(m, flip, cycles, f"flip_{step}_{p}", self.pipelined)
                             for p, flip in enumerate(flips)]
            hits = [t <= a for t, a in zip(thresholds, acc, strict=True)]
            if flips is not None:
                hits = [hit ^ flip for hit, flip in zip(hits, flips, strict=True)]
            levels = [Cat(hit, level) for hit, level in zip(hits, levels, strict=True)]
            if step + 1 < len(roms):
                group = _delayed(m, group, cycles, f"group_{step}", self.pipelined)
        return levels

    @property
    def _cycles(self):
        """Cycles of a search step (a ROM read) or of a product: one, two when pipelined
        (registered again)."""
        return 2 if self.pipelined else 1

    @property
    def _product_registered(self) -> bool:
        """Whether :meth:`_products` gives each lane's product as a register (else as the
        sum of its pieces' registered products: pipelined, on DSP blocks, an accumulator
        of more than one piece)."""
        return (self.logic_multipliers or not self.pipelined
                or len(accumulator_pieces(self.layer.acc_bits)) == 1)

    def _products(self, m, acc, multipliers):
        """Each lane's ``acc * multiplier`` :attr:`_cycles` later: one registered
        product, or (pipelined) one product per accumulator piece, registered at the
        multiplier (a DSP block's output register) and again in logic, summed by the
        caller; with ``logic_multipliers`` one product in logic over those cycles."""
        layer, lanes = self.layer, self.lanes
        if self.logic_multipliers:
            cycles = product_cycles(layer, self.pipelined, self.logic_multipliers)
            return [logic_product(m, acc[p], multipliers[p], name=f"product_{p}",
                                  cycles=cycles) for p in range(lanes)]
        if not self.pipelined:
            products = [Signal(signed(layer.acc_bits + len(multipliers[p]) + 1),
                               name=f"product_{p}") for p in range(lanes)]
            m.d.sync += [products[p].eq(acc[p] * multipliers[p]) for p in range(lanes)]
            return products
        sums = []
        for p in range(lanes):
            pieces = []
            for k, (offset, width, is_signed) in enumerate(accumulator_pieces(layer.acc_bits)):
                piece = acc[p].as_unsigned()[offset:offset + width]
                piece = piece.as_signed() if is_signed else piece
                product = Signal(signed(width + len(multipliers[p]) + 1),
                                 name=f"product_{p}_{k}", reset_less=True)
                m.d.sync += product.eq(piece * multipliers[p])
                product = _delayed(m, product, 1, f"product_{p}_{k}_logic", True)
                pieces.append(product << offset if offset else product)
            sums.append(adder_tree(pieces))
        return sums

    def elaborate(self, platform):
        m = Module()
        layer, lanes = self.layer, self.lanes
        stage = layer.stage

        def delayed(value, cycles, name, reset_less=False):
            return _delayed(m, value, cycles, name, reset_less)

        # Cycle 1: the parameters arrive; register the accumulators beside them. Pipelined,
        # cycle 2: the parameters registered. A stage without parameter ROMs does not wait.
        params = {name: self._read(m, name, width, words, self.i_acc.payload.group)
                  for name, (width, words) in _group_words(layer, lanes,
                                                           self.logic_multipliers).items()}
        lag = _parameter_wait(layer, self.pipelined, self.logic_multipliers)
        acc = delayed(self.i_acc.payload.acc, lag, "acc", reset_less=self.pipelined)
        valid = delayed(self.i_acc.valid, lag, "valid")
        tag = delayed(self.i_acc.payload.tag, lag, "tag")

        if isinstance(stage, Requant):
            mult_bits = stage.mult_bits
            constant = constant_multiplier(layer, self.logic_multipliers)
            multipliers = [params["multiplier"][p * mult_bits:(p + 1) * mult_bits]
                           if constant is None else constant for p in range(lanes)]
            products = self._products(m, acc, multipliers)
            cycles = product_cycles(layer, self.pipelined, self.logic_multipliers)
            shifts = [delayed(params["shift"][p * 6:(p + 1) * 6], cycles, f"shift_{p}")
                      if "shift" in params else int(stage.shift[0]) for p in range(lanes)]
            valid = delayed(valid, cycles, "valid_product")
            tag = delayed(tag, cycles, "tag_product")
            results = []
            for p in range(lanes):
                if isinstance(shifts[p], int):
                    # floor((x + r) / 2^s) + z = floor((x + r + z * 2^s) / 2^s): the rounding
                    # and the zero point in one constant, one adder (one carry chain).
                    shift = shifts[p]
                    offset = ((1 << shift) >> 1) + (int(stage.zero_point) << shift)
                    scaled = (products[p] + offset) >> shift
                    if self._product_registered:
                        # The clamp's comparisons on the product, beside the adder:
                        # floor((x + c) / 2^s) < lo <=> x < lo * 2^s - c, and > hi <=>
                        # x >= (hi + 1) * 2^s - c.
                        below = products[p] < (int(stage.lo) << shift) - offset
                        above = products[p] >= ((int(stage.hi) + 1) << shift) - offset
                        if self.pipelined:
                            scaled, below, above = (
                                delayed(value, 1, f"{name}_{p}", reset_less=True)
                                for value, name in ((scaled, "scaled"), (below, "below"),
                                                    (above, "above")))
                    else:
                        # The product is a sum of pieces (an adder): the comparisons come
                        # after the registered value, not a second carry chain behind it.
                        scaled = delayed(scaled, 1, f"scaled_{p}", reset_less=True)
                        below, above = scaled < stage.lo, scaled > stage.hi
                else:
                    rounding = (Const(1, len(products[p]) + 1) << shifts[p]) >> 1
                    scaled = ((products[p] + rounding) >> shifts[p]) + stage.zero_point
                    if self.pipelined:
                        scaled = delayed(scaled, 1, f"scaled_{p}", reset_less=True)
                    below, above = scaled < stage.lo, scaled > stage.hi
                results.append(Mux(below, stage.lo, Mux(above, stage.hi, scaled)))
            if self.pipelined:
                valid, tag = delayed(valid, 1, "valid_scaled"), delayed(tag, 1, "tag_scaled")
        elif isinstance(stage, Thresholds):
            flips = ([params["descending"][p] for p in range(lanes)]
                     if "descending" in params else None)
            levels = self._search(m, acc, flips)
            out_fmt = layer.output.format
            results = [out_fmt.step * level + out_fmt.min_value for level in levels]
            later = (search_steps(layer) - 1) * self._cycles
            valid, tag = delayed(valid, later, "valid_search"), delayed(tag, later, "tag_search")
        else:
            results = [acc[p] for p in range(lanes)]

        for p in range(lanes):
            m.d.sync += self.o_values.payload.values[p].eq(results[p])
        m.d.sync += [self.o_values.valid.eq(valid), self.o_values.payload.tag.eq(tag)]
        return m
