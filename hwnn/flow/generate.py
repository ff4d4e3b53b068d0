"""Generate a design folder from a quantized network: Verilog, manifest, network, vectors.

``OUT/`` receives ``<name>.v`` (one Verilog file, top module ``<name>``), ``manifest.json``
(ports, packing, layer table, folding, expected cycles, versions), ``network.hwnn.npz`` (the IR
the design was built from, which ``hwnn simulate`` uses for the golden model) and
``vectors/inputs.npy`` + ``vectors/expected.npy`` (random input codes and the golden model's
outputs for them), and for a design with a load stream (a systolic design's loaded weights)
``weights.bin``, the words it takes after reset (manifest ``load``). The folder is written
whole or not at all, and the same network and options give byte-identical files, wherever
hwnn is installed: the Verilog's source locations (``src`` attributes) name files relative to
the package folder they come from (``hwnn/rtl/mvau.py:288``, ``amaranth/lib/stream.py:40``).

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

from .. import __version__
from ..arch import architecture
from ..arch.base import layer_keys
from .designfolder import MANIFEST, DesignFolder
from ..folders import check_replaceable, replace_folder
from ..ir import Network
from ..ir.packing import image_words, word_image
from ..rtl.engine import LOAD_PORT, load_port

__all__ = ["Design", "earlier_results", "generate", "load_design", "replacement_note",
           "to_verilog"]

VECTOR_COUNT = 32
#: The folders of a design folder that hold commands' results, one subfolder per target.
RESULT_FOLDERS = ("sim", "synth", "build")
_SOURCE = re.compile(r'(src = ")([^"]*)(")')


def _portable_sources(text) -> str:
    """``text`` with every source location relative to the folder holding its package (hwnn's,
    or the Python installation's library folders), or reduced to the file name."""
    roots = [Path(__file__).resolve().parents[2],
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


def _manifest(network, arch, component, params, top) -> dict:
    """The manifest of the design ``component`` (built as ``arch`` with ``params``)."""
    from amaranth import __version__ as amaranth_version
    section = arch.manifest(network, component, params)
    return section | {
        "hwnn_version": __version__,
        "amaranth_version": amaranth_version,
        "arch": arch.name,
        "name": network.name,
        "top": top,
        "verilog": f"{top}.v",
        "network": "network.hwnn.npz",
        "clock": {"port": "clk", "reset": "rst", "reset_polarity": "active high, synchronous"},
        "input": _port("i_stream", component.in_count, network.input.format, network.in_features),
        "output": _port("o_stream", component.out_count, network.output.format,
                        network.out_features),
        "output_scale": network.output.scale.tolist(),
        "weight_bits": sum(layer.weight_bits for layer in network.layers),
        "vectors": {"inputs": "vectors/inputs.npy", "expected": "vectors/expected.npy",
                    "count": VECTOR_COUNT},
        "layers": [layer_keys(layer) | keys
                   for layer, keys in zip(network.layers, section["layers"], strict=True)],
    } | _load_section(component)


#: The file of a design folder that holds its load stream's words (:func:`word_image`).
LOAD_IMAGE = "weights.bin"


def _load_section(component) -> dict:
    """The manifest's ``load`` entry of a top with a load stream (none without): its port,
    word bits and count and the image file."""
    stream = load_port(component)
    if stream is None:
        return {}
    bits = len(stream.payload)
    return {"load": {
        "port": LOAD_PORT, "word_bits": bits, "words": len(component.load_words),
        "signals": {name: f"{LOAD_PORT}__{name}" for name in ("payload", "valid", "ready")},
        "image": LOAD_IMAGE,
        "packing": f"each word as {-(-bits // 8)} bytes, least significant first, in order; "
                   f"the design takes them all after reset before its first input"}}


def generate(network: Network, out_dir, *, arch="dataflow", **options) -> Path:
    """Write the design folder for ``network`` built as architecture ``arch`` (one of
    :data:`hwnn.arch.ARCHITECTURES`) to ``out_dir``; return its path.

    ``options`` are the fields of the architecture's parameters, each with its default:
    :class:`~hwnn.arch.dataflow.DataflowParams` (``fold``: ``"auto"`` within ``max_lanes``, a
    fold file, or :class:`~hwnn.rtl.folding.LayerFold` per layer; ``ram_style``),
    :class:`~hwnn.arch.systolic.SystolicOverlayParams` (``array``: ``"RxC"``, rows over inputs;
    ``batch``) or :class:`~hwnn.rtl.sparse.SparseParams` (``pes``, ``queue_depth``,
    ``index_bits``); another keyword is a TypeError. ``out_dir`` may be missing, empty, or a
    previous design folder (which is replaced); any other existing folder is refused rather
    than overwritten.
    """
    from ..sim.golden import run_network

    if not isinstance(network, Network):
        raise TypeError(f"network must be a Network, not {network!r}")
    arch = architecture(arch)
    out_dir = Path(out_dir)
    check_replaceable(out_dir, MANIFEST, "design")
    params = arch.check(network, arch.params(**options))
    component = arch.build(network, params)
    top = network.name
    text = to_verilog(component, top)
    manifest = _manifest(network, arch, component, params, top)

    rng = np.random.default_rng(0)
    fmt = network.input.format
    inputs = fmt.level_value(rng.integers(0, fmt.levels, size=(VECTOR_COUNT,
                                                                network.in_features)))
    expected = run_network(network, inputs)

    def fill(folder):
        (folder / f"{top}.v").write_text(text)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        network.save(folder / "network.hwnn.npz")
        (folder / "vectors").mkdir()
        np.save(folder / "vectors" / "inputs.npy", inputs)
        np.save(folder / "vectors" / "expected.npy", expected)
        if "load" in manifest:
            (folder / LOAD_IMAGE).write_bytes(word_image(component.load_words,
                                                         manifest["load"]["word_bits"]))
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


class Design(DesignFolder):
    """A generated design folder, read back: its manifest, network, architecture and the
    parameters it was built with."""

    def __init__(self, path):
        super().__init__(path)
        self.architecture = architecture(self.manifest["arch"])
        self.params = self.architecture.read(self.manifest, self.network)

    @property
    def folding(self):
        """The dataflow design's folding."""
        return self.params.fold

    @property
    def options(self) -> dict:
        """The options of :func:`generate` (and :func:`hwnn.planning.estimate.estimate`) that
        give this design."""
        return self.architecture.options(self.params)

    @property
    def batch(self) -> int:
        """Vectors the design gathers before it works on them (1 unless systolic)."""
        return self.architecture.batch(self.params)

    def accelerator(self):
        """The Amaranth top component of this design (for Amaranth's simulator)."""
        return self.architecture.build(self.network, self.params)

    def load_words(self) -> list[int] | None:
        """The words the design's load stream takes after reset (its image file), or None
        when it has none."""
        load = self.manifest.get("load")
        if load is None:
            return None
        return image_words((self.path / load["image"]).read_bytes(), load["word_bits"])


def load_design(path) -> Design:
    """Read a design folder written by :func:`generate`."""
    return Design(path)
