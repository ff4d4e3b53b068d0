"""What the tops report of their hardware (``structure()``) is what they elaborate: the
estimator reads the components, so a memory they forget is area it never sees."""

from collections import Counter

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Fragment, Module, Shape
from amaranth.lib import memory

from hwnn.arch import architecture
from hwnn.ir.formats import Format
from hwnn.quant.synthetic import random_cnn, random_dense, random_network, sample_network
from hwnn.rtl.mvau import MatrixVectorUnit
from hwnn.rtl.structure import Memory, Structure, varying_columns
from hwnn.rtl.systolic import SystolicArray, SystolicParams


def elaborated_memories(top) -> Counter:
    """``(depth, width, contents)`` of every memory in the elaborated design (contents None
    for a memory without initial contents)."""
    found = Counter()

    def walk(fragment):
        for origin in fragment.origins or ():
            if isinstance(origin, memory.Memory):
                init = [int(word) for word in origin.init]
                found[(origin.depth, Shape.cast(origin.shape).width,
                       tuple(init) if any(init) else None)] += 1
        for sub, _name, _src in fragment.subfragments:
            walk(sub)

    walk(Fragment.get(top, None))
    return found


def reported_memories(structure: Structure) -> Counter:
    return Counter((m.depth, m.width, m.contents if m.contents and any(m.contents) else None)
                   for m in structure.memories if m.depth > 0)


NETWORKS = {
    "int8-requant": lambda: sample_network("int8"),
    "binary": lambda: sample_network("binary"),
    "ternary-thresholds": lambda: random_network(
        np.random.default_rng(5), [24, 12, 6], weight_formats=["ternary", "int4"],
        act_formats=["uint2"], input_format="uint4", stages=["thresholds"], name="t"),
}
ARCHS = {"dataflow": {"max_lanes": 8}, "systolic": {"array": "4x4"}, "sparse": {"pes": 3}}
#: Networks on images, for the architectures that build them: a padded convolution, an
#: overlapping pool, a depthwise convolution, a dense layer.
IMAGE_NETWORKS = {
    "cnn": lambda: random_cnn(np.random.default_rng(6), (6, 6, 2), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=1, weight_format="int4",
                        out_format="uint3", stage="thresholds")),
        ("maxpool2d", dict(kernel=3, stride=2)),
        ("conv2d", dict(out_channels=4, kernel=2, depthwise=True, weight_format="int8",
                        out_format="int8", stage="requant")),
        ("dense", dict(out_features=3, weight_format="binary", stage="accumulator")),
    ], input_format="uint4", in_zero_point=3),
    # A 2x2 pool (the overlay folds every pool into the convolution before it).
    "cnn-tiled-pools": lambda: random_cnn(np.random.default_rng(6), (6, 5, 3), [
        ("conv2d", dict(out_channels=5, kernel=3, padding=1, weight_format="int4",
                        out_format="uint3", stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=5, kernel=2, depthwise=True, weight_format="int8",
                        out_format="int8", stage="requant")),
        ("dense", dict(out_features=3, weight_format="binary", stage="accumulator")),
    ], input_format="uint4", in_zero_point=3),
}
#: The image networks each architecture builds.
IMAGE_BUILDS = {"dataflow": ("cnn",), "systolic": ("cnn", "cnn-tiled-pools"), "sparse": ()}


def _builds(arch_name):
    return NETWORKS | {name: IMAGE_NETWORKS[name] for name in IMAGE_BUILDS[arch_name]}


@pytest.mark.parametrize("arch_name, kind", [(arch, kind) for arch in ARCHS
                                             for kind in _builds(arch)])
def test_every_memory_a_top_elaborates_is_reported_with_its_contents(kind, arch_name):
    network = _builds(arch_name)[kind]()
    arch = architecture(arch_name)
    params = arch.check(network, arch.params(**ARCHS[arch_name]))
    reported = reported_memories(arch.build(network, params).structure())
    assert reported == elaborated_memories(arch.build(network, params))


@pytest.mark.parametrize("rows, cols", [(2, 4), (3, 5), (4, 2)])
def test_a_rectangular_overlay_reports_its_memories_and_rows_times_cols_multipliers(rows, cols):
    network = sample_network("int8")
    arch = architecture("systolic")
    params = arch.check(network, arch.params(array=f"{rows}x{cols}", batch=3))
    structure = arch.build(network, params).structure()
    assert reported_memories(structure) == elaborated_memories(arch.build(network, params))
    assert [m.count for m in structure.multipliers if m.use == "lanes"] == [rows * cols]
    assert structure.counts["cells"] == rows * cols


