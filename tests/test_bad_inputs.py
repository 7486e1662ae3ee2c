"""Bad input, as a new user would give it, ends in ONE line naming the problem and the fix, and nothing half-written.

CLI cases run ``harp_prune.cli.main`` in-process (exit code 2, ``harp: error: ...`` on stderr, no traceback);
API cases expect a HarpError. Every case fails before any training starts, so each takes well under a second.
"""

from __future__ import annotations

import builtins
import errno
import gzip
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harp_prune import files, pipeline
from harp_prune.attacks import FGSM, PGD
from harp_prune.cli import main
from harp_prune.config import build_config, read_yaml, save_config
from harp_prune.data import ImageData, datasets, load_dataset
from harp_prune.data.datasets import read_npz
from harp_prune.errors import HarpError
from harp_prune.models import build_model
from harp_prune.pruning import GammaSchedule, HarpPruner, build_pruner
from harp_prune.pruning.rates import check_density, check_sparsity
from harp_prune.results import write_json
from harp_prune.training import load_checkpoint, save_atomic

SRC = str(Path(__file__).resolve().parents[1] / "src")
# tiny settings: whatever is bad must be reported before these would start any work
QUICK = ["--no-progress", "--pretrain-epochs", "0", "--prune-epochs", "0", "--finetune-epochs", "0",
         "--data-train-examples", "100", "--data-test-examples", "50", "--attack-steps", "1",
         "--evaluate-pgd-steps", "1", "--evaluate-eps-sweep", "none"]
NO_SPACE = os.strerror(errno.ENOSPC)


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, NO_SPACE)


def _files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _leftover_temp_files(folder: Path) -> list[str]:
    return [name for name in _files_under(folder) if name.endswith(files.TEMP_SUFFIX)]


def _assert_one_line_error(code: int, stderr: str, message: str) -> str:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("harp: error: ")]
    assert len(errors) == 1, stderr
    assert message in errors[0], errors[0]
    return errors[0]


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


# --- numbers and names on the command line: rejected by config.validate before anything is created ---

BAD_SETTINGS = [
    ("batch-size-0", ["--data-batch-size", "0"], "data.batch_size must be >= 1, got 0"),
    ("batch-size-negative", ["--data-batch-size", "-8"], "data.batch_size must be >= 1, got -8"),
    ("eval-batch-size-0", ["--data-eval-batch-size", "0"], "data.eval_batch_size must be >= 1"),
    ("attack-steps-negative", ["--attack-steps", "-1"], "attack.steps must be >= 1, got -1"),
    ("attack-eps-0", ["--attack-eps", "0"], "attack.eps must be > 0"),
    ("attack-eps-negative", ["--attack-eps", "-0.1"], "attack.eps must be > 0"),
    ("attack-eps-nan", ["--attack-eps", "nan"], "attack.eps must be > 0"),
    ("attack-step-size-0", ["--attack-step-size", "0"], "attack.step_size must be > 0"),
    ("workers-negative", ["--data-workers", "-1"], "data.workers must be >= 0"),
    ("val-fraction-1", ["--data-val-fraction", "1"], "data.val_fraction must be in [0, 1)"),
    ("val-fraction-negative", ["--data-val-fraction", "-0.1"], "data.val_fraction must be in [0, 1)"),
    ("test-examples-0", ["--data-test-examples", "0"], "data.test_examples must be >= 1"),
    ("train-examples-negative", ["--data-train-examples", "-3"], "data.train_examples must be >= 1"),
    ("gamma0-negative", ["--method", "harp-paper", "--prune-gamma0", "-0.01"], "prune.gamma0 must be >= 0"),
    ("pretrain-epochs-negative", ["--pretrain-epochs", "-1"], "pretrain.epochs must be >= 0, got -1"),
    ("finetune-lr-0", ["--finetune-lr", "0"], "finetune.lr must be > 0"),
    ("prune-lr-negative", ["--prune-lr", "-0.1"], "prune.lr must be > 0"),
    ("pgd-steps-0", ["--evaluate-pgd-steps", "0"], "evaluate.pgd_steps must be >= 1"),
    ("pgd-restarts-0", ["--evaluate-pgd-restarts", "0"], "evaluate.pgd_restarts must be >= 1"),
    ("sanity-examples-0", ["--evaluate-sanity-examples", "0"], "evaluate.sanity_examples must be >= 1"),
    ("sparsity-1", ["--sparsity", "1"], "prune.sparsity must be in [0, 1)"),
    ("sparsity-not-a-number", ["--sparsity", "abc"], "config key 'prune.sparsity' must be float"),
    ("seed-not-an-integer", ["--seed", "1.5"], "config key 'seed' must be int"),
]


