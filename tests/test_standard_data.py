"""CIFAR/SVHN/image-folder loaders read files written here in the real formats; augmentation; defaults."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from harp_prune.config import build_config
from harp_prune.data import load_dataset
from harp_prune.errors import HarpError
from harp_prune.training.augment import augment_batch


def _write_cifar_batch(path, n, labels_key, rng, n_classes):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, n_classes, n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", labels_key: labels, b"data": data, b"filenames": [b"a.png"] * n}, f,
                    protocol=2)
    return data, labels


def test_cifar10_pickles(tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    written = [_write_cifar_batch(folder / f"data_batch_{i}", 4, b"labels", rng, 10) for i in range(1, 6)]
    test_data, test_labels = _write_cifar_batch(folder / "test_batch", 3, b"labels", rng, 10)
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f, protocol=2)
    data = load_dataset("cifar10", str(tmp_path))
    assert data.train_x.shape == (20, 3, 32, 32) and data.test_x.shape == (3, 3, 32, 32)
    # row-major 3072 = 3 planes of 32 x 32 (R, G, B)
    assert np.array_equal(data.train_x[5, 1].ravel(), written[1][0][1, 1024:2048])
    assert data.train_y.tolist() == [v for _, labels in written for v in labels]
    assert np.array_equal(data.test_x.reshape(3, -1), test_data) and data.test_y.tolist() == test_labels
    assert data.classes[3] == "class3" and data.num_classes == 10


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    _, train_labels = _write_cifar_batch(folder / "train", 6, b"fine_labels", rng, 100)
    _write_cifar_batch(folder / "test", 2, b"fine_labels", rng, 100)
    data = load_dataset("cifar100", str(folder))  # the extracted folder itself works too
    assert data.train_y.tolist() == train_labels and data.num_classes == 100


def test_cifar_refuses_code_in_pickles(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({b"data": Evil()}, f)
    with pytest.raises(HarpError, match="refusing"):
        load_dataset("cifar10", str(tmp_path))


def test_svhn_mat(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [2], [10], [9]], dtype=np.uint8)
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    savemat(tmp_path / "test_32x32.mat", {"X": x[..., :2], "y": y[:2]})
    data = load_dataset("svhn", str(tmp_path))
    assert data.train_x.shape == (5, 3, 32, 32)
    assert data.train_y.tolist() == [0, 1, 2, 0, 9]
    assert np.array_equal(data.train_x[3, 2], x[:, :, 2, 3])


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    for split, n in (("train", 3), ("val", 1)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = load_dataset("image-folder", str(tmp_path))
    assert data.train_x.shape == (6, 3, 64, 64) and data.test_x.shape == (2, 3, 64, 64)
    assert data.classes == ("cat", "dog") and data.train_y.tolist() == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("name,where", [("cifar10", "cifar-10-batches-py"), ("cifar100", "cifar-100-python"),
                                        ("svhn", "train_32x32.mat"), ("image-folder", "train")])
def test_missing_files_one_line_error(tmp_path, name, where):
    with pytest.raises(HarpError) as info:
        load_dataset(name, str(tmp_path / "nowhere"))
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "nowhere") in message and where in message
    assert "--data-root" in message


def test_augment_batch_is_a_shifted_flipped_crop():
    torch.manual_seed(0)
    images = torch.rand(64, 3, 8, 8)
    out = augment_batch(images, padding=2)
    assert out.shape == images.shape
    changed = 0
    for original, augmented in zip(images, out, strict=True):
        padded = torch.nn.functional.pad(original, (2, 2, 2, 2))
        candidates = [padded[:, i:i + 8, j:j + 8] for i in range(5) for j in range(5)]
        candidates += [c.flip(2) for c in candidates]
        assert any(torch.equal(augmented, c) for c in candidates)
        changed += not torch.equal(augmented, original)
    assert changed > 40  # most images moved or flipped


def test_dataset_defaults_and_override():
    cifar = build_config(cli_values={"data.dataset": "cifar10"})
    assert cifar.attack.eps == pytest.approx(8 / 255) and cifar.attack.step_size == pytest.approx(2 / 255)
    assert cifar.data.augment is True
    assert build_config(cli_values={"data.dataset": "svhn"}).data.augment is None
    mine = build_config(cli_values={"data.dataset": "cifar10", "attack.eps": 0.05, "data.augment": False})
    assert mine.attack.eps == 0.05 and mine.data.augment is False


def test_training_batches_are_augmented_on_the_device(tiny_splits, tmp_path):
    from harp_prune.pipeline import prepare
    from harp_prune.pipeline.stages import _settings

    config = build_config(cli_values={"out_dir": str(tmp_path), "data.augment": True, "progress": False})
    ctx = prepare(config, tiny_splits)
    performance = _settings(ctx, "pretrain").performance
    assert performance.augment
    images, _ = next(iter(ctx.train_loader))
    torch.manual_seed(0)
    augmented = performance.batch(images, ctx.device)
    assert augmented.shape == images.shape and augmented.min() >= 0 and augmented.max() <= 1
    assert not torch.equal(augmented, images)  # cropped/flipped, not the loader's images
    plain = build_config(cli_values={"out_dir": str(tmp_path), "progress": False})
    assert not _settings(prepare(plain, tiny_splits), "pretrain").performance.augment
