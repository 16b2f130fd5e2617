"""The host-read recorder itself (scl/hostsync.py): it must see every kind of read it
claims to see, at both levels, in the forward, the backward and the optimiser, and
nothing in code that reads no values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scl.hostsync import HostSyncRecorder


def _ops(fn) -> dict[str, int]:
    with HostSyncRecorder() as rec:
        fn()
    return rec.counts()


X = torch.randn(6)
READS = {
    "item": (lambda: X.sum().item(), {"Tensor.item", "aten._local_scalar_dense"}),
    "if tensor": (lambda: 1 if torch.isfinite(X.sum()) else 0, {"Tensor.__bool__", "aten._local_scalar_dense"}),
    "float()": (lambda: float(X[0]), {"Tensor.__float__", "aten._local_scalar_dense"}),
    "int()": (lambda: int(X[0]), {"Tensor.__int__", "aten._local_scalar_dense"}),
    "format": (lambda: f"{X[0]:.3f}", {"Tensor.__format__"}),
    "list index": (lambda: [1, 2, 3][X.abs().long()[0].clamp(max=2)], {"Tensor.__index__"}),
    "tolist": (lambda: X.tolist(), {"Tensor.tolist"}),
    "numpy": (lambda: X.numpy(), {"Tensor.numpy"}),
    "np.asarray": (lambda: np.asarray(X), {"Tensor.__array__"}),
    "cpu": (lambda: X.cpu(), {"Tensor.cpu"}),
    "to meta": (lambda: X.to("meta"), {"Tensor.to", "aten._to_copy"}),
    "nonzero": (lambda: X.nonzero(), {"aten.nonzero"}),
    "bool mask": (lambda: X[X > 0], {"aten.index"}),
    "bool mask put": (lambda: X.clone().index_put_((X > 0,), torch.zeros(())), {"aten.index_put_"}),
    "masked_select": (lambda: X.masked_select(X > 0), {"aten.masked_select"}),
    "bincount": (lambda: torch.bincount(torch.arange(4), minlength=6), {"aten.bincount"}),
    "unique": (lambda: torch.unique(torch.arange(4)), {"aten._unique2"}),
    "repeat_interleave": (lambda: torch.arange(3).repeat_interleave(torch.tensor([1, 2, 3])),
                          {"aten.repeat_interleave", "aten.lift_fresh"}),
    "torch.tensor": (lambda: X + torch.tensor([1.0]), {"aten.lift_fresh"}),
    "equal": (lambda: torch.equal(X, X), {"aten.equal"}),
}


@pytest.mark.parametrize("name", list(READS))
def test_each_kind_of_host_read_is_recorded(name):
    fn, expected = READS[name]
    assert expected <= set(_ops(fn)), _ops(fn)


def test_value_free_code_records_nothing():
    w = torch.randn(4, 3, requires_grad=True)
    idx = torch.tensor([2, 0, 1])  # built outside the region

    def step():
        x = torch.randn(5, 3)
        y = (x @ w.t()).relu()[:, idx]  # integer indexing: fixed shape
        y = torch.where(y > 0.5, y, 0.0).masked_fill(y < 0.1, -1.0)
        loss = torch.logsumexp(y, dim=1).mean() + torch.isfinite(y).all().float()
        loss.backward()
        w.data.add_(w.grad, alpha=-0.1)
        torch.arange(3).repeat_interleave(2)  # int repeats: fixed shape
        y.detach().to(torch.float64)  # dtype only, same device
        return loss

    assert _ops(step) == {}


def test_reads_in_the_backward_pass_are_recorded():
    class ReadsInBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            return g * (2 if g.sum().item() != 0 else 1)

    x = torch.randn(3, requires_grad=True)
    y = ReadsInBackward.apply(x).sum()
    with HostSyncRecorder() as rec:
        y.backward()
    assert "aten._local_scalar_dense" in rec.counts(), rec.report()


def test_events_name_the_scl_frame_and_allow_filters():
    from scl.memory import SemanticMemory  # its once-an-epoch refill finds members with nonzero

    memory, labels = SemanticMemory(3, 2, 4), torch.tensor([0, 1, 1])
    with HostSyncRecorder() as rec:
        memory.refill(torch.randn(3, 4), labels)
    assert rec.events and any("memory.py" in w for e in rec.events for w in e.where), rec.report()
    with HostSyncRecorder(allow={"aten.bincount"}) as rec:
        torch.bincount(labels)
    assert rec.events == []
    # a recorder can be entered again; each use starts empty
    with rec:
        pass
    assert rec.events == [] and rec.report() == "no host reads"