@pytest.mark.parametrize("args,message", [case[1:] for case in BAD_SETTINGS], ids=[case[0] for case in BAD_SETTINGS])
def test_bad_setting_is_one_line_before_anything_runs(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK, *args], capsys)
    _assert_one_line_error(code, stderr, message)
    assert not out.exists()  # rejected before the out dir (or a config.yaml in it) was made


@pytest.mark.parametrize("args,message", [
    (["--attack-norm", "l3"], "argument --attack-norm: invalid choice: 'l3'"),
    (["--select-on", "train"], "argument --select-on: invalid choice: 'train'"),
    (["--dataset", "cifar-11"], "argument --data-dataset/--dataset: invalid choice: 'cifar-11'"),
], ids=["attack-norm-unknown", "select-on-unknown", "unknown-dataset"])
def test_a_value_outside_the_choices_is_refused_by_the_parser(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as info:
        main(["run", "--out-dir", str(out), *QUICK, *args])
    stderr = capsys.readouterr().err
    assert info.value.code == 2 and message in stderr and "Traceback" not in stderr
    assert not out.exists()


def test_compare_jobs_0(tmp_path, capsys):
    out = tmp_path / "out"
    code, stderr = _cli(["compare", "--out-dir", str(out), "--compare-jobs", "0"], capsys)
    _assert_one_line_error(code, stderr, "compare.jobs must be >= 1")
    assert not out.exists()


@pytest.mark.parametrize("values,message", [
    ({"data.batch_size": 0}, "data.batch_size must be >= 1"),
    ({"data.eval_batch_size": 0}, "data.eval_batch_size must be >= 1"),
    ({"attack.steps": -1}, "attack.steps must be >= 1"),
    ({"prune.method": "harp-paper", "prune.gamma0": -1.0}, "prune.gamma0 must be >= 0"),
    ({"data.val_fraction": 1.5}, "data.val_fraction must be in [0, 1)"),
    ({"data.dataset": "imagenet-21k"}, "unknown data set 'imagenet-21k'"),
], ids=["batch-size", "eval-batch-size", "attack-steps", "gamma0", "val-fraction", "unknown-dataset"])
def test_bad_setting_through_the_python_api(values, message):
    with pytest.raises(HarpError, match=message.replace("[", r"\[").replace(")", r"\)")):
        build_config(cli_values=values)


# --- the config file ---

@pytest.mark.parametrize("content,message", [
    (b"seed: 1\nprune:\n  sparsity: 0.9 \xff\xfe\n", "is not UTF-8 text"),
    (b"seed: [1\n", "is not valid YAML"),
    (b"- 1\n- 2\n", "must hold a mapping of settings"),
    (b"data: 3\n", "'data' in"),
], ids=["not-utf8", "bad-syntax", "top-level-list", "section-not-a-mapping"])
def test_bad_config_file(tmp_path, capsys, content, message):
    config = tmp_path / "config.yaml"
    config.write_bytes(content)
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--config", str(config), "--out-dir", str(out)], capsys)
    _assert_one_line_error(code, stderr, message)
    assert not out.exists()


def test_missing_config_file(tmp_path, capsys):
    code, stderr = _cli(["run", "--config", str(tmp_path / "nope.yaml")], capsys)
    _assert_one_line_error(code, stderr, "no such file and no shipped preset")


def test_non_utf8_config_file_through_the_api(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("out_dir: caf\xe9\n".encode("latin-1"))
    with pytest.raises(HarpError, match=r"not UTF-8 text .*save it as UTF-8"):
        read_yaml(path)


# --- damaged data ---

def _idx(array: np.ndarray) -> bytes:
    """``array`` (uint8) in the IDX format of (Fashion-)MNIST."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def _fashion_mnist_files(folder: Path) -> dict[str, Path]:
    """A small valid Fashion-MNIST (IDX, uncompressed) in ``folder``; returns the paths by file name."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for stem, n in (("train", 60), ("t10k", 20)):
        for kind, array in (("images", rng.integers(0, 256, (n, 28, 28))), ("labels", np.arange(n) % 10)):
            name = f"{stem}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
            paths[name] = folder / name
            paths[name].write_bytes(_idx(array))
    return paths


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])


