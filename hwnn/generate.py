"""Generate a design folder from a quantized network: Verilog, manifest, network, vectors.

``OUT/`` receives ``<name>.v`` (one Verilog file, top module ``<name>``), ``manifest.json``
(ports, packing, layer table, folding, expected cycles, versions), ``network.hwnn.npz`` (the IR
the design was built from, which ``hwnn simulate`` uses for the golden model) and
``vectors/inputs.npy`` + ``vectors/expected.npy`` (random input codes and the golden model's
outputs for them). The folder is written whole or not at all, and the same network and options
give byte-identical files, wherever hwnn is installed: the Verilog's source locations
(``src`` attributes) name files relative to the package folder they come from
(``hwnn/rtl/mvau.py:288``, ``amaranth/lib/stream.py:40``).

Commands add their results to the folder: ``sim/<simulator>/``, ``synth/<device>/`` and
``build/<board>/``. Generating into an earlier design folder keeps them when the new design
is the same (byte-identical files), and removes them with the earlier design otherwise;
:func:`earlier_results` and :func:`replacement_note` tell the user which.
"""

import json
import re
import sysconfig
from pathlib import Path

import numpy as np

from . import __version__
from .errors import ParameterError
from .folders import check_replaceable, replace_folder
from .ir import Network
from .rtl.folding import LayerFold, auto_folding, fold_from_file
from .rtl.mvau import RAM_STYLES, check_folding

__all__ = ["ARCHITECTURES", "DEFAULT_BATCH", "DEFAULT_MAX_LANES", "DEFAULT_PES",
           "DEFAULT_QUEUE_DEPTH", "Design", "earlier_results", "generate", "load_design",
           "parse_array", "replacement_note", "resolve_folding", "to_verilog"]

ARCHITECTURES = ("dataflow", "systolic", "sparse")
DEFAULT_MAX_LANES = 256
DEFAULT_BATCH = 16
DEFAULT_PES = 8
DEFAULT_QUEUE_DEPTH = 8
VECTOR_COUNT = 32
MANIFEST = "manifest.json"
#: The folders of a design folder that hold commands' results, one subfolder per target.
RESULT_FOLDERS = ("sim", "synth", "build")
_SOURCE = re.compile(r'(src = ")([^"]*)(")')


def _portable_sources(text) -> str:
    """``text`` with every source location relative to the folder holding its package (hwnn's,
    or the Python installation's library folders), or reduced to the file name."""
    roots = [Path(__file__).resolve().parents[1],
             *(Path(sysconfig.get_path(name)).resolve()
               for name in ("purelib", "platlib", "stdlib"))]
    prefixes = [f"{root}/" for root in roots]

    def relative(location):
        for prefix in prefixes:
            if location.startswith(prefix):
                return location[len(prefix):]
        return location.rsplit("/", 1)[-1]

    return _SOURCE.sub(lambda match: match[1] + "|".join(
        relative(location) for location in match[2].split("|")) + match[3], text)


def to_verilog(component, name) -> str:
    """Verilog of an Amaranth ``component`` with top module ``name``, the same wherever hwnn
    and Amaranth are installed (see the module's description)."""
    from amaranth.back import verilog
    return _portable_sources(verilog.convert(component, name=name))


def resolve_folding(network: Network, fold="auto", max_lanes=DEFAULT_MAX_LANES):
    """Folding from ``"auto"`` (fastest within ``max_lanes``), a fold-file path, or a sequence
    of :class:`LayerFold`, checked against the network (before any hardware is built)."""
    if isinstance(fold, str) and fold == "auto":
        folding = auto_folding(network, max_lanes)
    elif isinstance(fold, str | Path):
        folding = fold_from_file(network, fold)
    else:
        folding = tuple(fold)
    if len(folding) != len(network.layers):
        raise ValueError(f"The folding needs one entry per layer ({len(network.layers)}), not "
                         f"{len(folding)}")
    for layer, entry in zip(network.layers, folding, strict=True):
        if not isinstance(entry, LayerFold):
            raise TypeError(f"Folding entries must be LayerFold, not {entry!r}")
        check_folding(layer, entry.pe, entry.simd)
    return folding


