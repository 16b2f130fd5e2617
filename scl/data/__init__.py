"""Datasets: upstream readers, verification, and the compact prepared array file.

Kept import-light on purpose: `scl.data.DataError` is used by the command line before any
reader (PIL, scikit-learn) is needed. Import readers from their modules, and the dataset
table / `prepare` from `scl.data.registry`.
"""

from scl.data.errors import DataError

__all__ = ["DataError"]
