"""Systolic designs of the digits MLPs and CNN as Verilog under cocotb (Verilator and Icarus),
with random backpressure, against the golden model; and the systolic design folder
contract."""

import json

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.quant import QuantOptions, from_sklearn, quantize_network
from hwnn.quant.synthetic import random_cnn, random_network, sample_network
from hwnn.rtl import banked
from hwnn.rtl.overlay import OverlayParams, schedule
from hwnn.sim.simulate import simulate


@pytest.fixture(scope="module")
def digits(digits_mlp):
    model, (x_train, x_test, _, _) = digits_mlp
    return from_sklearn(model), x_train, x_test[:40]


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("weights, acts, pixels, array, options, packed", [
    ("int8", "uint8", None, "8x8", {}, 1),
    # uint4 x int4n sums of 4 terms need 10 bits: +-7 * (1 + 2**10) is 14 bits, a third
    # weight 24; with 8-bit pixels (every layer's activations held in 8 bits) 14 and 18.
    ("int4", "uint4", None, "4x8", {"pack": "auto"}, 1),
    ("int4", "uint4", "uint4", "4x8", {"pack": "auto"}, 2),
    # The iCEBreaker's design: one-lane output stages with requantization in logic, the
    # weights loaded after reset (as from the board's flash).
    ("int8", "uint8", None, "2x4", {"requant": "logic", "stage_lanes": 1,
                                    "weights": "loaded"}, 1)])
def test_digits_mlp_on_an_array_matches_golden(tmp_path, digits, weights, acts, pixels, array,
                                               options, packed):
    float_net, x_train, x_test = digits
    quant = QuantOptions(weights=weights, acts=acts, input_format=pixels)
    network = quantize_network(float_net, x_train, quant, name=f"digits_{weights}")
    design = load_design(generate(network, tmp_path / "d", arch="systolic", array=array,
                                  batch=16, **options))
    assert design.manifest["array"]["pack"] == packed
    assert design.manifest["stage_lanes"] == options.get("stage_lanes", 0)
    assert ("load" in design.manifest) == (options.get("weights") == "loaded")
    codes = network.quantize_input(x_test)
    for simulator in ("icarus", "verilator"):
        result = simulate(design, codes, simulator=simulator, backpressure=True, seed=7)
        assert result.passed, [m.describe() for m in result.mismatches[:3]]
    steady = simulate(design, codes, simulator="verilator")
    assert steady.passed
    assert steady.cycles_per_inference == pytest.approx(design.manifest["cycles_per_inference"])
    # The design's counters: each layer fed its tiles once per input row, over all batches.
    for index, layer in enumerate(design.manifest["layers"]):
        assert steady.counters[f"busy__{index}"] == layer["tiles"] * len(codes)
        assert steady.counters[f"cycles__{index}"] > steady.counters[f"busy__{index}"]


def _digits_cnn():
    """The demo's digits CNN (padded 3x3 convolutions, 2x2 pools, dense), int8 / uint8."""
    from hwnn.flow.demo import DIGITS_CNN, digits_split
    from hwnn.quant import load_npz

    x_train, x_test, _, _ = digits_split()
    float_net = load_npz(DIGITS_CNN)
    network = quantize_network(float_net, x_train, QuantOptions(weights="int8", acts="uint8"),
                               name="digits_cnn")
    codes = network.quantize_input(float_net.check_inputs(x_test[:10]))
    return network, codes.reshape(len(codes), -1)


def _strided_cnn():
    """A random CNN: a strided convolution of uneven padding, a depthwise one, a pool."""
    network = random_cnn(np.random.default_rng(3), (7, 6, 3), [
        ("conv2d", dict(out_channels=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0, 2, 1),
                        weight_format="int4", out_format="uint4", stage="requant")),
        ("conv2d", dict(out_channels=5, kernel=3, padding=1, depthwise=True,
                        weight_format="ternary", out_format="uint2", stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("dense", dict(out_features=3, weight_format="int4", stage="accumulator")),
    ], input_format="uint4", in_zero_point=2, name="strided")
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(1).integers(0, fmt.levels,
                                                              size=(7, network.in_features)))
    return network, codes