def _port(name, unit_count, fmt, features):
    value_bits = fmt.width
    data_bits = unit_count * value_bits
    return {
        "port": name,
        "signals": {"payload": f"{name}__payload", "valid": f"{name}__valid",
                    "ready": f"{name}__ready"},
        "payload_bits": data_bits + 1,
        "data_bits": [0, data_bits - 1],
        "last_bit": data_bits,
        "values_per_beat": unit_count,
        "value_bits": value_bits,
        "format": str(fmt),
        "features": features,
        "beats_per_vector": features // unit_count,
        "packing": "value i of a beat in data bits [i*value_bits, (i+1)*value_bits); "
                   + ("bit 1 means +1" if fmt.kind == "bipolar" else "two's complement"
                      if fmt.signed else "unsigned") + "; last set on the final beat of a vector",
    }


def _common_manifest(network, top, in_count, out_count):
    from amaranth import __version__ as amaranth_version
    return {
        "hwnn_version": __version__,
        "amaranth_version": amaranth_version,
        "name": network.name,
        "top": top,
        "verilog": f"{top}.v",
        "network": "network.hwnn.npz",
        "clock": {"port": "clk", "reset": "rst", "reset_polarity": "active high, synchronous"},
        "input": _port("i_stream", in_count, network.input.format, network.in_features),
        "output": _port("o_stream", out_count, network.output.format, network.out_features),
        "output_scale": network.output.scale.tolist(),
        "weight_bits": sum(layer.weight_bits for layer in network.layers),
        "vectors": {"inputs": "vectors/inputs.npy", "expected": "vectors/expected.npy",
                    "count": VECTOR_COUNT},
    }


def _dataflow_manifest(network, design, top):
    first, last = design.units[0], design.units[-1]
    layers = []
    for unit in design.units:
        layer = unit.layer
        layers.append({
            "name": layer.name, "in_features": layer.in_features,
            "out_features": layer.out_features, "pe": unit.pe, "simd": unit.simd,
            "lanes": unit.lanes, "weight_format": str(layer.weight_format),
            "input_format": str(layer.input.format), "output_format": str(layer.output.format),
            "stage": layer.stage_name, "acc_bits": layer.acc_bits,
            "cycles": unit.cycles, "latency": unit.latency, "memory_bits": unit.memory_bits,
        })
    return _common_manifest(network, top, first.simd, last.pe) | {
        "arch": "dataflow",
        "layers": layers,
        "cycles_per_inference": design.cycles,
        "lanes": design.lanes,
        "folding": {unit.layer.name: {"pe": unit.pe, "simd": unit.simd}
                    for unit in design.units},
        "ram_style": design.units[0].ram_style,
    }


def _systolic_manifest(network, design, top):
    from .rtl.overlay import schedule
    params = design.params
    plan = schedule(network, params)
    layers = []
    for layer, planned, kt, nt in zip(network.layers, plan["layers"], design.kt, design.nt,
                                      strict=True):
        layers.append({
            "name": layer.name, "in_features": layer.in_features,
            "out_features": layer.out_features, "input_tiles": kt, "output_tiles": nt,
            "weight_format": str(layer.weight_format),
            "input_format": str(layer.input.format), "output_format": str(layer.output.format),
            "stage": layer.stage_name, "acc_bits": layer.acc_bits,
        } | planned)
    return _common_manifest(network, top, design.in_count, design.out_count) | {
        "arch": "systolic",
        "array": {"rows": params.size, "cols": params.size,
                  "value_bits": design.a_format.bits, "weight_bits": design.w_format.bits,
                  "acc_bits": design.acc_bits},
        "batch": params.batch,
        "layers": layers,
        "schedule": {key: plan[key] for key in ("load", "output", "total")},
        "cycles_per_inference": plan["per_inference"],
        "lanes": params.size * params.size,
        "memory_bits": design.memory_bits,
        "counters": {"busy": [f"busy__{i}" for i in range(len(network.layers))],
                     "cycles": [f"cycles__{i}" for i in range(len(network.layers))]},
    }


