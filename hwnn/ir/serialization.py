"""The network file: one ``.hwnn.npz`` holding a JSON header and the layers' arrays.

The archive holds ``header.json`` (``kind``, ``version``, the network's ``name`` and ``info``,
and one entry per layer: its ``kind`` plus the header its layer kind writes) and one ``.npy``
member per array, named ``layer<index>/<array>``. Members are written in a fixed order with
fixed timestamps, so the same network always gives the same bytes. Reading refuses, with a
ValueError that says what is wrong, any file that is corrupt, truncated, of another version or
inconsistent, and any layer kind that is not registered (see :mod:`hwnn.ir.layer`).
"""

import io
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ..folders import honour_umask
from .checks import expect_keys
from .layer import LAYER_KINDS

__all__ = ["FILE_KIND", "FILE_VERSION", "npz_bytes", "read_network", "write_network"]

FILE_KIND = "hwnn-network"
FILE_VERSION = 1


def write_network(path: Path, name: str, info: dict, layers):
    """Write the network file of ``name``, ``info`` and ``layers`` to ``path``, atomically."""
    header = {"kind": FILE_KIND, "version": FILE_VERSION, "name": name, "info": info,
              "layers": []}
    arrays = {}
    for index, layer in enumerate(layers):
        layer_header, layer_arrays = layer.header_and_arrays()
        header["layers"].append({"kind": layer.kind} | layer_header)
        arrays |= {f"layer{index}/{key}": value for key, value in layer_arrays.items()}
    members = {"header.json": json.dumps(header, sort_keys=True, indent=1).encode()}
    _write_atomically(path, npz_bytes(arrays, members))


def npz_bytes(arrays: dict, members: dict | None = None) -> bytes:
    """A deflated ``.npz`` archive (read by :func:`numpy.load`) of ``arrays`` (name -> array,
    each stored as member ``<name>.npy``, in sorted order) after the raw ``members`` (name ->
    bytes, in their order), with fixed timestamps: the same arrays always give the same
    bytes, unlike :func:`numpy.savez`, which stamps the time of writing."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        def add(name, data):
            member = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, data)
        for name, data in (members or {}).items():
            add(name, data)
        for key in sorted(arrays):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asarray(arrays[key], order="C"),
                                      allow_pickle=False)
            add(f"{key}.npy", data.getvalue())
    return buffer.getvalue()


def read_network(path: Path) -> tuple[str, tuple, dict]:
    """The ``(name, layers, info)`` of the network file at ``path``.

    Raises ValueError (or the zipfile, zlib or OSError error of a damaged archive) for a file
    that is not a valid network file.
    """
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        if "header.json" not in names:
            raise ValueError("it has no header.json")
        header = json.loads(archive.read("header.json"))
        expect_keys(header, {"kind", "version", "name", "info", "layers"}, "header")
        if header["kind"] != FILE_KIND:
            raise ValueError(f"its kind is {header['kind']!r}, not {FILE_KIND!r}")
        if header["version"] != FILE_VERSION:
            raise ValueError(f"its version is {header['version']!r}; this hwnn reads "
                             f"version {FILE_VERSION}")
        arrays = {}
        for name in names - {"header.json"}:
            if not name.endswith(".npy") or "/" not in name:
                raise ValueError(f"unexpected member {name!r}")
            layer, key = name[:-4].split("/", 1)
            arrays.setdefault(layer, {})[key] = _read_member(archive, name)
    if not isinstance(header["layers"], list):
        raise ValueError("its layer list is not a list")
    expected = {f"layer{index}" for index in range(len(header["layers"]))}
    if unknown := sorted(set(arrays) - expected):
        raise ValueError(f"arrays of unknown layers: {', '.join(unknown)}")
    layers = []
    for index, layer_header in enumerate(header["layers"]):
        layer_header = dict(layer_header) if isinstance(layer_header, dict) else {}
        kind = layer_header.pop("kind", None)
        if kind not in LAYER_KINDS:
            raise ValueError(f"layer {index} has unknown kind {kind!r}; this hwnn reads "
                             f"{', '.join(map(repr, sorted(LAYER_KINDS)))} (a newer hwnn may "
                             f"read it)")
        layers.append(LAYER_KINDS[kind].from_header_and_arrays(
            layer_header, arrays.get(f"layer{index}", {})))
    return header["name"], tuple(layers), header["info"]


_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}


def _read_member(archive, name) -> np.ndarray:
    """The array of the ``.npy`` member ``name`` of ``archive``. Its header is read first: a
    member whose declared shape and dtype do not fill exactly the bytes it holds is refused
    (ValueError) before any array is allocated, so a corrupt file cannot ask for terabytes."""
    with archive.open(name) as member:
        version = np.lib.format.read_magic(member)
        if version not in _NPY_HEADER_READERS:
            raise ValueError(f"member {name!r} has .npy format version {version}, not 1.0 or 2.0")
        shape, fortran_order, dtype = _NPY_HEADER_READERS[version](member)
        if dtype.hasobject:
            raise ValueError(f"member {name!r} holds Python objects, not numbers")
        declared = math.prod(shape) * dtype.itemsize
        held = archive.getinfo(name).file_size - member.tell()
        if declared != held:
            raise ValueError(f"member {name!r} declares {dtype} values of shape {shape} "
                             f"({declared} bytes) but holds {held} bytes")
        data = member.read()
    order = "F" if fortran_order else "C"
    return np.frombuffer(data, dtype).reshape(shape, order=order).copy()


def _write_atomically(path: Path, data: bytes):
    """Write ``data`` to ``path`` whole or not at all (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        honour_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
