# amaranth: UnusedElaboratable=no
# (A top built for its structure only, by the estimator, never elaborates its parts.)
"""Systolic overlay: a whole network run layer by layer on one weight-stationary array.

Where the dataflow architecture spends an engine per layer, the overlay time-shares one
``rows x cols`` :class:`~hwnn.rtl.systolic.SystolicArray` across all layers, like Google's TPU:
the array's rows run over a layer's inputs (K), its columns over its outputs (N). Input vectors
are gathered into a batch of up to ``batch`` vectors (a batch closes when it is full or when
the input stream pauses at a vector boundary); then, for each layer, for each tile of ``cols``
outputs (``nt``) and ``rows`` inputs (``kt``), the batch's activation rows stream through the
array while the next tile's weights load into the other bank, partial sums accumulate in an
accumulator memory, and after a layer's last input tile the layer's output stage writes the
next layer's activations (two memories, ping-pong). After the last layer the batch's outputs
stream out.

Activations are held in words of ``cols`` values (what an output stage writes at once, and
what the input gatherer fills), padded to :attr:`OverlayParams.word_values`, a multiple of
``rows``; an input tile is one of the word's :attr:`OverlayParams.word_tiles` slices of
``rows`` values (the slices of a tap's last word wholly past its channels are skipped, and
the weights are zero past a word's ``cols`` values and its pixel's channels). A square array
has one tile per word, as has a tall one (``rows > cols``), which then uses ``cols`` of its
rows.

Weights, biases and output-stage parameters are ROMs built from the IR; values are held as
integers wide enough for every layer's formats, signed where any is negative (binary +-1 as
2-bit values, so every layer, whatever its formats, is an integer matrix product). The weight
memory holds codes where the layers share a narrower format (:class:`WeightStorage`: a binary
network's weights take one bit each, decoded to +-1 on their way to the array).

Convolutions run as im2col GEMMs whose rows are the batch's output pixels, and a max pool
after a convolution is folded into it (:mod:`hwnn.rtl.overlaysteps`): a layer of the overlay
is a :class:`~hwnn.rtl.overlaysteps.Step`. Images are held as pixels of whole words of
channels; the row issuer computes each row's input pixel address (no im2col copy), and feeds
the input's zero point where the pixel lies in the padding.

The schedule is static and :func:`schedule` computes its cycle counts exactly; the hardware
follows it cycle for cycle when the output is not back-pressured.
"""

import math
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from amaranth import *
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In

from ..errors import ParameterError
from ..ir import Dense, Format, Network
from ..ir.packing import pack_rows
from .arith import select
from .banked import BankedMemory, single_port
from .engine import (LayerCounters, LayerEngine, LayerStages, OutputDrain, bias_words,
                     piece_cycles)
from .fanout import registered_copies
from .overlaysteps import Step, overlay_steps
from .params import check_positive_int
from .stage import stage_latency, stage_structure
from .structure import Memory, Structure
from .systolic import SystolicArray, SystolicParams, array_latency, max_pack
from .values import decode_codes, holding_format, resize

__all__ = ["REQUANT_MULTIPLIERS", "SINGLE_PORT", "WEIGHT_SOURCES", "OverlayParams",
           "SystolicOverlay", "WeightStorage", "check_overlay", "drain_cycles", "schedule"]


#: The attribute that marks a memory as single-port (one address for reading and writing,
#: never both in a cycle), its value the memory's name: the memories an iCE40 UltraPlus build
#: may put in its SPRAM (:func:`hwnn.tools.synth.spram_commands`).
SINGLE_PORT = "hwnn_single_port"

#: Where the weights come from: a ROM built into the design (``"rom"``), or a RAM that the
#: overlay fills from its ``w_stream`` port after reset, before it takes inputs
#: (``"loaded"``: a single-port memory, which an iCE40 UltraPlus may hold in SPRAM; a board
#: loads it from its configuration flash, :class:`hwnn.rtl.flash.FlashReader`).
WEIGHT_SOURCES = ("rom", "loaded")

#: Where the output stages' requantization multipliers go: DSP blocks, or logic (where the
#: array takes every DSP block, as on an iCE40UP5K).
REQUANT_MULTIPLIERS = ("dsp", "logic")


@dataclass(frozen=True)
class OverlayParams:
    """A ``rows x cols`` array (rows over a layer's inputs, columns over its outputs), the
    largest batch the memories hold, where the requantization multipliers go
    (:data:`REQUANT_MULTIPLIERS`), how many adjacent columns share a multiplier (``pack``,
    :class:`~hwnn.rtl.systolic.SystolicParams`; ``"auto"``: the most that are exact for the
    network's formats, :func:`~hwnn.rtl.systolic.max_pack`) and how many lanes each layer's
    output stage has (``stage_lanes``, a divisor of ``cols``; None: ``cols``). A narrower
    stage takes a row's sums in :attr:`stage_pieces` pieces, one a cycle, so the rows of a
    layer's last input tile are issued that many cycles apart: fewer stage lanes (the
    requantization multipliers and the stage's registers) for more cycles. ``weights``: where
    the weights come from (:data:`WEIGHT_SOURCES`)."""
    rows:    int
    cols:    int
    batch:   int
    requant: str = "dsp"
    pack:    int | str = 1
    stage_lanes: int | None = None
    weights: str = "rom"

    def __post_init__(self):
        check_positive_int("OverlayParams", "rows", self.rows, 64)
        check_positive_int("OverlayParams", "cols", self.cols, 64)
        check_positive_int("OverlayParams", "batch", self.batch, 4096)
        if self.requant not in REQUANT_MULTIPLIERS:
            raise ValueError(f"OverlayParams requant must be one of "
                             f"{', '.join(REQUANT_MULTIPLIERS)}, not {self.requant!r}")
        if self.weights not in WEIGHT_SOURCES:
            raise ValueError(f"OverlayParams weights must be one of "
                             f"{', '.join(WEIGHT_SOURCES)}, not {self.weights!r}")
        if isinstance(self.pack, str) and self.pack != "auto":
            raise ValueError(f"OverlayParams pack must be 1..{self.cols} or 'auto', "
                             f"not {self.pack!r}")
        if self.pack != "auto":
            check_positive_int("OverlayParams", "pack", self.pack, self.cols)
        if self.stage_lanes is not None:
            check_positive_int("OverlayParams", "stage_lanes", self.stage_lanes, self.cols)
            if self.cols % self.stage_lanes:
                divisors = [d for d in range(1, self.cols + 1) if self.cols % d == 0]
                raise ParameterError(
                    "stage_lanes", "OverlayParams stage_lanes", f"must divide the {self.cols} "
                    f"columns ({', '.join(map(str, divisors))}), not {self.stage_lanes}")

    @property
    def stage_pieces(self) -> int:
        """Cycles an output stage takes per row of sums (``cols / stage_lanes``)."""
        return 1 if self.stage_lanes is None else self.cols // self.stage_lanes

    @property
    def word_tiles(self) -> int:
        """Input tiles (slices of ``rows`` values) per activation word of ``cols`` values."""
        return math.ceil(self.cols / self.rows)

    @property
    def word_values(self) -> int:
        """Values of an activation memory word: ``cols``, padded to a multiple of ``rows``."""
        return self.word_tiles * self.rows

    def words(self, features: int) -> int:
        """Activation words of a vector of ``features`` values."""
        return math.ceil(features / self.cols)


def _value_format(steps):
    """Formats of the array's operands: every step's activations and weights fit them."""
    return (holding_format(step.layer.input.format for step in steps),
            holding_format(step.layer.weight_format for step in steps))


@dataclass(frozen=True)
class WeightStorage:
    """How the weight memory holds a tile row's ``cols`` weights: a word of their codes in
    ``fmt`` (column 0 lowest), and, with ``zero_flag``, a bit above them that marks a row of
    zero weights (a row with no input: the tiles' padding). ``fmt`` is the layers' common
    weight format where its codes are narrower than the array's operand (binary weights: 1
    bit, not the 2 of the +-1 the array multiplies; a binary code has no zero, hence the
    flag), else the operand's format itself."""
    fmt:       Format
    zero_flag: bool
    cols:      int

    @classmethod
    def of(cls, steps, operand: Format, cols: int) -> "WeightStorage":
        formats = {step.layer.weight_format for step in steps}
        fmt = formats.pop() if len(formats) == 1 else operand
        if fmt.width >= operand.bits:
            fmt = operand
        return cls(fmt, not fmt.contains(0), cols)

    @property
    def word_bits(self) -> int:
        return self.cols * self.fmt.width + self.zero_flag

    def words(self, weights, present) -> list[int]:
        """The words of ``weights`` (int64 values, one row of ``cols`` per word), rows whose
        ``present`` is False all zero."""
        if self.zero_flag:
            # Padding weights (zero) take any code: the flag, or a discarded column, hides them.
            weights = np.where(weights == 0, self.fmt.max_value, weights)
        words = pack_rows(self.fmt.encode(weights), self.fmt.width)
        if not self.zero_flag:
            return words
        flag = 1 << (self.cols * self.fmt.width)
        return [word if kept else word | flag
                for word, kept in zip(words, np.asarray(present).tolist(), strict=True)]

    def operands(self, word, bits: int) -> list:
        """The array's ``cols`` weights (signed ``bits``-bit values) of a memory ``word``."""
        word = Value.cast(word)
        codes = decode_codes(word, self.fmt, self.cols, bits)
        if not self.zero_flag:
            return codes
        zero = word[-1]
        return [Mux(zero, Const(0, signed(bits)), code) for code in codes]