def _sparse_manifest(network, design, top):
    from .rtl.sparse import estimate
    params = design.params
    dense = estimate(network, params)
    layers = []
    for plan, cycles in zip(design.plans, dense["layers"], strict=True):
        layer, csc = plan.layer, plan.csc
        nonzeros = [int(np.count_nonzero(values)) for values in csc.values]
        layers.append({
            "name": layer.name, "in_features": layer.in_features,
            "out_features": layer.out_features, "weight_format": str(layer.weight_format),
            "input_format": str(layer.input.format), "output_format": str(layer.output.format),
            "stage": layer.stage_name, "acc_bits": layer.acc_bits,
            "density": float(np.count_nonzero(layer.weights)) / layer.weights.size,
            "codebook": None if plan.table is None else len(plan.table) - 1,
            "field_bits": plan.field_bits,
            "nonzeros_per_pe": nonzeros, "padding_per_pe": csc.padding.tolist(),
            "entries_per_pe": csc.entries.tolist(),
            "ideal_cycles": int(csc.entries.max()), "cycles": cycles,
        })
    return _common_manifest(network, top, design.in_count, design.out_count) | {
        "arch": "sparse",
        "pes": params.pes, "queue_depth": params.queue_depth, "index_bits": params.index_bits,
        "array": {"value_bits": design.a_format.bits, "weight_bits": design.w_format.bits,
                  "acc_bits": design.acc_bits},
        "layers": layers,
        "cycles_per_inference": dense["per_inference"],
        "cycles_note": "estimate for inputs whose activations are all nonzero; zero "
                       "activations are skipped, so real inputs take fewer",
        "lanes": params.pes,
        "memory_bits": design.memory_bits,
        "memory_bits_per_pe": [pe.memory_bits for pe in design.pes],
        "counters": {"cycles": [f"cycles__{i}" for i in range(len(network.layers))]},
    }


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


def _build(network, arch, fold, max_lanes, ram_style, array, batch, pes, queue_depth,
           index_bits):
    """The top component and its manifest maker, after every check."""
    if arch == "dataflow":
        from .rtl.dataflow import DataflowAccelerator
        if ram_style not in RAM_STYLES:
            raise ValueError(f"ram_style must be one of {', '.join(RAM_STYLES)}, not "
                             f"{ram_style!r}")
        folding = resolve_folding(network, fold, max_lanes)
        return DataflowAccelerator(network, folding, ram_style=ram_style), _dataflow_manifest
    if arch == "sparse":
        from .rtl.sparse import SparseAccelerator, SparseParams
        params = SparseParams(pes, queue_depth, index_bits)
        return SparseAccelerator(network, params), _sparse_manifest
    from .rtl.overlay import OverlayParams, SystolicOverlay, check_overlay
    params = OverlayParams(parse_array(array), batch)
    check_overlay(network, params)
    return SystolicOverlay(network, params), _systolic_manifest


def generate(network: Network, out_dir, *, arch="dataflow", fold="auto",
             max_lanes=DEFAULT_MAX_LANES, ram_style="auto", array="8x8",
             batch=DEFAULT_BATCH, pes=DEFAULT_PES, queue_depth=DEFAULT_QUEUE_DEPTH,
             index_bits=4) -> Path:
    """Write the design folder for ``network`` to ``out_dir``; return its path.

    ``arch="dataflow"`` uses ``fold`` (``"auto"`` within ``max_lanes``, a fold file, or
    :class:`LayerFold` per layer) and ``ram_style``; ``arch="systolic"`` uses ``array``
    (``"RxC"``, square) and ``batch``; ``arch="sparse"`` uses ``pes``, ``queue_depth`` and
    ``index_bits`` (:class:`~hwnn.rtl.sparse.SparseParams`). ``out_dir`` may be missing,
    empty, or a previous design folder (which is replaced); any other existing folder is
    refused rather than overwritten.
    """
    from .sim.golden import run_network

    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    if arch not in ARCHITECTURES:
        raise ValueError(f"Unknown architecture {arch!r}; available: {', '.join(ARCHITECTURES)}")
    out_dir = Path(out_dir)
    check_replaceable(out_dir, MANIFEST, "design")
    design, manifest = _build(network, arch, fold, max_lanes, ram_style, array, batch, pes,
                              queue_depth, index_bits)
    top = network.name
    text = to_verilog(design, top)

    rng = np.random.default_rng(0)
    fmt = network.input.format
    inputs = fmt.level_value(rng.integers(0, fmt.levels, size=(VECTOR_COUNT,
                                                                network.in_features)))
    expected = run_network(network, inputs)

    def fill(folder):
        (folder / f"{top}.v").write_text(text)
        (folder / MANIFEST).write_text(
            json.dumps(manifest(network, design, top), indent=2, sort_keys=True) + "\n")
        network.save(folder / "network.hwnn.npz")
        (folder / "vectors").mkdir()
        np.save(folder / "vectors" / "inputs.npy", inputs)
        np.save(folder / "vectors" / "expected.npy", expected)
        if _same_design(out_dir, folder):
            for name in RESULT_FOLDERS:
                if (out_dir / name).is_dir():
                    (out_dir / name).rename(folder / name)

    return replace_folder(out_dir, MANIFEST, "design", fill)


