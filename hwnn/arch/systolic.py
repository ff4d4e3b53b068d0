# amaranth: UnusedElaboratable=no
# (The estimator and the manifest build tops for their structure and never elaborate them.)
"""The systolic architecture (TPU-style): one ``rows x cols`` array time-shared by every
layer."""

import re
from dataclasses import dataclass, field

from ..errors import ParameterError
from ..flow.report import format_table
from ..rtl.overlay import (REQUANT_MULTIPLIERS, WEIGHT_SOURCES, OverlayParams, SystolicOverlay,
                           check_overlay, schedule)
from .base import Architecture, shape_change

__all__ = ["SYSTOLIC", "SystolicOverlayParams", "parse_array"]


#: The arrays :meth:`Systolic.points` lists (and a board's plan tries), smallest first:
#: rows over a layer's inputs, columns over its outputs; the small ones fit an iCE40UP5K's
#: eight DSP blocks.
ARRAYS = ((1, 2), (2, 2), (2, 4), (4, 4), (4, 8), (8, 8), (8, 16), (16, 16))


def parse_array(text) -> tuple[int, int]:
    """``(rows, cols)`` of an array given as ``"RxC"`` (sides 1..64); a
    :class:`~hwnn.errors.ParameterError` of parameter ``array`` otherwise."""
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text) if isinstance(text, str) else None
    if match is None:
        raise ParameterError("array", "The array", f"must be given as RxC, like 8x8, not {text!r}")
    rows, cols = int(match.group(1)), int(match.group(2))
    if not (1 <= rows <= 64 and 1 <= cols <= 64):
        raise ParameterError("array", "The array", f"must have sides of 1..64, not {text}")
    return rows, cols


@dataclass(frozen=True)
class SystolicOverlayParams:
    """Options of a systolic design: the array as ``"RxC"`` text and the largest batch. The
    overlay's own parameters (:meth:`overlay`) check them."""
    array: str = field(default="8x8", metadata={
        "help": "the array, RxC: R rows over a layer's inputs, C columns over its outputs"})
    batch: int = field(default=16, metadata={"help": "most vectors per batch"})
    requant: str = field(default="dsp", metadata={
        "help": "where the output stages' requantization multipliers go",
        "choices": REQUANT_MULTIPLIERS})
    pack: str = field(default="1", metadata={
        "help": "products per multiplier: N adjacent columns share one, their narrow weights "
                "packed into one operand (exact), or auto: the most that are exact"})
    stage_lanes: int = field(default=0, metadata={
        "help": "lanes of each layer's output stage, a divisor of the columns (0: one per "
                "column); fewer take a row's sums in pieces, a piece a cycle, for fewer "
                "multipliers and registers and more cycles"})
    weights: str = field(default="rom", metadata={
        "help": "where the weights come from: rom, built into the design, or loaded, a memory "
                "filled from the w_stream port after reset (a board loads it from its "
                "configuration flash; on an iCE40UP5K it may be SPRAM)",
        "choices": WEIGHT_SOURCES})

    def __post_init__(self):
        self.overlay()

    def overlay(self):
        """The :class:`~hwnn.rtl.overlay.OverlayParams` of these options."""
        pack = int(self.pack) if self.pack.isdecimal() else self.pack
        if not isinstance(self.stage_lanes, int) or self.stage_lanes < 0:
            raise ParameterError("stage_lanes", "The output stages' lanes",
                                 f"must be 0 (one per column) or a divisor of the columns, "
                                 f"not {self.stage_lanes!r}")
        return OverlayParams(*parse_array(self.array), self.batch, self.requant, pack,
                             self.stage_lanes or None, self.weights)


