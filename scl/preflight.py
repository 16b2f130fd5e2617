"""Settings checked against the data and the machine before any work starts.

The schema checks each setting alone; these checks need the prepared data or the torch
build, and each would otherwise surface as a traceback minutes into a run, or worse, as a
silently wrong score:
  - image shape vs the dataset block (image_size, channels);
  - the augmentation recipe's channels vs the data's (mocov2 needs 3, digits/grayscale 1);
  - labels: a set is either labelled (every label >= 0) or unlabelled (every label -1);
    a few -1 labels would silently turn off every score; a labelled set needs at least two
    classes (one class scores ACC = NMI = ARI = 1 whatever the clustering) and as many
    classes as num_classes (the paper clusters into the number of classes);
  - enough images for one batch and for num_classes clusters;
  - the device exists (cuda, cuda:N, mps).
Each failure is a ConfigError (exit 2) that names the setting or file and the fix.
"""

from __future__ import annotations

import numpy as np

from scl.config import ConfigError, RunSettings


def check_device(name: str) -> None:
    import torch

    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r}: CUDA is not available on this machine; use device=cpu or auto")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                              f"use cuda:0..cuda:{torch.cuda.device_count() - 1}")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            why = "this torch is not built with MPS" if mps is None or not mps.is_built() else \
                  "no MPS device (Apple GPU) is available"
            raise ConfigError(f"device 'mps': {why}; use device=cpu or auto")


def check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    labels = np.asarray(labels)
    unknown = int((labels == -1).sum())
    if (labels < -1).any():
        raise ConfigError(f"{where}: labels below -1 ({sorted(set(labels[labels < -1].tolist()))[:5]}); "
                          "-1 means unknown, classes are 0, 1, ...; re-prepare the data")
    if unknown == len(labels):
        return  # unlabelled: clustered without scores
    if unknown:
        raise ConfigError(
            f"{where}: {unknown} of {len(labels)} images have label -1 (unknown) and the rest are labelled; "
            "the scores would silently be switched off for the whole set. Fix: label or remove those images, "
            "or drop every label to cluster without scores")
    classes = np.unique(labels)
    if len(classes) < 2:
        raise ConfigError(f"{where}: every image has label {classes[0]}: one class cannot be scored "
                          "(any clustering scores ACC = NMI = ARI = 1). Fix: use data with at least two classes")
    if len(classes) != num_classes:
        raise ConfigError(
            f"{where}: the labels have {len(classes)} classes but num_classes is {num_classes}; SCL clusters "
            f"into num_classes clusters and scores against the labels. Fix: set num_classes: {len(classes)} "
            "in the dataset's block of params.yaml")


def check_run_inputs(settings: RunSettings, data) -> None:
    """Raise ConfigError when `settings` cannot train on `data` (a PreparedData)."""
    from scl.augment import get_recipe

    ds, t = settings.dataset, settings.train
    where = f"datasets.{ds.name}"
    shape = tuple(data.images.shape[1:])
    if shape != (ds.image_size, ds.image_size, ds.channels):
        raise ConfigError(f"the prepared images are {shape} (H, W, C) but {where} says "
                          f"{ds.image_size}x{ds.image_size}x{ds.channels}; fix {where} or re-prepare the data")
    try:
        recipe = get_recipe(t.augment)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    if recipe.channels != ds.channels:
        fits = "grayscale or digits" if ds.channels == 1 else "mocov2"
        raise ConfigError(f"augment: {t.augment!r} is a {recipe.channels}-channel recipe but {ds.name} has "
                          f"{ds.channels}-channel images; use augment: {fits}")
    n = len(data)
    if n < t.batch_size:
        raise ConfigError(f"{n} images but batch_size {t.batch_size}; lower batch_size")
    if n < ds.num_classes:
        raise ConfigError(f"{n} images cannot form num_classes={ds.num_classes} clusters; lower num_classes")
    check_labels(data.labels, ds.num_classes, f"the data of {ds.name}")
    check_device(t.device)
