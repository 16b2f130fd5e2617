"""Classical baselines on raw pixels: `scl.baselines` and `scl baseline`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from scl.baselines import METHODS, BaselineError, cluster, pixels, run_baseline_on, subsample_indices
from scl.cli import main
from scl.data.prepared import save_prepared

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"acc", "nmi", "ari", "method", "dataset", "seed", "n", "subsample", "time_s"}


def blobs(per_class: int = 30, seed: int = 0):
    """3 well-separated classes of 4x4 grayscale images: dark, mid-grey, bright (+ noise)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), per_class)
    images = 30 + 90 * labels[:, None, None, None] + rng.integers(0, 20, size=(len(labels), 4, 4, 1))
    perm = rng.permutation(len(labels))
    return images[perm].astype(np.uint8), labels[perm]


@pytest.fixture
def data_file(tmp_path):
    images, labels = blobs()
    return save_prepared(tmp_path / "blobs.npz", images, labels, ["dark", "mid", "bright"])


@pytest.fixture
def params_file(tmp_path):
    """The project's params.yaml with digits cut down to the 3 blob classes."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["datasets"]["digits"]["num_classes"] = 3
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(params))
    return p


def test_pixels_scaled_and_flat():
    x = pixels(np.full((2, 4, 4, 3), 255, np.uint8))
    assert x.shape == (2, 48) and x.dtype == np.float32 and x.max() == 1.0


@pytest.mark.parametrize("method", METHODS)
def test_every_method_separates_blobs(method):
    images, labels = blobs()
    rec = run_baseline_on(method, images, labels, 3, seed=0, dataset="blobs")
    assert KEYS <= set(rec)
    assert rec["n"] == 90 and rec["subsample"] is None
    if method != "nmf":  # NMF's argmax of W is not a distance-based partition
        assert rec["acc"] == 1.0 and rec["nmi"] == pytest.approx(1.0) and rec["ari"] == pytest.approx(1.0)
    assert 0.0 <= rec["acc"] <= 1.0


def test_subsample_is_seeded_and_respected():
    a, b = subsample_indices(100, 40, 3), subsample_indices(100, 40, 3)
    assert np.array_equal(a, b) and len(a) == 40 and len(np.unique(a)) == 40
    assert subsample_indices(100, 200, 3) is None and subsample_indices(100, None, 3) is None
    images, labels = blobs()
    rec = run_baseline_on("agglomerative", images, labels, 3, seed=1, max_samples=45)
    assert rec["subsample"] == 45 and rec["n"] == 90 and sum(rec["cluster_sizes"]) == 45


def test_unknown_method_and_unlabelled_data():
    images, labels = blobs()
    with pytest.raises(BaselineError, match="unknown method"):
        run_baseline_on("dbscan", images, labels, 3)
    with pytest.raises(BaselineError, match="unknown method"):
        cluster("dbscan", pixels(images), 3, 0)
    with pytest.raises(BaselineError, match="labels"):
        run_baseline_on("kmeans", images, np.full(len(labels), -1), 3)


def test_cli_writes_metrics(tmp_path, data_file, params_file, capsys):
    out = tmp_path / "results/baselines/digits/kmeans/seed0/metrics.json"
    rc = main(["baseline", "kmeans", "--dataset", "digits", "--data", str(data_file), "--params", str(params_file),
               "--seed", "0", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert KEYS - {"time_s"} <= set(rec)
    # the wall-clock time goes beside the result, so that a rerun reproduces metrics.json byte for byte
    assert "time_s" not in rec and json.loads((out.parent / "timing.json").read_text())["time_s"] >= 0
    assert rec["acc"] == 1.0 and rec["method"] == "kmeans" and rec["dataset"] == "digits" and rec["seed"] == 0
    assert rec["n"] == 90 and rec["subsample"] is None
    captured = capsys.readouterr()
    assert "clustering 90 images" in captured.err  # the progress line
    assert json.loads(captured.out.strip().splitlines()[-1])["acc"] == 1.0
    assert not list(out.parent.glob("*.tmp"))


def test_cli_subsamples_quadratic_methods(tmp_path, data_file, params_file):
    out = tmp_path / "spectral.json"
    rc = main(["baseline", "spectral", "--dataset", "digits", "--data", str(data_file), "--params", str(params_file),
               "--seed", "2", "--max-samples", "60", "--out", str(out)])
    assert rc == 0
    rec = json.loads(out.read_text())
    assert rec["subsample"] == 60 and rec["n"] == 90 and sum(rec["cluster_sizes"]) == 60


def test_cli_errors_exit_2(tmp_path, data_file, params_file, capsys):
    common = ["--params", str(params_file), "--out", str(tmp_path / "m.json")]
    assert main(["baseline", "dbscan", "--dataset", "digits", "--data", str(data_file), *common]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["baseline", "kmeans", "--dataset", "mnist", "--data", str(data_file), *common]) == 2
    assert "unknown dataset" in capsys.readouterr().err
    assert main(["baseline", "kmeans", "--dataset", "digits", "--data", str(tmp_path / "none.npz"), *common]) == 2
    err = capsys.readouterr().err
    assert "none.npz does not exist" in err and "scl prepare digits" in err
    assert not (tmp_path / "m.json").exists()