@dataclass(frozen=True)
class StepTiles:
    """How a :class:`~hwnn.rtl.overlaysteps.Step` tiles on an array: ``wc`` words per input
    pixel, ``tap_words`` words a tap reads, ``last_pieces`` slices of a tap's last word,
    ``kt`` input tiles, ``nt`` output tiles (words per output pixel), ``in_words`` and
    ``out_words`` words of one vector's input and output."""
    wc:          int
    tap_words:   int
    last_pieces: int
    kt:          int
    nt:          int
    in_words:    int
    out_words:   int

    @classmethod
    def of(cls, step: Step, params: OverlayParams) -> "StepTiles":
        wc = params.words(step.channels)
        tap_words = step.pixels * wc
        last_pieces = math.ceil((step.channels - (wc - 1) * params.cols) / params.rows)
        nt = params.words(step.out_channels)
        return cls(wc, tap_words, last_pieces,
                   step.taps * ((tap_words - 1) * params.word_tiles + last_pieces), nt,
                   step.in_pixels * wc, step.out_pixels * nt)

    def input_tiles(self, step: Step, params: OverlayParams):
        """Per input tile, in issue order, ``(tap, word, piece)``: slice ``piece`` of word
        ``word`` of the pixels of tap ``tap``."""
        for tap in range(step.taps):
            for word in range(self.tap_words):
                pieces = self.last_pieces if word == self.tap_words - 1 else params.word_tiles
                for piece in range(pieces):
                    yield tap, word, piece

    def input_column(self, step: Step, params: OverlayParams, tile, row) -> int | None:
        """The column of ``step.layer``'s weights that row ``row`` of input tile ``(tap, word,
        piece)`` multiplies: lane ``piece * rows + row`` of the word, channel ``c`` of pixel
        ``p`` of the tap, column ``(tap * pixels + p) * channels + c``; None for padding."""
        tap, word, piece = tile
        lane = piece * params.rows + row
        pixel, channel_word = divmod(word, self.wc)
        channel = channel_word * params.cols + lane
        if lane >= params.cols or channel >= step.channels:
            return None
        return (tap * step.pixels + pixel) * step.channels + channel


#: The overlay's phases: gather a batch, run a layer, drain it, send the batch's outputs.
LOAD, RUN, DRAIN, OUTPUT = range(4)

#: Registers between issuing a row and the array's input (the row's address, the read, a
#: register for the slow block RAM output, which becomes the block's own output register, and
#: a register after the choice of activation memory and slice, or the padding).
READ_STAGES = 4

#: The counts of a step's walk over a vector's rows, outermost first (:class:`Step`).
WALK = ("a1", "b1", "a2", "b2")


def drain_cycles(params: OverlayParams, layer: Dense, pools=False) -> int:
    """Cycles ``layer`` waits after its last row, until its results are written (memory read,
    array, accumulator, a register, the layer's output stage and its pieces, the registered
    write) and the next layer may read them; one more in a network whose steps ``pools`` (a
    register before the pool windows' maxima)."""
    return (READ_STAGES + array_latency(params.rows, params.cols)
            + stage_latency(layer, pipelined=True, logic_multipliers=params.requant == "logic")
            + piece_cycles(params.stage_pieces) + 4 + pools)


def _pools(steps) -> bool:
    """Whether any of ``steps`` has a max pool folded in."""
    return any(step.pool is not None for step in steps)


def _run_cycles(tiles: int, beats: int, rows: int, kt: int = 1, pieces: int = 1) -> int:
    """Cycles of a layer's run phase under the weight loader's and the row issuer's rules (a
    tile's load waits for the rows of the tile two before it; a tile's rows wait for the
    first beat of its load; a load is ``beats`` beats, a tile ``rows`` rows; the rows of an
    output tile's last input tile, every ``kt``-th, go ``pieces`` cycles apart, and the row
    after such a row waits as long), until both have finished. Each runs its tiles' cycles
    back to back once started, so the first cycles of tile ``t``'s load ``L(t)`` and rows
    ``R(t)`` follow tile by tile, ``E(t) = R(t) + (rows - 1) * p(t) + 1`` the cycle after
    its last row (``p(t)``: ``pieces`` on a last input tile, else 1): ``L(t) = max(L(t-1) +
    beats, E(t-2))``, ``R(t) = max(L(t) + 1, R(t-1) + rows * p(t-1))``."""
    load, issue, spacing = -beats, -rows, 1                     # L(t-1), R(t-1), p(t-1)
    before = end = 0                                            # E(t-2), E(t-1)
    for tile in range(tiles):
        load = max(load + beats, before)
        issue = max(load + 1, issue + rows * spacing)
        spacing = pieces if tile % kt == kt - 1 else 1
        before, end = end, issue + (rows - 1) * spacing + 1
    return max(load + beats, end) + 1


