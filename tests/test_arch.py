# amaranth: UnusedElaboratable=no
"""The architecture registry: lookup, parameters, manifest sections, the options of
``hwnn compile`` generated from the parameters' fields, and the layer kinds each builds."""

import re
from dataclasses import dataclass, field, fields

import numpy as np
import pytest
from amaranth.hdl import Fragment

from hwnn.arch import ARCHITECTURES, Architecture, architecture
from hwnn.arch.dataflow import DataflowParams
from hwnn.arch.systolic import SystolicOverlayParams
from hwnn.cli import main
from hwnn.flow.generate import generate, load_design
from hwnn.ir import MaxPool2d, Network
from hwnn.planning.estimate import design_features
from hwnn.planning.explore import sweep
from hwnn.quant.synthetic import random_conv2d, random_dense, sample_network
from hwnn.rtl.folding import LayerFold
from hwnn.rtl.sparse import SparseParams


def run(capsys, *argv):
    status = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_registry_holds_the_three_architectures_by_name():
    assert list(ARCHITECTURES) == ["dataflow", "systolic", "sparse"]
    for name, arch in ARCHITECTURES.items():
        assert architecture(name) is arch and arch.name == name
    assert architecture("sparse").Params is SparseParams


@pytest.mark.parametrize("name", ["gpu", "", None, "Dataflow"])
def test_an_unknown_architecture_is_refused_naming_the_known_ones(name):
    with pytest.raises(ValueError, match=rf"^Unknown architecture {name!r}; available: "
                                         r"dataflow, systolic, sparse$"):
        architecture(name)


@pytest.mark.parametrize("arch, options, error, message", [
    ("dataflow", {"ram_style": "fast"}, ValueError,
     r"^ram_style must be one of auto, block, logic, not 'fast'$"),
    ("dataflow", {"max_lanes": "8"}, TypeError,
     r"^max_lanes must be a positive integer, not '8'$"),
    ("dataflow", {"fold": 4}, TypeError,
     r"^fold must be 'auto', a fold file or a sequence of LayerFold, not 4$"),
    ("dataflow", {"fold": [(1, 1)]}, TypeError,
     r"^Folding entries must be LayerFold, not \(1, 1\)$"),
    ("systolic", {"array": "2x65"}, ValueError, r"^The array must have sides of 1..64, not 2x65$"),
    ("systolic", {"array": 8}, ValueError,
     r"^The array must be given as RxC, like 8x8, not 8$"),
    ("systolic", {"batch": 4097}, ValueError,
     r"^OverlayParams batch must be 1..4096, not 4097$"),
    ("sparse", {"pes": 65}, ValueError,
     r"^SparseParams pes must be 1..64, not 65$"),
    ("sparse", {"queue_depth": 1.5}, TypeError,
     r"^SparseParams queue_depth must be a positive integer, not 1.5$"),
    ("dataflow", {"pes": 4}, TypeError,
     (r"^'pes' is not an option of the dataflow architecture; its options: fold, max_lanes, "
      r"ram_style$")),
    ("sparse", {"array": "4x4"}, TypeError,
     (r"^'array' is not an option of the sparse architecture; its options: pes, queue_depth, "
      r"index_bits$")),
])
def test_parameters_are_checked_with_exact_messages(arch, options, error, message):
    with pytest.raises(error, match=message):
        architecture(arch).params(**options)


def test_a_fold_sequence_is_kept_as_a_tuple():
    folds = [LayerFold(1, 2), LayerFold(2, 1)]
    assert DataflowParams(fold=folds).fold == tuple(folds)


def test_generate_refuses_an_option_of_another_architecture(tmp_path):
    with pytest.raises(TypeError, match=r"^'pes' is not an option of the systolic "
                                        r"architecture; its options: array, batch, requant, "
                                        r"pack, stage_lanes, weights$"):
        generate(sample_network("int8"), tmp_path / "d", arch="systolic", pes=4)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("arch, options", [
    ("dataflow", {"max_lanes": 6, "ram_style": "logic"}),
    ("systolic", {"array": "4x4", "batch": 3}),
    ("sparse", {"pes": 3, "queue_depth": 2, "index_bits": 2}),
])
def test_the_manifest_section_reads_back_as_the_parameters(arch, options):
    network = sample_network("ternary")
    arch = architecture(arch)
    params = arch.check(network, arch.params(**options))
    top = arch.build(network, params)
    section = arch.manifest(network, top, params)
    assert len(section["layers"]) == len(network.layers)
    read = arch.read(section, network)
    assert read == params
    again = arch.build(network, read)
    assert arch.manifest(network, again, read) == section
    for component in (top, again):
        Fragment.get(component, None)       # they are components that elaborate


@pytest.fixture(scope="module")
def designs(tmp_path_factory):
    """A design folder of the int8 sample network per architecture, with the defaults."""
    folder = tmp_path_factory.mktemp("designs")
    return {name: load_design(generate(sample_network("int8"), folder / name, arch=name))
            for name in ARCHITECTURES}


def test_a_design_folder_knows_its_architecture_and_parameters(designs):
    network = sample_network("int8")
    for name, design in designs.items():
        arch = architecture(name)
        assert design.architecture is arch
        assert design.params == arch.check(network, arch.params())
        assert arch.params(**design.options) == design.params
    assert designs["systolic"].batch == SystolicOverlayParams().batch
    assert designs["dataflow"].batch == designs["sparse"].batch == 1


def test_the_api_and_the_parameters_share_one_default(designs):
    """``SparseParams`` used to default to queues of 4 while ``generate`` and ``hwnn
    compile`` built queues of 8."""
    assert designs["sparse"].manifest["queue_depth"] == SparseParams().queue_depth
    assert designs["systolic"].manifest["batch"] == SystolicOverlayParams().batch


