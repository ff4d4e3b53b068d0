"""Place and route with several seeds (hwnn.tools.seeds), on a stand-in for nextpnr whose
Fmax depends on the seed; the real tools' sweep is in tests/synth/test_boards.py."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from hwnn.tools.seeds import SEED_PREFIX, seed_command, sweep_seeds

#: A nextpnr stand-in: ``--seed`` picks the Fmax of the accelerator's clock (48 MHz) and of the
#: link's (12 MHz) from FMAX, and an exit status from FAIL; it writes its log and its output.
FAKE = """\
import sys
args = sys.argv[1:]
seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 1
FMAX = {fmax!r}
if seed in {fail!r}:
    sys.exit(3)
if seed in {hang!r}:
    import time
    time.sleep(600)
fast, slow = FMAX[seed]
with open(args[args.index("--log") + 1], "w") as log:
    log.write(f"Info: Max frequency for clock 'clk': {{fast:.2f}} MHz (FAIL at 48.00 MHz)\\n"
              f"Info: Max frequency for clock 'board_clk': {{slow:.2f}} MHz (PASS at 12.00 MHz)\\n")
with open(args[args.index("--asc") + 1], "w") as out:
    out.write(f"placed with seed {{seed}}")
"""


def fake_nextpnr(folder, fmax, fail=(), hang=()):
    script = folder / "fake_nextpnr.py"
    script.write_text(FAKE.format(fmax=fmax, fail=set(fail), hang=set(hang)))
    return [sys.executable, str(script), "--quiet", "--log", "top.tim", "--json", "top.json",
            "--asc", "top.asc"]


def test_each_seed_writes_files_of_its_own():
    command = ["nextpnr-ice40", "--log", "top.tim", "--json", "top.json", "--asc", "top.asc"]
    assert seed_command(command, 1) == command
    assert seed_command(command, 3) == ["nextpnr-ice40", "--log", "top.seed3.tim", "--json",
                                        "top.json", "--asc", "top.seed3.asc", "--seed", "3"]
    assert seed_command(["nextpnr-ecp5", "--textcfg", "top.config"], 2) == [
        "nextpnr-ecp5", "--textcfg", "top.seed2.config", "--seed", "2"]


def test_the_seed_with_the_most_room_is_kept_under_the_commands_names(tmp_path):
    # Seed 3 is the fastest at 48 MHz, but its link clock misses 12 MHz: seed 2 is kept.
    fmax = {1: (40.0, 50.0), 2: (46.5, 60.0), 3: (49.0, 11.0), 4: (44.0, 70.0)}
    command = fake_nextpnr(tmp_path, fmax)
    said = []
    summary = sweep_seeds(command, 4, [48.0, 12.0], folder=tmp_path, say=said.append)
    assert summary == {"seeds": 4, "best": 2,
                       "fmax_mhz": {"1": 40.0, "2": 46.5, "3": 49.0, "4": 44.0}}
    assert (tmp_path / "top.asc").read_text() == "placed with seed 2"
    assert "46.50 MHz" in (tmp_path / "top.tim").read_text()
    assert sorted(path.name for path in tmp_path.glob("top.*")) == ["top.asc", "top.tim"]
    assert sorted(said) == [f"{SEED_PREFIX}place and route, seed {seed} of 4: {mhz:.1f} MHz"
                            for seed, mhz in ((1, 40.0), (2, 46.5), (3, 49.0), (4, 44.0))]


def test_a_tie_keeps_the_first_seed_and_a_failed_seed_is_passed_over(tmp_path):
    fmax = {1: (40.0, 50.0), 2: (45.0, 50.0), 3: (45.0, 50.0), 4: (0, 0)}
    command = fake_nextpnr(tmp_path, fmax, fail=[4])
    said = []
    summary = sweep_seeds(command, 4, [48.0, 12.0], folder=tmp_path, say=said.append)
    assert summary["best"] == 2 and summary["fmax_mhz"]["4"] is None
    assert f"{SEED_PREFIX}place and route, seed 4 of 4: failed" in said
    assert (tmp_path / "top.asc").read_text() == "placed with seed 2"


def test_a_run_that_does_not_end_is_stopped(tmp_path, monkeypatch):
    monkeypatch.setattr("hwnn.tools.seeds.STALLED_SECONDS", 2)
    command = fake_nextpnr(tmp_path, {1: (40.0, 50.0), 2: (45.0, 50.0)}, hang=[2])
    said = []
    started = time.monotonic()
    summary = sweep_seeds(command, 2, [48.0, 12.0], folder=tmp_path, say=said.append)
    assert time.monotonic() - started < 30
    assert summary["best"] == 1 and summary["fmax_mhz"] == {"1": 40.0, "2": None}
    assert any(re.fullmatch(rf"{SEED_PREFIX}place and route, seed 2 of 2: stopped after \d+ s",
                            line) for line in said), said


def test_every_seed_failing_exits_with_the_first_ones_status(tmp_path):
    command = fake_nextpnr(tmp_path, {}, fail=[1, 2])
    with pytest.raises(SystemExit) as exit_info:
        sweep_seeds(command, 2, [48.0], folder=tmp_path, say=lambda line: None)
    assert exit_info.value.code == 3


def test_the_module_reports_its_summary(tmp_path):
    command = fake_nextpnr(tmp_path, {1: (30.0, 20.0), 2: (31.0, 20.0)})
    result = subprocess.run([sys.executable, "-m", "hwnn.tools.seeds", "2", "48,12", "--",
                             *command], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert json.loads(lines[-1].removeprefix("hwnn.tools.seeds: ")) == {
        "seeds": 2, "best": 2, "fmax_mhz": {"1": 30.0, "2": 31.0}}
    bad = subprocess.run([sys.executable, "-m", "hwnn.tools.seeds", "2", "48"],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.startswith("usage: python -m hwnn.tools.seeds SEEDS")


#: A nextpnr stand-in that writes its process id to a file and never ends.
HANG = """\
import os, time
with open(f"pid.{os.getpid()}", "w"):
    pass
