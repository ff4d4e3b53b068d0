"""Generated dataflow designs as Verilog under cocotb (Verilator and Icarus) against the
golden model, and the design folder contract."""

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hwnn.flow.generate import generate, load_design
from hwnn.quant.synthetic import SAMPLE_NETWORKS, sample_network
from hwnn.rtl.folding import LayerFold, fully_parallel, hardwired, unfolded
from hwnn.sim.simulate import simulate


FOLDINGS = {
    "unfolded": unfolded,
    "partial": lambda network: tuple(LayerFold(2, 2) for _ in network.layers),
    "parallel": fully_parallel,
    "hardwired": hardwired,
}


def make_network(kind):
    return sample_network(kind, seed=sorted(SAMPLE_NETWORKS).index(kind))


def random_codes(network, count, seed=0):
    fmt = network.input.format
    rng = np.random.default_rng(seed)
    return fmt.level_value(rng.integers(0, fmt.levels, size=(count, network.in_features)))


#: Every network type at every folding: the whole matrix runs on Icarus (fast to build); on
#: Verilator (10-20 s per build) each type runs at one folding, the foldings taking turns.
MATRIX = [(kind, fold) for kind in SAMPLE_NETWORKS for fold in FOLDINGS]
VERILATOR_SET = [(kind, list(FOLDINGS)[index % len(FOLDINGS)])
                 for index, kind in enumerate(SAMPLE_NETWORKS)]


def build_design(tmp_path_factory, kind, fold):
    network = make_network(kind)
    path = tmp_path_factory.mktemp("designs") / f"{kind}_{fold}"
    return load_design(generate(network, path, fold=FOLDINGS[fold](network)))


@pytest.mark.cocotb
@pytest.mark.slow
@pytest.mark.parametrize("kind, fold", VERILATOR_SET, ids=lambda v: str(v))
def test_verilator_matches_golden_with_and_without_backpressure(tmp_path_factory, kind, fold):
    design = build_design(tmp_path_factory, kind, fold)
    codes = random_codes(design.network, 24)
    steady = simulate(design, codes, simulator="verilator")
    assert steady.passed, [m.describe() for m in steady.mismatches[:3]]
    assert steady.cycles_per_inference <= 1.05 * steady.expected_cycles
    stalled = simulate(design, codes, simulator="verilator", backpressure=True, seed=5)
    assert stalled.passed, [m.describe() for m in stalled.mismatches[:3]]
    assert stalled.total_cycles > steady.total_cycles     # the stalls really happened


@pytest.mark.cocotb
@pytest.mark.parametrize("kind, fold", MATRIX, ids=lambda v: str(v))
def test_icarus_matches_golden_with_backpressure(tmp_path_factory, kind, fold):
    design = build_design(tmp_path_factory, kind, fold)
    codes = random_codes(design.network, 12, seed=1)
    result = simulate(design, codes, simulator="icarus", backpressure=True, seed=2)
    assert result.passed, [m.describe() for m in result.mismatches[:3]]


def test_amaranth_simulator_and_golden_vectors_agree(tmp_path):
    network = make_network("mixed")
    design = load_design(generate(network, tmp_path / "d", fold="auto", max_lanes=16))
    inputs = np.load(design.path / "vectors" / "inputs.npy")
    expected = np.load(design.path / "vectors" / "expected.npy")
    result = simulate(design, inputs, simulator="amaranth", backpressure=True)
    assert result.passed
    assert np.array_equal(result.outputs, expected)


@pytest.mark.cocotb
def test_a_wrong_golden_model_is_reported_as_mismatch(tmp_path):
    network = make_network("int4")
    design = generate(network, tmp_path / "d", fold=unfolded(network))
    # Swap in a network with one weight changed: the RTL no longer agrees with it.
    layer = network.layers[0]
    weights = layer.weights.copy()
    weights[0, 0] = -weights[0, 0] if weights[0, 0] else 1
    changed = type(network)(network.name, (type(layer)(**{**layer.__dict__,
                                                          "weights": weights}),
                                           *network.layers[1:]))
    changed.save(design / "network.hwnn.npz")
    result = simulate(design, random_codes(network, 16), simulator="icarus")
    assert not result.passed
    first = result.mismatches[0]
    assert first.expected != first.actual
    assert f"input {first.index}, layer dense1 (output): expected" in first.describe()


