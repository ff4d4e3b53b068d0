# amaranth: UnusedElaboratable=no
"""The max-pool unit in Amaranth's simulator against NumPy (``sliding_window_view`` and
``max``): values and framing under random stalls, a reset at random cycles, cycles per image,
parameter errors, Verilog."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from numpy.lib.stride_tricks import sliding_window_view

from hwnn.ir.formats import Format
from hwnn.rtl.pool import MaxPoolUnit
from hwnn.sim.beats import beats_to_vectors, vectors_to_beats
from hwnn.sim.pysim import run_bench, run_stream
from hwnn.sim.resets import ResetBench, check_words, stream_words

# name: (image, kernel, stride, format, count)
CASES = {
    "2x2_uint4": ((4, 4, 2), 2, None, "uint4", 1),
    "3x3_stride2_overlap_int8": ((5, 7, 4), 3, 2, "int8", 2),
    "3x3_stride1_int3_count=C": ((5, 7, 4), 3, 1, "int3", 4),
    "2x3_stride1x2_binary": ((6, 5, 2), (2, 3), (1, 2), "binary", 1),
    "kernel=image_int4": ((3, 5, 2), (3, 5), 1, "int4", 2),
    "1x1_stride2_uint2": ((5, 5, 3), 1, 2, "uint2", 3),
    "2x2_binary_count=C": ((6, 6, 4), 2, 2, "binary", 4),
}


def pooled(images, kernel, stride):
    """``(N, OH, OW, C)``: each channel's maximum over each window."""
    (kh, kw), (sh, sw) = kernel, stride
    view = sliding_window_view(images, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    return view.max(axis=(-2, -1))


def random_images(fmt, image, count, seed):
    """Images of ``fmt`` values: the first all at the bottom of the range (every maximum is
    the smallest values' largest: negative for signed formats, -1 for binary), the others
    over the whole range, with both extremes set somewhere."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, min(fmt.levels, 3), size=(1, *image))
    levels = np.concatenate([low, rng.integers(0, fmt.levels, size=(count - 1, *image))])
    levels.reshape(count, -1)[1:, :2] = [0, fmt.levels - 1]
    return fmt.level_value(levels)


def stream(dut, images, seed, input_cycles=None):
    """Pool ``images`` (values of the unit's format) with stalls from ``seed`` (none if None);
    the output images and the cycle at which each output beat was accepted."""
    fmt, count = dut.fmt, dut.count
    per_image = dut.out_size[0] * dut.out_size[1] * dut.image[2]
    outputs, cycles = run_stream(dut, i_stream=dut.i_stream, o_stream=dut.o_stream,
                                 inputs=vectors_to_beats(images.reshape(len(images), -1), fmt,
                                                         count),
                                 n_outputs=len(images) * per_image // count, seed=seed,
                                 timeout=2000, input_cycles=input_cycles)
    beats = per_image // count
    assert [int(beat.last) for beat in outputs] == ([0] * (beats - 1) + [1]) * len(images)
    values = beats_to_vectors([beat.data for beat in outputs], fmt, count, per_image)
    return values.reshape(len(images), *dut.out_size, dut.image[2]), cycles


def make(case):
    image, kernel, stride, fmt, count = case
    return MaxPoolUnit(image, kernel, stride=stride, fmt=Format.parse(fmt), count=count)


@pytest.mark.parametrize("name", CASES)
def test_maxima_match_numpy_under_stalls(name):
    case = CASES[name]
    dut = make(case)
    images = random_images(dut.fmt, dut.image, 3, seed=len(name))
    expected = pooled(images, dut.kernel, dut.stride)
    assert dut.out_size == expected.shape[1:3]
    sent, _ = stream(dut, images, seed=5)
    assert np.array_equal(sent, expected)


def test_binary_maximum_is_or():
    """Bipolar codes: bit 1 is +1, so a window's maximum is the OR of its bits (and a window
    of -1 only, bits 0, gives -1)."""
    dut = MaxPoolUnit((2, 4, 1), 2, fmt=Format.binary())
    bits = np.array([[0, 0, 1, 0], [0, 0, 0, 0]])
    sent, _ = stream(dut, (2 * bits - 1)[None, :, :, None], seed=None)
    assert sent.ravel().tolist() == [-1, 1]


@pytest.mark.parametrize("name", ["3x3_stride2_overlap_int8", "2x3_stride1x2_binary"])
def test_reset_at_random_cycles_returns_to_power_on(name):
    dut = make(CASES[name])
    fmt, count = dut.fmt, dut.count
    images = random_images(fmt, dut.image, 4, seed=7)
    expected = pooled(images, dut.kernel, dut.stride).reshape(len(images), -1)
    outputs = stream_words(expected, fmt, count)
    bench = ResetBench(stream_words(images.reshape(len(images), -1), fmt, count),
                       len(outputs[0]), seed=3, points=6, before=2, after=1, timeout=3000)
    run_bench(dut, bench)
    assert len(bench.trials) == 7
    assert check_words(bench.trials, outputs) == []


@pytest.mark.parametrize("image, kernel, stride, count", [
    ((6, 6, 4), 2, 2, 2),
    ((5, 7, 4), 3, 2, 4),
    ((5, 5, 2), (3, 2), 1, 1),
])
def test_one_input_beat_per_cycle(image, kernel, stride, count):
    """At full rate an image takes one cycle per input beat, and the last output beat comes
    two cycles after the input beat that completes it."""
    dut = MaxPoolUnit(image, kernel, stride=stride, fmt=Format.uint(3), count=count)
    (height, width, channels), (kh, kw), (sh, sw) = image, dut.kernel, dut.stride
    out_h, out_w = (height - kh) // sh + 1, (width - kw) // sw + 1
    groups = channels // count
    beats = height * width * groups
    # The input beat that completes the last window: its bottom right pixel's last group.
    completing = (((out_h - 1) * sh + kh - 1) * width + (out_w - 1) * sw + kw - 1) * groups \
        + groups - 1
    accepted = []
    _, cycles = stream(dut, np.zeros((3, *image), dtype=np.int64), None, accepted)
    assert np.all(np.diff(accepted) == 1)
    per_image = out_h * out_w * groups
    ends = cycles[per_image - 1::per_image]
    assert list(np.diff(ends)) == [beats] * 2
    assert ends[0] - accepted[0] == completing + dut.latency
    assert dut.cycles == beats


@pytest.mark.parametrize("args, error, message", [
    (((4, 4), 2, {}), TypeError,
     r"^MaxPoolUnit image must be \(height, width, channels\), not \(4, 4\)$"),
    (((4, 4, 2), (2, 0), {}), ValueError,
     r"^MaxPoolUnit kernel must be a positive integer or a pair of them, not \(2, 0\)$"),
    (((4, 4, 2), 2, {"stride": 1.5}), TypeError,
     r"^MaxPoolUnit stride must be a positive integer or a pair of them, not 1\.5$"),
    (((4, 4, 2), 5, {}), ValueError,
     r"^MaxPoolUnit kernel must fit in the image 4x4, not 5x5$"),
    (((4, 4, 2), 2, {"count": 3}), ValueError,
     r"^MaxPoolUnit count must divide the 2 channels, not 3$"),
    (((4, 4, 2), 2, {"count": 0}), ValueError,
     r"^MaxPoolUnit count must be a positive integer, not 0$"),
    (((4, 4, 2), 2, {"fmt": "int8"}), TypeError,
     r"^MaxPoolUnit fmt must be a Format, not 'int8'$"),
])
def test_rejects_bad_parameters(args, error, message):
    image, kernel, options = args
    with pytest.raises(error, match=message):
        MaxPoolUnit(image, kernel, **{"fmt": Format.int(4), **options})


def test_converts_to_verilog_with_a_row_buffer_in_memories():
    """3x3 windows every 2 pixels of a 5x7x4 image: 2 window rows and 3 window columns, 2
    of each can hold a pixel; 2 channel groups of 2 int8 values."""
    dut = make(CASES["3x3_stride2_overlap_int8"])
    text = verilog.convert(dut, name="maxpool")
    assert "module maxpool" in text
    assert "i_stream__payload" in text and "o_stream__ready" in text
    # Window columns 0 and 2 in the first memory of each row slot, column 1 in the second.
    memories = re.findall(r"reg \[15:0\] partial(\d)_(\d) \[(\d+):0\];", text)
    assert sorted(memories) == [("0", "0", "3"), ("0", "1", "3"), ("1", "0", "1"),
                                ("1", "1", "1")]
    assert dut.memory_bits == 2 * 3 * 4 * 8
