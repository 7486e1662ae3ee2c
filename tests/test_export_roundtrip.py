"""Every export format round-trips: exported here, loaded in a fresh Python process, same outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from kept_counts import kept_and_total
from user_export_model import build

import harp_prune as hp
from harp_prune.cli import main
from harp_prune.export import export_checkpoint
from harp_prune.models import build_model
from harp_prune.pruning import build_pruner
from harp_prune.training import load_model, save_atomic

SRC = str(Path(__file__).resolve().parents[1] / "src")
SHAPE = (1, 28, 28)

LOADER = textwrap.dedent("""
    import json, sys
    import numpy as np, torch
    job = json.loads(sys.argv[1])
    x = torch.from_numpy(np.load(job["inputs"]))
    outputs = {}
    for fmt, path in job["files"].items():
        if fmt == "zeroed":  # only torch and the architecture are needed
            from harp_prune.models import build_model
            model = build_model(**job["spec"])
            model.load_state_dict(torch.load(path, weights_only=True))
        elif fmt == "sparse":
            from harp_prune.export import load_sparse
            from harp_prune.models import build_model
            state, meta = load_sparse(path)
            model = build_model(**job["spec"])
            model.load_state_dict(state)
        elif fmt == "slim":
            from harp_prune.export import load_slim
            model = load_slim(path)
        else:  # ONNX needs onnxruntime only
            import onnxruntime
            session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
            outputs[fmt] = session.run(None, {"input": x.numpy()})[0]
            continue
        with torch.no_grad():
            outputs[fmt] = model.eval()(x).numpy()
    np.savez(job["out"], **outputs)
""")


def _checkpoint(model: torch.nn.Module, method: str, sparsity: float, path: Path) -> Path:
    """A stage checkpoint in the pipeline's format, with random (but fixed) scores so masks are non-trivial."""
    torch.manual_seed(1)
    pruner = build_pruner(method, sparsity, **({"input_shape": SHAPE} if method == "harp-channel" else {}))
    pruner.attach(model)
    with torch.no_grad():
        for layer in pruner.layers:
            layer.scores.normal_()
    pruner.finalize()
    spec = {"name": "small_cnn", "input_shape": list(SHAPE), "num_classes": 10, "mean": [0.286], "std": [0.353]}
    save_atomic({"model_spec": spec, "pruning": pruner.describe(), "stage": "finetune", "model": model.state_dict(),
                 "history": [], "best_epoch": 0, "metrics": {}, "config": {}}, path)
    return path


def _model() -> torch.nn.Module:
    """small_cnn with random weights and random BatchNorm statistics (so BN slicing matters)."""
    torch.manual_seed(0)
    model = build_model("small_cnn", SHAPE, 10, [0.286], [0.353])
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
                module.weight.normal_()
                module.bias.normal_()
    return model.eval()


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory, test_batch):
    """Export small_cnn, channel- and weight-pruned, in every format; reload all in one fresh process."""
    root = tmp_path_factory.mktemp("export")
    channel = _checkpoint(_model(), "harp-channel", 0.5, root / "channel.pt")
    weight = _checkpoint(_model(), "harp", 0.9, root / "weight.pt")
    reports = {
        "zeroed": export_checkpoint(weight, "zeroed", root / "w.zeroed.pt"),
        "sparse": export_checkpoint(weight, "sparse", root / "w.sparse.safetensors"),
        "onnx": export_checkpoint(weight, "onnx", root / "w.onnx"),
        "slim": export_checkpoint(channel, "slim", root / "c.slim.pt"),
        "onnx_slim": export_checkpoint(channel, "onnx", root / "c.slim.onnx", slim=True),
    }
    x = test_batch[0][:32].numpy()
    np.save(root / "x.npy", x)
    spec = {"name": "small_cnn", "input_shape": list(SHAPE), "num_classes": 10, "mean": [0.286], "std": [0.353]}
    job = {"inputs": str(root / "x.npy"), "out": str(root / "out.npz"), "spec": spec,
           "files": {fmt: report["output"] for fmt, report in reports.items()}}
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", LOADER, json.dumps(job)], check=True, env=env, timeout=300)
    outputs = dict(np.load(root / "out.npz"))
    expected = {}
    for name, path in (("weight", weight), ("channel", channel)):
        model = load_model(path)[0].eval()
        with torch.no_grad():
            expected[name] = model(torch.from_numpy(x)).numpy()
    return reports, outputs, expected


