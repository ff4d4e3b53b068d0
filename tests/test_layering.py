"""What each part of hwnn may import: ``hwnn.rtl`` never ``hwnn.sim``, the host side never
Amaranth, and ``hwnn.boards`` from a plain checkout as from an installed hwnn."""

import ast
import json
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import amaranth
import amaranth_boards
import numpy as np

import hwnn.rtl
from hwnn.quant.synthetic import sample_network

CHECKOUT = Path(__file__).resolve().parents[1]


def imported_modules(path, package) -> set[str]:
    """The modules the source file ``path`` of ``package`` imports, anywhere in it (imports
    inside functions too), as absolute names; ``from a import b`` gives ``a`` and ``a.b``."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module) if part)
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def run_python(code, *flags):
    """Run ``code`` in a fresh interpreter; its standard output."""
    result = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True,
                            text=True, cwd=CHECKOUT, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_rtl_never_imports_sim():
    folder = Path(hwnn.rtl.__file__).parent
    for path in sorted(folder.glob("*.py")):
        sim = {name for name in imported_modules(path, "hwnn.rtl")
               if name == "hwnn.sim" or name.startswith("hwnn.sim.")}
        assert not sim, f"{path.name} imports {sorted(sim)}"
    # Nor through what it imports.
    modules = [f"hwnn.rtl.{info.name}" for info in pkgutil.iter_modules(hwnn.rtl.__path__)]
    loaded = run_python(f"import importlib, sys\n"
                        f"for name in {modules!r}: importlib.import_module(name)\n"
                        f"print(sorted(m for m in sys.modules if m.startswith('hwnn.sim')))")
    assert loaded.strip() == "[]"


def test_the_host_side_loads_a_design_without_amaranth(tmp_path):
    network = sample_network("int8", seed=2)
    network.save(tmp_path / "net.hwnn.npz")
    (tmp_path / "manifest.json").write_text(json.dumps({"network": "net.hwnn.npz"}))
    loaded = run_python(f"import sys\n"
                        f"from hwnn.host.link import BoardLink\n"
                        f"link = BoardLink(None, {str(tmp_path)!r})\n"
                        f"print(link.design.network.in_features)\n"
                        f"print(sorted(m for m in sys.modules if m.startswith('amaranth')))")
    assert loaded.split("\n")[:2] == [str(network.in_features), "[]"]


def test_boards_import_from_a_plain_checkout(tmp_path):
    """With the checkout on the path and no installed hwnn (no site-packages, whose editable
    install maps packages by itself), ``hwnn.boards`` and its board modules import."""
    checkout = tmp_path / "checkout"
    shutil.copytree(CHECKOUT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", "build", "sim_build"))
    dependencies = {str(Path(module.__file__).parents[1])
                    for module in (amaranth, amaranth_boards, np)}
    found = run_python(f"import sys\n"
                       f"sys.path[:0] = {[str(checkout), *sorted(dependencies)]!r}\n"
                       f"import hwnn.boards\n"
                       f"print(hwnn.boards.__file__)\n"
                       f"print(hwnn.boards.board('icebreaker').device)", "-S")
    path, device = found.split("\n")[:2]
    assert Path(path).is_relative_to(checkout)
    assert device == "ice40-up5k"
