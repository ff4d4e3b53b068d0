# amaranth: UnusedElaboratable=no
"""The sliding-window unit in Amaranth's simulator against NumPy's im2col (pad, then
``sliding_window_view``): values and framing under random stalls, a reset at random cycles,
cycles per image, feeding a matrix-vector unit, parameter errors, Verilog."""

import re

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import wiring
from numpy.lib.stride_tricks import sliding_window_view

from hwnn.ir.formats import Format
from hwnn.quant.synthetic import random_dense
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.rtl.window import SlidingWindowUnit
from hwnn.sim.beats import beats_to_vectors, vectors_to_beats
from hwnn.sim.golden import dense_accumulate, output_stage
from hwnn.sim.pysim import run_bench, run_stream
from hwnn.sim.resets import ResetBench, check_words, stream_words

# name: (image, kernel, stride, padding (top, bottom, left, right), width, pad_code,
#        in_count, simd)
CASES = {
    "3x3_pad1_simd=C": ((5, 4, 2), (3, 3), (1, 1), (1, 1, 1, 1), 4, 0, 2, 2),
    "3x2_stride2x1_asym_in<simd": ((6, 5, 4), (3, 2), (2, 1), (1, 0, 0, 1), 3, 7, 2, 4),
    "3x3_stride2_in>simd_pad0x80": ((6, 5, 4), (3, 3), (2, 2), (0, 2, 1, 0), 8, 0x80, 4, 1),
    "1x1_stride2": ((4, 4, 2), (1, 1), (2, 2), (0, 0, 0, 0), 4, 0, 1, 2),
    "kernel=image": ((3, 5, 2), (3, 5), (1, 1), (0, 0, 0, 0), 2, 0, 2, 1),
    "kernel=image_padded": ((3, 4, 2), (3, 4), (1, 1), (2, 1, 3, 0), 4, 15, 1, 2),
    "2x2_stride3_binary": ((7, 6, 2), (2, 2), (3, 3), (1, 1, 1, 0), 1, 1, 1, 1),
    "3x3_pad2_edges_all_padding": ((3, 3, 2), (3, 3), (1, 1), (2, 2, 2, 2), 5, 31, 2, 2),
}


def windows(images, kernel, stride, padding, pad_code):
    """``(N, OH, OW, kh * kw * C)``: every output pixel's window, ``(ky, kx, c)`` flattened."""
    (kh, kw), (sh, sw), (top, bottom, left, right) = kernel, stride, padding
    padded = np.pad(images, ((0, 0), (top, bottom), (left, right), (0, 0)),
                    constant_values=pad_code)
    view = sliding_window_view(padded, (kh, kw), axis=(1, 2))[:, ::sh, ::sw]
    # (N, OH, OW, C, kh, kw) -> (N, OH, OW, kh, kw, C)
    return view.transpose(0, 1, 2, 4, 5, 3).reshape(*view.shape[:3], -1)


def make(case):
    image, kernel, stride, padding, width, pad_code, in_count, simd = case
    return SlidingWindowUnit(image, kernel, width=width, stride=stride, padding=padding,
                             pad_code=pad_code, in_count=in_count, simd=simd)


def expected_windows(case, images):
    _, kernel, stride, padding, _, pad_code, _, _ = case
    return windows(images, kernel, stride, padding, pad_code)


def random_images(case, count, seed):
    image, width = case[0], case[4]
    return np.random.default_rng(seed).integers(0, 1 << width, size=(count, *image))


