"""More bad input, as issue 23 found it: what used to pass silently with a wrong result, or end in a traceback,
now ends in ONE line naming the problem and the fix, with nothing written or changed.

The helpers, the quick settings and the pruned checkpoint are those of ``test_bad_inputs.py``.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from test_bad_inputs import (  # noqa: F401 (pruned_checkpoint is a fixture)
    QUICK,
    _assert_one_line_error,
    _cli,
    _files_under,
    _nan_checkpoint,
    pruned_checkpoint,
)
from torch.utils.data import TensorDataset

import harp_prune as hp
from harp_prune import pipeline
from harp_prune.config import build_config
from harp_prune.data import Splits, tensor_dataset
from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.pruning import HarpPruner, Prunable
from harp_prune.training import save_atomic

SMALL_CNN_SPEC = {"name": "small_cnn", "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.3], "std": [0.3]}


def _api_config(out: Path, **values) -> hp.RunConfig:
    return build_config(cli_values={"out_dir": str(out), "progress": False, "pretrain.epochs": 0,
                                    "prune.epochs": 0, "finetune.epochs": 0, **values})


# --- patterns that match nothing used to prune every layer ---

@pytest.mark.parametrize("args,message", [
    (["--prune-exclude", "net.no_such_layer"], "prune.exclude pattern 'net.no_such_layer' matches no prunable layer"),
    (["--prune-exclude", "net.features.0,net.classfier"], "prune.exclude pattern 'net.classfier' matches no"),
    (["--prune-include-parameters", "*.no_such_param"],
     "prune.include_parameters pattern '*.no_such_param' matches no parameter"),
], ids=["exclude", "second-exclude-misspelt", "include-parameters"])
def test_pattern_that_matches_nothing_on_the_command_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, *args], capsys)
    line = _assert_one_line_error(code, stderr, message)
    assert "net.features.0" in line  # the layers that exist, to choose from
    assert _files_under(out) == []  # no config.yaml: refused before the run was recorded


def test_pattern_that_matches_nothing_through_the_api():
    model = build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3])
    with pytest.raises(HarpError, match=r"prune.exclude pattern 'no_such_layer' matches no prunable layer .*"
                                        r"net.features.0, net.features.4, "):
        HarpPruner(0.9, prunable=Prunable(exclude=("no_such_layer",))).attach(model)
    assert not hp.masked_layers(model)  # no layer got a mask


def test_a_number_as_pattern_through_build_config(tmp_path, tiny_splits):
    config = _api_config(tmp_path / "run", **{"prune.exclude": 5})
    with pytest.raises(HarpError, match=r"prune\.exclude pattern '5' matches no prunable layer"):
        pipeline.run(config, splits=tiny_splits)
    assert _files_under(tmp_path / "run") == []


# --- checkpoints damaged inside their tensors: the zip CRCs say so, torch.load does not ---

def _damage_a_tensor(path: Path) -> None:
    """Zero 64 bytes inside the largest stored member (a weight tensor), leaving the archive's CRCs stale."""
    with zipfile.ZipFile(path) as archive:
        member = max(archive.infolist(), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    start = member.header_offset + 30 + len(member.filename.encode()) + len(member.extra)
    middle = start + member.file_size // 2
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))


def test_damaged_checkpoint_to_export(tmp_path, capsys, pruned_checkpoint):  # noqa: F811
    damaged = tmp_path / "m.pt"
    shutil.copy(pruned_checkpoint, damaged)
    _damage_a_tensor(damaged)
    assert torch.load(damaged, weights_only=True)  # torch reads it without noticing
    code, stderr = _cli(["export", str(damaged), "--format", "sparse"], capsys)
    _assert_one_line_error(code, stderr, f"checkpoint {damaged} is damaged: its member")
    assert "fails its CRC check" in stderr and _files_under(tmp_path) == ["m.pt"]


def test_damaged_checkpoint_through_the_api(tmp_path, pruned_checkpoint):  # noqa: F811
    damaged = tmp_path / "m.pt"
    shutil.copy(pruned_checkpoint, damaged)
    _damage_a_tensor(damaged)
    with pytest.raises(HarpError, match=r"fails its CRC check .*; rerun the stage that writes it or give another"):
        hp.load_model(damaged)