@pytest.mark.parametrize("fmt, source", [("zeroed", "weight"), ("sparse", "weight"), ("onnx", "weight"),
                                         ("slim", "channel"), ("onnx_slim", "channel")])
def test_fresh_process_reproduces_the_masked_model(round_trip, fmt, source):
    _, outputs, expected = round_trip
    np.testing.assert_allclose(outputs[fmt], expected[source], rtol=0, atol=1e-4 * np.abs(expected[source]).max())
    assert outputs[fmt].argmax(1).tolist() == expected[source].argmax(1).tolist()


def test_zeroed_file_uses_each_layers_learned_mask(round_trip, tmp_path):
    reports, _, _ = round_trip
    state = torch.load(reports["zeroed"]["output"], weights_only=True)
    weight_keys = [k for k in state if k.endswith("weight") and state[k].dim() > 1]
    densities = [float(torch.count_nonzero(state[k])) / state[k].numel() for k in weight_keys]
    total = sum(float(torch.count_nonzero(state[k])) for k in weight_keys) / sum(state[k].numel() for k in weight_keys)
    assert total == pytest.approx(0.1, abs=0.005)
    assert len({round(d, 3) for d in densities}) > 1  # per-layer rates, not one uniform k
    assert not any("scores" in k or "rate" in k for k in state)


def test_sparse_file_is_smaller_and_reports_the_entropy_limit(round_trip):
    report = round_trip[0]["sparse"]
    assert report["bytes"] < 0.3 * report["dense_bytes"]
    assert report["position_bytes"] >= report["entropy_position_bytes"] > 0
    assert report["entropy_total_bytes"] <= report["stored_bytes"]


def test_slim_model_has_fewer_parameters(round_trip):
    report = round_trip[0]["slim"]
    assert report["slim_params"] < 0.75 * report["dense_params"]
    assert round_trip[0]["onnx_slim"]["onnx_max_error"] < 1e-4


def test_cli_exports_and_explains_errors(round_trip, tmp_path, capsys):
    reports, _, _ = round_trip
    source = Path(reports["slim"]["checkpoint"])
    assert main(["export", str(source), "--format", "sparse", "--output", str(tmp_path / "c.st")]) == 0
    assert "entropy limit" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.pt"), "--format", "zeroed"]) == 2
    assert "does not exist" in capsys.readouterr().err
    weight = Path(reports["zeroed"]["checkpoint"])  # weight masks: slimming drops the input channels nobody reads
    assert main(["export", str(weight), "--format", "slim", "--output", str(tmp_path / "w.slim.pt")]) == 0
    assert "parameters left" in capsys.readouterr().out


def test_slim_file_refuses_other_files(tmp_path):
    from harp_prune.errors import HarpError
    from harp_prune.export import load_slim, load_sparse

    torch.save({"a": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(HarpError, match="not a harp slim"):
        load_slim(tmp_path / "x.pt")
    from safetensors.numpy import save_file

    save_file({"a": np.zeros(3, dtype=np.float32)}, str(tmp_path / "x.safetensors"))
    with pytest.raises(HarpError, match="not a harp sparse"):
        load_sparse(tmp_path / "x.safetensors")


@pytest.fixture(scope="module")
def user_run(tiny_data, tmp_path_factory):
    """A user-defined model channel-pruned to 50% by ``hp.run`` (tiny natural training): its final checkpoint,
    the masked model reloaded from it, and test inputs."""
    images = torch.from_numpy(tiny_data.train_x).float() / 255
    labels = torch.from_numpy(tiny_data.train_y)
    test_images = torch.from_numpy(tiny_data.test_x).float() / 255
    splits = hp.Splits(train=hp.tensor_dataset(images[:192], labels[:192]),
                       val=hp.tensor_dataset(images[500:564], labels[500:564]),
                       test=hp.tensor_dataset(test_images[:64], torch.from_numpy(tiny_data.test_y)[:64]))
    out = tmp_path_factory.mktemp("user")
    config = hp.build_config(cli_values={
        "out_dir": str(out), "progress": False, "pretrain.objective": "natural", "pretrain.epochs": 1,
        "prune.epochs": 1, "finetune.epochs": 1, "prune.method": "harp-channel", "prune.sparsity": 0.5,
        "evaluate.pgd_steps": 1, "evaluate.eps_sweep": None, "data.batch_size": 64, "attack.eps": 0.1,
        "attack.step_size": 0.025})
    hp.run(config, model=build(), splits=splits)
    checkpoint = out / "finetune" / "final.pt"
    masked = hp.load_model(checkpoint, model=build())[0].eval()
    return checkpoint, masked, test_images[:32]


def _outputs_of_export(fmt: str, path: str, x: torch.Tensor) -> np.ndarray:
    """Load an export of the user model into a fresh instance of its architecture (or onnxruntime) and run it."""
    from harp_prune.export import load_slim, load_sparse

    if fmt.startswith("onnx"):
        import onnxruntime

        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x.numpy()})[0]
    if fmt == "slim":
        model = load_slim(path, model=build())
    else:
        model = build()
        model.load_state_dict(torch.load(path, weights_only=True) if fmt == "zeroed" else load_sparse(path)[0])
    with torch.no_grad():
        return model.eval()(x).numpy()