def stream(dut, images, seed, input_cycles=None):
    """Run ``images`` (raw codes) through ``dut`` with stalls from ``seed`` (none if None);
    the windows sent, one per row, and the cycle at which each output beat was accepted."""
    fmt = Format.uint(dut.width)
    beats = vectors_to_beats(images.reshape(len(images), -1), fmt, dut.in_count)
    window_values = dut.kernel[0] * dut.kernel[1] * dut.image[2]
    per_beat = dut.simd * dut.taps
    per_window = window_values // per_beat
    n_windows = len(images) * dut.out_size[0] * dut.out_size[1]
    outputs, cycles = run_stream(dut, i_stream=dut.i_stream, o_stream=dut.o_stream,
                                 inputs=beats, n_outputs=n_windows * per_window, seed=seed,
                                 timeout=2000, input_cycles=input_cycles)
    assert [int(beat.last) for beat in outputs] == ([0] * (per_window - 1) + [1]) * n_windows
    sent = beats_to_vectors([beat.data for beat in outputs], fmt, per_beat, window_values)
    return sent, cycles


@pytest.mark.parametrize("name", CASES)
def test_windows_match_numpy_under_stalls(name):
    case = CASES[name]
    dut = make(case)
    images = random_images(case, 3, seed=len(name))
    expected = expected_windows(case, images)
    assert dut.out_size == expected.shape[1:3]
    assert dut.window == expected.shape[3]
    # Line buffers of at most twice the rows a window covers, never the whole image.
    (height, width, channels), kh = case[0], case[1][0]
    assert dut.memory_bits == dut.rows * width * channels * case[4]
    assert dut.rows <= 2 * min(kh, height)
    sent, _ = stream(dut, images, seed=5)
    assert np.array_equal(sent, expected.reshape(-1, expected.shape[3]))


@pytest.mark.parametrize("name, taps", [("3x3_pad1_simd=C", 9), ("3x3_pad1_simd=C", 3),
                                        ("3x2_stride2x1_asym_in<simd", 6),
                                        ("3x3_pad2_edges_all_padding", 9),
                                        ("kernel=image_padded", 4), ("2x2_stride3_binary", 2)])
def test_window_order_with_several_taps_a_beat(name, taps):
    """Whole pixels (``simd == C``), ``taps`` kernel positions a beat, still in window order
    (what a hardwired convolution takes with ``taps = kh * kw``): numpy's windows under
    stalls; back to back, each image as long as its output beats or its input."""
    image, kernel, stride, padding, width, pad_code, in_count, _ = CASES[name]
    case = (image, kernel, stride, padding, width, pad_code, in_count, image[2])
    dut = SlidingWindowUnit(image, kernel, width=width, stride=stride, padding=padding,
                            pad_code=pad_code, in_count=in_count, simd=image[2], taps=taps)
    assert dut.memory_bits == taps * dut.rows * image[1] * image[2] * width
    images = random_images(case, 3, seed=taps)
    expected = expected_windows(case, images)
    sent, _ = stream(dut, images, seed=taps)
    assert np.array_equal(sent, expected.reshape(-1, expected.shape[3]))
    _, cycles = stream(dut, images, seed=None)
    ends = cycles[dut.out_beats - 1::dut.out_beats]
    assert list(np.diff(ends)) == [max(dut.out_beats, dut.in_cycles)] * 2


@pytest.mark.parametrize("name", ["3x2_stride2x1_asym_in<simd", "kernel=image_padded"])
def test_reset_at_random_cycles_returns_to_power_on(name):
    case = CASES[name]
    dut = make(case)
    fmt = Format.uint(dut.width)
    images = random_images(case, 4, seed=11)
    expected = expected_windows(case, images)
    outputs = [[word for words in stream_words(image.reshape(-1, image.shape[-1]), fmt,
                                               dut.simd) for word in words]
               for image in expected]
    bench = ResetBench(stream_words(images.reshape(len(images), -1), fmt, dut.in_count),
                       len(outputs[0]), seed=3, points=5, before=2, after=1, timeout=3000)
    run_bench(dut, bench)
    assert len(bench.trials) == 6
    assert check_words(bench.trials, outputs) == []


