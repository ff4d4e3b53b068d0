"""A design folder written by :func:`hwnn.flow.generate.generate`, read back without Amaranth: its
manifest and network, all the host side (:mod:`hwnn.host.link`) needs.
:class:`hwnn.flow.generate.Design` adds the architecture and its parameters."""

import json
from pathlib import Path

from ..ir import Network

__all__ = ["MANIFEST", "DesignFolder"]

MANIFEST = "manifest.json"


class DesignFolder:
    """The design folder ``path``: its :attr:`manifest` (the parsed ``manifest.json``) and
    :attr:`network`. FileNotFoundError when ``path`` holds no manifest, ValueError when the
    manifest is not JSON."""

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