def _binary_cnn():
    """CNV in small: an 8-bit image, binary weights (one bit each in the weight memory, rows
    of the tiles' padding flagged) and bipolar activations, a pool, channels that fill no
    word of the 3x5 array evenly."""
    network = random_cnn(np.random.default_rng(5), (6, 6, 3), [
        ("conv2d", dict(out_channels=7, kernel=3, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("maxpool2d", dict(kernel=2)),
        ("conv2d", dict(out_channels=6, kernel=2, weight_format="binary", out_format="binary",
                        stage="thresholds")),
        ("dense", dict(out_features=4, weight_format="binary", stage="accumulator")),
    ], input_format="uint8", name="binary_cnn")
    fmt = network.input.format
    codes = fmt.level_value(np.random.default_rng(2).integers(0, fmt.levels,
                                                              size=(5, network.in_features)))
    return network, codes


@pytest.mark.cocotb
@pytest.mark.parametrize("make, array, batch, simulator, options", [
    (_digits_cnn, "4x4", 4, "icarus", {}), (_strided_cnn, "2x4", 3, "icarus", {}),
    (_binary_cnn, "3x5", 2, "icarus", {"weights": "loaded"}),
    pytest.param(_strided_cnn, "2x4", 3, "verilator", {}, marks=pytest.mark.slow)])
def test_convolutional_network_on_an_array_matches_golden(tmp_path, make, array, batch,
                                                          simulator, options):
    network, codes = make()
    design = load_design(generate(network, tmp_path / "d", arch="systolic", array=array,
                                  batch=batch, **options))
    result = simulate(design, codes, simulator=simulator, backpressure=True, seed=5)
    assert result.passed, [m.describe() for m in result.mismatches[:3]]
    steady = simulate(design, codes, simulator=simulator)
    assert steady.passed
    assert steady.cycles_per_inference == pytest.approx(design.manifest["cycles_per_inference"])
    # Each layer fed each of its tiles the rows of each input; a folded pool counts nothing.
    for index, layer in enumerate(design.manifest["layers"]):
        assert steady.counters[f"busy__{index}"] == layer["busy"] // batch * len(codes)
        assert (steady.counters[f"cycles__{index}"] == 0) == ("folded_into" in layer)


@pytest.mark.cocotb
def test_weights_from_many_banks_match_golden_in_icarus(tmp_path, monkeypatch):
    """The binary CNN's weight ROM in banks of 4 words (a CNV-size ROM's are 2048), the
    banks chosen in two registered steps, as Verilog with backpressure."""
    monkeypatch.setattr(banked, "MIN_BANK_DEPTH", 4)
    monkeypatch.setattr(banked, "BANK_BITS", 1)
    network, codes = _binary_cnn()
    design = load_design(generate(network, tmp_path / "d", arch="systolic", array="3x5",
                                  batch=2))
    assert "weights5" in (tmp_path / "d" / design.manifest["verilog"]).read_text()
    # Each layer's tiles hold 3 rows of weights, 4 rows a bank.
    words = 3 * sum(layer["tiles"] for layer in design.manifest["layers"])
    assert design.manifest["array"]["weight_storage"]["banks"] == -(-words // 4) == 34
    result = simulate(design, codes, simulator="icarus", backpressure=True, seed=6)
    assert result.passed, [m.describe() for m in result.mismatches[:3]]


@pytest.mark.parametrize("rows, cols", [(4, 4), (2, 4)])
def test_systolic_manifest_reports_the_schedule(tmp_path, rows, cols):
    network = sample_network("int8")
    path = generate(network, tmp_path / "d", arch="systolic", array=f"{rows}x{cols}", batch=8)
    manifest = json.loads((path / "manifest.json").read_text())
    plan = schedule(network, OverlayParams(rows, cols, 8))
    assert manifest["arch"] == "systolic" and manifest["lanes"] == rows * cols
    assert (manifest["array"]["rows"], manifest["array"]["cols"]) == (rows, cols)
    assert manifest["array"]["weight_storage"]["banks"] == 1
    assert [layer["cycles"] for layer in manifest["layers"]] == \
        [layer["cycles"] for layer in plan["layers"]]
    assert manifest["cycles_per_inference"] == plan["per_inference"]
    assert manifest["counters"]["busy"] == ["busy__0", "busy__1"]
    text = (path / "int8.v").read_text()
    assert "busy__0" in text and "o_stream__payload" in text


def test_packed_manifest_reads_back_the_pack(tmp_path):
    from hwnn.arch import architecture

    network = sample_network("int4")
    path = generate(network, tmp_path / "d", arch="systolic", array="2x4", batch=4, pack="auto")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["array"]["pack"] == 2
    params = architecture("systolic").read(manifest, network)
    assert params.pack == "2" and params.overlay().pack == 2
    # The schedule does not depend on the packing.
    assert manifest["schedule"]["total"] == schedule(network, OverlayParams(2, 4, 4))["total"]


def test_narrow_stages_read_back_from_the_manifest_and_take_their_cycles(tmp_path):
    from hwnn.arch import architecture

    network = sample_network("int8")
    path = generate(network, tmp_path / "d", arch="systolic", array="2x4", batch=4,
                    stage_lanes=2)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["stage_lanes"] == 2
    params = architecture("systolic").read(manifest, network)
    assert params.stage_lanes == 2 and params.overlay().stage_pieces == 2
    assert "\n2x4 array, batch 4, output stages 2 lanes wide: " in \
        architecture("systolic").summary(manifest)
    # Pieces cost cycles: the rows of each output tile's last input tile go two apart.
    wide, narrow = (schedule(network, OverlayParams(2, 4, 4, stage_lanes=lanes))["total"]
                    for lanes in (None, 2))
    assert manifest["schedule"]["total"] == narrow > wide


@pytest.mark.parametrize("kwargs, message", [
    ({"array": "4x0"}, r"^The array must have sides of 1..64, not 4x0$"),
    ({"array": "eight"}, r"^The array must be given as RxC, like 8x8, not 'eight'$"),
    ({"array": "65x65"}, r"^The array must have sides of 1..64, not 65x65$"),
    ({"batch": 0}, r"^OverlayParams batch must be 1..4096, not 0$"),
    ({"pack": "most"}, r"^OverlayParams pack must be 1..8 or 'auto', not 'most'$"),
    ({"pack": "2"}, r"^SystolicParams pack must be at most 1 for uint8 x int8 sums of 8 terms "),
    ({"stage_lanes": 3}, (r"^OverlayParams stage_lanes must divide the 8 columns "
                          r"\(1, 2, 4, 8\), not 3$")),
    ({"stage_lanes": 9}, r"^OverlayParams stage_lanes must be 1..8, not 9$"),
    ({"stage_lanes": -1}, (r"^The output stages' lanes must be 0 \(one per column\) or a "
                           r"divisor of the columns, not -1$")),
])
def test_generate_refuses_arrays_it_cannot_build(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(sample_network("int8"), tmp_path / "d", arch="systolic", **kwargs)
    assert not (tmp_path / "d").exists()


def test_generate_refuses_values_wider_than_the_array_multiplies(tmp_path):
    network = random_network(np.random.default_rng(0), [4, 4], weight_formats=["int4"],
                             act_formats=[], input_format="int17")
    with pytest.raises(ValueError, match=r"^The systolic array multiplies values of up to 16 "
                                         r"bits, but this network's activations need int17$"):
        generate(network, tmp_path / "d", arch="systolic", array="4x4")
    assert not (tmp_path / "d").exists()
