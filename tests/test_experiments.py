"""Experiment sets (scl/experiments.py), run identity (scl/config.py) and the path layout
(scl/paths.py): plain Python, no Snakemake, milliseconds."""

import copy
import json
import re
from pathlib import Path

import pytest

from scl import paths
from scl.config import (
    EXECUTION_SETTINGS, METHOD_SETTINGS, TRAIN_KEYS, ConfigError, code_digest, identity_digest, load_params,
    method_settings, resolve, run_identity, settings_from_json, settings_to_json,
)
from scl.experiments import PRODUCT_VARIANTS, ExperimentSet, Run
from scl.report.collect import mean_std

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def params():
    return load_params(ROOT / "params.yaml")


def _set(params, name, **changes):
    p = copy.deepcopy(params)
    p["experiment_sets"][name].update(changes)
    return ExperimentSet.from_params(p, name)


# ------------------------------------------------------------------ the sets of params.yaml
def test_smoke_set_runs_products_and_paths(params):
    es = ExperimentSet.from_params(params, "smoke")
    runs = es.runs()
    # SCL on both seeds, MoCo for Table 2 on both seeds, every other variant on the ablation seed 0
    assert Run("digits", "scl", 0) in runs and Run("digits", "scl", 1) in runs
    assert {r for r in runs if r.variant == "moco"} == {Run("digits", "moco", 0), Run("digits", "moco", 1)}
    others = {r.variant for r in runs if r.variant not in ("scl", "moco")}
    assert others == {"no_reweight", "no_cross_cluster", "no_online_cd", "target_only", "under_only", "instance_only"}
    assert all(r.seed == 0 for r in runs if r.variant not in ("scl", "moco"))
    assert len(runs) == len(set(runs)) == 10
    # every path of the set is under the set's name: the smoke runs never touch the digits set's
    assert es.run_metrics(Run("digits", "scl", 1)) == "results/runs/smoke/digits/scl/seed1/metrics.json"
    assert es.tables_dir == "results/tables/smoke" and es.summary == "results/summaries/smoke.json"
    assert es.metrics_dir == "results/metrics/smoke" and es.plots_dir == "results/plots/smoke"
    assert es.figures_dir == "results/figures/smoke"
    assert es.baselines() == [("digits", m, 0) for m in ("kmeans", "spectral", "agglomerative", "nmf")]
    out = es.all_outputs()
    assert "results/tables/smoke/table3.tex" in out and "results/figures/smoke/fig3.png" in out
    assert "results/figures/smoke/confusion_digits.png" in out and "results/tables/smoke/diagnosis_digits.md" in out


def test_digits_and_smoke_have_separate_run_trees(params):
    digits, smoke = ExperimentSet.from_params(params, "digits"), ExperimentSet.from_params(params, "smoke")
    assert not set(map(digits.run_metrics, digits.runs())) & set(map(smoke.run_metrics, smoke.runs()))
    assert len(digits.runs()) == 5 + 5 + 6 * 3 + 0  # scl x5, moco x5 (Table 2), six other variants x3


def test_which_runs_each_product_needs(params):
    es = ExperimentSet.from_params(params, "digits")
    for product, variants in PRODUCT_VARIANTS.items():
        runs = es.product_runs(product)
        seeds = (0, 1, 2, 3, 4) if product in ("table1", "table2") else (0, 1, 2)
        assert runs == [Run("digits", v, s) for v in variants for s in seeds], product
    # Table 1 also reads every baseline; Table 3 reads no baseline
    assert "results/baselines/digits/nmf/seed4/metrics.json" in es.table_inputs("table1")
    assert not [f for f in es.table_inputs("table3") if "baselines" in f]
    assert es.figure_runs("curves", "digits") == [Run("digits", "scl", s) for s in range(5)]
    assert es.figure_runs("fig5", "digits") == [Run("digits", "scl", 0)]
    assert es.diagnosis_variants("digits") == ["scl", "moco"]
    assert es.baseline_max_samples("spectral") == 10000 and es.baseline_max_samples("kmeans") == 0  # null = all


