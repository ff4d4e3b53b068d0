# amaranth: UnusedElaboratable=no
# (The estimator and the manifest build tops for their structure and never elaborate them.)
"""The sparse architecture (EIE): processing elements on compressed weights, layer by layer."""

import numpy as np

from ..flow.report import format_table
from ..planning.sparse_cycles import estimate
from ..rtl.sparse import SparseAccelerator, SparseParams
from .base import Architecture, shape_change

__all__ = ["SPARSE"]


class Sparse(Architecture):
    """An array of processing elements skipping zero weights and activations
    (:class:`~hwnn.rtl.sparse.SparseAccelerator`), sized by
    :class:`~hwnn.rtl.sparse.SparseParams`."""
    name = "sparse"
    Params = SparseParams

    def check(self, network, params):
        self.check_layer_kinds(network)
        return params      # every dense network fits (its layers are compressed for the PEs)

    def build(self, network, params):
        return SparseAccelerator(network, self.check(network, params))

    def manifest(self, network, top, params):
        cycles = estimate(network, params)
        layers = []
        for plan, layer_cycles in zip(top.plans, cycles["layers"], strict=True):
            layer, csc = plan.layer, plan.csc
            layers.append({
                "density": float(np.count_nonzero(layer.weights)) / layer.weights.size,
                "codebook": None if plan.table is None else len(plan.table) - 1,
                "field_bits": plan.field_bits,
                "nonzeros_per_pe": [int(np.count_nonzero(values)) for values in csc.values],
                "padding_per_pe": csc.padding.tolist(),
                "entries_per_pe": csc.entries.tolist(),
                "ideal_cycles": int(csc.entries.max()), "cycles": layer_cycles,
            })
        return {
            "pes": params.pes, "queue_depth": params.queue_depth,
            "index_bits": params.index_bits,
            "array": {"value_bits": top.a_format.bits, "weight_bits": top.w_format.bits,
                      "acc_bits": top.acc_bits},
            "layers": layers,
            "cycles_per_inference": cycles["per_inference"],
            "cycles_note": "estimate for inputs whose activations are all nonzero; zero "
                           "activations are skipped, so real inputs take fewer",
            "lanes": params.pes,
            "memory_bits": top.memory_bits,
            "memory_bits_per_pe": [pe.memory_bits for pe in top.pes],
            "counters": {"cycles": [f"cycles__{i}" for i in range(len(network.layers))]},
        }

    def read(self, manifest, network):
        return SparseParams(manifest["pes"], manifest["queue_depth"], manifest["index_bits"])

    def points(self, network):
        """1 to 16 PEs, up to the widest layer's rows."""
        widest = max(layer.out_features for layer in network.layers)
        return [(f"{pes} PE" + ("s" if pes > 1 else ""), {"pes": pes})
                for pes in (1, 2, 4, 8, 16) if pes <= widest]

    def summary(self, manifest):
        rows = [(layer["name"], shape_change(layer),
                 f"{100 * layer['density']:.1f}%", layer["codebook"] or "-",
                 f"{min(layer['nonzeros_per_pe'])}..{max(layer['nonzeros_per_pe'])}",
                 sum(layer["padding_per_pe"]), layer["ideal_cycles"], round(layer["cycles"]),
                 layer["stage"])
                for layer in manifest["layers"]]
        return (format_table(("layer", "shape", "density", "codebook", "nonzeros/PE",
                              "padding", "ideal", "cycles", "stage"), rows,
                             right={2, 4, 5, 6, 7})
                + f"\n\n{manifest['pes']} PEs, queues of {manifest['queue_depth']}, "
                  f"{manifest['index_bits']}-bit row indices: about "
                  f"{manifest['cycles_per_inference']:.0f} cycles per inference when no "
                  f"activation is zero (fewer with zeros), "
                  f"{sum(manifest['memory_bits'].values())} memory bits")


SPARSE = Sparse()