def _gzip_cut(path: Path) -> None:
    compressed = gzip.compress(path.read_bytes())
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(compressed[: len(compressed) // 2])


def _gzip_damaged(path: Path) -> None:
    compressed = bytearray(gzip.compress(path.read_bytes()))
    compressed[len(compressed) // 2:len(compressed) // 2 + 16] = b"\xff" * 16
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(bytes(compressed))


def _gzip_bad_deflate_block(path: Path) -> None:
    compressed = bytearray(gzip.compress(path.read_bytes()))
    compressed[10:14] = b"\xff" * 4  # right after the gzip header: zlib.error, not an OSError
    path.unlink()
    path.with_name(path.name + ".gz").write_bytes(bytes(compressed))


def _fewer_labels(path: Path) -> None:
    path.write_bytes(_idx(np.arange(59) % 10))


@pytest.mark.parametrize("damage,victim,message", [
    (_truncate, "train-images-idx3-ubyte", "is truncated or corrupted"),
    (_bad_magic, "t10k-images-idx3-ubyte", "is not an IDX file"),
    (_gzip_cut, "train-images-idx3-ubyte", "cannot read IDX file"),
    (_gzip_damaged, "train-images-idx3-ubyte", "cannot read IDX file"),
    (_gzip_bad_deflate_block, "t10k-labels-idx1-ubyte", "cannot read IDX file"),
    (_fewer_labels, "train-labels-idx1-ubyte", "60 images but 59 labels"),
], ids=["truncated", "bad-magic", "gzip-cut", "gzip-damaged", "gzip-bad-block", "fewer-labels"])
def test_damaged_fashion_mnist_files(tmp_path, capsys, damage, victim, message):
    root = tmp_path / "fmnist"
    damage(_fashion_mnist_files(root)[victim])
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--dataset", "fashion-mnist", "--data-root", str(root), "--out-dir", str(out),
                         *QUICK], capsys)
    _assert_one_line_error(code, stderr, message)
    assert _files_under(out) == []  # no config.yaml either: the data failed before the run was set up


def test_fashion_mnist_root_without_files(tmp_path, capsys):
    code, stderr = _cli(["run", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "empty"),
                         "--out-dir", str(tmp_path / "out"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "Fashion-MNIST IDX files (train-images-idx3-ubyte[.gz] etc.) not found")


def _cut_npz(tmp_path: Path) -> Path:
    path = tmp_path / "cut.npz"
    np.savez_compressed(path, train_x=np.zeros((20, 28, 28), np.uint8), train_y=np.zeros(20, np.uint8),
                        test_x=np.zeros((10, 28, 28), np.uint8), test_y=np.zeros(10, np.uint8))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def test_cut_embedded_npz_on_the_command_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(datasets, "EMBEDDED_FILE", str(_cut_npz(tmp_path)))  # an absolute name wins over the folder
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "is missing or damaged")
    assert "reinstall harp-prune" in stderr and _files_under(out) == []


@pytest.mark.parametrize("make,message", [
    (_cut_npz, "is missing or damaged"),
    (lambda tmp_path: tmp_path / "absent.npz", "is missing or damaged"),
], ids=["cut", "absent"])
def test_bad_npz_through_the_api(tmp_path, make, message):
    with pytest.raises(HarpError, match=message):
        read_npz(make(tmp_path), ("train_x",), "fix it")


def test_npz_without_an_array(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, train_x=np.zeros(3))
    with pytest.raises(HarpError, match=r"KeyError.*download it again"):
        read_npz(path, ("train_x", "train_y"), "download it again")


def _cifar10(root: Path, labels: list[int]) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    data = np.zeros((len(labels), 3072), dtype=np.uint8)
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f, protocol=2)


