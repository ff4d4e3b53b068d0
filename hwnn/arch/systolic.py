# amaranth: UnusedElaboratable=no
# (The estimator and the manifest build tops for their structure and never elaborate them.)
"""The systolic architecture (TPU-style): one square array time-shared by every layer."""

import re
from dataclasses import dataclass, field

from ..errors import ParameterError
from ..flow.report import format_table
from ..rtl.overlay import OverlayParams, SystolicOverlay, check_overlay, schedule
from .base import Architecture, shape_change

__all__ = ["SYSTOLIC", "SystolicOverlayParams", "parse_array"]


def parse_array(text) -> int:
    """The side of a square array from ``"RxC"`` (R == C, 1..64); a
    :class:`~hwnn.errors.ParameterError` of parameter ``array`` otherwise."""
    match = re.fullmatch(r"([0-9]+)x([0-9]+)", text) if isinstance(text, str) else None
    if match is None:
        raise ParameterError("array", "The array", f"must be given as RxC, like 8x8, not {text!r}")
    rows, cols = int(match.group(1)), int(match.group(2))
    if rows != cols:
        raise ParameterError("array", "The array", f"must be square for the systolic overlay "
                             f"(RxC with R == C), not {text}")
    if not 1 <= rows <= 64:
        raise ParameterError("array", "The array", f"must have sides of 1..64, not {text}")
    return rows


@dataclass(frozen=True)
class SystolicOverlayParams:
    """Options of a systolic design: the array as ``"RxC"`` text and the largest batch. The
    overlay's own parameters (:meth:`overlay`) check them."""
    array: str = field(default="8x8", metadata={"help": "the array, RxC with R == C"})
    batch: int = field(default=16, metadata={"help": "most vectors per batch"})

    def __post_init__(self):
        self.overlay()

    def overlay(self):
        """The :class:`~hwnn.rtl.overlay.OverlayParams` of these options."""
        return OverlayParams(parse_array(self.array), self.batch)


class Systolic(Architecture):
    """A weight-stationary array run layer by layer on batches
    (:class:`~hwnn.rtl.overlay.SystolicOverlay`), sized by :class:`SystolicOverlayParams`."""
    name = "systolic"
    Params = SystolicOverlayParams

    def check(self, network, params):
        self.check_layer_kinds(network)
        check_overlay(network, params.overlay())
        return params

    def build(self, network, params):
        return SystolicOverlay(network, self.check(network, params).overlay())

    def manifest(self, network, top, params):
        plan = schedule(network, top.params)
        size = top.params.size
        return {
            "array": {"rows": size, "cols": size, "value_bits": top.a_format.bits,
                      "weight_bits": top.w_format.bits, "acc_bits": top.acc_bits},
            "batch": top.params.batch,
            "layers": [{"input_tiles": kt, "output_tiles": nt} | planned
                       for planned, kt, nt in zip(plan["layers"], top.kt, top.nt, strict=True)],
            "schedule": {key: plan[key] for key in ("load", "output", "total")},
            "cycles_per_inference": plan["per_inference"],
            "lanes": size * size,
            "memory_bits": top.memory_bits,
            "counters": {"busy": [f"busy__{i}" for i in range(len(network.layers))],
                         "cycles": [f"cycles__{i}" for i in range(len(network.layers))]},
        }

    def read(self, manifest, network):
        array = manifest["array"]
        return SystolicOverlayParams(f"{array['rows']}x{array['cols']}", manifest["batch"])

    def batch(self, params):
        return params.batch

    def points(self, network):
        """Square arrays of 2x2 to 16x16."""
        return [(f"{size}x{size}", {"array": f"{size}x{size}"}) for size in (2, 4, 8, 16)]

    def summary(self, manifest):
        rows = [(layer["name"], shape_change(layer),
                 layer["tiles"], layer["cycles"], f"{layer['utilization']:.3f}", layer["stage"])
                for layer in manifest["layers"]]
        array, schedule = manifest["array"], manifest["schedule"]
        return (format_table(("layer", "shape", "tiles", "cycles/batch", "utilization",
                              "stage"), rows, right={2, 3, 4})
                + f"\n\n{array['rows']}x{array['cols']} array, batch {manifest['batch']}: "
                  f"{schedule['total']} cycles per batch (load {schedule['load']}, output "
                  f"{schedule['output']}), {manifest['cycles_per_inference']:g} cycles per "
                  f"inference, {sum(manifest['memory_bits'].values())} memory bits")


SYSTOLIC = Systolic()