def test_generation_is_deterministic_and_complete(tmp_path):
    network = make_network("ternary")
    first = generate(network, tmp_path / "a", max_lanes=12)
    second = generate(network, tmp_path / "b", max_lanes=12)
    names = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
    assert names == ["manifest.json", "network.hwnn.npz", "ternary.v", "vectors/expected.npy",
                     "vectors/inputs.npy"]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["lanes"] <= 12
    assert manifest["cycles_per_inference"] == max(layer["cycles"] for layer in
                                                   manifest["layers"])
    assert manifest["input"]["signals"]["payload"] in (first / "ternary.v").read_text()


def test_design_files_honour_the_umask(tmp_path):
    network = make_network("int4")
    umask = os.umask(0o027)
    try:
        path = generate(network, tmp_path / "d", fold=unfolded(network))
    finally:
        os.umask(umask)
    for item in [path, *path.rglob("*")]:
        expected = 0o750 if item.is_dir() else 0o640
        assert oct(stat.S_IMODE(item.stat().st_mode)) == oct(expected), item


GENERATE_SCRIPT = """
import sys
from pathlib import Path
import hwnn
from hwnn.flow.generate import generate
from hwnn.quant.synthetic import sample_network
assert Path(hwnn.__file__).is_relative_to(sys.argv[1]), hwnn.__file__
generate(sample_network("int4", seed=0), sys.argv[2], max_lanes=4)
"""


def test_designs_do_not_depend_on_where_hwnn_is_installed(tmp_path):
    package = Path(__import__("hwnn").__file__).parent
    outputs = []
    for install in (tmp_path / "a", tmp_path / "elsewhere" / "deeper" / "b"):
        shutil.copytree(package, install / "hwnn",
                        ignore=shutil.ignore_patterns("__pycache__"))
        out = tmp_path / f"design_{install.name}"
        subprocess.run([sys.executable, "-c", GENERATE_SCRIPT, str(install), str(out)],
                       check=True, cwd=tmp_path, env=os.environ | {"PYTHONPATH": str(install)})
        outputs.append(out)
    names = sorted(p.relative_to(outputs[0]) for p in outputs[0].rglob("*") if p.is_file())
    for name in names:
        assert (outputs[0] / name).read_bytes() == (outputs[1] / name).read_bytes(), name
    text = (outputs[0] / "int4.v").read_text()
    assert "hwnn/rtl/" in text                   # source locations kept, relative
    assert str(tmp_path) not in text
    assert not re.findall(r'"/[^"]*"', text), re.findall(r'"/[^"]*"', text)[:3]


def test_generate_refuses_to_overwrite_other_folders_and_bad_folding(tmp_path):
    network = make_network("int8")
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="is not an hwnn design folder; refusing"):
        generate(network, precious)
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match=r"pe must divide its 6 outputs \(1, 2, 3, 6\), not 4"):
        generate(network, tmp_path / "bad", fold=(LayerFold(4, 1), LayerFold(1, 1)))
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["precious"]


def test_simulate_refuses_bad_inputs(tmp_path):
    network = make_network("int8")
    design = load_design(generate(network, tmp_path / "d", fold=unfolded(network)))
    with pytest.raises(ValueError, match=r"must have shape \(N, 8\) for this design, not "
                                         r"\(3, 7\)"):
        simulate(design, np.zeros((3, 7), dtype=np.int64))
    with pytest.raises(ValueError, match=r"Input 1 holds codes outside the design's input "
                                         r"format uint8 \(0..255\)"):
        simulate(design, np.array([[0] * 8, [256] + [0] * 7]))
    with pytest.raises(ValueError, match="must be integer codes of format uint8"):
        simulate(design, np.zeros((2, 8)))
    with pytest.raises(ValueError, match="Unknown simulator 'modelsim'"):
        simulate(design, np.zeros((2, 8), dtype=np.int64), simulator="modelsim")
