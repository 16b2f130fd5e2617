"""The error a training run stops with. Its message says why and what to change.

`scl train` and `scl bench` turn it into exit status 3 (scl/cli.py).
"""


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, incompatible checkpoint, unusable device
    or fast-path setting). Says why."""
