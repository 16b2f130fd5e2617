"""Datasets: upstream readers, verification, and the compact prepared array file.

Kept import-light on purpose: `scl.data.DataError` is used by the command line before any
reader (PIL, scikit-learn) is needed. Import readers from their modules, and the dataset
table / `prepare` from `scl.data.registry`.
"""

from scl.data.errors import DataError

# The names are listed here, not imported from the registry, so that building the command
# line's parser (every `scl` call) does not import the readers; a test keeps the two in step.
DATASET_NAMES = ("digits", "fashion", "cifar10", "cifar100-20", "stl10", "imagenet10", "imagenet-dogs",
                 "tiny-imagenet", "folder")

__all__ = ["DATASET_NAMES", "DataError"]