def schedule(network: Network, params: OverlayParams, batch: int | None = None) -> dict:
    """Exact cycle counts of one batch of ``batch`` vectors (default: a full batch) when the
    input keeps up and the output is always ready.

    Returns ``{"layers": [{name, input_tiles, output_tiles, tiles, rows, cycles, busy, macs,
    utilization}], "load", "output", "total", "per_inference"}``, one entry per network layer;
    a layer's ``cycles`` run from its first weight beat to the end of its drain, ``busy``
    counts the cycles that issued a row (``rows`` per tile: the batch's output pixels, those
    of a pool's windows when one is folded in), ``macs`` the multiply-accumulates of its own
    weights (a depthwise convolution's taps, not its block-diagonal GEMM's zeros) and
    ``utilization`` is ``macs / (rows * cols * cycles)``. A max pool folded into the
    convolution before it (``folded_into``) takes no cycles of its own.
    """
    batch = params.batch if batch is None else batch
    layers = [None] * len(network.layers)
    steps = overlay_steps(network)
    for step in steps:
        tiles = StepTiles.of(step, params)
        count = tiles.kt * tiles.nt
        rows = batch * step.rows_per_vector
        cycles = (_run_cycles(count, params.rows, rows, tiles.kt, params.stage_pieces)
                  + drain_cycles(params, step.layer, _pools(steps)) + 1)
        macs = batch * step.macs
        layers[step.index] = {
            "name": network.layers[step.index].name, "input_tiles": tiles.kt,
            "output_tiles": tiles.nt, "tiles": count, "rows": rows, "cycles": cycles,
            "busy": count * rows, "macs": macs,
            "utilization": macs / (params.rows * params.cols * cycles)}
        if step.pool is not None:
            layers[step.pool_index] = {
                "name": step.pool.name, "input_tiles": 0, "output_tiles": 0, "tiles": 0,
                "rows": 0, "cycles": 0, "busy": 0, "macs": 0, "utilization": 0.0,
                "folded_into": network.layers[step.index].name}
    in_count = math.gcd(steps[0].channels, params.cols)
    out_count = math.gcd(network.out_features, params.cols)
    # A beat per cycle, the cycle that closes the batch and the registered decision.
    load = batch * (network.in_features // in_count) + 2
    # The first word takes 3 cycles through the memory read and the FIFO; then one beat
    # per cycle.
    output = 3 + batch * (network.out_features // out_count)
    total = load + sum(layer["cycles"] for layer in layers) + output
    return {"layers": layers, "load": load, "output": output, "total": total,
            "per_inference": total / batch}


def check_overlay(network: Network, params: OverlayParams):
    """Raise a one-line ValueError unless the overlay can serve every layer
    (:func:`~hwnn.rtl.overlaysteps.overlay_steps`) and the array its values and weights."""
    a_format, w_format = _value_format(overlay_steps(network))
    for what, fmt in (("activations", a_format), ("weights", w_format)):
        if fmt.bits > 16:
            raise ValueError(f"The systolic array multiplies values of up to 16 bits, but this "
                             f"network's {what} need {fmt}")


class SystolicOverlay(LayerEngine):
    """A whole network on one ``rows x cols`` systolic array, one batch at a time.

    The ports are those of every architecture's top (:class:`~hwnn.rtl.engine.LayerEngine`,
    with ``lanes = cols``).

    Members
    -------
    i_stream : ``In(stream.Signature(Beat(in_count, input width)))``
    o_stream : ``Out(stream.Signature(Beat(out_count, output width)))``
    busy : ``Out(32).array(layers)``
        Performance counters since reset: cycles in which the layer fed a row to the array.
    cycles : ``Out(32).array(layers)``
        Performance counters since reset: cycles the layer held the array (run and drain); a
        max pool folded into the convolution before it counts none.

    w_stream : ``In(stream.Signature(weight word bits))``, with ``weights="loaded"`` only
        The weight memory's words (:meth:`weight_words`, :class:`WeightStorage`), in order,
        after reset; the input
        is not ready until the last has been taken (a reset, at any time, empties the memory
        as at power-on: the words are loaded again).

    The input beats carry ``gcd(C, cols)`` codes, ``C`` the input's channels (a vector's
    features), so that no beat straddles two pixels' words.
    """
    Params = OverlayParams
    lanes_field = "cols"
    #: The performance counters, each a :class:`~hwnn.rtl.engine.LayerCounters`.
    COUNTERS = ("busy", "cycles")

    def __init__(self, network: Network, params: OverlayParams):
        # The steps (which refuse what the overlay cannot serve) set the input beats' width;
        # LayerEngine checks the arguments' types.
        steps = overlay_steps(network) if isinstance(network, Network) else None
        valid = steps and isinstance(params, OverlayParams)
        in_count = math.gcd(steps[0].channels, params.cols) if valid else None
        formats = _value_format(steps) if valid else None
        storage = WeightStorage.of(steps, formats[1], params.cols) if valid else None
        ports = ({"w_stream": In(stream.Signature(unsigned(storage.word_bits)))}
                 if valid and params.weights == "loaded" else None)
        super().__init__(network, params, counters=self.COUNTERS, in_count=in_count,
                         ports=ports)
        self.steps = steps
        (self.a_format, self.w_format), self.weight_storage = formats, storage
        # The array sums one tile (rows terms); a layer's accumulators hold every partial sum.
        pack = (max_pack(self.a_format, self.w_format, params.rows, cols=params.cols)
                if params.pack == "auto" else params.pack)
        self.array_params = SystolicParams(params.rows, params.cols, self.a_format,
                                           self.w_format, params.rows, pack)
        self.tiles = [StepTiles.of(step, params) for step in self.steps]
        self.kt = [tiles.kt for tiles in self.tiles]
        self.nt = [tiles.nt for tiles in self.tiles]
        # Words of the activation memories: the largest input of a batch.
        self.act_depth = params.batch * max(tiles.in_words for tiles in self.tiles)
        # Rows of the accumulator memory: the most GEMM rows of a batch.
        self.acc_depth = params.batch * max(step.rows_per_vector for step in self.steps)

    # Memory images ----------------------------------------------------------------------------

    @property
    def weight_depth(self) -> int:
        """Words of the weight memory: ``rows`` per tile of every step."""
        return sum(t.nt * t.kt for t in self.tiles) * self.params.rows

    def weight_memory(self, words=()) -> BankedMemory:
        """The weight memory (:class:`~hwnn.rtl.banked.BankedMemory`) holding ``words`` (those
        of :meth:`weight_words`); loaded weights (no ``words``) are written only before the
        first batch and read only while a layer runs: a writable memory of one address."""
        loaded = self.params.weights == "loaded"
        return BankedMemory(self.weight_storage.word_bits, self.weight_depth, init=words,
                            writable=loaded, name="weights",
                            attrs={SINGLE_PORT: "weights"} if loaded else {})

    def weight_words(self):
        """Weight memory: per step, per tile (nt-major), ``rows`` words (:class:`WeightStorage`)
        of ``cols`` weights; tile row ``r``, column ``c`` holds ``weights[nt * cols + c, j]``
        of the step's layer for the column ``j`` of :meth:`StepTiles.input_column` (0 where
        there is none, and past the layer's outputs)."""
        p = self.params
        words, bases = [], []
        for step, tiles in zip(self.steps, self.tiles, strict=True):
            layer, kt_count, nt_count = step.layer, tiles.kt, tiles.nt
            bases.append(len(words))
            padded = np.zeros((nt_count * p.cols, kt_count * p.rows), dtype=np.int64)
            present = np.zeros(kt_count * p.rows, dtype=bool)
            for kt, tile in enumerate(tiles.input_tiles(step, p)):
                for row in range(p.rows):
                    column = tiles.input_column(step, p, tile, row)
                    if column is not None:
                        padded[:layer.out_features, kt * p.rows + row] = layer.weights[:, column]
                        present[kt * p.rows + row] = True
            # Word (nt, j): the cols weights of output tile nt at column j = kt * rows + r.
            words += self.weight_storage.words(
                padded.reshape(nt_count, p.cols, -1).transpose(0, 2, 1).reshape(-1, p.cols),
                np.tile(present, nt_count))
        return words, bases

    @property
    def load_words(self) -> list | None:
        """What ``w_stream`` takes after reset (loaded weights: :meth:`weight_words`); None
        without the port."""
        return self.weight_words()[0] if self.params.weights == "loaded" else None

    def bias_words(self):
        """Bias ROM: per layer, per output tile, ``cols`` accumulator-format biases."""
        return bias_words([step.layer.bias for step in self.steps], self.nt,
                          self.params.cols, self.acc_bits)

    @property
    def memory_bits(self) -> dict:
        """Bits of memory by use (the output stages' parameters and the output FIFO aside)."""
        return self.structure().memory_bits(("weights", "biases", "activations",
                                             "accumulators", "outputs"))

    #: The counts of :meth:`structure`.
    COUNTS = ("unit", "cells", "cell_bits", "edge_bits", "compare_bits", "register_bits",
              "pipeline_bits", "requant_bits", "counter_bits")

    def structure(self) -> Structure:
        """The overlay's hardware (:mod:`hwnn.rtl.structure`): the array's
        (:meth:`~hwnn.rtl.systolic.SystolicArray.structure`: its multipliers, cell registers
        ``cell_bits`` and other registers ``register_bits``), the accumulator edge's registers
        (``edge_bits``: per column and accumulator bit, the accumulator and bias reads, the
        sums kept three times, the kept sums chosen ahead, the start, and the stage's input;
        per column, its copies of two choices), the data path's registers (``register_bits``:
        the weight and activation reads and the row fed to the array, the input word gathered,
        the results written, the rows' sideband delayed along the array), the folded pools' running
        maximum (``compare_bits``), every step's output stage (``stage_lanes`` wide, and the
        registers of its pieces), the performance counters
        (``counter_bits``), and its memories: weights, biases, the two activation memories,
        the accumulators, the outputs and the output FIFO."""
        p, batch = self.params, self.params.batch
        cols, rows, acc_bits = p.cols, p.rows, self.acc_bits
        a_bits, word_bits = self.a_format.bits, self.weight_storage.word_bits
        out_bits = self.network.output.format.bits
        loaded = p.weights == "loaded"
        # A loaded memory's words are not needed here (a large network's take long to pack).
        weights = None if loaded else self.weight_words()[0]
        depth = self.weight_depth
        structure = Structure.of(self.COUNTS)
        structure.add("unit", 1)
        array = SystolicArray(self.array_params)        # pack columns per multiplier
        structure.merge(array.structure())
        structure.add("edge_bits", cols * (8 * acc_bits + 2))
        # The rows' sideband (valid, accumulator row, output tile, first and last input
        # tile, output word, pool window marks) meets the sums: READ_STAGES + latency deep.
        sideband = (5 + max(self.acc_depth - 1, 1).bit_length()
                    + max(max(self.nt) - 1, 1).bit_length()
                    + (batch * max(t.out_words for t in self.tiles)).bit_length())
        structure.add("register_bits",
                      self.weight_memory().register_bits
                      + 2 * p.word_values * a_bits + rows * a_bits     # activation reads
                      + 2 * cols * a_bits + cols * out_bits            # gathered, written
                      + (array.latency + READ_STAGES) * sideband)
        if _pools(self.steps):
            structure.add("compare_bits", cols * a_bits)     # the pools' running maximum
            structure.add("register_bits", 2 * cols * a_bits)  # the values and the maximum
        pieces = p.stage_pieces
        for step in self.steps:
            structure.merge(stage_structure(step.layer, cols // pieces, pipelined=True,
                                            logic_multipliers=p.requant == "logic"))
        if pieces > 1:
            # The piece registered on its way in, the values of all but a row's last piece
            # collected.
            structure.add("register_bits", cols // pieces * (acc_bits + (pieces - 1) * max(
                a_bits, out_bits)))
        for _ in self.COUNTERS:
            structure.merge(LayerCounters(len(self.network.layers)).structure())
        # The counters' layer and enables, registered.
        structure.add("register_bits", max(len(self.network.layers) - 1, 1).bit_length()
                      + len(self.COUNTERS))
        biases, _ = self.bias_words()
        if loaded:
            # The word taken, its address and the next (a count), the write and last flags.
            structure.add("register_bits", word_bits + 2 * max(depth - 1, 1).bit_length()
                          + 3)
        structure.memories += [
            Memory("weights", depth, word_bits, weights, single_port=loaded,
                   name="weights"),
            Memory("biases", len(biases), cols * acc_bits, biases),
            *(Memory("activations", self.act_depth, p.word_values * a_bits, single_port=True,
                     name=f"acts{index}") for index in range(2)),
            Memory("accumulators", self.acc_depth, cols * acc_bits),
            Memory("outputs", batch * self.nt[-1], cols * self.network.output.format.bits)]
        return structure.merge(self._output_drain().structure())

    # Hardware ---------------------------------------------------------------------------------
    # elaborate() makes the memories and the control registers, then each part adds its logic:
    # the input gatherer (LOAD), the weight loader and row issuer (RUN), the array's feed, the
    # accumulation into the layer's stage, the stages' writes, the output reader (OUTPUT) and
    # the phase sequencer. ``s`` holds the signals the parts share.

    def elaborate(self, platform):
        m = Module()
        s = SimpleNamespace()
        s.array = m.submodules.array = SystolicArray(self.array_params)
        self._memories(m, s)
        if self.params.weights == "loaded":
            self._load_weights(m, s)
        s.phase = Signal(range(4))
        s.layer = Signal(range(len(self.steps)))
        s.m_count = Signal(range(self.params.batch + 1))     # vectors in the batch
        # The drain's last cycle, on the last step or another (registered strobes).
        s.to_output, s.to_next = Signal(), Signal()
        self._gather(m, s)
        self._issue(m, s)
        self._feed(m, s)
        self._accumulate(m, s)
        self._write_results(m, s)
        self._read_outputs(m, s)
        self._count(m, s)
        self._sequence(m, s)
        return m

    def _memories(self, m, s):
        """The weight and bias ROMs, the two activation memories (layer ``l`` reads memory
        ``l % 2`` and its stage writes the other), the accumulators and the outputs."""
        p, batch = self.params, self.params.batch
        cols, a_bits, acc_bits = p.cols, self.a_format.bits, self.acc_bits
        out_bits = self.network.output.format.bits
        s.weight_words, s.weight_bases = self.weight_words()
        s.weights = m.submodules.weights = self.weight_memory(
            [] if p.weights == "loaded" else s.weight_words)
        s.bias_words, s.bias_bases = self.bias_words()
        biases = m.submodules.biases = memory.Memory(
            shape=unsigned(cols * acc_bits), depth=len(s.bias_words), init=s.bias_words)
        s.bias_read = biases.read_port()
        # A layer reads one activation memory while its stage writes the other, the outputs
        # are read only once written, and an accumulator read that meets a write to its
        # address is replaced by the forwarded sums (``_accumulate``): a read that meets a
        # write to its address is never used, so Yosys need not emulate the read's old data
        # around a block RAM (``no_rw_check``: logic that would keep the read data out of the
        # block's own output register).
        unchecked = {"no_rw_check": 1}
        acts = [memory.Memory(shape=unsigned(p.word_values * a_bits), depth=self.act_depth,
                              init=[], attrs=unchecked | {SINGLE_PORT: f"acts{index}"})
                for index in range(2)]
        m.submodules.acts0, m.submodules.acts1 = acts
        # Neither activation memory is read while it is written: single-port memories.
        s.act_reads, s.act_writes = map(list, zip(*(single_port(m, mem) for mem in acts),
                                                  strict=True))
        accumulators = m.submodules.accumulators = memory.Memory(
            shape=unsigned(cols * acc_bits), depth=self.acc_depth, init=[], attrs=unchecked)
        s.acc_write = accumulators.write_port()
        s.acc_read = accumulators.read_port()
        outputs = m.submodules.outputs = memory.Memory(
            shape=unsigned(cols * out_bits), depth=batch * self.nt[-1], init=[],
            attrs=unchecked)
        s.out_write = outputs.write_port()
        s.out_read = outputs.read_port()

    def _load_weights(self, m, s):
        """With loaded weights: each word taken from ``w_stream`` is written to the weight
        memory a cycle later, from registers, at the next address; ``s.weights_in`` marks the
        write of the last, after which ``w_stream`` is no longer ready (until a reset)."""
        words = len(s.weight_words)
        ready = Signal(init=1)
        address = Signal(range(words))               # of the next word taken
        last = Signal(init=words == 1)               # the next word taken is the last
        s.weights_in = Signal()
        taken = self.w_stream.valid & ready
        m.d.comb += self.w_stream.ready.eq(ready)
        m.d.sync += [s.weights.write_en.eq(taken), s.weights_in.eq(taken & last)]
        with m.If(taken):
            m.d.sync += [s.weights.write_addr.eq(address),
                         s.weights.write_data.eq(self.w_stream.payload),
                         address.eq(address + 1), last.eq(address == words - 2)]
            with m.If(last):
                m.d.sync += ready.eq(0)

    def _gather(self, m, s):
        """LOAD: gather ``in_count`` values per beat into words of ``cols`` values (each pixel
        of the input its own words, the last holding its remaining channels), written to
        activation memory 0 a cycle after their last beat (``s.load_write``, ``s.load_addr``,
        ``s.load_word``); ``s.closing`` the cycle after the
        batch closes (full, or the input paused at a vector boundary): the decision is
        registered, and the input is no longer ready from that cycle on."""
        cols, batch, in_count = self.params.cols, self.params.batch, self.in_count
        first = self.tiles[0]
        a_bits, words0, pixel_words = self.a_format.bits, first.in_words, first.wc
        beats_per_word = cols // in_count
        last_word_beats = (self.steps[0].channels - (pixel_words - 1) * cols) // in_count
        word = Signal(cols * a_bits)
        beat = Signal(range(beats_per_word))
        s.in_word = in_word = Signal(range(words0))
        pixel_word = Signal(range(pixel_words))
        s.in_m = in_m = Signal(range(batch + 1))
        decoded = decode_codes(self.i_stream.payload.data, self.network.input.format, in_count,
                               a_bits)
        word_done = (beat == Mux(pixel_word == pixel_words - 1, last_word_beats,
                                 beats_per_word) - 1)
        vector_done = word_done & (in_word == words0 - 1)
        loading = s.phase == LOAD
        s.closing = Signal()
        # Ready while LOAD has room for a vector: a register (set when LOAD begins, cleared
        # when the batch closes or fills), so that nothing but a flip-flop drives the port;
        # with loaded weights, set once they are in.
        loaded = self.params.weights == "loaded"
        s.accepting = Signal(init=not loaded)
        if loaded:
            with m.If(s.weights_in):
                m.d.sync += s.accepting.eq(1)
        closes = Signal()           # no transfer now; in_m is the batch (~accepting: full)
        m.d.comb += [
            self.i_stream.ready.eq(s.accepting),
            closes.eq(loading & ~s.closing & (in_m > 0) & (in_word == 0) & (beat == 0)
                      & (~s.accepting | ~self.i_stream.valid)),
        ]
        m.d.sync += s.closing.eq(closes)
        with m.If(closes):
            m.d.sync += s.accepting.eq(0)
        # The word with this beat's values in place (slot p belongs to beat p // in_count).
        merged = Signal(cols * a_bits)
        m.d.comb += merged.eq(Cat(*(
            Mux(beat == slot // in_count, decoded[slot % in_count].as_unsigned(),
                word[slot * a_bits:(slot + 1) * a_bits])
            for slot in range(beats_per_word * in_count))))
        # A completed word is written a cycle after its last beat, from registers (the
        # word, its address and the strobe): the input's transfer reaches only them.
        s.load_write, s.load_word = Signal(), word
        s.load_addr = Signal.like(s.act_writes[0].addr)
        transfer = self.i_stream.valid & self.i_stream.ready
        m.d.sync += s.load_write.eq(transfer & word_done)
        with m.If(transfer):
            m.d.sync += word.eq(merged)
            with m.If(word_done):
                m.d.sync += s.load_addr.eq(in_m * words0 + in_word)
            with m.If(word_done):
                m.d.sync += [beat.eq(0), in_word.eq(Mux(vector_done, 0, in_word + 1)),
                             pixel_word.eq(Mux(pixel_word == pixel_words - 1, 0,
                                               pixel_word + 1))]
                with m.If(vector_done):
                    m.d.sync += in_m.eq(in_m + 1)
                    with m.If(in_m == batch - 1):
                        m.d.sync += s.accepting.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)

    def _per_step(self, index, values):
        """``values[index]`` of per-step constants (signed where any is negative)."""
        shape = range(min(0, *values), max(1, *values) + 1)
        return select(index, [Const(value, shape) for value in values])

    def _step_register(self, m, index, values, name):
        """A register of ``values[index]`` (per-step constants, :meth:`_per_step`), a cycle
        behind ``index``."""
        value = self._per_step(index, values)
        register = Signal(value.shape(), name=f"step_{name}", init=values[0])
        m.d.sync += register.eq(value)
        return register

    def _walk_constants(self):
        """Per step, the row issuer's constants (lists indexed by step): the walk's limits,
        the image, the kernel and the address steps of each move of the walk (in words: a
        pixel ``(y, x)`` of a vector is at word ``(y * W + x) * wc`` of it)."""
        c = SimpleNamespace(**{name: [] for name in (
            "a1", "b1", "a2", "b2", "height", "width", "kw", "y0", "x0", "lin0", "sy", "sx",
            "x_a2", "y_b1", "x_b1", "y_a1", "x_a1", "y_end", "lin_b2", "lin_a2", "lin_b1",
            "lin_a1", "lin_end", "in_words",
            "tap_words", "last_pieces", "ky_step", "rows", "nt", "kt1", "pad",
            *(f"single_{name}" for name in WALK))})
        for step, tiles in zip(self.steps, self.tiles, strict=True):
            (a1, b1, a2, b2), (height, width) = step.walk, step.in_size
            (sy, sx), (top, left), wc = step.stride, step.before, tiles.wc
            (py, px) = step.pool_step
            # Moves between windows: the origin's change in convolution pixels; the last
            # window's last row's origin.
            y_a1, x_b1 = py - (a2 - 1), px - (b2 - 1)
            y_end, x_end = (a1 - 1) * py + a2 - 1, (b1 - 1) * px + b2 - 1
            for name, value in dict(
                    a1=a1 - 1, b1=b1 - 1, a2=a2 - 1, b2=b2 - 1, height=height, width=width,
                    kw=step.kernel[1] - 1, y0=-top, x0=-left, lin0=-(top * width + left) * wc,
                    sy=sy, sx=sx, x_a2=-(b2 - 1) * sx, y_b1=-(a2 - 1) * sy, x_b1=x_b1 * sx,
                    y_a1=y_a1 * sy, x_a1=-x_end * sx, y_end=-y_end * sy, lin_b2=sx * wc,
                    lin_a2=(sy * width - (b2 - 1) * sx) * wc,
                    lin_b1=(x_b1 * sx - (a2 - 1) * sy * width) * wc,
                    lin_a1=(y_a1 * sy * width - x_end * sx) * wc,
                    lin_end=-(y_end * sy * width + x_end * sx) * wc,
                    in_words=tiles.in_words, tap_words=tiles.tap_words - 1,
                    last_pieces=tiles.last_pieces - 1,
                    ky_step=(width - step.kernel[1]) * wc + 1, rows=step.rows_per_vector,
                    nt=tiles.nt, kt1=int(tiles.kt == 1), pad=step.pad_value,
                    **{f"single_{name}": int(count == 1) for name, count in zip(
                        WALK, step.walk, strict=True)}).items():
                getattr(c, name).append(value)
        return c

    def _issue(self, m, s):
        """RUN: the weight loader (``s.load``: a row of the next tile's weights) and the row
        issuer (``s.issue``: a row of activations) of the current step. Their rules, with
        registered flags so that no wide comparison sits in the way: the loader may start tile
        i once the rows of tile i - 2 are issued (gap <= 1), and the rows of a tile wait until
        the first beat of its load has been issued (gap >= 1).

        An input tile ``rw_kt`` is slice ``rw_piece`` of word ``rw_word`` of tap ``(ky, kx)``
        (``rw_tap``: its word offset). A tile's rows walk the batch's vectors, and each
        vector's rows the step's walk ``(a1, b1, a2, b2)``; ``rw_y``, ``rw_x`` and ``rw_lin``
        follow the row's window origin (its top left pixel, in the padding or not) and its
        word offset in the vector, ``rw_base`` the vector's first word. The row's address
        and whether it lies in the padding (``s.rd_addr``, ``s.rd_pad``) are registered for
        the memory read; ``rw_out`` is the word its output goes to, and ``rw_first`` and
        ``rw_last`` mark the first and last rows of a pool window (both, unpooled)."""
        p, batch = self.params, self.params.batch
        c = s.consts = self._walk_constants()
        # The step's constants in registers, a cycle behind ``s.layer`` (no selection among
        # the steps before an adder): the issuer's first row of a step comes a cycle after the
        # step starts at the earliest (once its first weight row is loading). The walk's start,
        # the rows and the padding value are read only when a step starts or by the feeder.
        k = SimpleNamespace(**{name: self._step_register(m, s.layer, values, name)
                               for name, values in c.__dict__.items()
                               if name not in ("y0", "x0", "lin0", "rows", "pad")})
        s.most_tiles = max(kt * nt for kt, nt in zip(self.kt, self.nt, strict=True))
        tiles = range(s.most_tiles + 1)
        s.ld_left = Signal(tiles)                    # tiles still to load, this one included
        s.ld_final = Signal()                        # this is the layer's last tile to load
        s.ld_busy, s.ld_row, s.ld_bank = Signal(), Signal(range(p.rows)), Signal()
        s.ld_addr = Signal(range(len(s.weight_words) + 1))
        s.rw_left, s.rw_final, s.rw_busy, s.rw_bank = Signal(tiles), Signal(), Signal(), Signal()
        s.rw_m = Signal(range(self.acc_depth))       # the row: the accumulator's address
        s.rw_rows_left = Signal(range(self.acc_depth))  # rows of the batch, less one
        s.rw_one_row = Signal()                      # the batch has one row
        s.rw_m_left = Signal(range(self.acc_depth))  # rows after rw_m (a down count)
        s.rw_m_last = Signal()                       # rw_m is the batch's last row
        s.rw_kt = Signal(range(max(self.kt)))
        s.rw_kt_last = Signal()                      # rw_kt is the layer's last input tile
        s.rw_kt_left = Signal.like(s.rw_kt)          # input tiles after rw_kt
        s.rw_word = Signal(range(max(c.tap_words) + 1))
        s.rw_piece = Signal(range(p.word_tiles))
        s.rw_kx = Signal(range(max(c.kw) + 1))
        s.rw_ky = Signal(range(max(step.kernel[0] for step in self.steps)))
        s.rw_tap = Signal(range(max(self._tap_ends()) + 1))
        s.rw_nt = Signal(range(max(self.nt)))
        walk = s.walk = [Signal(range(max(getattr(c, name)) + 1), name=f"rw_{name}")
                         for name in WALK]
        # Whether each count of the walk is at its last value (registered flags: no
        # comparison before the choice of the next move).
        s.walk_last = [Signal(name=f"rw_{name}_last") for name in WALK]
        rw_a2, rw_b2 = walk[2:]
        s.rw_base = Signal(range(self.act_depth))
        # A bound of every window origin's coordinates (and the image's sides).
        size = max(a1 * a2 * sy + b1 * b2 * sx + h + w + top + left
                   for (a1, b1, a2, b2), (sy, sx), (h, w), (top, left)
                   in ((step.walk, step.stride, step.in_size, step.before)
                       for step in self.steps))
        s.rw_y, s.rw_x = Signal(range(-size, size + 1)), Signal(range(-size, size + 1))
        s.rw_lin = Signal(range(-self.act_depth - max(map(abs, c.lin0)), self.act_depth + 1))
        s.rw_out = Signal(range(max(batch * t.out_words for t in self.tiles) + 1))
        s.rw_first, s.rw_last = Signal(), Signal()
        s.gap = Signal(range(3))                     # tiles whose load began, minus issued
        s.kt_last = self._step_register(m, s.layer, [kt - 1 for kt in self.kt], "kt_last")
        s.load, s.issue = Signal(), Signal()
        load_done, rows_done = Signal(), Signal()    # a tile's last beat / last row, now
        # Both are busy only while the phase is RUN (they start with the layer, which leaves
        # RUN when neither is).
        m.d.comb += [
            s.load.eq(s.ld_busy & ((s.ld_row != 0) | (s.gap <= 1))),
            load_done.eq(s.load & (s.ld_row == p.rows - 1)),
            rows_done.eq(s.issue & s.rw_m_last),
            s.weights.addr.eq(s.ld_addr),
            s.rw_first.eq((rw_a2 == 0) & (rw_b2 == 0)),
            s.rw_last.eq(s.walk_last[2] & s.walk_last[3]),
        ]
        # The row's address, registered (the first of READ_STAGES).
        y, x = s.rw_y + s.rw_ky, s.rw_x + s.rw_kx
        s.rd_addr = Signal(range(self.act_depth), name="rd_addr")
        s.rw_pad = Signal()
        m.d.comb += s.rw_pad.eq((y < 0) | (y >= k.height) | (x < 0) | (x >= k.width))
        m.d.sync += s.rd_addr.eq(s.rw_base + s.rw_lin + s.rw_tap)
        # gap counts tiles whose load has begun (a load begins on beat 0) and whose rows are
        # not all issued.
        began = s.load & (s.ld_row == 0)
        m.d.sync += s.gap.eq(s.gap + began - rows_done)
        # The issuer issues while busy with tiles whose load has begun: ``s.issue`` is that,
        # registered from the next values of both (a step's start clears the gap), so that
        # its enables fan out from a flip-flop. Whether the next gap is not 0, from the gap
        # (0..2) and its changes as logic, not through the adder's carry.
        gap_left = Mux(began == rows_done, s.gap != 0, began | (s.gap == 2))
        busy = s.rw_busy & ~(rows_done & s.rw_final)
        ready = ~s.closing & ~s.to_next & busy & gap_left
        pieces = p.stage_pieces
        if pieces > 1:
            # The output stage takes a row's sums a piece a cycle, so the row after one of an
            # output tile's last input tile waits ``pieces`` cycles (``space``: those left).
            space = Signal(range(pieces))
            spaced = s.issue & s.rw_kt_last
            m.d.sync += space.eq(Mux(spaced, pieces - 1, Mux(space != 0, space - 1, 0)))
            ready &= ~spaced & (space <= 1)
        m.d.sync += s.issue.eq(ready)
        with m.If(s.load):
            m.d.sync += [s.ld_addr.eq(s.ld_addr + 1),
                         s.ld_row.eq(Mux(s.ld_row == p.rows - 1, 0, s.ld_row + 1))]
        with m.If(load_done):
            m.d.sync += [s.ld_bank.eq(~s.ld_bank), s.ld_left.eq(s.ld_left - 1),
                         s.ld_final.eq(s.ld_left == 2)]
            with m.If(s.ld_final):
                m.d.sync += s.ld_busy.eq(0)
        with m.If(s.issue):
            # The walk's next row; after a tile's last row (the last of the walk), its first.
            self._next_row(m, s, k)
            with m.If(rows_done):
                m.d.sync += [s.rw_m.eq(0), s.rw_m_left.eq(s.rw_rows_left),
                             s.rw_m_last.eq(s.rw_one_row),
                             s.rw_bank.eq(~s.rw_bank), s.rw_left.eq(s.rw_left - 1),
                             s.rw_final.eq(s.rw_left == 2), s.rw_base.eq(0)]
                with m.If(s.rw_final):
                    m.d.sync += s.rw_busy.eq(0)
                with m.If(s.rw_kt_last):
                    m.d.sync += [s.rw_kt.eq(0), s.rw_kt_last.eq(k.kt1),
                                 s.rw_kt_left.eq(s.kt_last),
                                 s.rw_nt.eq(s.rw_nt + 1), s.rw_out.eq(s.rw_nt + 1),
                                 *self._tile_start(s)]
                with m.Else():
                    # A down count, not rw_kt + 1 == kt_last: no carry chain before the flag.
                    m.d.sync += [s.rw_kt.eq(s.rw_kt + 1), s.rw_out.eq(s.rw_nt),
                                 s.rw_kt_left.eq(s.rw_kt_left - 1),
                                 s.rw_kt_last.eq(s.rw_kt_left == 1)]
                    self._next_tile(m, s, k)
            with m.Else():
                m.d.sync += [s.rw_m.eq(s.rw_m + 1), s.rw_m_left.eq(s.rw_m_left - 1),
                             s.rw_m_last.eq(s.rw_m_left == 1)]
                with m.If(s.rw_last):
                    m.d.sync += s.rw_out.eq(s.rw_out + k.nt)

    def _tap_ends(self):
        """Per step, the largest word offset of a tap."""
        return [((step.kernel[0] - 1) * step.in_size[1] + step.kernel[1] - 1) * tiles.wc
                + tiles.tap_words - 1 for step, tiles in zip(self.steps, self.tiles, strict=True)]

    def _tile_start(self, s):
        """Statements that start a step's first input tile."""
        return [s.rw_word.eq(0), s.rw_piece.eq(0), s.rw_kx.eq(0), s.rw_ky.eq(0), s.rw_tap.eq(0)]

    def _walk_start(self, s, k):
        """Statements that start a tile's walk over the batch's rows."""
        return [*self._walk_counts(s, k, 0), s.rw_base.eq(0), s.rw_y.eq(k.y0),
                s.rw_x.eq(k.x0), s.rw_lin.eq(k.lin0)]

    def _walk_counts(self, s, k, level, step=False):
        """Statements that restart the walk's counts from ``level`` inwards (0: all of them)
        or, with ``step``, advance count ``level`` and restart those inside it; each count's
        flag says whether it is at its last value."""
        statements = []
        for index in range(level, len(WALK)):
            count, last, name = s.walk[index], s.walk_last[index], WALK[index]
            if step and index == level:
                statements += [count.eq(count + 1), last.eq(count + 1 == getattr(k, name))]
            else:
                statements += [count.eq(0), last.eq(getattr(k, f"single_{name}"))]
        return statements

    def _next_tile(self, m, s, k):
        """The next input tile of the same output tile: the next slice of the word, or the
        next word of the tap, or the next tap."""
        last_word = s.rw_word == k.tap_words
        with m.If((s.rw_piece != self.params.word_tiles - 1)
                  & ~(last_word & (s.rw_piece == k.last_pieces))):
            m.d.sync += s.rw_piece.eq(s.rw_piece + 1)
        with m.Else():
            m.d.sync += s.rw_piece.eq(0)
            with m.If(~last_word):
                m.d.sync += [s.rw_word.eq(s.rw_word + 1), s.rw_tap.eq(s.rw_tap + 1)]
            with m.Else():
                m.d.sync += s.rw_word.eq(0)
                with m.If(s.rw_kx != k.kw):
                    m.d.sync += [s.rw_kx.eq(s.rw_kx + 1), s.rw_tap.eq(s.rw_tap + 1)]
                with m.Else():
                    m.d.sync += [s.rw_kx.eq(0), s.rw_ky.eq(s.rw_ky + 1),
                                 s.rw_tap.eq(s.rw_tap + k.ky_step)]

    def _next_row(self, m, s, k):
        """The next row of the walk: the window's next column, its next row, the next window
        of the row of windows, the next row of windows, or the next vector (the walk's
        start). Each moves the origin ``(y, x, lin)`` by constants of the step, chosen by the
        counts' flags before the adders."""
        moves = {3: (0, k.sx, k.lin_b2), 2: (k.sy, k.x_a2, k.lin_a2),
                 1: (k.y_b1, k.x_b1, k.lin_b1), 0: (k.y_a1, k.x_a1, k.lin_a1)}
        delta = (k.y_end, k.x_a1, k.lin_end)                # back to the start
        for level in sorted(moves):         # the outermost first: the innermost move wins
            delta = tuple(Mux(s.walk_last[level], later, move)
                          for move, later in zip(moves[level], delta, strict=True))
        m.d.sync += [origin.eq(origin + change) for origin, change in zip(
            (s.rw_y, s.rw_x, s.rw_lin), delta, strict=True)]
        for order, level in enumerate(sorted(moves, reverse=True)):
            with (m.If if order == 0 else m.Elif)(~s.walk_last[level]):
                m.d.sync += self._walk_counts(s, k, level, step=True)
        with m.Else():
            m.d.sync += [*self._walk_counts(s, k, 0), s.rw_base.eq(s.rw_base + k.in_words)]

    def _start_values(self, s, index, vectors):
        """What starting step ``index`` on a batch of ``vectors`` takes: its first weight
        address, tile count, rows, and the issuer's first values."""
        c = s.consts
        tiles = self._per_step(index, [kt * nt for kt, nt in zip(self.kt, self.nt,
                                                                 strict=True)])
        rows = select(index, [vectors * Const(r, range(r + 1)) for r in c.rows])
        values = {name: self._per_step(index, getattr(c, name))
                  for name in ("kt1", "y0", "x0", "lin0", *(f"single_{name}" for name in WALK))}
        return dict(values, base=self._per_step(index, s.weight_bases), tiles=tiles,
                    one_tile=tiles == 1, rows_left=rows - 1, one_row=rows == 1,
                    kt_left=self._per_step(index, [kt - 1 for kt in self.kt]))

    def _next_start(self, m, s):
        """The start values of the step after the current one (:meth:`_start_values`),
        registered while the current one runs: nothing is chosen or multiplied when it
        starts."""
        values = self._start_values(s, s.layer + 1, s.m_count)
        registers = {}
        for name, value in values.items():
            registers[name] = Signal(Value.cast(value).shape(), name=f"next_{name}")
            m.d.sync += registers[name].eq(value)
        return SimpleNamespace(**registers)

    def _start_layer(self, s, v):
        """Statements that start both issuers on a step with start values ``v``."""
        return [s.ld_addr.eq(v.base), s.ld_left.eq(v.tiles), s.ld_final.eq(v.one_tile),
                s.ld_busy.eq(1), s.ld_row.eq(0), s.ld_bank.eq(0), s.rw_rows_left.eq(v.rows_left),
                s.rw_one_row.eq(v.one_row), s.rw_m_left.eq(v.rows_left),
                s.rw_left.eq(v.tiles), s.rw_final.eq(v.one_tile), s.rw_busy.eq(1),
                s.rw_bank.eq(0), s.rw_m.eq(0), s.rw_m_last.eq(v.one_row), s.rw_kt.eq(0),
                s.rw_kt_last.eq(v.kt1), s.rw_kt_left.eq(v.kt_left),
                s.rw_nt.eq(0), s.rw_out.eq(0),
                s.gap.eq(0), *self._tile_start(s), *self._walk_start(s, v)]

    def _feed(self, m, s):
        """The activation memories answer the issuer (whose address is registered first) two
        cycles later; their data is registered (block RAM outputs are slow: these registers
        become the blocks' own), then the row's activation memory and slice of the word, or
        the input's zero point in the padding, are chosen and registered again, and fed to the
        array (:data:`READ_STAGES`), with the weight word the loader read as many cycles
        before (:class:`~hwnn.rtl.banked.BankedMemory`, whose latency is the same)."""
        p, a_bits, w_bits = self.params, self.a_format.bits, self.w_format.bits
        array = s.array
        source = s.layer[0] if len(self.steps) > 1 else Const(0)
        for read in s.act_reads:
            m.d.comb += read.addr.eq(s.rd_addr)
        # The loader's and the issuer's sideband, delayed along: side[k] is k cycles late.
        names = ("load", "row", "bank", "issue", "bank_rows", "source", "piece", "pad")
        side = [dict(zip(names, (s.load, s.ld_row, s.ld_bank, s.issue, s.rw_bank, source,
                                 s.rw_piece, s.rw_pad), strict=True))]
        for stage in range(1, READ_STAGES + 1):
            late = {name: Signal.like(Value.cast(value), name=f"feed_{name}_{stage}")
                    for name, value in side[-1].items()}
            m.d.sync += [late[name].eq(value) for name, value in side[-1].items()]
            side.append(late)
        words3 = [Signal.like(read.data, name=f"word3_{i}", reset_less=True)
                  for i, read in enumerate(s.act_reads)]
        acts4 = Signal(p.rows * a_bits, reset_less=True)
        word3 = Mux(side[3]["source"], words3[1], words3[0])
        slice_bits = p.rows * a_bits
        pad = self._per_step(s.layer, s.consts.pad)
        m.d.sync += [*(word.eq(read.data) for word, read in zip(words3, s.act_reads,
                                                                  strict=True)),
                     acts4.eq(Mux(side[3]["pad"], Cat(*[resize(pad, a_bits)] * p.rows),
                                  select(side[3]["piece"], [
                                      word3[i * slice_bits:(i + 1) * slice_bits]
                                      for i in range(p.word_tiles)])))]
        fed = side[READ_STAGES]
        m.d.comb += [
            array.i_w.valid.eq(fed["load"]),
            array.i_w.payload.row.eq(fed["row"]),
            array.i_w.payload.bank.eq(fed["bank"]),
            array.i_a.valid.eq(fed["issue"]),
            array.i_a.payload.bank.eq(fed["bank_rows"]),
        ]
        for c, weight in enumerate(self.weight_storage.operands(s.weights.data, w_bits)):
            m.d.comb += array.i_w.payload.w[c].eq(weight)
        for r in range(p.rows):
            m.d.comb += array.i_a.payload.a[r].eq(acts4[r * a_bits:(r + 1) * a_bits])

    def _accumulate(self, m, s):
        """Each row's partial sums plus the accumulator (or, on a tile's first input tile, the
        bias): written back, or after the step's last input tile handed to the step's output
        stage (``s.stages``), tagged with the row's output word and pool window marks. The
        row's sideband is delayed to meet its sums.

        Every path of the loop is short: the accumulator read starts three cycles early (the
        bias read three, from an address registered a cycle before) into the block RAMs' own
        output registers, and the sums are written back from a register, a cycle late; so a
        read misses the writes of the four rows before it, whose sums are kept and forwarded
        where a row matches. A row's start (the bias on a tile's first input tile, else the
        accumulators: the previous row's sums, the sums kept of one of the three rows before
        it, or the memory) is chosen a cycle ahead into a register, the previous row's sums
        in the last LUT before it (the choice among the others made earlier still, with
        registered selects): the loop is the register, the adder and one LUT."""
        cols, acc_bits = self.params.cols, self.acc_bits
        info = [s.issue, s.rw_m, s.rw_nt, s.rw_kt == 0, s.rw_kt_last, s.rw_out, s.rw_first,
                s.rw_last]
        names = ("valid", "m", "nt", "first", "last", "out", "win_first", "win_last")
        line = [info]
        for stage in range(s.array.latency + READ_STAGES):
            line.append([Signal.like(Value.cast(value), name=f"side_{name}_{stage}")
                         for name, value in zip(names, line[-1], strict=True)])
            m.d.sync += [new.eq(old) for new, old in zip(line[-1], line[-2], strict=True)]
        valid_p, m_p, nt_p, _, last_p, out_p, wfirst_p, wlast_p = line[-1]
        bias_base = select(s.layer, [Const(base, range(len(s.bias_words) + 1))
                                     for base in s.bias_bases])
        bias_addr = Signal.like(s.bias_read.addr)
        m.d.sync += bias_addr.eq(bias_base + line[-5][2])
        m.d.comb += [s.acc_read.addr.eq(line[-4][1]), s.bias_read.addr.eq(bias_addr)]
        acc_q = Signal.like(s.acc_read.data, reset_less=True)
        bias_q = Signal.like(s.bias_read.data, reset_less=True)
        # The row after line[-1]'s: whether it writes its accumulators, and which.
        gone_write, gone_m = Signal(), Signal.like(m_p)
        m.d.sync += [gone_write.eq(valid_p & ~last_p), gone_m.eq(m_p)]
        # ahead[i]: the row i + 1 ahead of line[-3]'s writes the same accumulators (compared
        # a cycle earlier, on line[-4]'s row); matches_second, ahead[1] a cycle later, for
        # line[-2]'s row, whose start is chosen.
        ahead, matches_second = Signal(4), Signal()
        m.d.sync += [ahead.eq(Cat(*(row[0] & ~row[4] & (row[1] == line[-4][1])
                                    for row in (line[-3], line[-2], line[-1])),
                                  gone_write & (gone_m == line[-4][1]))),
                     matches_second.eq(ahead[1])]
        first = line[-2][3]
        # The sums of the three rows before line[-1]'s; alt, the sums of the second or the
        # third row before line[-2]'s where it matches them (chosen a cycle ahead).
        kept = [[Signal(signed(acc_bits), name=f"sum{i}_{c}", reset_less=True)
                 for c in range(cols)] for i in (1, 2, 3)]
        alt = [Signal(signed(acc_bits), name=f"alt_{c}", reset_less=True) for c in range(cols)]
        start = [Signal(signed(acc_bits), name=f"start_{c}", reset_less=True)
                 for c in range(cols)]
        m.d.sync += [acc_q.eq(s.acc_read.data), bias_q.eq(s.bias_read.data)]
        # The choices that select every bit of a column's start: a copy per column of each.
        prev = registered_copies(m, ~line[-3][3] & ahead[0], cols, name="prev")
        use_alt = registered_copies(m, ahead[2] | ahead[3], cols, name="use_alt")
        sums = [Signal(signed(acc_bits), name=f"sum_{c}") for c in range(cols)]
        for c in range(cols):
            lane = slice(c * acc_bits, (c + 1) * acc_bits)
            m.d.comb += sums[c].eq(start[c] + s.array.o_psum.payload[c])
            others = Mux(first, bias_q[lane].as_signed(),
                         Mux(matches_second, kept[0][c],
                             Mux(use_alt[c], alt[c], acc_q[lane].as_signed())))
            m.d.sync += [kept[0][c].eq(sums[c]), kept[1][c].eq(kept[0][c]),
                         kept[2][c].eq(kept[1][c]),
                         alt[c].eq(Mux(ahead[2], kept[0][c], kept[1][c])),
                         start[c].eq(Mux(prev[c], sums[c], others))]
        m.d.comb += [s.acc_write.data.eq(Cat(*kept[0]))]
        m.d.sync += [s.acc_write.addr.eq(m_p), s.acc_write.en.eq(valid_p & ~last_p)]
        s.out_bits = len(s.rw_out)
        stages = s.stages = m.submodules.stages = LayerStages(
            self.network, cols, acc_bits=acc_bits, a_bits=self.a_format.bits,
            tag_bits=s.out_bits + 2, groups=max(self.nt), pipelined=True,
            logic_multipliers=self.params.requant == "logic",
            layers=[step.layer for step in self.steps], pieces=self.params.stage_pieces)
        # The stages take the sums from registers (a cycle later): the sums come straight
        # from a block RAM read and an adder, and a stage that multiplies by constants starts
        # on its input at once.
        m.d.comb += stages.layer.eq(s.layer)
        m.d.sync += stages.i_acc.valid.eq(valid_p & last_p)
        payload = [stages.i_acc.payload.group.eq(nt_p),
                   stages.i_acc.payload.tag.eq(Cat(out_p, wfirst_p, wlast_p)),
                   *(stages.i_acc.payload.acc[c].eq(sums[c]) for c in range(cols))]
        if self.params.stage_pieces == 1:
            m.d.sync += payload
        else:
            # Narrow stages read a row a piece a cycle: it stays until the next row's.
            with m.If(valid_p & last_p):
                m.d.sync += payload

    def _write_results(self, m, s):
        """The stages' results (tagged with their output word and pool window marks) into the
        other activation memory, each pool window's maximum once its last row is in, or the
        last step's into the output memory; the gatherer's words into activation memory 0.
        Each memory's write (address, data, enables) is registered next to it."""
        act, out = s.stages.o_act, s.stages.o_out
        a_bits, cols, bits = self.a_format.bits, self.params.cols, s.out_bits
        largest = act.payload.data
        if _pools(self.steps):
            # The stages' values registered first: the choice among the stages, a comparison
            # and the choice of the maximum would not fit one cycle.
            late = SimpleNamespace(valid=Signal(name="act_late_valid"),
                                   payload=Signal.like(act.payload, name="act_late"))
            m.d.sync += [late.valid.eq(act.valid), late.payload.eq(act.payload)]
            act = late
            largest = act.payload.data
            best = Signal(cols * a_bits)
            largest = Signal(cols * a_bits)
            # Values of the activations' holding format, signed or not.
            signed_values = self.a_format.signed
            lanes, kept = ([word[c * a_bits:(c + 1) * a_bits].as_signed() if signed_values
                            else word[c * a_bits:(c + 1) * a_bits] for c in range(cols)]
                           for word in (act.payload.data, best))
            m.d.comb += largest.eq(Mux(act.payload.tag[bits], act.payload.data, Cat(*(
                Mux(new > old, new, old) for new, old in zip(lanes, kept, strict=True)))))
            with m.If(act.valid):
                m.d.sync += best.eq(largest)
        ports = s.act_writes
        addr = Signal.like(ports[0].addr, reset_less=True)
        word = Signal.like(ports[0].data, reset_less=True)
        enables = Signal(len(ports))
        m.d.comb += [port.addr.eq(addr) for port in ports]
        m.d.comb += [port.data.eq(word) for port in ports]
        m.d.comb += [port.en.eq(enable) for port, enable in zip(ports, enables, strict=True)]
        m.d.sync += enables.eq(0)
        with m.If(s.load_write):
            m.d.sync += [addr.eq(s.load_addr), word.eq(s.load_word), enables.eq(1)]
        with m.Elif(act.valid):
            odd = act.payload.source & 1                 # step l writes memory (l + 1) % 2
            m.d.sync += [addr.eq(act.payload.tag[:bits]), word.eq(largest),
                         enables.eq(Mux(act.payload.tag[bits + 1], Mux(odd, 1, 2), 0))]
        out_write = s.out_write
        m.d.sync += [out_write.addr.eq(out.payload.tag[:bits]),
                     out_write.data.eq(out.payload.data), out_write.en.eq(out.valid)]

    def _output_drain(self):
        """The output path: a buffered FIFO of four words of ``cols`` outputs."""
        out_tiles, cols = self.nt[-1], self.params.cols
        return OutputDrain(self.network.output.format.bits, cols, self.out_count,
                           self.network.out_features - (out_tiles - 1) * cols,
                           depth=4, buffered=True)

    def _read_outputs(self, m, s):
        """OUTPUT: a reader walks the batch's output words into the drain's FIFO (one per
        cycle, while it has room), which offers each word in beats of ``out_count`` values;
        ``s.batch_sent`` when the batch's last word has left it."""
        batch = self.params.batch
        out_tiles = self.nt[-1]
        drain = m.submodules.drain = self._output_drain()
        depth = drain.depth
        s.out_addr, s.rd_nt, s.rd_done = (Signal(range(batch * out_tiles)),
                                         Signal(range(out_tiles)), Signal())
        # Vectors after the one read (a down count, no comparison with m_count), and whether
        # it is the batch's last.
        s.rd_m_left, s.rd_m_last = Signal(range(batch)), Signal()
        inflight, reading = Signal(), Signal()
        m.d.comb += [
            reading.eq((s.phase == OUTPUT) & ~s.rd_done & (drain.level + inflight < depth)),
            s.out_read.addr.eq(s.out_addr),
        ]
        rd_last_nt, rd_last_word = Signal(), Signal()
        m.d.sync += [inflight.eq(reading), rd_last_nt.eq(s.rd_nt == out_tiles - 1),
                     rd_last_word.eq((s.rd_nt == out_tiles - 1) & s.rd_m_last)]
        with m.If(reading):
            m.d.sync += s.out_addr.eq(s.out_addr + 1)
            with m.If(s.rd_nt == out_tiles - 1):
                m.d.sync += [s.rd_nt.eq(0), s.rd_m_left.eq(s.rd_m_left - 1),
                             s.rd_m_last.eq(s.rd_m_left == 1)]
                with m.If(s.rd_m_last):
                    m.d.sync += s.rd_done.eq(1)
            with m.Else():
                m.d.sync += s.rd_nt.eq(s.rd_nt + 1)
        m.d.comb += [
            drain.i_word.valid.eq(inflight),
            drain.i_word.payload.data.eq(s.out_read.data),
            drain.i_word.payload.final.eq(rd_last_nt),
            drain.i_word.payload.end.eq(rd_last_word),
        ]
        wiring.connect(m, drain.o_stream, wiring.flipped(self.o_stream))
        s.batch_sent = drain.ended

    def _count(self, m, s):
        """The performance counters: cycles the layer holds the array, and those in which it
        issues a row. They count a cycle late: the step's layer is a per-step constant in a
        register (no decoding of the step in front of the counters' enables), and the
        enables are registered with it."""
        layer = self._step_register(m, s.layer, [step.index for step in self.steps], "layer")
        holding = (s.phase == RUN) | (s.phase == DRAIN)
        for name, enable in (("cycles", holding), ("busy", holding & s.issue)):
            counters = m.submodules[f"{name}_counters"] = LayerCounters(len(self.network.layers))
            counting = Signal(name=f"counting_{name}")
            m.d.sync += counting.eq(enable)
            m.d.comb += [counters.layer.eq(layer), counters.enable.eq(counting)]
            for port, count in zip(getattr(self, name), counters.counts, strict=True):
                m.d.comb += port.eq(count)

    def _sequence(self, m, s):
        """The phases: LOAD until the batch closes; for each step RUN until both issuers are
        done (the last tile's load may still run when its rows, fewer than its height, are all
        issued), then DRAIN for the step's :func:`drain_cycles`; OUTPUT until the batch is
        sent."""
        layers = self.steps
        drains = [drain_cycles(self.params, step.layer, _pools(layers)) for step in layers]
        drain = Signal(range(max(drains) + 1))
        to_output, to_next = s.to_output, s.to_next
        last_step = s.layer == len(layers) - 1
        following = self._next_start(m, s)
        m.d.sync += [to_output.eq(0), to_next.eq(0)]
        # The strobes that start a step are registers of their own (s.closing comes only in
        # LOAD, to_next and to_output only in DRAIN): no decoding of the phase before the
        # issuers' starts.
        with m.If(s.closing):
            m.d.sync += [s.phase.eq(RUN), s.m_count.eq(s.in_m), s.layer.eq(0)]
            m.d.sync += self._start_layer(s, SimpleNamespace(
                **self._start_values(s, Const(0), s.in_m)))
        with m.If(to_next):
            m.d.sync += [s.phase.eq(RUN), s.layer.eq(s.layer + 1)]
            m.d.sync += self._start_layer(s, following)
        with m.If(to_output):
            m.d.sync += [s.phase.eq(OUTPUT), s.out_addr.eq(0), s.rd_nt.eq(0),
                         s.rd_done.eq(0), s.rd_m_left.eq(s.m_count - 1),
                         s.rd_m_last.eq(s.m_count == 1)]
        with m.Switch(s.phase):
            with m.Case(RUN):
                with m.If(~s.ld_busy & ~s.rw_busy):
                    m.d.sync += [s.phase.eq(DRAIN), drain.eq(select(s.layer, [
                        Const(cycles, drain.shape()) for cycles in drains]))]
            with m.Case(DRAIN):
                m.d.sync += [drain.eq(drain - 1), to_output.eq((drain == 1) & last_step),
                             to_next.eq((drain == 1) & ~last_step)]
            with m.Case(OUTPUT):
                with m.If(s.batch_sent):
                    m.d.sync += [s.phase.eq(LOAD), s.in_m.eq(0), s.accepting.eq(1)]