def test_compile_help_lists_every_field_with_its_default(capsys):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, arch in ARCHITECTURES.items():
        for params_field in fields(arch.Params):
            option = "--" + params_field.name.replace("_", "-")
            choices = params_field.metadata.get("choices")
            metavar = "{" + ",".join(choices) + "}" if choices else params_field.name.upper()
            assert (f"{option} {metavar} {name}: "
                    f"{' '.join(params_field.metadata['help'].split())} "
                    f"(default {params_field.default})") in text, option
    assert "--queue-depth QUEUE_DEPTH sparse: activation queue entries per PE (default 8)" \
        in text


@dataclass(frozen=True)
class ToyParams:
    widgets: int = field(default=3, metadata={"help": "widgets per lane"})


class Toy(Architecture):
    """An architecture that only lists its options and design points."""
    name = "toy"
    Params = ToyParams

    def check(self, network, params):
        return params

    def build(self, network, params):
        raise NotImplementedError

    def manifest(self, network, top, params):
        raise NotImplementedError

    def read(self, manifest, network):
        raise NotImplementedError

    def features(self, network, family, params):
        raise NotImplementedError

    def points(self, network):
        return [(f"{n} widgets", {"widgets": n}) for n in (1, 2)]

    def summary(self, manifest):
        raise NotImplementedError


@pytest.fixture()
def toy(monkeypatch):
    monkeypatch.setitem(ARCHITECTURES, "toy", Toy())


def test_a_new_architecture_brings_its_options_and_points(capsys, toy, tmp_path):
    with pytest.raises(SystemExit):
        main(["compile", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--widgets WIDGETS toy: widgets per lane (default 3)" in text
    assert "--arch {dataflow,systolic,sparse,toy}" in text
    network = sample_network("int8").save(tmp_path / "net.hwnn.npz")
    status, out, err = run(capsys, "compile", network, "--widgets", "2", "-o", tmp_path / "d")
    assert (status, out) == (2, "")
    assert err == "hwnn: error: --widgets applies to --arch toy only\n"
    assert [(point.label, point.options) for point in sweep(sample_network("int8"), "toy")] \
        == [("1 widgets", {"widgets": 1}), ("2 widgets", {"widgets": 2})]


def test_an_architecture_option_given_is_refused_for_another_architecture(capsys, tmp_path):
    network = sample_network("int8").save(tmp_path / "net.hwnn.npz")
    for argv, option, arch in [(["--arch", "systolic", "--fold", "auto"], "--fold", "dataflow"),
                               (["--ram-style", "auto", "--arch", "sparse"], "--ram-style",
                                "dataflow"),
                               (["--queue-depth", "8"], "--queue-depth", "sparse")]:
        status, out, err = run(capsys, "compile", network, *argv, "-o", tmp_path / "d")
        assert (status, out) == (2, "")
        assert err == f"hwnn: error: {option} applies to --arch {arch} only\n"
    assert not (tmp_path / "d").exists()


def test_systolic_refuses_a_pool_it_cannot_fold_in_one_line(tmp_path, capsys):
    _, network = _image_network("maxpool2d")
    message = ("The systolic overlay pools only after a convolution, not layer 'p0' at the "
               "network's input")
    chosen = architecture("systolic")
    with pytest.raises(ValueError, match=f"^{message}$"):
        chosen.check(network, chosen.params())
    path = network.save(tmp_path / "net.hwnn.npz")
    status, out, err = run(capsys, "compile", path, "--arch", "systolic", "-o",
                           tmp_path / "design")
    assert (status, out, err) == (2, "", f"hwnn: error: {message}\n")
    assert not (tmp_path / "design").exists()


def _image_network(kind):
    """A convolution then a dense layer, or a pool then a dense layer."""
    rng = np.random.default_rng(0)
    dense = random_dense(rng, 32, 3, in_format="uint4", weight_format="int4",
                         stage="accumulator", name="d0")
    if kind == "conv2d":
        conv = random_conv2d(rng, (4, 4, 1), 2, 3, in_format="uint8", weight_format="int4",
                             out_format="uint4", padding=1, name="c0")
        return "c0", Network("cnn", (conv, dense))
    pool = MaxPool2d("p0", (8, 8), 2, 2, dense.input)
    return "p0", Network("pooled", (pool, dense))


@pytest.mark.parametrize("arch", ["sparse"])
@pytest.mark.parametrize("kind", ["conv2d", "maxpool2d"])
def test_architectures_refuse_layer_kinds_they_do_not_build(arch, kind, tmp_path, capsys):
    layer, network = _image_network(kind)
    message = (rf"The {arch} architecture cannot build layer '{layer}' of kind '{kind}' "
               rf"\(it builds dense layers\)")
    chosen = architecture(arch)
    with pytest.raises(ValueError, match=f"^{message}$"):
        chosen.check(network, chosen.params())
    with pytest.raises(ValueError, match=f"^{message}$"):
        generate(network, tmp_path / "design", arch=arch)
    with pytest.raises(ValueError, match=f"^{message}$"):
        design_features(network, "ice40", arch)
    with pytest.raises(ValueError, match=f"^{message}$"):
        sweep(network, arch)
    path = network.save(tmp_path / "net.hwnn.npz")
    status, out, err = run(capsys, "compile", path, "--arch", arch, "-o", tmp_path / "design")
    assert (status, out) == (2, "")
    assert re.fullmatch(f"hwnn: error: {message}\n", err)
    assert not (tmp_path / "design").exists()