# one pre-training epoch on 100 images, selected on 100 more
PRETRAIN = ["pretrain", *QUICK, "--pretrain-epochs", "1", "--data-val-fraction", "0.01"]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained") / "run"
    assert hp.cli.main([*PRETRAIN, "--out-dir", str(out)]) == 0
    return out


def _contents(folder: Path) -> dict[str, bytes]:
    return {name: (folder / name).read_bytes() for name in _files_under(folder)}


def test_damaged_last_checkpoint_on_resume(tmp_path, capsys, pretrained_run):
    out = tmp_path / "run"
    shutil.copytree(pretrained_run, out)
    (out / "pretrain" / "final.pt").unlink()  # as if killed after the epoch
    _damage_a_tensor(out / "pretrain" / "last.pt")
    before = _contents(out)
    code, stderr = _cli([*PRETRAIN, "--out-dir", str(out), "--resume"], capsys)
    _assert_one_line_error(code, stderr, "last.pt is damaged")
    assert _contents(out) == before  # config.yaml too


# --- NaN weights: training stops on them, evaluation must too ---

def test_evaluate_robustness_of_a_model_with_nan_weights(tmp_path, test_batch):
    model, _, _ = hp.load_model(_nan_checkpoint(tmp_path / "n.pt"))
    with pytest.raises(HarpError, match="holds NaN/inf, so its accuracy would mean nothing"):
        hp.evaluate_robustness(model, test_batch, eps=0.1, sweep=None)


# --- resuming under other settings: refused before config.yaml is rewritten ---

@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished `harp run` (no training epochs) at the default sparsity 0.99."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert hp.cli.main(["run", "--out-dir", str(out), *QUICK]) == 0
    return out


def test_resume_a_finished_run_with_another_sparsity(tmp_path, capsys, finished_run):
    out = tmp_path / "run"
    shutil.copytree(finished_run, out)
    before = _contents(out)
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, "--resume", "--sparsity", "0.5"], capsys)
    _assert_one_line_error(code, stderr, "was made with prune.sparsity=0.99, now 0.5")
    assert _contents(out) == before


def test_resume_a_user_model_run_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    record = {"model_spec": {**SMALL_CNN_SPEC, "name": None}, "model": {}, "config": build_config().to_dict()}
    save_atomic(record, out / "pretrain" / "final.pt")
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, "--resume"], capsys)
    line = _assert_one_line_error(code, stderr, "holds a user-defined architecture")
    assert "--model-factory" in line and "'None'" not in line
    assert _files_under(out) == ["pretrain/final.pt"]


# --- empty data ---

def _empty_train(tiny_splits: Splits) -> Splits:
    return Splits(TensorDataset(torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), tiny_splits.val,
                  tiny_splits.test, tiny_splits.info)


def test_run_with_an_empty_train_split(tmp_path, tiny_splits):
    with pytest.raises(HarpError, match=r"the train split holds no examples; give it at least one"):
        pipeline.run(_api_config(tmp_path / "run"), splits=_empty_train(tiny_splits))
    assert _files_under(tmp_path / "run") == []


@pytest.mark.parametrize("args,message", [
    (["--data-train-examples", "5"], "data.train_examples 5 keeps no train image"),
    (["--data-test-examples", "3"], "data.test_examples 3 keeps no test image"),
], ids=["train", "test"])
def test_example_limit_that_keeps_no_image(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, *args], capsys)
    _assert_one_line_error(code, stderr, message)
    assert "set it to at least 10" in stderr and _files_under(out) == []


def test_fashion_mnist_files_without_images(tmp_path, capsys):
    from test_bad_inputs import _fashion_mnist_files, _idx

    paths = _fashion_mnist_files(tmp_path / "fmnist")
    paths["train-images-idx3-ubyte"].write_bytes(_idx(torch.zeros(0, 28, 28).numpy()))
    paths["train-labels-idx1-ubyte"].write_bytes(_idx(torch.zeros(0).numpy()))
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "fmnist"),
                         "--out-dir", str(out), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "fashion-mnist train split holds no images")
    assert _files_under(out) == []