class Systolic(Architecture):
    """A weight-stationary array run layer by layer on batches
    (:class:`~hwnn.rtl.overlay.SystolicOverlay`), sized by :class:`SystolicOverlayParams`."""
    name = "systolic"
    Params = SystolicOverlayParams
    layer_kinds = frozenset({"dense", "conv2d", "maxpool2d"})

    def check(self, network, params):
        self.check_layer_kinds(network)
        check_overlay(network, params.overlay())
        return params

    def build(self, network, params):
        return SystolicOverlay(network, self.check(network, params).overlay())

    def manifest(self, network, top, params):
        plan = schedule(network, top.params)
        rows, cols = top.params.rows, top.params.cols
        return {
            "array": {"rows": rows, "cols": cols, "value_bits": top.a_format.bits,
                      "weight_bits": top.w_format.bits, "acc_bits": top.acc_bits,
                      "pack": top.array_params.pack,
                      "weight_storage": {"format": str(top.weight_storage.fmt),
                                         "word_bits": top.weight_storage.word_bits,
                                         "zero_flag": top.weight_storage.zero_flag,
                                         "banks": top.weight_memory().banks}},
            "batch": top.params.batch,
            "requant": top.params.requant,
            "stage_lanes": top.params.stage_lanes or 0,
            "weights": top.params.weights,
            "layers": plan["layers"],
            "schedule": {key: plan[key] for key in ("load", "output", "total")},
            "cycles_per_inference": plan["per_inference"],
            "lanes": rows * cols,
            "memory_bits": top.memory_bits,
            "counters": {"busy": [f"busy__{i}" for i in range(len(network.layers))],
                         "cycles": [f"cycles__{i}" for i in range(len(network.layers))]},
        }

    def read(self, manifest, network):
        array = manifest["array"]
        return SystolicOverlayParams(f"{array['rows']}x{array['cols']}", manifest["batch"],
                                     manifest.get("requant", "dsp"), str(array.get("pack", 1)),
                                     manifest.get("stage_lanes", 0),
                                     manifest.get("weights", "rom"))

    def batch(self, params):
        return params.batch

    def points(self, network):
        """The arrays of :data:`ARRAYS`."""
        return [(f"{rows}x{cols}", {"array": f"{rows}x{cols}"}) for rows, cols in ARRAYS]

    def for_device(self, network, label, options, device):
        """On a device with SPRAM (an iCE40UP5K), where the estimate says the block RAMs
        would not hold the point's weight ROM: its weights loaded at start-up (the estimate
        puts them in SPRAM), and its batch halved until the block RAMs hold the rest
        (labelled ``RxC loaded``, ``RxC bB loaded``)."""
        from ..planning.estimate import estimate
        from ..tools.synth import CAPACITY, DEVICES
        capacity, family = CAPACITY[device], DEVICES[device][0]

        def blocks(options):
            return estimate(network, family, self.name, **options)["bram"]

        if (not capacity.get("spram") or options.get("weights", "rom") != "rom"
                or blocks(options) <= capacity["bram"]):
            return label, options
        loaded = options | {"weights": "loaded"}
        batch = loaded.get("batch", self.Params().batch)
        while batch > 1 and blocks(loaded | {"batch": batch}) > capacity["bram"]:
            batch //= 2
        if batch == loaded.get("batch", self.Params().batch):
            return f"{label} loaded", loaded
        return f"{label} b{batch} loaded", loaded | {"batch": batch}

    def summary(self, manifest):
        rows = [(layer["name"], shape_change(layer),
                 layer["tiles"], layer["cycles"], f"{layer['utilization']:.3f}",
                 f"max, in {layer['folded_into']}" if "folded_into" in layer else layer["stage"])
                for layer in manifest["layers"]]
        array, schedule = manifest["array"], manifest["schedule"]
        lanes = manifest.get("stage_lanes", 0)
        stages = f", output stages {lanes} lane{'s' if lanes > 1 else ''} wide" if lanes else ""
        return (format_table(("layer", "shape", "tiles", "cycles/batch", "utilization",
                              "stage"), rows, right={2, 3, 4})
                + f"\n\n{array['rows']}x{array['cols']} array, batch {manifest['batch']}{stages}: "
                  f"{schedule['total']} cycles per batch (load {schedule['load']}, output "
                  f"{schedule['output']}), {manifest['cycles_per_inference']:g} cycles per "
                  f"inference, {sum(manifest['memory_bits'].values())} memory bits")


SYSTOLIC = Systolic()