def _same_design(old, new) -> bool:
    """Whether design folder ``old`` holds the same files as the freshly written ``new``."""
    files = [path.relative_to(new) for path in new.rglob("*") if path.is_file()]
    return (old / MANIFEST).is_file() and all(
        (old / name).is_file() and (old / name).read_bytes() == (new / name).read_bytes()
        for name in files)


def earlier_results(out_dir) -> list[str] | None:
    """The result folders (``sim/verilator``, ``synth/ecp5-85f``, ``build/icebreaker``) of the
    design folder ``out_dir``, or None when it holds no design."""
    out_dir = Path(out_dir)
    if not (out_dir / MANIFEST).is_file():
        return None
    return sorted(f"{name}/{target.name}" for name in RESULT_FOLDERS
                  if (out_dir / name).is_dir() for target in (out_dir / name).iterdir())


def replacement_note(out_dir, earlier) -> str:
    """What generating into ``out_dir`` did to an earlier design there whose result folders
    were ``earlier`` (from :func:`earlier_results`): a line, or "" when there was none."""
    if earlier is None:
        return ""
    kept = earlier_results(out_dir)
    removed = [name for name in earlier if name not in kept]
    return (f"replaced the earlier design in {out_dir}/"
            + (f"; kept its results (the design is the same): {', '.join(kept)}" if kept
               else "")
            + (f"; removed its results (the design changed): {', '.join(removed)}" if removed
               else ""))


class Design:
    """A generated design folder, read back: its manifest, network and folding."""

    def __init__(self, path):
        path = Path(path)
        manifest_path = path / MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{str(path)!r} is not an hwnn design folder (no {MANIFEST}); "
                                    f"create one with `hwnn compile`")
        try:
            self.manifest = json.loads(manifest_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{str(manifest_path)!r} is not valid JSON: {error}") from None
        self.path = path
        self.network = Network.load(path / self.manifest["network"])

    @property
    def verilog(self) -> Path:
        return self.path / self.manifest["verilog"]

    @property
    def top(self) -> str:
        return self.manifest["top"]

    @property
    def folding(self):
        """The dataflow design's folding."""
        return tuple(LayerFold(**self.manifest["folding"][layer.name])
                     for layer in self.network.layers)

    @property
    def estimate_options(self) -> dict:
        """The options of :func:`hwnn.estimate.estimate` that describe this design."""
        arch = self.manifest["arch"]
        if arch == "sparse":
            return {key: self.manifest[key] for key in ("pes", "queue_depth", "index_bits")}
        if arch == "systolic":
            side = self.manifest["array"]["rows"]
            return {"array": f"{side}x{side}", "batch": self.manifest["batch"]}
        return {"fold": self.folding}

    def accelerator(self):
        """The Amaranth top component of this design (for Amaranth's simulator)."""
        if self.manifest["arch"] == "sparse":
            from .rtl.sparse import SparseAccelerator, SparseParams
            return SparseAccelerator(self.network, SparseParams(
                self.manifest["pes"], self.manifest["queue_depth"], self.manifest["index_bits"]))
        if self.manifest["arch"] == "systolic":
            from .rtl.overlay import OverlayParams, SystolicOverlay
            return SystolicOverlay(self.network, OverlayParams(self.manifest["array"]["rows"],
                                                               self.manifest["batch"]))
        from .rtl.dataflow import DataflowAccelerator
        return DataflowAccelerator(self.network, self.folding,
                                   ram_style=self.manifest["ram_style"])


def load_design(path) -> Design:
    """Read a design folder written by :func:`generate`."""
    return Design(path)