def test_cifar_files_without_images(tmp_path, capsys):
    from test_bad_inputs import _cifar10

    _cifar10(tmp_path / "data", [])
    code, stderr = _cli(["run", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--out-dir",
                         str(tmp_path / "out"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "cifar10 train split holds no images")


@pytest.mark.parametrize("images,labels,message", [
    (torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), "no images given"),
    (torch.rand(40, 1, 8, 8), torch.zeros(30, dtype=torch.long), "40 images but 30 labels"),
    (torch.full((2, 1, 8, 8), float("nan")), torch.zeros(2, dtype=torch.long), "images hold NaN or inf"),
    (torch.rand(2, 1, 8, 8), torch.tensor([0.5, 1.0]), "labels must be a 1-D tensor of whole class indices"),
    (torch.rand(2, 1, 8, 8), torch.zeros(2, 1, dtype=torch.long), "labels must be a 1-D tensor"),
    (torch.rand(2, 1, 8, 8), torch.tensor([0, -1]), "labels must be class indices >= 0, found -1"),
    (torch.rand(2, 1, 8, 8).numpy(), torch.zeros(2, dtype=torch.long), "must be torch tensors"),
], ids=["no-images", "fewer-labels", "nan-images", "fractional-labels", "2d-labels", "negative-label", "numpy"])
def test_bad_tensors(images, labels, message):
    with pytest.raises(HarpError, match=message):
        tensor_dataset(images, labels)


@pytest.mark.parametrize("data,message", [
    ((torch.rand(40, 1, 28, 28), torch.zeros(30, dtype=torch.long)), "40 images but 30 labels"),
    ((torch.zeros(0, 1, 28, 28), torch.zeros(0, dtype=torch.long)), "no images given"),
    ((torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 99, 2])), r"labels must be in \[0, 4\) for a model with 4 "
                                                                r"outputs, found 99"),
], ids=["fewer-labels", "no-images", "label-beyond-the-outputs"])
def test_bad_data_to_evaluate_robustness(data, message):
    model = build_model("small_cnn", (1, 28, 28), 4, [0.3], [0.3])
    with pytest.raises(HarpError, match=message):
        hp.evaluate_robustness(model, data, eps=0.1, sweep=None)


# --- records harp reads back: results.json and metrics.jsonl, edited or written by something else ---

def _report_folder(tmp_path: Path, name: str, content: str) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / name).write_text(content)
    return folder


@pytest.mark.parametrize("name,content,message", [
    ("results.json", "[1, 2, 3]", "holds a JSON list, not the object 'harp run' writes"),
    ("results.json", '{"pruned": 5}', "is not a 'harp run' record: its 'config' is missing or not an object"),
    ("compare.json", '"text"', "holds a JSON str, not the object 'harp compare' writes"),
    ("metrics.jsonl", '{"stage": "prune", "epoch": 0}\n[1, 2]\n', "metrics.jsonl line 2 is not an epoch's record"),
    ("metrics.jsonl", '"text"\n', "metrics.jsonl line 1 is not an epoch's record"),
], ids=["results-list", "results-without-history", "compare-string", "metrics-list-line", "metrics-string-line"])
def test_report_of_a_foreign_record(tmp_path, capsys, name, content, message):
    folder = _report_folder(tmp_path, name, content)
    code, stderr = _cli(["report", str(folder)], capsys)
    _assert_one_line_error(code, stderr, message)
    assert _files_under(folder) == [name]


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', '{"epoch": 0}'], ids=["list", "string", "no-stage"])
def test_resume_with_a_foreign_metrics_line(tmp_path, capsys, pretrained_run, line):
    out = tmp_path / "run"
    shutil.copytree(pretrained_run, out)
    with (out / "metrics.jsonl").open("a") as metrics:
        metrics.write(line + "\n")
    before = _contents(out)
    code, stderr = _cli([*PRETRAIN, "--out-dir", str(out), "--resume"], capsys)
    _assert_one_line_error(code, stderr, "metrics.jsonl line 2 is not an epoch's record")
    assert _contents(out) == before


# --- --model-factory: the user's code fails ---

