"""The plain MoCo v2 step that `scl bench` compares SCL with (scl/bench_reference.py)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from scl.bench_reference import MoCoV2
from scl.hostsync import HostSyncRecorder
from scl.models.backbones import build_backbone

torch.set_num_threads(1)


def _model(queue=10):
    torch.manual_seed(0)
    net = build_backbone("small_cnn", 1, 4)
    return MoCoV2(net, net.out_dim, dim=8, queue=queue, m=0.9, t=0.2)


def test_loss_is_infonce_against_the_queue_and_the_queue_is_a_ring():
    model = _model()
    x = torch.randn(4, 1, 8, 8)
    queue = model.queue.clone()
    loss, k = model.loss(x, x)
    q = F.normalize(model.q(x), dim=1).detach()
    expected = 0.0
    for i in range(4):  # -log softmax of the positive, one sample at a time
        logits = [float(q[i] @ k[i]) / 0.2] + [float(q[i] @ queue[j]) / 0.2 for j in range(10)]
        expected += -(logits[0] - math.log(sum(math.exp(v) for v in logits)))
    assert abs(float(loss.detach()) - expected / 4) < 1e-4
    for start in (0, 4, 8):  # 3 batches of 4 in a queue of 10: the third wraps around
        model.enqueue(k)
        slots = [(start + i) % 10 for i in range(4)]
        assert torch.equal(model.queue[slots], k)
    assert int(model.ptr) == 2


def test_a_step_reads_nothing_on_the_host_and_moves_the_key_encoder():
    model = _model()
    opt = torch.optim.SGD(model.q.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(4, 1, 8, 8)
    before = [p.clone() for p in model.k.parameters()]
    for _ in range(2):
        with HostSyncRecorder() as rec:
            loss, k = model.loss(x, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            model.enqueue(k)
        assert rec.events == [], rec.report()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.k.parameters()))
    assert all(not p.requires_grad for p in model.k.parameters())
