"""A run killed mid-stage continues with --resume from its last finished epoch, as if never interrupted."""

import os
import signal
import subprocess
import sys
import time

import torch

from harp_prune.cli import main
from harp_prune.training import load_checkpoint

ARGS = ["--no-progress", "--data-train-examples", "200", "--data-val-fraction", "0.05", "--attack-steps", "2",
        "--data-batch-size", "50", "--pretrain-epochs", "5"]


def test_killed_stage_resumes_and_matches_an_uninterrupted_run(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # the killed epochs must run on as many threads as the in-process ones (conftest's), or their floating-point
    # sums are ordered differently: with OMP_NUM_THREADS=1 set outside, the child would run on one
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    process = subprocess.Popen([sys.executable, "-m", "harp_prune.cli", "pretrain", "--out-dir", str(killed), *ARGS],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = killed / "pretrain" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = load_checkpoint(last)["epoch"]
    assert finished < 4, "the stage finished before it could be killed"
    assert not [p for p in (killed / "pretrain").iterdir() if p.suffix == ".tmp"]

    assert main(["pretrain", "--out-dir", str(killed), *ARGS, "--resume"]) == 0
    resumed = load_checkpoint(killed / "pretrain" / "last.pt")
    assert [row["epoch"] for row in resumed["history"]] == list(range(5))

    assert main(["pretrain", "--out-dir", str(clean), *ARGS]) == 0
    reference = load_checkpoint(clean / "pretrain" / "last.pt")
    for key, value in reference["model"].items():
        assert torch.allclose(value.float(), resumed["model"][key].float(), atol=1e-5), key
    # a finished stage is skipped on --resume
    before = (killed / "pretrain" / "final.pt").stat().st_mtime_ns
    assert main(["pretrain", "--out-dir", str(killed), *ARGS, "--resume"]) == 0
    assert (killed / "pretrain" / "final.pt").stat().st_mtime_ns == before