def test_every_top_reports_the_same_counts_for_every_network():
    for arch_name, options in ARCHS.items():
        arch = architecture(arch_name)
        names = {frozenset(arch.build(net, arch.check(net, arch.params(**options)))
                           .structure().counts)
                 for net in (f() for f in _builds(arch_name).values())}
        assert len(names) == 1, arch_name


def test_a_memory_checks_its_contents_and_structures_add_up():
    with pytest.raises(ValueError, match="needs 3 words, not 2"):
        Memory("weights", 3, 8, [1, 2])
    one = Structure({"a": 1.0}, memories=[Memory("weights", 2, 4, [1, 2])])
    two = Structure({"a": 2.0, "b": 1.0}, memories=[Memory("fifo", 3, 5)])
    one.merge(two)
    assert one.counts == {"a": 3.0, "b": 1.0}
    assert one.memory_bits(("weights", "fifo", "biases")) == {"weights": 8, "fifo": 15,
                                                               "biases": 0}
    # Bit 0 varies, bit 1 is always set, bit 2 never: one varying column.
    assert varying_columns([0b010, 0b011], 3) == 1


@pytest.mark.parametrize("weight_format, pe, simd", [("int8", 2, 3), ("binary", 4, 9)])
def test_a_depthwise_convolution_reports_its_vector_vector_unit(weight_format, pe, simd):
    """The weight ROM holds each channel's ``kh * kw`` weights once (no block-diagonal
    zeros), every line buffer copy (one per kernel position of a beat) is reported, and the
    lanes are ``pe * simd``."""
    from hwnn.rtl.convunit import ConvolutionUnit
    layer = random_cnn(np.random.default_rng(7), (5, 6, 4), [
        ("conv2d", dict(out_channels=4, kernel=3, padding=1, depthwise=True,
                        weight_format=weight_format, out_format="uint4", stage="requant")),
    ], input_format="uint4", in_zero_point=2).layers[0]
    unit = ConvolutionUnit(layer, pe=pe, simd=simd)
    structure = unit.structure()
    assert reported_memories(structure) == elaborated_memories(unit)
    assert unit.memory_bits["weights"] == layer.weight_bits
    assert [m.use for m in structure.memories].count("line_buffer") == simd
    lanes = sum(m.count for m in structure.multipliers if m.use == "lanes")
    assert lanes == (pe * simd if weight_format == "int8" else 0)


def elaborated_register_bits(top, named="") -> int:
    """Bits of the registers of ``top`` (``$dff`` and ``$adff`` cells in Amaranth's RTLIL,
    before Yosys) whose output's name contains ``named``."""
    m = Module()
    m.submodules.top = top
    bits, cell, width = 0, None, 0
    for line in rtlil.convert(m, ports=[]).splitlines():
        words = line.split()
        if words[:1] == ["cell"]:
            cell = words[1]
        elif words[:2] == ["parameter", "\\WIDTH"]:
            width = int(words[2])
        elif words[:2] == ["connect", "\\Q"] and cell in ("$dff", "$adff") \
                and named in words[2]:
            bits += width
    return bits


@pytest.mark.parametrize("rows, cols, a_format, w_format, max_k, pack", [
    (8, 8, "int8", "int8", 64, 1), (4, 6, "int4", "int4", 8, 2), (3, 5, "uint2", "int2", 4, 3),
    (5, 2, "uint8", "int4", 16, 1)])
def test_the_systolic_array_reports_every_register_it_elaborates(rows, cols, a_format,
                                                                 w_format, max_k, pack):
    array = SystolicArray(SystolicParams(rows, cols, Format.parse(a_format),
                                         Format.parse(w_format), max_k, pack))
    counts = array.structure().counts
    assert counts["cell_bits"] + counts["register_bits"] == elaborated_register_bits(array)
    assert counts["cells"] == rows * cols


@pytest.mark.parametrize("weight_format, in_format", [("int8", "uint8"), ("ternary", "int4"),
                                                      ("binary", "binary")])
def test_a_hardwired_layer_reports_its_adder_graphs_registers(weight_format, in_format):
    layer = random_dense(np.random.default_rng(8), 12, 6, in_format=in_format,
                         weight_format=weight_format, out_format=None, stage="accumulator")
    unit = MatrixVectorUnit(layer, pe=6, simd=12, multipliers="hardwired")
    assert unit.structure().counts["graph_register_bits"] == \
        elaborated_register_bits(unit, named="graph_")
