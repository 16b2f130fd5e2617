"""What someone sorting their own images wants from a run: `scl clusters`.

    scl clusters --run results/runs/folder/scl/seed0 --data data/prepared/folder.npz \
        --out results/clusters/folder/seed0 [--export sorted/ --export-mode copy]

writes into --out (each file atomically):
  clusters.csv          path, cluster, confidence (+ class, the class sub-folder, when known),
                        one row per image of the prepared folder, in its order
  sheets/cluster_NN.png a contact sheet per cluster: its most confident images on top, its
                        least confident below (what the cluster is, and where it frays)
  index.md              every cluster's size, mean confidence, sheet and (with labels) its
                        majority class
and, with --export DIR, one sub-folder per cluster (cluster_NN/) holding the images, as
symbolic links (default) or copies. The export is built in a temporary sibling folder and
renamed into place: DIR is either the previous complete export or the new one, never half.

The paths come from the prepared data (`paths`, relative to the folder it was read from,
`meta.source.folder`); the cluster and confidence from the run's assignments.npz (`pred`,
`conf`: the target head's argmax and top probability, as the run's metrics use).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

SHEET_COLUMNS = 8  # images per row of a contact sheet
SHEET_TILE = 64  # each image is shown at least this many pixels wide (nearest-neighbour upscaling)


def cluster_name(c: int, k: int) -> str:
    return f"cluster_{c:0{max(2, len(str(k - 1)))}d}"


def contact_sheet(images: np.ndarray, conf: np.ndarray, title: str, per_row: int = SHEET_COLUMNS,
                  tile: int = SHEET_TILE) -> Image.Image:
    """One cluster's sheet: a row of its most confident images, a row of its least confident.

    images  uint8 n x H x W x C of the cluster's members; conf  n confidences. With fewer
    than 2 x per_row members every member is shown once, most confident first.
    """
    order = np.argsort(-conf, kind="stable")
    top = order[:per_row]
    bottom = order[per_row:][-per_row:][::-1] if len(order) > per_row else np.array([], int)  # least confident first
    scale = max(1, -(-tile // images.shape[1])) if len(images) else 1
    side = (images.shape[1] * scale) if len(images) else tile
    label_h, pad = 14, 4
    rows = [("most confident", top), ("least confident", bottom)]
    rows = [(name, idx) for name, idx in rows if len(idx)]
    width = per_row * (side + pad) + pad
    height = 18 + len(rows) * (label_h + side + pad) + pad
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 3), title, fill=(0, 0, 0))
    y = 18
    for name, idx in rows:
        draw.text((pad, y), f"{name} ({', '.join(f'{conf[i]:.2f}' for i in idx[:3])}{', ...' if len(idx) > 3 else ''})",
                  fill=(90, 90, 90))
        y += label_h
        for j, i in enumerate(idx):
            im = images[i]
            pil = Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).convert("RGB")
            pil = pil.resize((side, side), Image.Resampling.NEAREST)
            sheet.paste(pil, (pad + j * (side + pad), y))
        y += side + pad
    return sheet


def _save_png(img: Image.Image, path: Path) -> None:
    from scl.io import atomic_write_bytes
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def _unique_names(paths: list[Path]) -> list[str]:
    """File names for an export folder: the base name, or parent__name where two collide."""
    names = [p.name for p in paths]
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    out, used = [], set()
    for p, n in zip(paths, names):
        name = n if counts[n] == 1 else "__".join(p.parts[-2:])
        base, k = name, 1
        while name in used:  # still a clash (same parent name too): number it
            name = f"{Path(base).stem}_{k}{Path(base).suffix}"
            k += 1
        used.add(name)
        out.append(name)
    return out


def export_clusters(paths: list[Path], pred: np.ndarray, dest: str | os.PathLike, mode: str = "link") -> Path:
    """One folder per cluster under `dest` holding its images (symlinks or copies), atomically:
    built in a temporary sibling, then renamed over `dest` (a previous export is replaced whole)."""
    if mode not in ("link", "copy"):
        raise ValueError(f"export mode must be link or copy, got {mode!r}")
    dest = Path(dest).absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    k = int(pred.max()) + 1 if len(pred) else 0
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".", suffix=".tmp"))
    try:
        for c in np.unique(pred):
            members = [Path(paths[i]).absolute() for i in np.flatnonzero(pred == c)]
            folder = tmp / cluster_name(int(c), k)
            folder.mkdir()
            for src, name in zip(members, _unique_names(members)):
                if mode == "link":
                    os.symlink(src, folder / name)
                else:
                    shutil.copy2(src, folder / name)
        os.chmod(tmp, 0o755)
        old = None
        if dest.exists():  # two renames: the old export moves aside, the new one takes its name
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".", suffix=".old"))
            os.replace(dest, old / "x")
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def write_cluster_report(run_dir: str | os.PathLike, data_path: str | os.PathLike, out: str | os.PathLike,
                         export: str | os.PathLike | None = None, export_mode: str = "link") -> dict:
    """clusters.csv, one contact sheet per cluster and index.md for a run on a prepared folder."""
    from scl.assign import clusters_csv
    from scl.data.prepared import load_meta, load_prepared
    from scl.io import atomic_write_text

    run_dir, out = Path(run_dir), Path(out)
    with np.load(run_dir / "assignments.npz", allow_pickle=False) as z:
        pred, conf = z["pred"].astype(np.int64), z["conf"].astype(np.float32)
    data = load_prepared(data_path)
    if len(pred) != len(data):
        raise ValueError(f"{run_dir}/assignments.npz has {len(pred)} images but {data_path} has {len(data)}: "
                         "the run was trained on other data")
    source = (load_meta(data_path).get("source") or {}).get("folder")
    if data.paths is not None and source:
        files = [Path(source) / p for p in data.paths]
    else:  # a benchmark dataset: no files, name the images by index
        files = [f"{Path(data_path).stem}#{i}" for i in range(len(data))]
    k = max(int(pred.max()) + 1, len(data.class_names)) if len(pred) else 0
    extra = {"class": [data.class_names[y] if y >= 0 else "" for y in data.labels]} if data.has_labels else None
    atomic_write_text(out / "clusters.csv", clusters_csv(files, pred, np.nan_to_num(conf, nan=0.0), extra))
    lines = [f"# Clusters of {run_dir}", "", f"{len(pred)} images from {source or data_path}; "
             f"sheets show each cluster's {SHEET_COLUMNS} most and {SHEET_COLUMNS} least confident images.", "",
             "| cluster | images | mean confidence | " + ("majority class (share) | " if extra else "") + "sheet |",
             "|---|---|---|" + ("---|" if extra else "") + "---|"]
    for c in range(k):
        members = np.flatnonzero(pred == c)
        name = cluster_name(c, k)
        if len(members):
            sheet = contact_sheet(data.images[members], np.nan_to_num(conf[members], nan=0.0),
                                  f"{name}: {len(members)} images")
            _save_png(sheet, out / "sheets" / f"{name}.png")
        row = f"| {c} | {len(members)} | {np.nanmean(conf[members]) if len(members) else float('nan'):.3f} | "
        if extra:
            if len(members):
                counts = np.bincount(data.labels[members], minlength=len(data.class_names))
                row += f"{data.class_names[int(counts.argmax())]} ({counts.max() / len(members):.0%}) | "
            else:
                row += "- | "
        row += f"[{name}](sheets/{name}.png) |" if len(members) else "(empty) |"
        lines.append(row)
    atomic_write_text(out / "index.md", "\n".join(lines) + "\n")
    if export is not None:
        if data.paths is None:
            raise ValueError(f"{data_path} holds no file paths (not an image folder): nothing to export")
        export_clusters(files, pred, export, export_mode)
    return {"images": len(pred), "clusters": k, "out": str(out)}
