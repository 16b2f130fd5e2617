"""Every variant scores the same whether or not its run was killed after the last checkpoint
(and before metrics.json): the resume path must score what the uninterrupted run scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scl.config import load_params, resolve
from scl.data.prepared import load_prepared, save_prepared
from scl.data.registry import prepare
from scl.train import Trainer

ROOT = Path(__file__).resolve().parents[1]
PARAMS = load_params(ROOT / "params.yaml")


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    full = load_prepared(prepare("digits", folder / "digits.npz"))
    idx = np.concatenate([np.flatnonzero(full.labels == c)[:40] for c in range(10)])
    return load_prepared(save_prepared(folder / "small.npz", full.images[idx], full.labels[idx], full.class_names))


@pytest.mark.slow
@pytest.mark.parametrize("variant", list(PARAMS["variants"]))
def test_killed_after_the_last_checkpoint_scores_as_the_uninterrupted_run(variant, small, tmp_path, monkeypatch):
    settings = resolve(PARAMS, "digits", variant, 0, {"epochs": 2, "batch_size": 64, "cnn_width": 8,
                                                       "memory_size": 128, "threads": 1, "save_features": False})
    full = Trainer(settings, small, tmp_path / "full", progress=False).run()

    with monkeypatch.context() as m:  # the process dies once the last checkpoint is on disk
        def killed(self, outs, wall):
            raise Killed

        m.setattr(Trainer, "_finish", killed)
        with pytest.raises(Killed):
            Trainer(settings, small, tmp_path / "killed", progress=False).run()
    assert (tmp_path / "killed" / "checkpoint.pt").exists() and not (tmp_path / "killed" / "metrics.json").exists()
    resumed = Trainer(settings, small, tmp_path / "killed", progress=False).run()

    for k in ("acc", "nmi", "ari", "cluster_sizes"):
        assert resumed[k] == full[k], (variant, k, resumed[k], full[k])
    with np.load(tmp_path / "full" / "assignments.npz") as a, np.load(tmp_path / "killed" / "assignments.npz") as b:
        assert np.array_equal(a["pred"], b["pred"])