def test_fashion_and_paper_sets(params):
    fashion = ExperimentSet.from_params(params, "fashion")
    assert fashion.ablation_seeds == (0, 1, 2) and fashion.seeds == (0, 1, 2)
    # amp / channels_last chosen by the hardware (issue 11), not hard-coded in the set
    assert (fashion.run_settings(Run("fashion", "scl", 0)).train.amp,
            fashion.run_settings(Run("fashion", "scl", 0)).train.channels_last) == ("auto", "auto")
    # the committed fashion runs are the block without relabels (issue 10: measured, withdrawn)
    assert {fashion.run_settings(r).train.relabel_epochs for r in fashion.runs()} == {()}
    # a set's own train block reaches every run of it, ablations included (how the relabel block
    # was run), and a plain `--dataset fashion` run does not inherit it
    p = copy.deepcopy(params)
    p["experiment_sets"]["fashion"]["train"] = {"relabel_epochs": [3, 5, 7]}
    relabelled = ExperimentSet.from_params(p, "fashion")
    relabels = {r: relabelled.run_settings(r).train.relabel_epochs for r in relabelled.runs()}
    assert len(relabels) == 24 and set(relabels.values()) == {(3, 5, 7)}
    assert resolve(p, "fashion", "scl", 0).train.relabel_epochs == ()
    paper = ExperimentSet.from_params(params, "paper")
    assert paper.product_datasets("table3") == ["cifar10", "cifar100-20", "imagenet10"]
    assert paper.figure_outputs("fig3") == ["results/figures/paper/fig3.png"]
    assert len(paper.figure_outputs("curves")) == 6
    # ImageNet subsets read data.imagenet_root, which params.yaml leaves unset: the fix is named
    assert "data.imagenet_root" in paper.missing_root("imagenet10")
    assert paper.missing_root("cifar10") == "" and paper.prepare_args("cifar10") == ["--raw-dir", "data/raw"]
    assert "--image-size" in paper.prepare_args("tiny-imagenet")  # resizable, per the data registry


def test_folder_set_with_and_without_labels(params, tmp_path):
    p = copy.deepcopy(params)
    p["data"]["folder"] = str(tmp_path)
    (tmp_path / "a.png").write_bytes(b"")  # a flat folder
    flat = ExperimentSet.from_params(p, "folder", has_labels=lambda root: False)
    assert flat.scored == [] and flat.baselines() == [] and flat.set_tables() == []
    assert flat.figure_outputs("fig6") == ["results/figures/folder/fig6_folder.png"]  # needs no labels
    assert flat.figure_outputs("fig5") == []  # needs labels
    assert flat.prepare_args("folder")[-2:] == ["--root", str(tmp_path)]
    assert "--image-size" not in flat.prepare_args("folder")  # null: scl prepare reads it from the images
    assert flat.prepare_args("folder")[2:4] == ["--channels", "3"]
    # what a user sorting images wants, with or without labels: clusters.csv per SCL seed
    clusters = ["results/clusters/folder/folder/seed0/clusters.csv"]
    assert flat.cluster_outputs() == clusters and set(clusters) <= set(flat.all_outputs())
    labelled = ExperimentSet.from_params(p, "folder", has_labels=lambda root: True)
    assert labelled.set_tables() == ["table1"] and labelled.baselines() == [("folder", "kmeans", 0)]
    assert labelled.cluster_outputs() == clusters
    assert ExperimentSet.from_params(params, "digits").cluster_outputs() == []  # prepared arrays, no files


def test_folder_labels_come_from_the_data_layer(params, tmp_path):
    from scl.data.folder import has_class_folders

    p = copy.deepcopy(params)
    p["data"]["folder"] = str(tmp_path)
    (tmp_path / "cats").mkdir()
    assert not has_class_folders(tmp_path)  # a folder without images is no class
    (tmp_path / "cats" / "c.png").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    assert has_class_folders(tmp_path)
    assert ExperimentSet.from_params(p, "folder").scored == ["folder"]


