"""A labelled colour image folder made on the spot: shapes in random colours and places.

    write_shapes_folder("data/shapes", per_class=250, size=32, seed=0)
    # -> data/shapes/<shape>/<shape>_0000.png ... (10 class folders, 2,500 PNG files)

What it is for: testing the `folder` dataset end to end, and choosing its default settings,
on images where *colour must be ignored* to find the classes. Every image is one shape
(the class) drawn in a random foreground colour on a random background colour, at a random
size, position and small rotation. Colour carries no information about the class, so a
method that clusters by colour (K-means on pixels does) is near chance, and a method that
learns shape does well. Foreground and background differ in luminance by at least
`MIN_LUMA_GAP`, so the shape stays visible in grayscale too.

Shapes are drawn at 4x the output size and downsampled (antialiased edges, as in photos).
Deterministic: the same (per_class, size, seed) writes the same bytes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

#: the classes, in the order of their folder names' sort (labels = index in sorted order)
SHAPES = ("circle", "cross", "diamond", "hourglass", "plus", "ring", "square", "star", "tee", "triangle")
MIN_LUMA_GAP = 0.3  # |luma(fg) - luma(bg)| in [0, 1]
_SUPER = 4  # drawing resolution factor


def _luma(rgb: np.ndarray) -> float:
    return float(rgb @ np.array([0.299, 0.587, 0.114]) / 255.0)


def _colours(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...]]:
    while True:
        fg, bg = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
        if abs(_luma(fg) - _luma(bg)) >= MIN_LUMA_GAP:
            return tuple(int(v) for v in fg), tuple(int(v) for v in bg)


def _polygon(points: list[tuple[float, float]], cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Unit-radius points (x right, y down) rotated by `angle`, scaled by r, moved to (cx, cy)."""
    c, s = math.cos(angle), math.sin(angle)
    return [(cx + r * (x * c - y * s), cy + r * (x * s + y * c)) for x, y in points]


def _star(points: int = 5, inner: float = 0.45) -> list[tuple[float, float]]:
    out = []
    for i in range(2 * points):
        a = -math.pi / 2 + i * math.pi / points
        rr = 1.0 if i % 2 == 0 else inner
        out.append((rr * math.cos(a), rr * math.sin(a)))
    return out


_W = 0.32  # half-width of the bars of plus, cross and tee, relative to the radius
_OUTLINES: dict[str, list[tuple[float, float]]] = {
    "square": [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)],
    "diamond": [(0, -1), (1, 0), (0, 1), (-1, 0)],
    "triangle": [(0, -1), (0.95, 0.75), (-0.95, 0.75)],
    "hourglass": [(-0.85, -0.85), (0.85, -0.85), (0.08, 0), (0.85, 0.85), (-0.85, 0.85), (-0.08, 0)],
    "plus": [(-_W, -1), (_W, -1), (_W, -_W), (1, -_W), (1, _W), (_W, _W), (_W, 1), (-_W, 1), (-_W, _W), (-1, _W),
             (-1, -_W), (-_W, -_W)],
    "tee": [(-1, -0.9), (1, -0.9), (1, -0.9 + 2 * _W), (_W, -0.9 + 2 * _W), (_W, 1), (-_W, 1),
            (-_W, -0.9 + 2 * _W), (-1, -0.9 + 2 * _W)],
    "star": _star(),
}


def draw_shape(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    """One `size x size` RGB image of `shape` in random colours, scale, place and tilt."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    fg, bg = _colours(rng)
    big = size * _SUPER
    img = Image.new("RGB", (big, big), bg)
    d = ImageDraw.Draw(img)
    r = big * rng.uniform(0.24, 0.40)  # radius of the shape's bounding circle
    cx, cy = rng.uniform(r + 1, big - r - 1, 2)
    angle = math.radians(rng.uniform(-12, 12))
    if shape == "circle":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    elif shape == "ring":
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
        ri = r * 0.55
        d.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=bg)
    elif shape == "cross":  # the plus turned by 45 degrees
        d.polygon(_polygon(_OUTLINES["plus"], cx, cy, r * 0.95, angle + math.pi / 4), fill=fg)
    else:
        d.polygon(_polygon(_OUTLINES[shape], cx, cy, r, angle), fill=fg)
    return img.resize((size, size), Image.Resampling.LANCZOS)


def write_shapes_folder(root: str | os.PathLike, per_class: int = 250, size: int = 32, seed: int = 0,
                        shapes: tuple[str, ...] = SHAPES, flat: bool = False) -> Path:
    """Write `per_class` PNG images of each shape into root/<shape>/ (or all into root if flat).

    Returns root. Files are named <shape>_<i>.png, so a flat folder still tells the truth
    to a reader who looks at the names.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    for shape in shapes:
        folder = root if flat else root / shape
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            draw_shape(shape, size, rng).save(folder / f"{shape}_{i:04d}.png", optimize=False)
    return root


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m scl.data.synthetic", description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path, help="folder to write (class sub-folders unless --flat)")
    p.add_argument("--per-class", type=int, default=250)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--flat", action="store_true", help="all images in one folder (no labels)")
    args = p.parse_args(argv)
    write_shapes_folder(args.out, args.per_class, args.size, args.seed, flat=args.flat)
    print(f"wrote {args.per_class * len(SHAPES)} images of {len(SHAPES)} shapes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
