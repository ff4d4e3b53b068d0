"""Place and route with several seeds and keep the fastest result.

On a nearly full device nextpnr's result depends on its placer's random seed: on the
iCE40UP5K at 86% of the logic cells, one 2x4 overlay netlist reached 40.8 to 54.6 MHz over
eight seeds (README, "The systolic architecture"). :func:`sweep_seeds` runs a board build's nextpnr
command with nextpnr's own seed and then ``--seed 2 .. N``, as many at once as the machine
has cores, each writing its own log and output, and keeps the seed whose slowest clock has
the most room against its constraint (the first such seed on a tie): the same netlist and
seed count give the same bitstream. A run that takes :data:`STALLED` times as long as the
quickest (and :data:`STALLED_SECONDS` at least), its router not converging (seen at 86% of
the UP5K's cells), is stopped and counts as failed. The build scripts run it as
``python -m hwnn.tools.seeds N TARGETS -- NEXTPNR ARGS...`` (:mod:`hwnn.tools.build`),
``TARGETS`` the clock frequencies in MHz separated by commas; it says how each seed did on
lines that start with :data:`SEED_PREFIX` and prints the sweep's summary as JSON on a line
that starts with :data:`REPORT_PREFIX`.
"""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from .synth import fmax_from_log

__all__ = ["REPORT_PREFIX", "SEED_PREFIX", "STALLED", "STALLED_SECONDS", "seed_command",
           "sweep_seeds"]

#: The line the sweep's summary (JSON) is printed on.
REPORT_PREFIX = "hwnn.tools.seeds: "
#: The lines that tell of each seed as it finishes.
SEED_PREFIX = "hwnn-step: "
#: A run is stopped after this many times the quickest run's time (its router not converging),
STALLED = 4
#: and this many seconds at least.
STALLED_SECONDS = 60
#: The nextpnr options whose value is a file the run writes.
_OUTPUTS = ("--log", "--asc", "--textcfg", "--report")


def seed_command(command, seed):
    """``command`` (a nextpnr command line as a list) for ``seed`` (1: nextpnr's own seed, no
    ``--seed``): each output file gets the seed in its name (``top.tim`` -> ``top.seed2.tim``)."""
    if seed == 1:
        return list(command)
    result = []
    for index, word in enumerate(command):
        if index and command[index - 1] in _OUTPUTS:
            stem, dot, suffix = word.rpartition(".")
            word = f"{stem}.seed{seed}.{suffix}" if dot else f"{word}.seed{seed}"
        result.append(word)
    return [*result, "--seed", str(seed)]


def _room(log, targets):
    """The smallest ratio of a clock's Fmax to its constraint among ``targets`` (MHz), or None
    when a target has no report."""
    fmax = [fmax_from_log(log, target) for target in targets]
    if None in fmax:
        return None
    return min(mhz / target for mhz, target in zip(fmax, targets, strict=True))


def _outputs(command):
    """The indices of ``command``'s output file names."""
    return [index for index in range(1, len(command)) if command[index - 1] in _OUTPUTS]


@contextlib.contextmanager
def _ended_by_sigterm():
    """Within it, SIGTERM ends the main thread as ``SystemExit`` (143), so that what it runs
    can clean up, as after Ctrl-C; the handler before is restored after it. Outside the main
    thread (where handlers cannot be set) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def end(signum, frame):
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, end)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def sweep_seeds(command, seeds, targets, *, folder=".", say=print) -> dict:
    """Run the nextpnr ``command`` (a list) in ``folder`` with ``seeds`` seeds and keep the
    best run's outputs under the command's own file names (the others' are removed); ``say``
    hears of each seed as it finishes. Returns ``{"seeds", "best", "fmax_mhz"}``: the seeds
    tried, the one kept and each seed's Fmax of the first target's clock (None when its run
    failed). Exits with the first seed's status, its log on stderr, when every run failed."""
    folder = Path(folder)
    commands = {seed: seed_command(command, seed) for seed in range(1, seeds + 1)}
    log_index = command.index("--log") + 1

    # A seed whose router does not converge may run for ever: once a seed has been placed
    # and routed in T seconds, a run longer than STALLED * T (STALLED_SECONDS at least) is
    # stopped.
    finished = []
    running, ending = set(), threading.Event()

    def run(seed):
        started = time.monotonic()
        with subprocess.Popen(commands[seed], cwd=folder, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) as process:
            running.add(process)
            if ending.is_set():          # the sweep was interrupted as this run started
                process.kill()
            stopped = False
            while True:
                try:
                    _, errors = process.communicate(timeout=1)
                    break
                except subprocess.TimeoutExpired:
                    if finished and time.monotonic() - started > max(STALLED * min(finished),
                                                                      STALLED_SECONDS):
                        process.kill()
                        stopped = True
        running.discard(process)
        seconds = time.monotonic() - started
        if process.returncode == 0:
            finished.append(seconds)
        log_file = folder / commands[seed][log_index]
        log = (log_file.read_text() if log_file.is_file() else "") + (errors or "")
        return process.returncode, log, (f"stopped after {seconds:.0f} s" if stopped else None)

    results = {}
    with ThreadPoolExecutor(max_workers=min(seeds, os.cpu_count() or 1)) as pool, \
            _ended_by_sigterm():
        futures = {pool.submit(run, seed): seed for seed in commands}
        try:
            for future in as_completed(futures):
                seed = futures[future]
                status, log, stopped = future.result()
                results[seed] = (status, log)
                fmax = None if status else fmax_from_log(log, targets[0])
                say(f"{SEED_PREFIX}place and route, seed {seed} of {seeds}: "
                    + (stopped or ("failed" if fmax is None else f"{fmax:.1f} MHz")))
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): no nextpnr outlives the sweep, and the runs
            # not started yet never start.
            ending.set()
            for future in futures:
                future.cancel()
            for process in list(running):
                process.kill()
            raise
    rooms = {seed: None if status else _room(log, targets)
             for seed, (status, log) in results.items()}
    placed = [seed for seed in commands if rooms[seed] is not None]
    if not placed:
        status, log = results[1]
        sys.stderr.write(log)
        raise SystemExit(status or 1)
    best = max(placed, key=lambda seed: (rooms[seed], -seed))
    for seed, words in commands.items():
        for index in _outputs(words):
            path = folder / words[index]
            if seed == best and path.is_file():
                path.replace(folder / command[index])
            elif seed not in (best, 1):
                path.unlink(missing_ok=True)
    return {"seeds": seeds, "best": best, "fmax_mhz": {
        str(seed): None if status else fmax_from_log(log, targets[0])
        for seed, (status, log) in sorted(results.items())}}


def _main(argv):
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: python -m hwnn.tools.seeds SEEDS TARGET_MHZ[,TARGET_MHZ] -- "
                 "NEXTPNR ARGS...")
    seeds, targets = int(argv[0]), [float(mhz) for mhz in argv[1].split(",")]
    summary = sweep_seeds(argv[3:], seeds, targets, say=lambda line: print(line, flush=True))
    print(REPORT_PREFIX + json.dumps(summary, sort_keys=True), flush=True)


if __name__ == "__main__":     # the board build scripts run it in nextpnr's place
    _main(sys.argv[1:])
