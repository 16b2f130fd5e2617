"""Each finished run of this folder against the previous block's run of the same variant and seed
(`../ablations-umap-spr`, `relabel_epochs: []`, the same machine), and every relabel it made:
the head's eq. 5 labels it replaced -> the new partition (ACC). For the variants without a
head (under_only + K-means, instance_only, moco) the run's score is K-means on its features. Paired differences per seed;
mean ± sample std by scl.report.collect.mean_std.
Usage (from the repository root): python results/tuning/fashion/relabel-adopted/relabels.py > results/tuning/fashion/relabel-adopted/relabels.md
"""
import json
import pathlib

from scl.report.collect import mean_std

here = pathlib.Path(__file__).resolve().parent
before = here.parent / "ablations-umap-spr" / "runs" / "fashion"
order = ["scl", "no_reweight", "no_online_cd", "no_cross_cluster", "target_only", "under_only", "instance_only", "moco"]
print("| variant | seed | head ACC, no relabel | head ACC, relabels [3, 5, 7] | change | relabels: eq. 5 labels -> new partition |")
print("|---|---|---|---|---|---|")
changes, ups, downs = {}, 0, 0
for v in order:
    for d in sorted((here / "runs" / "fashion" / v).glob("seed*")):
        if not (d / "metrics.json").exists():
            continue
        acc = json.loads((d / "metrics.json").read_text())["acc"]
        old = json.loads((before / v / d.name / "metrics.json").read_text())["acc"]
        log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
        # under_only relabels its under-clustering task but has no head (no target task) to score
        rel = [(r["relabel_from_acc"], r["acc"]) for r in log if r.get("relabel") and "relabel_from_acc" in r]
        unscored = sum(1 for r in log if r.get("relabel") and "relabel_from_acc" not in r)
        ups += sum(b > a for a, b in rel)
        downs += sum(b < a for a, b in rel)
        changes.setdefault(v, []).append(acc - old)
        cells = ", ".join(f"{a:.3f} -> {b:.3f}" for a, b in rel) or (
            f"{unscored} relabels, no head to score them (score: K-means)" if unscored else "(no clustered task)")
        print(f"| {v} | {d.name.removeprefix('seed')} | {old:.3f} | {acc:.3f} | {acc - old:+.3f} | {cells} |")
print()
print("Change of the head, per variant (relabels minus none, paired by seed):")
print()
for v, c in changes.items():
    m, sd = mean_std(c)
    print(f"- {v}: {m:+.3f}" + (f" ± {sd:.3f}" if len(c) > 1 else "") + f" (n={len(c)})")
print()
print(f"Relabels that raised the partition: {ups}; that lowered it: {downs}.")