def cycles_formula(image, kernel, stride, padding, in_count, simd):
    """(cycles to the first output, output beats, input cycles, whether windows dominate) of
    an image, from the geometry. The first window can go once its last pixel has passed the
    input's repacking (one cycle, none if ``in_count == simd``), plus a cycle to the memory,
    one to read it and one to the output register; then windows go out at one beat per
    cycle, while the input comes at ``min(in_count, simd)`` values per cycle. Windows
    dominate when they take longer than the input for the image, and for each window and
    each output row, than the new pixels they need."""
    (height, width, channels), (kh, kw), (sh, sw) = image, kernel, stride
    top, bottom, left, right = padding
    out_h = (height + top + bottom - kh) // sh + 1
    out_w = (width + left + right - kw) // sw + 1
    rate = min(in_count, simd)
    pixels = min(height - 1, kh - 1 - top) * width + min(width, kw - left)
    first = pixels * channels // rate - (in_count == simd) + 3
    out_beats = out_h * out_w * kh * kw * channels // simd
    in_cycles = height * width * channels // rate
    dominate = (out_beats >= in_cycles and sw * simd <= kh * kw * rate
                and sh * width * simd <= out_w * kh * kw * rate)
    return first, out_beats, in_cycles, dominate


@pytest.mark.parametrize("image, kernel, stride, padding, in_count, simd", [
    ((8, 8, 4), 3, 1, 1, 2, 4),
    ((8, 8, 4), 3, 2, (1, 0, 1, 0), 4, 2),
    ((4, 5, 2), (4, 5), 1, (1, 2, 3, 0), 1, 2),
    ((8, 8, 4), 1, 1, 0, 4, 4),
    ((6, 6, 2), 2, 2, 0, 2, 2),
    ((8, 8, 4), 1, 2, 0, 2, 4),
])
def test_cycles_per_image(image, kernel, stride, padding, in_count, simd):
    dut = SlidingWindowUnit(image, kernel, width=2, stride=stride, padding=padding,
                            in_count=in_count, simd=simd)
    first, out_beats, in_cycles, dominate = cycles_formula(image, dut.kernel, dut.stride,
                                                           dut.padding, in_count, simd)
    images = np.zeros((3, *image), dtype=np.int64)
    accepted = []
    _, cycles = stream(dut, images, None, accepted)
    ends = cycles[out_beats - 1::out_beats]
    # Back to back, each image takes as long as its output or its input.
    assert list(np.diff(ends)) == [max(out_beats, in_cycles)] * 2
    assert (dut.out_beats, dut.in_cycles, dut.latency) == (out_beats, in_cycles, first)
    if dominate:
        assert cycles[0] - accepted[0] == first
        assert ends[0] - accepted[0] == first + out_beats - 1


