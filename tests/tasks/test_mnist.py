import gzip
import shutil

import pytest
import torch

from normexp.tasks.files import DataError, FileSpec, fetch
from normexp.tasks.mnist.task import FILES, MnistConfig, MnistTask, load_mnist, read_idx


def test_reader_on_the_real_files():
    data = load_mnist()
    assert data["train_images"].shape == (60000, 28, 28) and data["test_images"].shape == (10000, 28, 28)
    assert data["train_labels"].bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert data["test_labels"].bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    pixels = data["train_images"].float() / 255
    assert pixels.mean().item() == pytest.approx(0.1307, abs=1e-4)
    assert pixels.std().item() == pytest.approx(0.3081, abs=1e-4)


def test_split_is_disjoint_and_sized():
    from normexp.models.cnn import CNNConfig

    task = MnistTask(MnistConfig(valid_size=5000), CNNConfig(), seed=1)
    sizes = {k: len(v[1]) for k, v in task.splits.items()}
    assert sizes == {"train": 55000, "valid": 5000, "test": 10000}
    # valid is the last 5000 training images: no training image appears in it
    assert not torch.equal(task.splits["train"][0][-1], task.splits["valid"][0][0])
    first = [b[1] for b in task.train_batches(0)]
    again = [b[1] for b in task.train_batches(0)]
    other = [b[1] for b in task.train_batches(1)]
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])
    assert torch.cat(first).sort().values.equal(task.splits["train"][1].sort().values)


def test_truncated_file_is_refused_with_the_fix(tmp_path, monkeypatch):
    source = fetch(FILES["test_labels"])
    (tmp_path / "mnist").mkdir()
    broken = tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(source.read_bytes()[:2000])
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path))
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.gz.*(corrupt|wrong checksum).*(Delete it|delete it)"):
        fetch(FILES["test_labels"])


def test_recompressed_file_passes_on_its_content(tmp_path, monkeypatch):
    """A mirror's .gz may differ byte-wise; the decompressed content is what is checked."""
    source = fetch(FILES["test_labels"])
    (tmp_path / "mnist").mkdir()
    with gzip.open(source, "rb") as f, gzip.open(tmp_path / "mnist" / source.name, "wb", compresslevel=1) as out:
        shutil.copyfileobj(f, out)
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path))
    assert read_idx(fetch(FILES["test_labels"])).shape == (10000,)


def test_missing_file_names_what_and_where(tmp_path, monkeypatch):
    monkeypatch.setenv("NORMEXP_DATA_ROOT", str(tmp_path / "empty"))
    monkeypatch.setenv("NORMEXP_DOWNLOAD_DIR", str(tmp_path / "downloads"))
    spec = FileSpec("mnist/nothing.gz", sha256="0" * 64, urls=("http://127.0.0.1:9/nothing.gz",))
    with pytest.raises(DataError, match=r"(?s)mnist/nothing.gz.*could not be downloaded.*Download it by hand"):
        fetch(spec)
    assert not list((tmp_path / "downloads").rglob("*.part")), "no half-written download may be left behind"
