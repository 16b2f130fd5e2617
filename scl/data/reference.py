"""The reference tables shipped inside the package (scl/reference/*.csv).

Loaded with importlib.resources so they are found in an installed wheel as well as in a
source checkout; they are package data (see pyproject.toml), never read from ../shared.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files

import numpy as np

from scl.data.errors import DataError


def read_reference_csv(name: str) -> list[dict[str, str]]:
    """Rows of scl/reference/<name> as dicts keyed by the header."""
    resource = files("scl").joinpath("reference", name)
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise DataError(f"reference table scl/reference/{name} is missing from the package; reinstall scl") from e
    return list(csv.DictReader(io.StringIO(text)))


def cifar100_coarse_map() -> np.ndarray:
    """int64 vector of 100: the super-class (0..19) of each CIFAR-100 fine label."""
    rows = read_reference_csv("cifar100_coarse.csv")
    mapping = np.full(100, -1, np.int64)
    for row in rows:
        mapping[int(row["fine_index"])] = int(row["coarse_index"])
    if (mapping < 0).any() or set(mapping.tolist()) != set(range(20)):
        raise DataError("scl/reference/cifar100_coarse.csv must map all 100 fine labels onto 20 super-classes")
    return mapping


def imagenet_subset(subset: str) -> list[tuple[str, str]]:
    """(wnid, class name) of an ImageNet subset ("imagenet10", "imagenet-dogs"), in label order."""
    rows = [(r["wnid"], r["name"]) for r in read_reference_csv("imagenet_subsets.csv") if r["subset"] == subset]
    if not rows:
        known = sorted({r["subset"] for r in read_reference_csv("imagenet_subsets.csv")})
        raise DataError(f"unknown ImageNet subset {subset!r}; scl/reference/imagenet_subsets.csv has {known}")
    return rows
