"""The `folder` set as a tool: a coloured shapes folder written by the test, prepared, trained
briefly, then clusters.csv / contact sheets / export, `scl assign`, and the time estimate."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scl.assign import assign_files, head_probabilities, list_inputs, load_run, run_execution
from scl.cli import main
from scl.config import ConfigError, load_params, resolve, with_data
from scl.data.folder import read_folder
from scl.data.prepared import load_prepared
from scl.data.synthetic import SHAPES, draw_shape, write_shapes_folder
from scl.report.clusters import contact_sheet, export_clusters
from scl.errors import RunFailed
from scl.train import Trainer, train

ROOT = Path(__file__).resolve().parents[1]
TINY = {"backbone": "small_cnn", "cnn_width": 8, "epochs": 1, "batch_size": 16, "memory_size": 64,
        "threads": 1, "save_features": False, "augment": "strong_color"}


def test_shapes_are_deterministic_and_colour_is_random():
    a = np.asarray(draw_shape("star", 16, np.random.default_rng(3)))
    b = np.asarray(draw_shape("star", 16, np.random.default_rng(3)))
    assert a.shape == (16, 16, 3) and (a == b).all()
    colours = {tuple(np.asarray(draw_shape("circle", 16, np.random.default_rng(s)))[0, 0]) for s in range(20)}
    assert len(colours) == 20  # the background (a corner) differs every time: colour says nothing of the class
    with pytest.raises(ValueError, match="unknown shape"):
        draw_shape("blob", 16, np.random.default_rng(0))


@pytest.fixture(scope="module")
def shapes_run(tmp_path_factory):
    """A 3-class shapes folder (30 images each, 16 px), prepared, trained one tiny epoch."""
    base = tmp_path_factory.mktemp("shapes")
    root = write_shapes_folder(base / "imgs", per_class=30, size=16, seed=0, shapes=SHAPES[:3])
    npz = base / "folder.npz"
    assert main(["prepare", "folder", "--root", str(root), "--out", str(npz)]) == 0  # size from the data: 16
    data = load_prepared(npz)
    params = load_params(ROOT / "params.yaml")
    settings = with_data(resolve(params, "folder", "scl", 0, TINY), data.class_names, data.images.shape[1:])
    run = base / "run"
    try:
        train(settings, data, run, progress=False)
    except RunFailed:
        # one tiny epoch on 90 images collapses the head (scl.health marks the run failed, its
        # files are all written): these tests need a run's checkpoint and files, not its quality
        assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    return root, npz, run, data


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_folder_block_takes_classes_and_size_from_the_data(shapes_run):
    _, _, run, data = shapes_run
    assert data.images.shape == (90, 16, 16, 3) and data.class_names == list(SHAPES[:3])
    params = load_params(ROOT / "params.yaml")
    assert params["datasets"]["folder"]["num_classes"] is None and params["datasets"]["folder"]["image_size"] is None
    metrics = json.loads((run / "metrics.json").read_text())
    assert len(metrics["cluster_sizes"]) == 3  # num_classes = the 3 class sub-folders
    with pytest.raises(ConfigError, match="flat folder.*num_classes"):
        with_data(resolve(params, "folder", "scl", 0, TINY), [], (16, 16, 3))


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_assign_reproduces_the_runs_own_assignments(shapes_run, tmp_path):
    """Same preprocessing: `scl assign` on the training folder gives the run's final
    assignment (assignments.npz) image for image, and the CSV says so."""
    root, _, run, data = shapes_run
    out = tmp_path / "a.csv"
    assert main(["assign", "--run", str(run), str(root), "--out", str(out), "--batch-size", "7"]) == 0
    rows = list(csv.DictReader(out.open()))
    with np.load(run / "assignments.npz") as a:
        pred, conf = a["pred"], a["conf"]
    got = {Path(r["path"]).relative_to(root.resolve()).as_posix(): r for r in rows}
    assert len(got) == len(data.paths) == 90
    assert [int(got[p]["cluster"]) for p in data.paths] == pred.tolist()
    assert np.allclose([float(got[p]["confidence"]) for p in data.paths], conf, atol=1e-3)


def _write_timing(run: Path, *executions: dict | None) -> None:
    """timing.json as scl.timing writes it: one record an epoch, `execution` beside the first
    epoch each process trained."""
    epochs = [{"epoch": i + 1, "epoch_time_s": 1.0, **({"execution": e} if e else {})} for i, e in enumerate(executions)]
    (run / "timing.json").write_text(json.dumps({"train_time_s": float(len(epochs)), "epochs": epochs}))


def test_run_execution_is_the_last_training_process_choice(tmp_path):
    cpu = torch.device("cpu")
    amp, cl, why = run_execution(tmp_path, cpu)  # a pulled run: timing.json is in neither git nor DVC
    assert (amp, cl) == ("off", False) and "no execution record" in why
    bf16 = {"device": "cpu", "amp": "bf16", "channels_last": True}
    _write_timing(tmp_path, bf16, None, {"device": "cpu", "amp": "off", "channels_last": False}, None)
    assert run_execution(tmp_path, cpu)[:2] == ("off", False)  # resumed on a float32 CPU: that process finished it
    _write_timing(tmp_path, {"device": "cpu", "amp": "off", "channels_last": False}, bf16)
    amp, cl, why = run_execution(tmp_path, cpu)
    assert (amp, cl) == ("bf16", True) and "as the run trained" in why
    _write_timing(tmp_path, {"device": "cuda:0", "amp": "fp16", "channels_last": True})
    amp, cl, why = run_execution(tmp_path, cpu)  # fp16 autocast is CUDA only: read in float32 here
    assert (amp, cl) == ("off", True) and "fp16" in why
    (tmp_path / "timing.json").write_text("{not json")
    assert run_execution(tmp_path, cpu)[:2] == ("off", False)


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_assign_reads_images_as_the_run_trained(shapes_run, tmp_path, capsys):
    """Default `--amp run`: the execution the run's timing.json records (here rewritten to bf16 +
    channels_last, as `amp: auto` chooses on a CPU with native bf16); explicit flags win."""
    import shutil

    root, _, run, _ = shapes_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    _write_timing(copy, {"device": "cpu", "amp": "bf16", "channels_last": True})
    capsys.readouterr()
    assert main(["assign", "--run", str(copy), str(root), "--out", str(tmp_path / "a.csv")]) == 0
    assert "execution as the run trained (amp bf16, channels_last true)" in capsys.readouterr().err
    assert main(["assign", "--run", str(copy), str(root), "--out", str(tmp_path / "b.csv"), "--amp", "off",
                 "--channels-last", "false"]) == 0
    assert "execution" not in capsys.readouterr().err  # nothing taken from the run
    bf16 = {r["path"]: float(r["confidence"]) for r in csv.DictReader((tmp_path / "a.csv").open())}
    fp32 = {r["path"]: float(r["confidence"]) for r in csv.DictReader((tmp_path / "b.csv").open())}
    assert bf16.keys() == fp32.keys() and len(bf16) == 90
    assert bf16 != fp32  # the two precisions really were used: the confidences differ


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_assign_batches_agree_with_one_image_at_a_time(shapes_run):
    root, _, run, _ = shapes_run
    head = load_run(run, "cpu")
    paths, skipped = list_inputs([str(root / SHAPES[0])], None)
    assert len(paths) == 30 and not skipped
    pred, conf, reasons = assign_files(head, paths, batch_size=8, chunk=11)
    one = np.concatenate([head_probabilities(head, read_folder(root, 16).images[i:i + 1]) for i in range(30)])
    assert pred.tolist() == one.argmax(1).tolist() and np.allclose(conf, one.max(1), atol=1e-5)
    assert reasons == [None] * 30


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_assign_lists_what_it_cannot_read(shapes_run, tmp_path):
    root, _, run, _ = shapes_run
    new = tmp_path / "new"
    new.mkdir()
    draw_shape("circle", 40, np.random.default_rng(9)).save(new / "big.png")  # another size: resized as in prepare
    Image.fromarray(np.full((20, 20), 30000, np.uint16)).save(new / "deep.png")  # 16-bit grayscale
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    (new / "notes.txt").write_text("x")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{new / 'big.png'}\n{tmp_path / 'missing.png'}\n")
    out = tmp_path / "b.csv"
    assert main(["assign", "--run", str(run), str(new), "--list", str(listing), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == ["big.png", "deep.png", "big.png"]
    assert all(0 <= int(r["cluster"]) < 3 for r in rows)
    skipped = {Path(r["path"]).name: r["reason"] for r in csv.DictReader((tmp_path / "b.skipped.csv").open())}
    assert set(skipped) == {"broken.jpg", "notes.txt", "missing.png"}
    assert skipped["missing.png"] == "no such file or folder"


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_assign_refuses_what_it_cannot_use(shapes_run, tmp_path, capsys):
    _, _, run, _ = shapes_run
    assert main(["assign", "--run", str(tmp_path), str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "checkpoint.pt not found" in capsys.readouterr().err
    evil = tmp_path / "evil"
    evil.mkdir()
    torch.save({"settings": {}, "model": {}, "payload": os.system}, evil / "checkpoint.pt")  # a pickled callable
    assert main(["assign", "--run", str(evil), str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "cannot use" in capsys.readouterr().err  # no digest file: refused before unpickling (scl.checkpoint)
    assert main(["assign", "--run", str(run), str(tmp_path / "nothing-here"), "--out", str(tmp_path / "x.csv")]) == 2


@pytest.mark.slow  # uses the trained shapes_run (one tiny epoch, ~10 s once)
def test_cluster_report_csv_sheets_and_export(shapes_run, tmp_path):
    root, npz, run, data = shapes_run
    out, dest = tmp_path / "report", tmp_path / "sorted"
    assert main(["clusters", "--run", str(run), "--data", str(npz), "--out", str(out), "--export", str(dest)]) == 0
    rows = list(csv.DictReader((out / "clusters.csv").open()))
    with np.load(run / "assignments.npz") as a:
        pred = a["pred"]
    assert [Path(r["path"]) for r in rows] == [root.resolve() / p for p in data.paths]
    assert [int(r["cluster"]) for r in rows] == pred.tolist()
    assert [r["class"] for r in rows] == [data.class_names[y] for y in data.labels]
    for c in np.unique(pred):
        sheet = Image.open(out / "sheets" / f"cluster_{c:02d}.png")
        assert sheet.width >= 8 * 64
        links = sorted((dest / f"cluster_{c:02d}").iterdir())
        assert len(links) == int((pred == c).sum())
        assert all(p.is_symlink() and p.resolve().parent.parent == root.resolve() for p in links)
    assert "| cluster | images |" in (out / "index.md").read_text()
    # a second export (copies) replaces the first whole; nothing temporary is left
    export_clusters([root.resolve() / p for p in data.paths], np.zeros(90, np.int64), dest, "copy")
    assert [p.name for p in dest.iterdir()] == ["cluster_00"]
    assert len(list((dest / "cluster_00").iterdir())) == 90
    assert not any(p.is_symlink() for p in (dest / "cluster_00").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "sorted"]


def test_export_names_never_collide(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "x.png").write_bytes(sub.encode())
    dest = export_clusters([tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], np.array([0, 0]), tmp_path / "e",
                           "copy")
    files = sorted((dest / "cluster_00").iterdir())
    assert [p.name for p in files] == ["a__x.png", "b__x.png"]
    assert [p.read_bytes() for p in files] == [b"a", b"b"]


def test_contact_sheet_shows_most_and_least_confident():
    images = np.stack([np.full((4, 4, 3), v, np.uint8) for v in range(20)])
    conf = np.linspace(0.1, 0.9, 20)  # image 19 most confident, image 0 least
    sheet = np.asarray(contact_sheet(images, conf, "t", per_row=3, tile=8))
    top_row_first = sheet[18 + 14 + 2, 4 + 2]  # first tile of the first row
    bottom_row_first = sheet[18 + 14 + 8 + 4 + 14 + 2, 4 + 2]
    assert top_row_first.tolist() == [19, 19, 19] and bottom_row_first.tolist() == [0, 0, 0]


@pytest.mark.slow
def test_time_estimate_leaves_the_run_unchanged(shapes_run, tmp_path, capsys):
    """The estimate times steps on copies under a forked RNG: same seed, same result."""
    _, npz, _, data = shapes_run
    params = load_params(ROOT / "params.yaml")
    settings = with_data(resolve(params, "folder", "scl", 0, {**TINY, "epochs": 2}), data.class_names,
                         data.images.shape[1:])
    a = Trainer(settings, data, tmp_path / "a", progress=False, estimate=True).run()  # no health gate:
    assert "estimated" in capsys.readouterr().err  # a run this tiny may collapse, the same both times
    b = Trainer(settings, data, tmp_path / "b", progress=False, estimate=False).run()
    assert a["cluster_sizes"] == b["cluster_sizes"] and a["acc"] == b["acc"]
    with np.load(tmp_path / "a" / "assignments.npz") as x, np.load(tmp_path / "b" / "assignments.npz") as y:
        assert (x["pred"] == y["pred"]).all()
    from scl.estimate import estimate_run

    est = estimate_run(Trainer(settings, data, tmp_path / "c", progress=False))
    assert est["epoch_s"] > est["eval_s"] > 0 and est["total_s"] == pytest.approx(2 * est["epoch_s"])