USER_EXPORTS = {"zeroed": ("zeroed", False), "sparse": ("sparse", False), "slim": ("slim", False),
                "onnx": ("onnx", False), "onnx_slim": ("onnx", True)}


@pytest.mark.parametrize("way", ["checkpoint", "model", "cli"])
@pytest.mark.parametrize("name", list(USER_EXPORTS))
def test_user_model_exports_round_trip(user_run, tmp_path, capsys, way, name):
    """A non-zoo model, pruned through the API, exported in every format through the API (from the checkpoint
    and from the model in memory) and the CLI with --model-factory, reloaded, equals the masked model."""
    checkpoint, masked, x = user_run
    fmt, slim = USER_EXPORTS[name]
    output = tmp_path / f"user.{name}{'.onnx' if fmt == 'onnx' else ''}"
    if way in ("checkpoint", "model"):
        report = hp.export_checkpoint(checkpoint, fmt, output, slim=slim, model=build()) if way == "checkpoint" \
            else hp.export_model(masked, fmt, output, (1, 28, 28), slim=slim)
        assert report["output"] == str(output) and report["bytes"] == output.stat().st_size
        if "slim_params" in report:  # the pruned channels are really gone
            assert report["slim_params"] < 0.75 * report["dense_params"]
    else:
        flags = ["--slim"] if slim else []
        assert main(["export", str(checkpoint), "--format", fmt, "--output", str(output), *flags,
                     "--model-factory", "user_export_model:build"]) == 0
        capsys.readouterr()
    with torch.no_grad():
        expected = masked(x).numpy()
    got = _outputs_of_export(name, str(output), x)
    error = float(np.abs(got - expected).max())
    print(f"user model, {name} via {way}: max |export - masked| = {error:.2e}")
    assert error <= 1e-4 * np.abs(expected).max()
    assert got.argmax(1).tolist() == expected.argmax(1).tolist()


def test_user_model_export_needs_the_model(user_run, tmp_path, capsys):
    checkpoint, masked, _ = user_run
    kept, total = kept_and_total(masked)
    assert hp.sparsity_report(masked).kept == kept < total  # really pruned, and reported as counted
    with pytest.raises(hp.HarpError, match=r"user-defined model.*model="):
        hp.export_checkpoint(checkpoint, "zeroed", tmp_path / "u.pt")
    assert main(["export", str(checkpoint), "--format", "zeroed", "--output", str(tmp_path / "u.pt")]) == 2
    assert "--model-factory module:function" in capsys.readouterr().err
    for factory, message in (("user_export_model", "not module:function"), ("no_such_module:build", "cannot import"),
                             ("user_export_model:missing", "no function 'missing'"),
                             ("user_export_model:UserExportNet.__init__", "no function")):
        assert main(["export", str(checkpoint), "--format", "zeroed", "--model-factory", factory]) == 2
        err = capsys.readouterr().err
        assert err.startswith("harp: error: --model-factory") and message in err and err.count("\n") == 1
