"""Running sums of an epoch's loss terms, kept on the training device.

Reading a loss on the host (`loss.item()`, `if not torch.isfinite(loss)`) makes the host
wait for the device at every step, so the device idles while the host prepares the next
step. `EpochTally` instead adds each step's loss terms to a vector on the device and
keeps, also on the device, the first step whose terms were not all finite and their
values. The host reads it only when asked: `check()` (every `check_every` steps and at the
end of the epoch; one read), `means()` (the epoch's averages; one read) and `mean_loss()`
(for a progress bar, at most about once a second). A non-finite loss is therefore
reported up to `check_every` steps after it happened, with the step and the terms of the
step where it first happened - and no checkpoint is ever written after it, since the end
of the epoch checks first.
"""

from __future__ import annotations

import torch


class NonFiniteLoss(RuntimeError):
    """A step's loss terms were not all finite: `step` (0-based in the epoch), `terms`."""

    def __init__(self, step: int, terms: dict[str, float]):
        super().__init__(f"non-finite loss at step {step + 1}: {terms}")
        self.step, self.terms = step, terms


class EpochTally:
    """names: the loss terms in the order `add` receives them (e.g. loss, mi_target, ...)."""

    def __init__(self, names: list[str] | tuple[str, ...], device: torch.device | str):
        self.names = tuple(names)
        self.steps = 0
        self.sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_values = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    @torch.no_grad()
    def add(self, values: torch.Tensor) -> None:
        """One step's terms (a vector in `names` order, on the device). No host read."""
        v = values.detach().to(torch.float64)
        self.sums.add_(v)
        first = torch.isfinite(v).all().logical_not_() & (self.first_bad < 0)
        self.first_bad = torch.where(first, self.steps, self.first_bad)
        self.bad_values = torch.where(first, v, self.bad_values)
        self.steps += 1

    def check(self) -> None:
        """Raise NonFiniteLoss if some step so far had a non-finite term (one host read)."""
        step = int(self.first_bad)
        if step >= 0:
            raise NonFiniteLoss(step, dict(zip(self.names, self.bad_values.tolist())))

    def means(self) -> dict[str, float]:
        """The average of every term over the steps added (one host read)."""
        return {k: v / max(self.steps, 1) for k, v in zip(self.names, self.sums.tolist())}

    def mean_loss(self) -> float:
        """The running average of the first term (one host read: call it sparingly)."""
        return float(self.sums[0]) / max(self.steps, 1)
