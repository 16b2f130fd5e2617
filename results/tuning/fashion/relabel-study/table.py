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


def runs(root: pathlib.Path) -> dict[int, tuple[dict, list[dict]]]:
    """seed -> (metrics.json, log.jsonl rows) of every finished run under root."""
    out = {}
    for d in sorted(root.glob("seed*")):
        if (d / "metrics.json").exists():
            log = [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]
            out[int(d.name.removeprefix("seed"))] = (json.loads((d / "metrics.json").read_text()), log)
    return out


def cell(values: list[float], sign: str = "") -> str:
    m, sd = mean_std(values)
    return f"{m:{sign}.3f}" + (f" ± {sd:.3f}" if len(values) > 1 else "") + f" (n={len(values)})"


base = runs(base_root)
settings = {"(committed SCL, no relabel)": ("`relabel_epochs: []`", base)}
for d in sorted(p for p in here.iterdir() if (p / "settings.txt").exists()):
    settings[d.name] = ("`" + " ".join((d / "settings.txt").read_text().split()) + "`", runs(d / "runs/fashion/scl"))
seeds = sorted({s for _, r in settings.values() for s in r})
print("| setting | overrides | " + " | ".join(f"seed {s}" for s in seeds)
      + " | head ACC | minus the committed head, paired | each relabel's partition (ACC), per seed |")
print("|---|---|" + "---|" * (len(seeds) + 3))
for name, (overrides, r) in settings.items():
    accs = [r[s][0]["acc"] if s in r else None for s in seeds]
    have = [a for a in accs if a is not None]
    diffs = [r[s][0]["acc"] - base[s][0]["acc"] for s in r if s in base] if r is not base else []
    rel = "; ".join(" ".join(f"{x['acc']:.3f}" for x in r[s][1] if x.get("relabel")) for s in sorted(r)) if r is not base else ""
    print(f"| {name} | {overrides} | " + " | ".join(f"{a:.3f}" if a is not None else "" for a in accs)
          + f" | {cell(have)} | {cell(diffs, '+') if diffs else ''} | {rel} |")
print()
print("Head ACC per epoch (all 70,000 images; a relabel epoch shows the new partition, marked *):")
print()
for name, (_, r) in settings.items():
    for s in sorted(r):
        row = " ".join(f"{x['acc']:.3f}" + ("*" if x.get("relabel") else "") for x in r[s][1] if "acc" in x)
        print(f"- {name}, seed {s}: {row}")