def test_feeds_a_matrix_vector_unit():
    """Windows are the MVAU's input vectors: SWU + MVAU compute a 3x3 convolution."""
    rng = np.random.default_rng(2)
    image, channels_out, simd = (4, 5, 2), 4, 2
    layer = random_dense(rng, 3 * 3 * image[2], channels_out, in_format="int4",
                         weight_format="int3", out_format="uint3", stage="thresholds")
    fmt = layer.input.format
    codes = fmt.level_value(rng.integers(0, fmt.levels, size=(2, *image)))
    swu = SlidingWindowUnit(image, 3, width=fmt.width, padding=1,
                            pad_code=int(fmt.encode(0)), in_count=2, simd=simd)
    mvau = MatrixVectorUnit(layer, pe=2, simd=simd)
    top = Module()
    top.submodules.swu, top.submodules.mvau = swu, mvau
    wiring.connect(top, swu.o_stream, mvau.i_stream)
    outputs, _ = run_stream(top, i_stream=swu.i_stream, o_stream=mvau.o_stream,
                            inputs=vectors_to_beats(codes.reshape(2, -1), fmt, 2),
                            n_outputs=2 * 4 * 5 * channels_out // 2, seed=1)
    values = windows(codes, (3, 3), (1, 1), (1, 1, 1, 1), 0).reshape(-1, 18)
    expected = output_stage(layer, dense_accumulate(layer, values))
    actual = beats_to_vectors([beat.data for beat in outputs], layer.output.format, 2,
                              channels_out)
    assert np.array_equal(actual, expected)


@pytest.mark.parametrize("args, error, message", [
    (((3, 3), 3, {}), TypeError,
     r"^SlidingWindowUnit image must be \(height, width, channels\), not \(3, 3\)$"),
    (((0, 3, 1), 1, {}), ValueError,
     r"^SlidingWindowUnit image height must be a positive integer, not 0$"),
    (((3, 3, 1), 0, {}), ValueError,
     r"^SlidingWindowUnit kernel must be a positive integer or a pair of them, not 0$"),
    (((3, 3, 1), (3,), {}), TypeError,
     r"^SlidingWindowUnit kernel must be a positive integer or a pair of them, not \(3,\)$"),
    (((3, 3, 1), 3, {"stride": True}), TypeError,
     r"^SlidingWindowUnit stride must be a positive integer or a pair of them, not True$"),
    (((3, 3, 1), 3, {"padding": (1, 1, 1)}), TypeError,
     (r"^SlidingWindowUnit padding must be a non-negative integer or 4 of them \(top, bottom, "
     r"left, right\), not \(1, 1, 1\)$")),
    (((3, 3, 1), 3, {"padding": -1}), ValueError,
     (r"^SlidingWindowUnit padding must be a non-negative integer or 4 of them \(top, bottom, "
     r"left, right\), not -1$")),
    (((3, 3, 1), (3, 2), {"padding": (0, 0, 2, 0)}), ValueError,
     (r"^SlidingWindowUnit padding must be smaller than the kernel \(3, 2\) on every side, not "
     r"\(0, 0, 2, 0\) \(top, bottom, left, right\)$")),
    (((3, 3, 1), 4, {}), ValueError,
     r"^SlidingWindowUnit kernel must fit in the image 3x3, not 4x4$"),
    (((3, 3, 1), 6, {"padding": (2, 0, 1, 2)}), ValueError,
     r"^SlidingWindowUnit kernel must fit in the padded image 5x6, not 6x6$"),
    (((3, 3, 4), 3, {"simd": 3}), ValueError,
     r"^SlidingWindowUnit simd must divide the 4 channels, not 3$"),
    (((3, 3, 4), 3, {"in_count": 0}), ValueError,
     r"^SlidingWindowUnit in_count must be a positive integer, not 0$"),
    (((3, 3, 1), 3, {"width": 2.0}), TypeError,
     r"^SlidingWindowUnit width must be a positive integer, not 2\.0$"),
    (((3, 3, 1), 3, {"pad_code": 16}), ValueError,
     r"^SlidingWindowUnit pad_code must be a 4-bit pattern 0\.\.15, not 16$"),
    (((3, 3, 1), 3, {"pad_code": None}), TypeError,
     r"^SlidingWindowUnit pad_code must be an integer, not None$"),
])
def test_rejects_bad_parameters(args, error, message):
    image, kernel, options = args
    with pytest.raises(error, match=message):
        SlidingWindowUnit(image, kernel, **{"width": 4, **options})


def test_converts_to_verilog_with_line_buffers_in_a_memory():
    """3x2 windows every 2 rows of a 6x5x4 image padded 1 on top: output rows cover image
    rows 0-1, 1-3 and 3-5, so two consecutive ones (the last and the next image's first too)
    cover 5 rows at most: 5 row slots of 5 pixels, one 4-value word per pixel."""
    dut = make(CASES["3x2_stride2x1_asym_in<simd"])
    text = verilog.convert(dut, name="swu")
    assert "module swu" in text
    assert "i_stream__payload" in text and "o_stream__ready" in text
    assert re.findall(r"reg \[11:0\] line \[(\d+):0\];", text) == [str(5 * 5 - 1)]
    assert (dut.rows, dut.memory_bits) == (5, 5 * 5 * 4 * 3)
