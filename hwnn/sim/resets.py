"""Reset at any cycle: a cycle-by-cycle test bench that every simulator runs the same way.

A design promises that raising ``rst`` at any cycle leaves it as at power-on. The
:class:`ResetBench` checks that on a design's streams, in one simulation run of many trials.
The first trial streams a few vectors with no reset and measures how long they take (the span).
Every other trial streams vectors again, raises ``rst`` for 1 to 3 cycles at a chosen cycle of
that span (a sweep over all of it, or a seeded sample when it is long), then streams fresh
vectors and collects all their outputs. Both streams stall at random (seeded); while ``rst`` is
high both handshakes toggle at random and count for nothing (the vectors after the reset start
with their first beat). Vector ``j`` of trial ``t`` is input
``(t * per_trial + j) mod len(vectors)``.

The bench is plain Python: Amaranth's simulator (:func:`hwnn.sim.pysim.run_bench`) and cocotb
(:mod:`hwnn.sim.cocotb_reset`) only apply :meth:`ResetBench.drive` before each rising edge and
report the handshakes with :meth:`ResetBench.observe`. :func:`check_trials` compares what was
collected with the golden model.
"""

import random

import numpy as np

from .beats import beats_to_vectors, vectors_to_beats
from .golden import run_network

__all__ = ["POWER_ON_CYCLES", "ResetBench", "check_trials", "check_words", "stream_words"]

#: Cycles of ``rst`` before the first trial.
POWER_ON_CYCLES = 3


def stream_words(codes, fmt, count) -> list[list[int]]:
    """Per row of ``codes``, its stream beats as payload words (``last`` above the data)."""
    codes = np.atleast_2d(codes)
    beats = vectors_to_beats(codes, fmt, count)
    per_vector = len(beats) // len(codes)
    words = [beat["data"] | beat["last"] << (count * fmt.width) for beat in beats]
    return [words[i:i + per_vector] for i in range(0, len(words), per_vector)]


class ResetBench:
    """Drives ``rst`` and both streams of a design, one clock cycle at a time.

    ``vectors`` holds each input vector's beats (payload words), ``out_beats`` the beats of an
    output vector. ``before`` vectors are streamed before the reset, ``after`` after it; at
    most ``points`` reset cycles are tried; an expected output that has not come ``timeout``
    cycles after its trial's reset (or start) ends the run. ``seed`` fixes every random choice.

    Call :meth:`drive` for the inputs of the next rising edge (``rst``, ``i_stream`` valid and
    payload, ``o_stream`` ready), then :meth:`observe` with ``i_stream`` ready and ``o_stream``
    valid and payload as they were at that edge, until :attr:`done`. :attr:`trials` then holds
    one record per trial: ``reset_at`` (the trial's cycle at which ``rst`` rose, None for the
    first), ``reset_cycles``, the ``before`` and ``after`` input indices, the output words
    accepted before and after the reset, and ``timed_out`` (``"before"`` or ``"after"`` when
    the run ended waiting for those vectors' outputs).
    """

    def __init__(self, vectors, out_beats, *, seed, points=64, before=2, after=2,
                 timeout=10_000):
        self._vectors = [list(beats) for beats in vectors]
        self._out_beats = out_beats
        self._rng = random.Random(seed)
        self._points, self._before, self._after = points, before, after
        self._timeout = timeout
        self.trials = []
        self.span = None                 # cycles of the first trial's ``before`` vectors
        self.done = False
        self._reset_points = []
        self._resetting = POWER_ON_CYCLES
        self._start_trial(None, 0)

    def _start_trial(self, reset_at, reset_cycles):
        count = self._before + self._after
        picks = [(len(self.trials) * count + j) % len(self._vectors) for j in range(count)]
        self.trials.append({"reset_at": reset_at, "reset_cycles": reset_cycles,
                            "before": picks[:self._before], "after": picks[self._before:],
                            "outputs_before": [], "outputs_after": [], "timed_out": None})
        self._queue = [word for i in picks[:self._before] for word in self._vectors[i]]
        self._offering = self._accepting = self._after_reset = False
        self._cycle = self._since = 0

    def _start_after(self):
        trial = self.trials[-1]
        self._queue = [word for i in trial["after"] for word in self._vectors[i]]
        self._offering, self._after_reset, self._since = False, True, 0

    def drive(self) -> tuple[int, int, int, int]:
        """``(rst, i_stream valid, i_stream payload, o_stream ready)`` for the next edge."""
        trial = self.trials[-1]
        if not self._resetting and not self._after_reset and self._cycle == trial["reset_at"]:
            self._resetting = trial["reset_cycles"]
            self._start_after()
        if self._resetting:
            # Handshakes while rst is high are no transfers: offer and accept at random.
            self._offering = self._accepting = False
            return 1, self._rng.randint(0, 1), self._queue[0], self._rng.randint(0, 1)
        if not self._offering and self._queue:
            # A producer may idle before offering a beat, never withdraw one it offers.
            self._offering = self._rng.random() >= 0.3
        self._accepting = self._rng.random() < 0.6
        word = self._queue[0] if self._offering else 0
        return 0, int(self._offering), word, int(self._accepting)

    def observe(self, i_ready, o_valid, o_payload):
        """The handshake signals as sampled at the edge that :meth:`drive` prepared."""
        if self._resetting:
            self._resetting -= 1
            return
        trial = self.trials[-1]
        self._cycle += 1
        self._since += 1
        if self._offering and i_ready:
            self._queue.pop(0)
            self._offering = False
        collected = trial["outputs_after" if self._after_reset else "outputs_before"]
        if self._accepting and o_valid:
            collected.append(int(o_payload))
        wanted = self._out_beats * (self._after if self._after_reset else self._before)
        if trial["reset_at"] is None and not self._after_reset and len(collected) == wanted:
            self.span = self._cycle
            self._choose_reset_points()
            self._start_after()
        elif self._after_reset and len(collected) == wanted:
            if self._reset_points:
                self._start_trial(self._reset_points.pop(0), self._rng.randint(1, 3))
            else:
                self.done = True
        elif self._since > self._timeout and (self._after_reset or trial["reset_at"] is None):
            trial["timed_out"] = "after" if self._after_reset else "before"
            self.done = True

    def _choose_reset_points(self):
        # Every cycle of the span and a few after it, or a seeded sample of them.
        cycles = range(self.span + 3)
        if len(cycles) > self._points:
            cycles = sorted(self._rng.sample(cycles, self._points))
        self._reset_points = list(cycles)


