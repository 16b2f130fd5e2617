"""EpochTally (scl/tally.py): device-side running sums and the deferred finiteness check."""

from __future__ import annotations

import math

import pytest
import torch

from scl.hostsync import HostSyncRecorder
from scl.tally import EpochTally, NonFiniteLoss


def test_means_equal_the_plain_average_and_adding_reads_nothing():
    gen = torch.Generator().manual_seed(0)
    rows = [torch.rand(3, generator=gen) for _ in range(7)]
    tally = EpochTally(["loss", "a", "b"], "cpu")
    with HostSyncRecorder() as rec:
        for r in rows:
            tally.add(r)
    assert rec.events == [], rec.report()
    expected = [sum(float(r[i]) for r in rows) / 7 for i in range(3)]
    assert list(tally.means()) == ["loss", "a", "b"]
    assert list(tally.means().values()) == pytest.approx(expected, rel=1e-12)
    assert tally.mean_loss() == pytest.approx(expected[0], rel=1e-12)
    tally.check()  # all finite: no error


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_the_first_non_finite_step_and_its_terms_are_reported(bad):
    tally = EpochTally(["loss", "mi", "cd"], "cpu")
    for step in range(6):
        row = torch.tensor([1.0, 0.5, 0.25])
        if step == 3:
            row[1] = bad
        if step == 5:  # a later bad step does not overwrite the first
            row[0] = math.nan
        tally.add(row)
    with pytest.raises(NonFiniteLoss) as err:
        tally.check()
    assert err.value.step == 3
    terms = err.value.terms
    assert terms["loss"] == 1.0 and terms["cd"] == 0.25 and not math.isfinite(terms["mi"])