@pytest.mark.parametrize("labels,message", [
    ([0, 3, 12, 1], "cifar10 train labels must be in [0, 10), found 12"),
    ([0, -1, 2, 1], "cifar10 train labels must be in [0, 10), found -1"),
], ids=["too-large", "negative"])
def test_cifar_labels_out_of_range(tmp_path, capsys, labels, message):
    _cifar10(tmp_path / "data", labels)
    out = tmp_path / "out"
    code, stderr = _cli(["run", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--out-dir", str(out),
                         *QUICK], capsys)
    _assert_one_line_error(code, stderr, message)
    assert _files_under(out) == []


def test_cifar_batch_that_is_not_a_pickle(tmp_path, capsys):
    _cifar10(tmp_path, [0, 1])
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x00garbage" * 10)
    code, stderr = _cli(["run", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out-dir",
                         str(tmp_path / "out"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "data_batch_3 is not a readable CIFAR batch")


def test_labels_out_of_range_through_the_api():
    images = np.zeros((3, 1, 4, 4), np.uint8)
    with pytest.raises(HarpError, match=r"test labels must be in \[0, 2\), found 7"):
        ImageData("mine", images, np.array([0, 1, 0]), images, np.array([0, 7, 1]), ("a", "b"))


def test_image_folder_with_a_file_that_is_no_image(tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            Image.new("RGB", (8, 8)).save(tmp_path / split / cls / "0.png")
    (tmp_path / "train" / "dog" / "1.jpg").write_text("this is a text file named like an image")
    code, stderr = _cli(["run", "--dataset", "image-folder", "--data-root", str(tmp_path), "--out-dir",
                         str(tmp_path / "out"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "1.jpg is not a readable image (UnidentifiedImageError); remove it")


def test_svhn_without_scipy(tmp_path, capsys, monkeypatch):
    for name in ("train_32x32.mat", "test_32x32.mat"):
        (tmp_path / name).write_bytes(b"MATLAB 5.0")
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy now raises ImportError
    monkeypatch.setitem(sys.modules, "scipy.io", None)
    code, stderr = _cli(["run", "--dataset", "svhn", "--data-root", str(tmp_path), "--out-dir", str(tmp_path / "out"),
                         *QUICK], capsys)
    _assert_one_line_error(code, stderr, 'pip install "harp-prune[svhn]"')


def test_unknown_dataset_with_eps_given():
    with pytest.raises(HarpError, match="unknown data set 'mnist-on-mars'; choose one of"):
        build_config(cli_values={"data.dataset": "mnist-on-mars", "attack.eps": "0.1", "attack.step_size": "0.02"})


# --- where results go ---

def _not_writable(monkeypatch, folder: Path) -> None:
    """os.access says ``folder`` is read-only (chmod does not stop root, who runs CI in containers)."""
    real_access = os.access
    monkeypatch.setattr(files.os, "access",
                        lambda path, mode, **kw: False if Path(path) == folder else real_access(path, mode, **kw))


def test_out_dir_is_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("my notes")
    code, stderr = _cli(["run", "--out-dir", str(blocker), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "is a file, not a folder")
    assert blocker.read_text() == "my notes"


def test_out_dir_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "results").write_text("my notes")
    code, stderr = _cli(["pretrain", "--out-dir", str(tmp_path / "results" / "run1"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, f"{tmp_path / 'results'} is a file, not a folder")


def test_out_dir_not_writable(tmp_path, capsys, monkeypatch):
    out = tmp_path / "locked"
    out.mkdir()
    _not_writable(monkeypatch, out)
    code, stderr = _cli(["run", "--out-dir", str(out), *QUICK], capsys)
    _assert_one_line_error(code, stderr, f"out_dir {out} is not writable")
    assert _files_under(out) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only folders")
def test_out_dir_read_only_by_its_mode(tmp_path, capsys):
    out = tmp_path / "locked"
    out.mkdir(mode=0o500)
    try:
        code, stderr = _cli(["run", "--out-dir", str(out), *QUICK], capsys)
    finally:
        out.chmod(0o700)
    _assert_one_line_error(code, stderr, "is not writable")


def test_evaluate_output_under_a_file_fails_before_evaluating(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(pipeline, "evaluate", lambda *a, **k: pytest.fail("evaluated despite a bad --output"))
    code, stderr = _cli(["evaluate", "--out-dir", str(tmp_path / "out"), "--output",
                         str(tmp_path / "file" / "eval.json"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, "is a file, not a folder")


def test_evaluate_output_is_a_folder(tmp_path, capsys):
    code, stderr = _cli(["evaluate", "--out-dir", str(tmp_path / "out"), "--output", str(tmp_path), *QUICK], capsys)
    _assert_one_line_error(code, stderr, f"--output file {tmp_path} is a folder; give a file path")


def test_evaluate_output_folder_not_writable(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    _not_writable(monkeypatch, locked)
    code, stderr = _cli(["evaluate", "--out-dir", str(tmp_path / "out"), "--output", str(locked / "eval.json"),
                         *QUICK], capsys)
    _assert_one_line_error(code, stderr, "is not writable")
    assert not (tmp_path / "out").exists()  # nothing was prepared, let alone evaluated


# --- checkpoints ---

def _forged(path: Path) -> Path:
    torch.save({"format": "harp-prune-checkpoint", "model": {}}, path)
    return path


def test_forged_checkpoint_through_the_api(tmp_path):
    with pytest.raises(HarpError, match="not a complete harp-prune checkpoint \\(no model_spec\\)"):
        load_checkpoint(_forged(tmp_path / "forged.pt"))


def _nan_checkpoint(path: Path) -> Path:
    """A small_cnn checkpoint with one NaN weight (training stops on those; evaluation must too)."""
    model = build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3])
    state = model.state_dict()
    state["net.features.0.weight"][0, 0, 0, 0] = float("nan")
    spec = {"name": "small_cnn", "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.3], "std": [0.3]}
    return save_atomic({"model_spec": spec, "model": state, "config": {}}, path)


@pytest.mark.parametrize("write,message", [
    (_forged, "not a complete harp-prune checkpoint"),
    (_nan_checkpoint, "the model's net.features.0.weight holds NaN/inf"),
], ids=["forged", "nan-weights"])
def test_bad_checkpoint_to_evaluate(tmp_path, capsys, write, message):
    checkpoint = write(tmp_path / "checkpoint.pt")
    code, stderr = _cli(["evaluate", "--evaluate-checkpoint", str(checkpoint), "--out-dir", str(tmp_path / "out"),
                         "--output", str(tmp_path / "eval.json"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, message)
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.parametrize("write,message", [
    (_forged, "not a complete harp-prune checkpoint"),
    (lambda path: path.write_bytes(b"PK\x03\x04 cut short"), "is corrupted or not a harp-prune checkpoint"),
    (lambda path: torch.save({"state_dict": {}}, path), "is not a harp-prune checkpoint"),
    (lambda path: None, "does not exist"),
    (lambda path: path.write_text('{"natural_acc": 0.79}\n'), "is not a checkpoint (it holds JSON text, not a file "
                                                             "written by torch.save)"),
], ids=["forged", "corrupted", "foreign", "missing", "results-file"])
def test_bad_checkpoint_to_export(tmp_path, capsys, write, message):
    checkpoint = tmp_path / "final.pt"
    write(checkpoint)
    code, stderr = _cli(["export", str(checkpoint), "--format", "zeroed"], capsys)
    error = _assert_one_line_error(code, stderr, message)
    assert "delete" not in error  # the user's file is named for what it is, never to be deleted
    assert _files_under(tmp_path) == (["final.pt"] if checkpoint.exists() else [])


def test_a_failed_command_leaves_no_folder_behind(tmp_path, capsys, monkeypatch):
    """A command that fails before its work creates nothing: evaluate of a run that does not exist (its
    result would have gone to nowhere/finetune/), a run on a data set whose files are absent (runs/default),
    a stage without its input (its config.yaml)."""
    monkeypatch.chdir(tmp_path)
    code, stderr = _cli(["evaluate", "--out-dir", "nowhere", *QUICK], capsys)
    _assert_one_line_error(code, stderr, "does not exist")
    code, stderr = _cli(["run", "--dataset", "cifar10", "--data-root", "absent", *QUICK], capsys)
    _assert_one_line_error(code, stderr, "cifar10")
    for stage in ("prune", "finetune"):  # a stage whose input checkpoint is missing
        code, stderr = _cli([stage, "--out-dir", "nothing-yet", *QUICK], capsys)
        _assert_one_line_error(code, stderr, "does not exist; run the stage that writes it first")
    assert _files_under(tmp_path) == []


# --- exports ---

@pytest.fixture(scope="module")
def pruned_checkpoint(tmp_path_factory) -> Path:
    """A small pruned stage checkpoint (one-shot magnitude pruning of a random small_cnn: no training)."""
    torch.manual_seed(0)
    model = build_model("small_cnn", (1, 28, 28), 10, [0.3], [0.3])
    pruner = build_pruner("global-magnitude", 0.9)
    pruner.attach(model)
    pruner.finalize()
    spec = {"name": "small_cnn", "input_shape": [1, 28, 28], "num_classes": 10, "mean": [0.3], "std": [0.3]}
    path = tmp_path_factory.mktemp("pruned") / "final.pt"
    return save_atomic({"model_spec": spec, "pruning": pruner.describe(), "stage": "finetune",
                        "model": model.state_dict(), "history": [], "config": {}}, path)


def test_export_output_under_a_file(tmp_path, capsys, pruned_checkpoint):
    (tmp_path / "file").write_text("")
    code, stderr = _cli(["export", str(pruned_checkpoint), "--output", str(tmp_path / "file" / "m.pt")], capsys)
    _assert_one_line_error(code, stderr, "is a file, not a folder")
    assert _files_under(tmp_path) == ["file"]


def test_export_output_is_a_folder(tmp_path, capsys, pruned_checkpoint):
    code, stderr = _cli(["export", str(pruned_checkpoint), "--output", str(tmp_path)], capsys)
    _assert_one_line_error(code, stderr, "export output")
    assert "is a folder" in stderr and _files_under(tmp_path) == []


def test_export_output_folder_not_writable(tmp_path, capsys, monkeypatch, pruned_checkpoint):
    _not_writable(monkeypatch, tmp_path)
    code, stderr = _cli(["export", str(pruned_checkpoint), "--output", str(tmp_path / "m.safetensors")], capsys)
    _assert_one_line_error(code, stderr, "is not writable")
    assert _files_under(tmp_path) == []


def _half_then_full(path, *args, **kwargs):
    """A writer that gets half a file onto the disk, then finds it full."""
    Path(path).write_bytes(b"\x00" * 1000)
    raise OSError(errno.ENOSPC, NO_SPACE)


@pytest.mark.parametrize("fmt,writer", [("sparse", "save_sparse"), ("onnx", "export_onnx"), ("slim", "save_slim")])
def test_disk_full_during_export(tmp_path, capsys, monkeypatch, pruned_checkpoint, fmt, writer):
    import harp_prune.export as export

    monkeypatch.setattr(export, writer,
                        lambda *args: _half_then_full(next(a for a in args if isinstance(a, Path))))
    if fmt == "slim":  # the slim plan needs channel masks; the file write is what is tested here
        monkeypatch.setattr(export, "slim_model", lambda model, shape: (model, type("Plan", (), {"gathers": []})))
    output = tmp_path / f"model.{fmt}"
    code, stderr = _cli(["export", str(pruned_checkpoint), "--format", fmt, "--output", str(output)], capsys)
    _assert_one_line_error(code, stderr, f"cannot write {output}: {NO_SPACE}; free some disk space")
    assert _files_under(tmp_path) == []


def test_disk_full_during_zeroed_export(tmp_path, capsys, monkeypatch, pruned_checkpoint):
    monkeypatch.setattr(files.os, "fsync", _no_space)
    code, stderr = _cli(["export", str(pruned_checkpoint), "--format", "zeroed", "--output",
                         str(tmp_path / "m.pt")], capsys)
    _assert_one_line_error(code, stderr, NO_SPACE)
    assert _files_under(tmp_path) == []


# --- a full disk while writing results ---

class _HalfWrittenFile:
    """An open file that takes the first half of a write, then reports a full disk, as write(2) would."""

    def __init__(self, path, mode):
        self._file = builtins.open(path, mode)  # noqa: SIM115 (closed by __exit__, as a real file would be)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._file.close()

    def write(self, data):
        self._file.write(bytes(data)[: len(data) // 2])
        self._file.flush()
        raise OSError(errno.ENOSPC, NO_SPACE)


def test_disk_full_while_saving_a_checkpoint_keeps_the_old_one(tmp_path, monkeypatch):
    spec = {"name": None}
    path = save_atomic({"model_spec": spec, "model": {}, "epoch": 1}, tmp_path / "last.pt")
    monkeypatch.setattr(files, "open", _HalfWrittenFile, raising=False)
    with pytest.raises(HarpError, match=re.escape(f"cannot write {path}: {NO_SPACE}; free some disk space")):
        save_atomic({"model_spec": spec, "model": {}, "epoch": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert _files_under(tmp_path) == ["last.pt"]


def test_disk_full_while_saving_a_new_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "fsync", _no_space)
    with pytest.raises(HarpError, match=NO_SPACE):
        save_atomic({"model_spec": {"name": None}, "model": {}}, tmp_path / "stage" / "best.pt")
    assert _files_under(tmp_path) == []


def test_disk_full_while_writing_json(tmp_path, monkeypatch):
    (tmp_path / "results.json").write_text('{"old": true}')
    monkeypatch.setattr(files, "open", _HalfWrittenFile, raising=False)
    with pytest.raises(HarpError, match=re.escape(f"results.json: {NO_SPACE}")):
        write_json({"new": list(range(1000))}, tmp_path / "results.json")
    monkeypatch.undo()
    assert json.loads((tmp_path / "results.json").read_text()) == {"old": True}
    assert _files_under(tmp_path) == ["results.json"]


def test_disk_full_while_saving_the_config(tmp_path, monkeypatch):
    monkeypatch.setattr(files.os, "fsync", _no_space)
    with pytest.raises(HarpError, match=re.escape(f"config.yaml: {NO_SPACE}")):
        save_config(build_config(), tmp_path / "config.yaml")
    assert _files_under(tmp_path) == []


# --- the CLI's last resort for OS errors no check caught, and real bugs ---

@pytest.mark.parametrize("error,message", [
    (PermissionError(errno.EACCES, "Permission denied", "/srv/runs/x"),
     "/srv/runs/x: Permission denied; check its permissions or choose another path"),
    (OSError(errno.ENOSPC, NO_SPACE, "/srv/runs/x/final.pt"), f"/srv/runs/x/final.pt: {NO_SPACE}; free some"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/srv/runs"), "/srv/runs: Is a directory; that is a folder"),
], ids=["permission", "no-space", "is-a-directory"])
def test_os_error_is_one_line(tmp_path, capsys, monkeypatch, error, message):
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(pipeline, "run", fail)
    code, stderr = _cli(["run", "--out-dir", str(tmp_path / "out"), *QUICK], capsys)
    _assert_one_line_error(code, stderr, message)


def test_a_real_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(pipeline, "run", bug)
    with pytest.raises(ZeroDivisionError):
        main(["run", "--out-dir", str(tmp_path / "out"), *QUICK])


def test_installed_command_exits_2_without_a_traceback(tmp_path):
    (tmp_path / "out").write_text("")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "harp_prune.cli", "run", "--out-dir", str(tmp_path / "out"), *QUICK],
                          capture_output=True, text=True, env=env, timeout=120)
    _assert_one_line_error(done.returncode, done.stderr, "is a file, not a folder")


# --- Python API constructors ---

@pytest.mark.parametrize("build,message", [
    (lambda: PGD(0.1, step_size=0), "step_size must be > 0"),
    (lambda: PGD(0.1, step_size=-0.01), "step_size must be > 0"),
    (lambda: PGD(0.1, 0.025, steps=-1), "needs steps >= 1"),
    (lambda: PGD(0.1, 0.025, steps=0), "needs steps >= 1"),
    (lambda: PGD(0.1, 0.025, restarts=0), "restarts >= 1"),
    (lambda: PGD(0.0, 0.025), "eps must be > 0"),
    (lambda: FGSM(-0.1), "eps must be > 0"),
    (lambda: PGD(0.1, norm="l1"), "supports the norms linf, l2, not 'l1'"),
    (lambda: GammaSchedule(gamma0=-0.01), "gamma0 must be >= 0"),
    (lambda: check_sparsity("abc"), "sparsity must be a number, got 'abc'"),
    (lambda: check_sparsity(None), "sparsity must be a number, got None"),
    (lambda: check_sparsity(1.0), r"sparsity must be in \[0, 1\)"),
    (lambda: check_density([0.1]), r"target density must be a number, got \[0.1\]"),
    (lambda: load_dataset("fashion-mnist-smal"), "unknown data set 'fashion-mnist-smal'; choose one of"),
], ids=["pgd-step-size-0", "pgd-step-size-negative", "pgd-steps-negative", "pgd-steps-0", "pgd-restarts-0",
        "pgd-eps-0", "fgsm-eps-negative", "pgd-norm", "gamma0-negative", "sparsity-text", "sparsity-none",
        "sparsity-1", "density-list", "load-unknown-dataset"])
def test_bad_api_argument(build, message):
    with pytest.raises(HarpError, match=message):
        build()


def test_harp_pruner_with_a_text_sparsity():
    with pytest.raises(HarpError, match="sparsity must be a number, got 'abc'"):
        HarpPruner(sparsity="abc")


def test_run_with_a_model_that_has_nothing_to_prune_fails_before_pretraining(tmp_path, tiny_splits):
    """Used to end in a ZeroDivisionError after the whole pre-training."""
    config = build_config(cli_values={"out_dir": str(tmp_path / "run"), "pretrain.epochs": 1, "progress": False})
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.BatchNorm1d(784))
    with pytest.raises(HarpError, match="no prunable parameter"):
        pipeline.run(config, model=model, splits=tiny_splits)
    assert not (tmp_path / "run" / "pretrain").exists()
