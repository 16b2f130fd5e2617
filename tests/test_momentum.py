"""The momentum encoder (spec section 2): theta~ <- m theta~ + (1 - m) theta."""

from __future__ import annotations

import pytest
import torch

from scl.models.scl_model import SCLConfig, SCLModel

# tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP contention
torch.set_num_threads(1)


def tiny_model(m=0.9, dtype=torch.float64):
    torch.manual_seed(0)
    cfg = SCLConfig(backbone="small_cnn", in_channels=1, num_classes=4, feature_dim=8, memory_size=12, ema_momentum=m)
    return SCLModel(cfg).to(dtype)


def perturb_query(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.encoder_q.parameters():
            p.add_(torch.randn(p.shape, generator=gen, dtype=p.dtype))


def params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_key_encoder_starts_as_copy_without_grad():
    model = tiny_model()
    pk, pq = list(model.encoder_k.parameters()), list(model.encoder_q.parameters())
    assert len(pk) == len(pq) > 0
    for a, b in zip(pk, pq):
        assert torch.equal(a, b)
        assert a.data_ptr() != b.data_ptr()  # separate weights
        assert not a.requires_grad
        assert b.requires_grad
    # an optimiser built from trainable parameters never sees the key encoder
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert not trainable & {id(p) for p in model.encoder_k.parameters()}


@pytest.mark.parametrize("m", [0.9, 0.99, 0.5])
def test_momentum_update_formula(m):
    model = tiny_model(m)
    perturb_query(model)
    theta_k, theta_q = params(model.encoder_k), params(model.encoder_q)
    assert any(not torch.equal(a, b) for a, b in zip(theta_k, theta_q))
    model.momentum_update()
    for new, tk, tq in zip(model.encoder_k.parameters(), theta_k, theta_q):
        torch.testing.assert_close(new, m * tk + (1 - m) * tq, rtol=1e-13, atol=1e-14)
    # the query encoder is not touched
    for p, tq in zip(model.encoder_q.parameters(), theta_q):
        assert torch.equal(p, tq)


def test_momentum_update_repeated_is_geometric():
    m = 0.9
    model = tiny_model(m)
    theta_k0 = params(model.encoder_k)
    perturb_query(model)
    theta_q = params(model.encoder_q)
    for _ in range(3):
        model.momentum_update()
    for new, tk, tq in zip(model.encoder_k.parameters(), theta_k0, theta_q):
        torch.testing.assert_close(new, m**3 * tk + (1 - m**3) * tq, rtol=1e-12, atol=1e-13)


def test_momentum_one_leaves_key_encoder_unchanged():
    model = tiny_model(1.0)
    perturb_query(model)
    before = params(model.encoder_k)
    model.momentum_update()
    for p, b in zip(model.encoder_k.parameters(), before):
        assert torch.equal(p, b)


def test_momentum_zero_copies_query_encoder():
    model = tiny_model(0.0)
    perturb_query(model)
    model.momentum_update()
    for pk, pq in zip(model.encoder_k.parameters(), model.encoder_q.parameters()):
        assert torch.equal(pk, pq)


def test_momentum_update_float32_model():
    m = 0.9
    model = tiny_model(m, torch.float32)
    perturb_query(model)
    theta_k, theta_q = params(model.encoder_k), params(model.encoder_q)
    model.momentum_update()
    for new, tk, tq in zip(model.encoder_k.parameters(), theta_k, theta_q):
        torch.testing.assert_close(new, m * tk + (1 - m) * tq, rtol=1e-6, atol=1e-6)


def test_bn_running_stats_follow_the_average():
    m = 0.9
    model = tiny_model(m)
    model.train()
    with torch.no_grad():
        model.encoder_q(torch.randn(4, 1, 8, 8, dtype=torch.float64))  # moves BN running stats
    bk = {n: b.clone() for n, b in model.encoder_k.named_buffers()}
    bq = dict(model.encoder_q.named_buffers())
    model.momentum_update()
    for name, b in model.encoder_k.named_buffers():
        if b.dtype.is_floating_point:
            torch.testing.assert_close(b, m * bk[name] + (1 - m) * bq[name], rtol=1e-13, atol=1e-14)
        else:
            assert torch.equal(b, bq[name])


def test_optimizer_step_then_momentum_update_moves_key_encoder_towards_query():
    model = tiny_model(0.9)
    model.train()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(6, 1, 8, 8, generator=gen, dtype=torch.float64)
    labels = {t: torch.randint(0, c, (6,), generator=gen) for t, c in model.num_clusters.items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    before_k = params(model.encoder_k)
    loss, _, _ = model.training_step(x, x.flip(-1), labels)
    opt.zero_grad()
    loss.backward()
    opt.step()
    # the optimiser alone never changes the key encoder
    for p, b in zip(model.encoder_k.parameters(), before_k):
        assert torch.equal(p, b)
    theta_q = params(model.encoder_q)
    model.momentum_update()
    for new, tk, tq in zip(model.encoder_k.parameters(), before_k, theta_q):
        torch.testing.assert_close(new, 0.9 * tk + 0.1 * tq, rtol=1e-13, atol=1e-14)


def test_foreach_update_equals_the_per_tensor_loop_bit_for_bit_and_reads_nothing():
    """The foreach update does the per-tensor loop's arithmetic (float32, as trained)."""
    import copy

    from scl.hostsync import HostSyncRecorder

    model = tiny_model(0.99, torch.float32)
    perturb_query(model)
    with torch.no_grad():
        for b in model.encoder_q.buffers():
            b.add_(torch.rand_like(b) if b.dtype.is_floating_point else torch.ones_like(b))
    loop = copy.deepcopy(model)
    m = 0.99
    with torch.no_grad():
        for p_k, p_q in zip(loop.encoder_k.parameters(), loop.encoder_q.parameters()):
            p_k.mul_(m).add_(p_q, alpha=1.0 - m)
        for b_k, b_q in zip(loop.encoder_k.buffers(), loop.encoder_q.buffers()):
            b_k.mul_(m).add_(b_q, alpha=1.0 - m) if b_k.dtype.is_floating_point else b_k.copy_(b_q)
    with HostSyncRecorder() as rec:
        model.momentum_update()
    assert rec.events == [], rec.report()
    for (name, a), b in zip(model.state_dict().items(), loop.state_dict().values()):
        assert torch.equal(a, b), name
