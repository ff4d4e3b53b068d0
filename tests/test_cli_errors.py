# amaranth: UnusedElaboratable=no
"""What the ``hwnn`` command says when something is wrong: one line naming the option, the
file or the missing piece, exit status 2, and no traceback."""

import re

import numpy as np
import pytest

from hwnn.cli import main
from hwnn.generate import generate
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
    from hwnn.build import build_board
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
    from hwnn.host import BoardLink

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