@pytest.mark.parametrize("source,target,message", [
    ("def build(classes):\n    return None\n", "build", "needs arguments; name a function that takes none"),
    ("def build():\n    raise RuntimeError('no weights here')\n", "build",
     "build() raised RuntimeError: no weights here; fix the function"),
    ("def build(:\n", "build", "failed (SyntaxError"),
    ("import no_such_dependency_of_the_user\n", "build", "cannot import"),
], ids=["needs-an-argument", "raises", "syntax-error", "its-import-fails"])
def test_model_factory_that_fails(tmp_path, capsys, monkeypatch, pruned_checkpoint, source, target,  # noqa: F811
                                  message, request):
    module = f"factory_{request.node.callspec.id.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, stderr = _cli(["export", str(pruned_checkpoint), "--format", "zeroed", "--output", str(tmp_path / "m.pt"),
                         "--model-factory", f"{module}:{target}"], capsys)
    _assert_one_line_error(code, stderr, message)
    assert not (tmp_path / "m.pt").exists()


def test_resume_a_user_model_run_with_its_factory(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "--out-dir", str(out), *QUICK, "--data-val-fraction", "0.01", "--model-factory",
            "user_export_model:build"]
    assert _cli(args, capsys)[0] == 0
    code, stderr = _cli([*args[:-2], "--resume"], capsys)
    _assert_one_line_error(code, stderr, "holds a user-defined architecture")
    assert _cli([*args, "--resume"], capsys)[0] == 0


# --- build_config checks what is pruned and how, not only hp.run ---

@pytest.mark.parametrize("prune,message", [
    ({"layer_types": "conv4d"}, r"unknown prunable layer type\(s\) conv4d \(prune.layer_types\); choose from"),
    ({"method": "lamp", "s2ap_rho": 0.01}, "pruning method 'lamp' does not take prune.s2ap_rho"),
    ({"method": "hydra", "layer_budget": "lamp2"}, "prune.layer_budget 'lamp2' is not a layer budget"),
    ({"init_strategy": "bogus"}, "prune.init_strategy 'bogus' is not a layer budget; choose one of"),
    ({"init_strategy": ["a", "b"]}, "is neither a layer budget name nor a list of numbers"),
    ({"method": "global-magnitude", "s2ap_rho": 0.05}, "does not take prune.s2ap_rho"),
], ids=["layer-type", "option-of-another-method", "layer-budget", "init-strategy", "init-strategy-list",
        "s2ap-without-scores"])
def test_build_config_refuses_what_the_pruner_would(prune, message):
    with pytest.raises(HarpError, match=message):
        build_config(prune=prune)


def test_options_of_the_compared_methods_are_taken():
    config = build_config(compare={"methods": "hydra:lamp,lwm"}, prune={"layer_budget": "erk"})
    assert config.prune.method_options["layer_budget"] == "erk"


@pytest.mark.parametrize("args,message", [
    (["--prune-init-strategy", "bogus"], "prune.init_strategy 'bogus' is not a layer budget"),
    (["--prune-layer-types", "conv2d,lstm"], "unknown prunable layer type(s) lstm (prune.layer_types)"),
    (["--method", "lamp", "--prune-s2ap-rho", "0.01"], "pruning method 'lamp' does not take prune.s2ap_rho"),
], ids=["init-strategy", "layer-type", "option-of-another-method"])
def test_pruning_setting_on_the_command_line(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, *args], capsys)
    _assert_one_line_error(code, stderr, message)
    assert not out.exists()


# --- the public way to list a model's masks, and the documented refusal of harp-channel ---

def test_masked_layers_lists_each_mask_once(pruned_checkpoint):  # noqa: F811
    model, _, _ = hp.load_model(pruned_checkpoint)
    masks = hp.masked_layers(model)
    assert list(masks) == ["net.features.0", "net.features.4", "net.classifier.1", "net.classifier.3"]
    kept = sum(int(layer.mask().sum()) for layer in masks.values())
    assert kept == hp.sparsity_report(model).kept


def test_the_docs_say_how_to_list_masks_and_why_harp_channel_refuses_shared_weights():
    root = Path(__file__).resolve().parents[1]
    pruning = (root / "docs" / "pruning.md").read_text()
    assert "cannot mask input channels of a weight shared by several layers" in pruning
    assert "hp.masked_layers(model)" in pruning and "### masked_layers" in (root / "docs" / "api.md").read_text()