# ------------------------------------------------------------------ errors name the key and the fix
@pytest.mark.parametrize("change, message", [
    ({"datasets": ["mnist"]}, "experiment_sets.smoke.datasets: unknown dataset 'mnist'"),
    ({"table2": ["nope"]}, "experiment_sets.smoke.table2: unknown dataset 'nope'"),
    ({"ablations": {"fig9": ["digits"]}}, "experiment_sets.smoke.ablations: unknown product 'fig9'"),
    ({"baselines": ["dbscan"]}, "experiment_sets.smoke.baselines: unknown method 'dbscan'"),
    ({"seeds": []}, "must each name at least one"),
    ({"gpu": "maybe"}, "experiment_sets.smoke.gpu"),
    ({"train": {"lr": -1}}, "lr"),
    ({"resources": {"train": {"runtime": {"cifar10": 60}}}}, "experiment_sets.smoke.resources.train.runtime gives no time for digits"),
])
def test_bad_sets_name_the_key(params, change, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _set(params, "smoke", **change)


def test_unknown_set_and_missing_variant(params):
    with pytest.raises(ConfigError, match="experiment_set 'nope' is not defined.*smoke"):
        ExperimentSet.from_params(params, "nope")
    p = copy.deepcopy(params)
    del p["variants"]["no_reweight"]
    with pytest.raises(ConfigError, match="table3 needs variant 'no_reweight'.*Fix"):
        ExperimentSet.from_params(p, "smoke")
    p = copy.deepcopy(params)
    p["data"]["folder"] = None
    with pytest.raises(ConfigError, match="set data.folder"):
        ExperimentSet.from_params(p, "folder")


# ------------------------------------------------------------------ run identity
def test_method_and_execution_settings_partition_the_train_block():
    assert set(METHOD_SETTINGS) | EXECUTION_SETTINGS == set(TRAIN_KEYS)
    assert not set(METHOD_SETTINGS) & EXECUTION_SETTINGS


def test_identity_ignores_execution_settings_only(params):
    es = ExperimentSet.from_params(params, "smoke")
    run = Run("digits", "scl", 0)
    base = es.run_settings(run, threads=1)
    epochs = es.train["epochs"]  # the smoke set's
    assert base.train.epochs == epochs
    assert identity_digest(base) == identity_digest(es.run_settings(run, threads=4))
    assert identity_digest(base) == identity_digest(resolve(params, "digits", "scl", 0, {"epochs": epochs, "amp": "bf16"}))
    for change in ({"epochs": epochs + 1}, {"lr": 0.06}, {"tasks": ["target"]}):
        assert identity_digest(base) != identity_digest(resolve(params, "digits", "scl", 0, {"epochs": epochs, **change}))
    assert es.run_identity(run) != es.run_identity(Run("digits", "scl", 1))  # the seed is part of it
    assert es.run_identity(run) != es.run_identity(Run("digits", "moco", 0))
    assert "device" not in method_settings(base)["train"] and run_identity(base)["code"] == code_digest()


def test_code_digest_follows_training_code_only(tmp_path, monkeypatch):
    import scl.config

    def digest(**kw):  # code_digest is cached per process (the code it runs): clear it to see edits
        code_digest.cache_clear()
        return code_digest(**kw)

    pkg = tmp_path / "scl"
    (pkg / "report").mkdir(parents=True)
    for name in ("config.py", "losses.py", "report/tables.py", "bench.py"):
        (pkg / name).write_text("x = 1\n")
    monkeypatch.setattr(scl.config, "__file__", str(pkg / "config.py"))
    try:
        before = digest()
        (pkg / "report" / "tables.py").write_text("x = 2\n")  # report code: no retraining
        (pkg / "bench.py").write_text("x = 2\n")
        assert digest() == before
        assert digest(include=("report/",)) != digest(include=("bench.py",))
        (pkg / "losses.py").write_text("x = 2  # eq. 1 changed\n")  # training code: a new identity
        assert digest() != before
    finally:
        code_digest.cache_clear()


def test_resolved_settings_round_trip_through_json(params):
    s = resolve(params, "fashion", "moco", 2, {"epochs": 3})
    assert settings_from_json(settings_to_json(s)) == s
    bad = json.loads(settings_to_json(s))
    bad["train"]["lr"] = "fast"
    with pytest.raises(ConfigError, match="--settings"):
        settings_from_json(json.dumps(bad))
    with pytest.raises(ConfigError, match="not the JSON"):
        settings_from_json("{}")


# ------------------------------------------------------------------ one std, one layout
def test_mean_std_is_the_sample_std():
    # five values: population std 0.0141..., sample std (n - 1) 0.0158...
    v = [0.80, 0.82, 0.78, 0.81, 0.79]
    mean, std = mean_std(v)
    assert mean == pytest.approx(0.80)
    assert std == pytest.approx((sum((x - 0.80) ** 2 for x in v) / 4) ** 0.5)
    assert std != pytest.approx((sum((x - 0.80) ** 2 for x in v) / 5) ** 0.5)
    assert mean_std([0.5])[0] == 0.5 and mean_std([0.5])[1] != mean_std([0.5])[1]  # nan for one seed


def test_metrics_summary_uses_the_same_std(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("metrics_summary", ROOT / "workflow/scripts/metrics_summary.py")
    ms = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ms)
    files = []
    for seed, acc in enumerate([0.80, 0.82, 0.78]):
        f = tmp_path / "results/runs/s/digits/scl" / f"seed{seed}" / "metrics.json"
        f.parent.mkdir(parents=True)
        f.write_text(json.dumps({"acc": acc, "nmi": 0.5, "ari": 0.4}))
        files.append(str(f))
    summary = ms.summarise(files, [], "s")
    assert summary["runs"]["digits"]["scl"]["std"]["acc"] == round(mean_std([0.80, 0.82, 0.78])[1], 4) == 0.02


def test_paths_layout():
    assert paths.prepared("cifar10") == "data/prepared/cifar10.npz"
    assert paths.run_dir(paths.runs_root("fashion"), "fashion", "moco", 2) == "results/runs/fashion/fashion/moco/seed2"
    assert paths.runs_root() == "results/runs/manual"
    assert paths.baseline_metrics("digits", "nmf", 1) == "results/baselines/digits/nmf/seed1/metrics.json"


# ------------------------------------------------------------------ what a job asks a scheduler for
def test_gpu_auto_is_decided_where_the_jobs_run(params):
    """`gpu: auto` asks the `present` probe (the workflow: a cluster executor, or this machine's
    nvidia-smi); true/false and device=cpu decide by themselves."""
    auto = _set(params, "paper")
    assert auto.uses_gpu(present=lambda: True) and not auto.uses_gpu(present=lambda: False)
    never = lambda: pytest.fail("gpu: true/false must not probe")  # noqa: E731
    assert _set(params, "paper", gpu=True).uses_gpu(present=never)
    assert not _set(params, "smoke").uses_gpu(present=never)  # smoke: gpu false
    assert not _set(params, "paper", train={"device": "cpu"}).uses_gpu(present=lambda: True)


def test_job_resources_come_from_the_set(params):
    paper = ExperimentSet.from_params(params, "paper")
    assert paper.resources["train"].mem_mb == 16000
    assert paper.resources["train"].runtime_for("tiny-imagenet") == 600
    assert paper.resources["train"].runtime_for("cifar10", attempt=2) == 240
    assert paper.resources["baseline"].runtime_for("tiny-imagenet") == 720
    smoke = ExperimentSet.from_params(params, "smoke")  # no block: the defaults
    assert smoke.resources["train"].mem_mb == 4000 and smoke.resources["baseline"].runtime_for("digits") == 60


def test_pipeline_docs_table_of_sets_matches_params(params):
    """docs/PIPELINE.md's table of experiment sets states each set's seeds and training runs by
    hand; they must follow params.yaml (the `digits` row once said 3 seeds and 24 runs while
    the set had 5 and 28)."""
    rows = {}
    for line in (ROOT / "docs" / "PIPELINE.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        name = re.match(r"`([\w-]+)`", cells[0])
        if len(cells) == 5 and name and name[1] in params["experiment_sets"]:
            rows[name[1]] = cells
    assert {"digits", "fashion", "paper", "smoke"} <= set(rows), rows.keys()
    for name, (_, _, seeds_cell, runs_cell, _) in rows.items():
        if name == "folder":  # its runs depend on the user's folder (labels or not)
            continue
        es = ExperimentSet.from_params(params, name)
        want = str(len(es.seeds))
        if es.ablations and (es.ablation_seeds != es.seeds or "(ablations" in seeds_cell):
            want += f" (ablations {len(es.ablation_seeds)})"
        assert seeds_cell == want, (name, seeds_cell, want)
        assert int(runs_cell) == len(es.runs()), (name, runs_cell, len(es.runs()))
