"""The folder tool on real images: Fashion-MNIST written as PNG files into class folders.

Needs the Debian package dataset-fashion-mnist (/usr/share/datasets/fashion-mnist/*.gz,
`apt-get install dataset-fashion-mnist`); skipped with that reason when it is absent.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from scl.cli import main
from scl.data import idx
from scl.data.prepared import load_prepared

pytestmark = pytest.mark.skipif(
    not (idx.DEBIAN_FASHION_DIR / "t10k-images-idx3-ubyte.gz").exists(),
    reason=f"Fashion-MNIST is not installed at {idx.DEBIAN_FASHION_DIR} "
           "(apt-get install dataset-fashion-mnist)")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fashion_pngs(tmp_path_factory):
    from scl.data.folder import write_png_folder

    base = tmp_path_factory.mktemp("fashion")
    folder, _ = idx.fashion_source(base / "raw", download=False)
    data = idx.read_fashion_mnist(folder, splits={"t10k": idx.FASHION_SPLITS["t10k"]})
    return data, write_png_folder(data, base / "pngs", per_class=40)


def test_png_folder_reads_back_bit_for_bit(fashion_pngs, tmp_path):
    data, root = fashion_pngs
    out = tmp_path / "folder.npz"
    assert main(["prepare", "folder", "--root", str(root), "--channels", "1", "--out", str(out)]) == 0
    got = load_prepared(out)
    assert got.images.shape == (400, 28, 28, 1)  # image size from the data: 28, no resize
    assert got.class_names == sorted(n.replace("/", "_") for n in data.class_names)
    index = np.array([int(Path(p).stem) for p in got.paths])
    assert (got.images == data.images[index]).all()  # lossless: PNG in, the same pixels out
    names = [data.class_names[y].replace("/", "_") for y in data.labels[index]]
    assert [got.class_names[y] for y in got.labels] == names


@pytest.mark.slow
def test_fashion_pngs_end_to_end(fashion_pngs, tmp_path):
    """prepare -> train (four short epochs: after one, the head has put every image in one cluster,
    which scl.health rightly fails) -> clusters.csv + sheets -> assign agrees with the run."""
    _, root = fashion_pngs
    npz, run = tmp_path / "folder.npz", tmp_path / "run"
    assert main(["prepare", "folder", "--root", str(root), "--channels", "1", "--out", str(npz)]) == 0
    sets = ["--set", "epochs=4", "--set", "augment=grayscale", "--set", "cnn_width=8", "--set", "batch_size=32",
            "--set", "memory_size=128", "--set", "threads=1", "--set", "save_features=false"]
    # channels 1: params.yaml's folder block says 3, so this run uses its own settings file
    params = tmp_path / "params.yaml"
    text = (ROOT / "params.yaml").read_text()
    marker = "    channels: 3               # 1: grayscale"
    assert marker in text
    params.write_text(text.replace(marker, "    channels: 1"))
    assert main(["train", "--dataset", "folder", "--params", str(params), "--data", str(npz), "--out", str(run),
                 "--no-progress", *sets]) == 0
    assert main(["clusters", "--run", str(run), "--data", str(npz), "--out", str(tmp_path / "rep")]) == 0
    rows = list(csv.DictReader((tmp_path / "rep" / "clusters.csv").open()))
    sheets = sorted(p.stem for p in (tmp_path / "rep" / "sheets").glob("cluster_*.png"))
    assert len(rows) == 400 and sheets == sorted({f"cluster_{int(r['cluster']):02d}" for r in rows})
    assert main(["assign", "--run", str(run), str(root), "--out", str(tmp_path / "a.csv")]) == 0
    assigned = {r["path"]: r["cluster"] for r in csv.DictReader((tmp_path / "a.csv").open())}
    assert [assigned[r["path"]] for r in rows] == [r["cluster"] for r in rows]
