"""Tables and figures from fake run folders: `scl.report` and `scl table` / `scl figure`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scl.cli import main
from scl.data.prepared import save_prepared
from scl.io import write_jsonl
from scl.report import ReportError
from scl.report.collect import collect_baselines, collect_runs, reported, summarise
from scl.report.tables import build_table, render_markdown

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(path: Path, acc, nmi=None, ari=None, **extra):
    path.mkdir(parents=True, exist_ok=True)
    rec = {"acc": acc, "nmi": acc - 0.1 if nmi is None else nmi, "ari": acc - 0.2 if ari is None else ari, **extra}
    (path / "metrics.json").write_text(json.dumps(rec))


@pytest.fixture
def tree(tmp_path):
    """runs/ and baselines/ with known numbers, 2 seeds each."""
    runs, base = tmp_path / "runs", tmp_path / "baselines"
    for seed, acc in ((0, 0.70), (1, 0.80)):
        write_metrics(runs / "cifar10/scl" / f"seed{seed}", acc, tasks={"under": {"acc": 0.5, "nmi": 0.4, "ari": 0.3}})
        write_metrics(runs / "cifar10/no_reweight" / f"seed{seed}", acc - 0.05)
        write_metrics(runs / "cifar10/moco" / f"seed{seed}", acc - 0.2)
        write_metrics(runs / "fashion/scl" / f"seed{seed}", acc - 0.1)
        write_metrics(base / "cifar10/kmeans" / f"seed{seed}", 0.20 + 0.02 * seed, n=60000, subsample=None)
        write_metrics(base / "cifar10/spectral" / f"seed{seed}", 0.25, n=60000, subsample=10000)
    (runs / "cifar10/scl/notaseed").mkdir()  # ignored
    return runs, base


# ---------------------------------------------------------------------------- collect
def test_collect_and_summarise(tree):
    runs, base = tree
    df = collect_runs(runs)
    assert set(df["variant"]) == {"scl", "no_reweight", "moco"} and len(df) == 8
    assert df.loc[(df["dataset"] == "cifar10") & (df["variant"] == "scl") & (df["seed"] == 1), "acc_under"].item() == 0.5
    s = summarise(df)
    row = s[(s["dataset"] == "cifar10") & (s["variant"] == "scl")].iloc[0]
    assert row["n_seeds"] == 2 and row["seeds"] == "0,1"
    assert row["acc_mean"] == pytest.approx(0.75) and row["acc_std"] == pytest.approx(np.std([0.7, 0.8], ddof=1))
    b = summarise(collect_baselines(base))
    assert set(b["method"]) == {"kmeans", "spectral"}
    assert collect_runs(runs.parent / "nothing").empty


def test_reported_csvs_load_and_missing_one_is_clear():
    t1 = reported("table1_reported")
    assert {"method", "dataset", "nmi", "acc", "ari"} <= set(t1.columns)
    assert reported("fashion_reported")["source"].str.contains("1908.05968").any()
    with pytest.raises(ReportError, match="scl/reference/nope.csv"):
        reported("nope")


# ---------------------------------------------------------------------------- tables
@pytest.mark.slow
def test_table1_files_and_numbers(tree, tmp_path, capsys):
    runs, base = tree
    out = tmp_path / "tables/table1"
    rc = main(["table", "table1", "--runs", str(runs), "--baselines", str(base), "--out", str(out),
               "--datasets", "cifar10", "stl10"])
    assert rc == 0
    for suffix in (".md", ".csv", ".tex"):
        assert (out.parent / f"table1{suffix}").stat().st_size > 0
    md = (out.parent / "table1.md").read_text()
    assert capsys.readouterr().out.strip() == md.strip()  # the markdown goes to stdout
    csv = pd.read_csv(out.parent / "table1.csv")
    assert set(csv["source"]) == {"reported", "reproduced"}
    scl = csv[(csv["method"] == "SCL") & (csv["source"] == "reproduced") & (csv["dataset"] == "cifar10")].iloc[0]
    assert scl["acc"] == pytest.approx(0.75, abs=1e-6) and scl["n_seeds"] == 2
    assert scl["acc_std"] == pytest.approx(np.std([0.7, 0.8], ddof=1), abs=1e-6)
    km = csv[(csv["method"] == "K-means") & (csv["source"] == "reproduced") & (csv["dataset"] == "cifar10")].iloc[0]
    assert km["acc"] == pytest.approx(0.21, abs=1e-6)
    rep = csv[(csv["method"] == "K-means") & (csv["source"] == "reported") & (csv["dataset"] == "cifar10")].iloc[0]
    assert rep["acc"] == pytest.approx(0.229) and "BMVC 2022" in rep["reference"]
    assert {"DAC", "IIC", "PICA", "GATCluster", "NMF", "AC"} <= set(csv["method"])
    # nothing reproduced for stl10 / AC: shown as a dash
    assert "| AC | reproduced | — | — |" in md
    assert "0.750 ± 0.071 (n=2)" in md
    assert "subsample of 10,000 of 60,000" in md
    tex = (out.parent / "table1.tex").read_text()
    assert "\\begin{tabular}" in tex and "0.750 $\\pm$ 0.071" in tex and "\\toprule" in tex
    assert "N2D" not in md  # fashion is not a column


def test_table1_fashion_rows_come_automatically(tree):
    runs, base = tree
    t = build_table("table1", runs, base, datasets=["fashion", "cifar10"])
    e = t.entries
    n2d = e[(e["method"] == "N2D") & (e["dataset"] == "fashion")].iloc[0]
    assert n2d["source"] == "reported" and n2d["acc"] == pytest.approx(0.672) and "1908.05968" in n2d["reference"]
    cg = e[e["method"] == "ClusterGAN"].iloc[0]
    assert cg["acc"] == pytest.approx(0.63) and pd.isna(cg["nmi"])
    md = render_markdown(t)
    assert "0.672 [" in md and "arXiv:1908.05968" in md
    assert "Fashion-MNIST" in md


def test_extra_reported_csv(tree, tmp_path):
    runs, base = tree
    extra = tmp_path / "extra.csv"
    extra.write_text("method,dataset,nmi,acc,ari,source\nFooNet,newdata,0.5,0.6,0.4,Foo et al. 2030\n")
    t = build_table("table1", runs, base, extra_reported=[str(extra)])
    assert "newdata" in t.datasets and "FooNet" in t.methods
    assert "Foo et al. 2030" in render_markdown(t)
    with pytest.raises(ReportError, match="does not exist"):
        build_table("table1", runs, base, extra_reported=[str(tmp_path / "none.csv")])


def test_table2_and_dropped_dataset(tree, tmp_path, capsys):
    runs, base = tree
    out = tmp_path / "t2"
    assert main(["table", "table2", "--runs", str(runs), "--out", str(out), "--datasets", "digits", "cifar10",
                 "stl10"]) == 0
    err = capsys.readouterr().err
    assert "left out digits" in err
    csv = pd.read_csv(tmp_path / "t2.csv")
    assert "digits" not in set(csv["dataset"])
    pad = csv[csv["method"] == "PAD"]
    assert set(pad["source"]) == {"reported"} and len(pad) == 2
    moco = csv[(csv["method"] == "MoCo + K-means") & (csv["source"] == "reproduced") & (csv["dataset"] == "cifar10")]
    assert moco["acc"].item() == pytest.approx(0.55, abs=1e-6)
    assert list(csv.columns[:6]) == ["table", "method", "dataset", "source", "acc", "acc_std"]


def test_table3_erratum(tree, tmp_path):
    runs, base = tree
    out = tmp_path / "t3"
    assert main(["table", "table3", "--runs", str(runs), "--out", str(out), "--quiet"]) == 0
    md, tex = (tmp_path / "t3.md").read_text(), (tmp_path / "t3.tex").read_text()
    csv = pd.read_csv(tmp_path / "t3.csv")
    assert "Erratum" in md and "Erratum" in tex and "STL-10" in md
    assert "stl10" not in set(csv["dataset"])
    on = csv[(csv["method"] == "SCL with re-weighting") & (csv["source"] == "reported") & (csv["dataset"] == "imagenet10")]
    assert on["acc"].item() == pytest.approx(0.883) and "erratum" in on["note"].item()
    off = csv[(csv["method"] == "SCL without re-weighting") & (csv["source"] == "reproduced") & (csv["dataset"] == "cifar10")]
    assert off["acc"].item() == pytest.approx(0.70, abs=1e-6)
    # fashion has an scl run, so it is a column (reproduced only); columns: Fashion, CIFAR-10, CIFAR-100, ImageNet-10
    assert "| SCL without re-weighting | reproduced | — | 0.700 ± 0.071 (n=2) | — | — |" in md
    assert "| SCL with re-weighting | reported | — | 0.733 | 0.461 | 0.883 |" in md


def test_table_without_any_number_fails(tmp_path, capsys):
    assert main(["table", "table3", "--runs", str(tmp_path / "r"), "--out", str(tmp_path / "t"),
                 "--datasets", "digits"]) == 2
    assert "no dataset" in capsys.readouterr().err


# ---------------------------------------------------------------------------- figures
@pytest.fixture
def fig_runs(tmp_path):
    """A fake digits tree: every ablation variant (2 seeds), plus one full scl/seed0 folder."""
    rng = np.random.default_rng(0)
    runs = tmp_path / "runs"
    variants = ["moco", "no_cross_cluster", "no_online_cd", "scl", "under_only", "target_only", "instance_only"]
    for i, v in enumerate(variants):
        for seed in (0, 1):
            d = runs / "digits" / v / f"seed{seed}"
            write_metrics(d, 0.4 + 0.05 * i + 0.02 * seed)
            write_jsonl(d / "log.jsonl", [{"epoch": e, "loss": 5.0 - e, "mi_target": 2.0 - 0.1 * e,
                                           "cd_target": 1.0 / e, "acc": 0.3 + 0.1 * e, "lr": 0.01} for e in (1, 2, 3)])
    n, c = 60, 3
    labels = np.repeat(np.arange(c), n // c)
    run = runs / "digits/scl/seed0"
    centers = rng.normal(size=(c, 8))
    for name, spread in (("features_init.npz", 3.0), ("features.npz", 0.2)):
        feats = (centers[labels] + spread * rng.normal(size=(n, 8))).astype(np.float16)
        np.savez(run / name, feat_target=feats, backbone=feats, labels=labels)
    pred = (labels + (rng.random(n) < 0.2)) % c
    np.savez(run / "assignments.npz", pred=pred, conf=rng.random(n).astype(np.float32), labels=labels)
    images = (rng.random((n, 8, 8, 1)) * 255).astype(np.uint8)
    data = save_prepared(tmp_path / "digits.npz", images, labels, ["a", "b", "c"])
    return runs, data


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fig3", "fig4", "curves", "fig6", "confusion"])
def test_figures_write_png(fig_runs, tmp_path, name):
    runs, data = fig_runs
    out = tmp_path / f"figs/{name}.png"
    rc = main(["figure", name, "--runs", str(runs), "--out", str(out), "--dataset", "digits", "--data", str(data)])
    assert rc == 0
    blob = out.read_bytes()
    assert blob.startswith(PNG_MAGIC) and len(blob) > 2000
    assert not list(out.parent.glob("*.tmp"))


def test_confusion_matrix_hand_computed():
    from scl.report.figures import confusion_matrix

    # class 0 -> cluster 2 (3 of 4), class 1 -> cluster 0 (2 of 3), class 2 -> cluster 5 (its only member);
    # cluster 1 matches no class and comes last
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2])
    pred = np.array([2, 2, 2, 1, 0, 0, 2, 5])
    counts, classes, order, acc = confusion_matrix(labels, pred)
    assert classes == [0, 1, 2] and order == [2, 0, 5, 1]
    assert counts.tolist() == [[3, 0, 0, 1],
                               [1, 2, 0, 0],
                               [0, 0, 1, 0]]
    assert acc == pytest.approx(6 / 8)


def test_confusion_acc_is_evaluates_when_a_cluster_is_empty():
    from scl.report.figures import confusion_matrix

    # 3 classes, 2 non-empty clusters: cluster 0 = class 0 (3 of 4), cluster 1 = class 2 (3 of 5);
    # class 1 has no cluster. ACC = 6/9; the trace of the counts would pair class 1 with
    # cluster 1 and give 5/9 = 0.556
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    counts, classes, order, acc = confusion_matrix(labels, pred)
    assert order == [0, 1]
    assert counts.tolist() == [[3, 0], [1, 2], [0, 3]]
    assert acc == pytest.approx(6 / 9)


def test_confusion_needs_labels(fig_runs, tmp_path, capsys):
    runs, data = fig_runs
    a = dict(np.load(runs / "digits/scl/seed0/assignments.npz"))
    a["labels"] = np.full_like(a["labels"], -1)
    np.savez(runs / "digits/scl/seed0/assignments.npz", **a)
    out = tmp_path / "c.png"
    assert main(["figure", "confusion", "--runs", str(runs), "--out", str(out), "--dataset", "digits"]) == 2
    assert "no class labels" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_fig5_umap(fig_runs, tmp_path):
    runs, _ = fig_runs
    out = tmp_path / "fig5.png"
    assert main(["figure", "fig5", "--runs", str(runs), "--out", str(out), "--dataset", "digits", "--seed", "0"]) == 0
    assert out.read_bytes().startswith(PNG_MAGIC)


def test_figures_name_missing_inputs(fig_runs, tmp_path, capsys):
    runs, data = fig_runs
    out = tmp_path / "x.png"
    assert main(["figure", "fig5", "--runs", str(runs), "--out", str(out), "--dataset", "digits", "--seed", "7"]) == 2
    err = capsys.readouterr().err
    assert "digits/scl/seed7/features_init.npz does not exist" in err and "scl train --dataset digits" in err
    assert main(["figure", "fig3", "--runs", str(tmp_path / "empty"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "metrics.json" in err and "scl train" in err and "snakemake" in err
    assert main(["figure", "fig6", "--runs", str(runs), "--out", str(out), "--dataset", "digits",
                 "--data", str(tmp_path / "none.npz")]) == 2
    err = capsys.readouterr().err
    assert "none.npz does not exist" in err and "scl prepare digits" in err
    assert main(["figure", "curves", "--runs", str(runs), "--out", str(out), "--dataset", "cifar10"]) == 2
    assert "log.jsonl" in capsys.readouterr().err
    assert main(["figure", "fig6", "--runs", str(runs), "--out", str(out)]) == 2
    assert "--dataset is required" in capsys.readouterr().err
    assert not out.exists()


def test_tables_and_bars_use_only_the_requested_seeds(tmp_path):
    """A table must not depend on which other runs happen to be finished when it is made."""
    import json

    from scl.report.collect import collect_runs
    from scl.report.tables import build_table

    for variant, seed, acc in [("scl", 0, 0.9), ("scl", 1, 0.8), ("scl", 4, 0.1), ("no_reweight", 0, 0.7), ("no_reweight", 1, 0.6)]:
        d = tmp_path / "runs" / "digits" / variant / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"acc": acc, "nmi": acc, "ari": acc}))
    assert sorted(collect_runs(tmp_path / "runs", seeds=[0, 1])["seed"]) == [0, 0, 1, 1]
    t = build_table("table3", tmp_path / "runs", tmp_path / "none", datasets=["digits"], seeds=[0, 1])
    rows = t.entries[(t.entries["source"] == "reproduced") & (t.entries["dataset"] == "digits")]
    with_rw = rows[rows["method"].str.contains("with re-weighting")].iloc[0]
    assert with_rw["acc"] == pytest.approx(0.85) and int(with_rw["n_seeds"]) == 2


def test_curve_marks_shade_the_warmup_and_mark_each_relabel():
    from scl.report.figures import _curve_marks

    relabelled = [{"epoch": 1, "warmup": True, "acc": 0.6}, {"epoch": 2, "acc": 0.62},
                  {"epoch": 3, "acc": 0.7, "relabel": "umap_kmeans"}, {"epoch": 4, "acc": 0.7},
                  {"epoch": 5, "acc": 0.72, "relabel": "umap_kmeans"}]
    plain = [{"epoch": 1, "warmup": True}, {"epoch": 2}, {"epoch": 3}]
    assert _curve_marks({"seed0": relabelled, "seed1": plain}) == (
        1, [3, 5], " (grey: 1 warm-up epoch, instance discrimination only; dotted: relabels after epochs 3, 5)")
    assert _curve_marks({"seed0": [{"epoch": 1, "relabel": "kmeans"}]}) == (0, [1], " (dotted: relabels after epochs 1)")
    assert _curve_marks({"seed0": [{"epoch": e, "warmup": True} for e in (1, 2)]})[2] == (
        " (grey: 2 warm-up epochs, instance discrimination only)")
    assert _curve_marks({"seed0": [{"epoch": 1, "acc": 0.5}]}) == (0, [], "")  # the paper's run: nothing marked


def test_curve_keys_add_the_diagnostics_after_losses_and_accs():
    from scl.report.figures import _curve_keys

    recs = [{"epoch": 1, "loss": 1.0, "mi_target": 0.5, "acc": 0.3, "lr": 0.1, "diag_sample": 100,
             "diag_head_acc": 0.3, "diag_kmeans_target_acc": 0.6},
            {"epoch": 2, "loss": 0.9, "acc_under": 0.2, "diag_memory_acc": 0.4}]
    assert _curve_keys(recs) == ["loss", "mi_target", "acc", "acc_under", "diag_head_acc", "diag_kmeans_target_acc",
                                 "diag_memory_acc"]
    assert _curve_keys([{"epoch": 1, "loss": 1.0}]) == ["loss"]
