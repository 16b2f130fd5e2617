"""The relabel study's table (issue 10): each setting's head ACC per seed against the committed
SCL runs of the same machine (ablations-umap-spr/runs/fashion/scl, `relabel_epochs: []`), paired per
seed; mean ± sample std by scl.report.collect.mean_std, the spread every committed table reports.
Usage (from the repository root): python results/tuning/fashion/relabel-study/table.py > results/tuning/fashion/relabel-study/table.md
"""
import json
import pathlib

from scl.report.collect import mean_std

here = pathlib.Path(__file__).resolve().parent
base_root = here.parent / "ablations-umap-spr" / "runs" / "fashion" / "scl"


def runs(root: pathlib.Path, finished: bool = True) -> dict[int, tuple[dict | None, list[dict]]]:
    """seed -> (metrics.json, log.jsonl rows) of every finished run under root; with
    finished=False also the runs stopped before their end (metrics None)."""
    out = {}
    for d in sorted(root.glob("seed*")):
        done = (d / "metrics.json").exists()
        if (done or not finished) and (d / "log.jsonl").exists():
            log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
            out[int(d.name.removeprefix("seed"))] = (json.loads((d / "metrics.json").read_text()) if done else None, log)
    return out


def cell(values: list[float], sign: str = "") -> str:
    m, sd = mean_std(values)
    return f"{m:{sign}.3f}" + (f" ± {sd:.3f}" if len(values) > 1 else "") + f" (n={len(values)})"


base = runs(base_root)
settings = {"(committed SCL, no relabel)": ("`relabel_epochs: []`", base)}
stopped = {"(committed SCL, no relabel)": {}}  # per setting, the runs stopped before their last epoch
for d in sorted(p for p in here.iterdir() if (p / "settings.txt").exists()):
    settings[d.name] = ("`" + " ".join((d / "settings.txt").read_text().split()) + "`", runs(d / "runs/fashion/scl"))
    stopped[d.name] = {s: r for s, r in runs(d / "runs/fashion/scl", finished=False).items() if r[0] is None}
settings = {k: v for k, v in settings.items() if v[1] or stopped[k]}  # a setting with no finished run: epochs only
seeds = sorted({s for _, r in settings.values() for s in r})
print("| setting | overrides | " + " | ".join(f"seed {s}" for s in seeds)
      + " | head ACC | minus the committed head, paired | each relabel's partition (ACC), per seed |")
print("|---|---|" + "---|" * (len(seeds) + 3))
for name, (overrides, r) in settings.items():
    if not r:
        continue
    accs = [r[s][0]["acc"] if s in r else None for s in seeds]
    have = [a for a in accs if a is not None]
    diffs = [r[s][0]["acc"] - base[s][0]["acc"] for s in r if s in base] if r is not base else []
    rel = "; ".join(" ".join(f"{x['acc']:.3f}" for x in r[s][1] if x.get("relabel")) for s in sorted(r)) if r is not base else ""
    print(f"| {name} | {overrides} | " + " | ".join(f"{a:.3f}" if a is not None else "" for a in accs)
          + f" | {cell(have)} | {cell(diffs, '+') if diffs else ''} | {rel} |")
print()
print("Head ACC per epoch (all 70,000 images; a relabel epoch shows the new partition, marked *;")
print("a run stopped before its last epoch is marked as such and is in no column above):")
print()
for name, (_, r) in settings.items():
    for s in sorted({**r, **stopped[name]}):
        log = (r.get(s) or stopped[name][s])[1]
        row = " ".join(f"{x['acc']:.3f}" + ("*" if x.get("relabel") else "") for x in log if "acc" in x)
        end = f" (stopped after epoch {log[-1]['epoch']})" if s in stopped[name] else ""
        print(f"- {name}, seed {s}: {row}{end}")