time.sleep(600)
"""


@pytest.mark.parametrize("signal_name", ["SIGTERM", "SIGINT"])
def test_no_nextpnr_outlives_an_interrupted_sweep(tmp_path, signal_name):
    """A sweep ended by SIGTERM (a killed benchmark) or Ctrl-C kills the runs it started."""
    (tmp_path / "hang.py").write_text(HANG)
    command = [sys.executable, "hang.py", "--log", "top.tim"]
    # Ctrl-C's handler as in a terminal (a pytest-xdist worker's children inherit SIGINT
    # ignored).
    sweep = subprocess.Popen([sys.executable, "-c", (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from hwnn.tools.seeds import sweep_seeds; "
        f"sweep_seeds({command!r}, 4, [48.0], folder=sys.argv[1], say=print)"),
        str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _interrupt_and_check(sweep, tmp_path, getattr(signal, signal_name))
    finally:
        if sweep.poll() is None:
            sweep.kill()
        for path in tmp_path.glob("pid.*"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(path.suffix[1:]), signal.SIGKILL)


def _interrupt_and_check(sweep, tmp_path, signum):
    """Send ``signum`` to ``sweep`` once its first runs have started; check that it ends and
    that no run outlives it, and that the runs not started never start."""
    started = min(4, os.cpu_count() or 1)          # the runs at once
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("pid.*"))) < started:
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.1)
    pids = [int(path.suffix[1:]) for path in tmp_path.glob("pid.*")]
    sweep.send_signal(signum)
    assert sweep.wait(timeout=30) != 0

    def alive(pid):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    deadline = time.monotonic() + 10
    while any(map(alive, pids)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(alive, pids)), pids
    # The seeds that had not started never do.
    time.sleep(1)
    assert len(list(tmp_path.glob("pid.*"))) == started
