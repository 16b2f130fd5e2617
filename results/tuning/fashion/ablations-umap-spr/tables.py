"""Markdown tables of the fashion ablation runs in a records folder (every seed<k> folder found;
mean ± sample std by scl.report.collect.mean_std, the spread every committed table reports)."""
import json, pathlib, sys

from scl.report.collect import mean_std

root = pathlib.Path(sys.argv[1])
order = ["scl", "no_reweight", "no_online_cd", "no_cross_cluster", "target_only", "under_only", "instance_only", "moco"]
runs = {}
for v in order:
    for d in sorted(root.glob(f"{v}/seed*")):
        s = int(d.name.removeprefix("seed"))
        if (d / "metrics.json").exists():
            rows = [json.loads(l) for l in (d / "log.jsonl").read_text().splitlines()]
            runs[v, s] = (json.loads((d / "metrics.json").read_text()), rows)
seeds = sorted({s for _, s in runs})
print("| variant | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | against SCL, per seed | K-means on the backbone, last epoch |")
print("|---|" + "---|" * (len(seeds) + 3))
for v in order:
    accs = [runs[v, s][0]["acc"] if (v, s) in runs else None for s in seeds]
    if not any(a is not None for a in accs): continue
    have = [a for a in accs if a is not None]
    m, sd = mean_std(have)
    mean = f"{m:.3f}" + (f" ± {sd:.3f}" if len(have) > 1 else "")
    diffs = ", ".join(f"{a - runs['scl', s][0]['acc']:+.3f}" for a, s in zip(accs, seeds) if a is not None and ('scl', s) in runs) if v != "scl" else ""
    kmb = " / ".join(f"{runs[v, s][1][-1].get('diag_kmeans_backbone_acc', float('nan')):.3f}" if (v, s) in runs else "-" for s in seeds)
    print(f"| {v} | " + " | ".join(f"{a:.3f}" if a is not None else "" for a in accs) + f" | {mean} | {diffs} | {kmb} |")
print()
print("| variant | " + " | ".join(f"seed {s}: head ACC per epoch" for s in seeds) + " |")
print("|---|" + "---|" * len(seeds))
for v in order:
    cells = [" ".join(f"{r['acc']:.3f}" for r in runs[v, s][1] if "acc" in r) if (v, s) in runs else "" for s in seeds]
    if any(cells): print(f"| {v} | " + " | ".join(cells) + " |")