def _trial_name(number, trial) -> str:
    """How a mismatch report names trial ``number``: with its reset, if it had one."""
    if trial["reset_at"] is None:
        return f"trial {number} (no reset)"
    return (f"trial {number} (rst high at cycle {trial['reset_at']} for "
            f"{trial['reset_cycles']})")


def check_trials(network, codes, trials, out_count) -> list[str]:
    """Every disagreement of the collected ``trials`` (records of :class:`ResetBench`, run on
    input ``codes``) with the golden model: outputs accepted before a trial's reset must begin
    the expected ones, and those after it must be all of them; each message names the trial,
    the reset, the input and both codes."""
    fmt = network.output.format
    expected = run_network(network, codes)
    data_bits = out_count * fmt.width
    messages = []
    for number, trial in enumerate(trials):
        where = _trial_name(number, trial)
        for phase in ("before", "after"):
            words = trial[f"outputs_{phase}"]
            wanted = [stream_words(expected[i], fmt, out_count)[0] for i in trial[phase]]
            if len(words) > sum(map(len, wanted)):
                messages.append(f"{where}: {len(words)} output beats {phase} the reset, more "
                                f"than the {sum(map(len, wanted))} of its inputs")
            for index, want in zip(trial[phase], wanted, strict=True):
                got, words = words[:len(want)], words[len(want):]
                if got == want[:len(got)]:
                    continue
                values = beats_to_vectors([word & ((1 << data_bits) - 1) for word in got], fmt,
                                          out_count, out_count * len(got))
                lasts = [word >> data_bits for word in got]
                framing = ("" if lasts == [word >> data_bits for word in want][:len(got)]
                           else f" (last set on beats {lasts})")
                messages.append(f"{where}, input {index} {codes[index].tolist()} ({phase} the "
                                f"reset): expected {expected[index].tolist()}, got "
                                f"{values.ravel().tolist()}{framing}")
        if phase := trial["timed_out"]:
            messages.append(f"{where}: only {len(trial[f'outputs_{phase}'])} output beats of "
                            f"the vectors streamed {phase} the reset came in time")
    return messages


def check_words(trials, expected) -> list[str]:
    """Every disagreement of the collected ``trials`` (records of :class:`ResetBench`) with
    ``expected``, the output words of each input vector: for a unit tested on its own, whose
    outputs are known as words rather than through a network. Outputs accepted before a
    trial's reset must begin the expected ones, and those after it must be all of them; each
    message names the trial, the reset, the input and the first differing beat."""
    messages = []
    for number, trial in enumerate(trials):
        where = _trial_name(number, trial)
        for phase in ("before", "after"):
            got = trial[f"outputs_{phase}"]
            want = [(index, beat, word) for index in trial[phase]
                    for beat, word in enumerate(expected[index])]
            if len(got) > len(want):
                messages.append(f"{where}: {len(got)} output beats {phase} the reset, more "
                                f"than the {len(want)} of its inputs")
            for word, (index, beat, wanted) in zip(got, want, strict=False):
                if word != wanted:
                    messages.append(f"{where}, input {index} ({phase} the reset): output beat "
                                    f"{beat} is {word:#x}, expected {wanted:#x}")
                    break
        if phase := trial["timed_out"]:
            messages.append(f"{where}: only {len(trial[f'outputs_{phase}'])} output beats of "
                            f"the vectors streamed {phase} the reset came in time")
    return messages
