"""SCL's losses against plain Python loops written from the paper's equations
(shared/paper/SCL-SPEC.md sections 4, 5 and 7), plus SCLModel.training_step.

Every reference below loops over samples, memory slots and banks one at a time and
uses only math on Python floats, so it shares no code path with the vectorised version.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scl.losses import (
    concept_discrimination_loss,
    contrastive_loss,
    memory_soft_assignment,
    negative_mask,
    reweighted_mean,
)
from scl.memory import InstanceQueue, SemanticMemory
from scl.models.scl_model import SCLConfig, SCLModel

# tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP contention
torch.set_num_threads(1)

TAU = 0.1
DT = torch.float64


def unit(n, d, gen):
    return F.normalize(torch.randn(n, d, generator=gen, dtype=DT), dim=1)


def flat_memory(num_banks, bank_size, d, gen, p_valid=1.0):
    """Slots laid out bank by bank, as SemanticMemory.flat() gives them."""
    keys = unit(num_banks * bank_size, d, gen)
    bank = torch.arange(num_banks).repeat_interleave(bank_size)
    valid = torch.rand(num_banks * bank_size, generator=gen, dtype=DT) < p_valid
    return keys, bank, valid


def dot(a, b):
    """Inner product of two lists of Python floats."""
    return sum(x * y for x, y in zip(a, b))


# ----------------------------------------------------------------- eq. 1-2 reference
def loop_mi_loss(q, k, mem, bank, valid, labels, exclude_own, tau=TAU):
    """-log MI(I_i) of eq. 1 with Q_i of eq. 2, one sample and one slot at a time."""
    q, k, mem, bank, valid, labels = (t.tolist() for t in (q, k, mem, bank, valid, labels))
    out = []
    for i in range(len(q)):
        Q_i = []
        for m in range(len(mem)):
            if not bool(valid[m]):
                continue
            if exclude_own and int(bank[m]) == int(labels[i]):
                continue  # keys of the sample's own cluster are not negatives
            Q_i.append(mem[m])
        pos = math.exp(dot(q[i], k[i]) / tau)
        denom = pos + sum(math.exp(dot(q[i], kt) / tau) for kt in Q_i)
        out.append(-math.log(pos / denom))
    return torch.tensor(out, dtype=DT)


@pytest.mark.parametrize("exclude_own", [True, False])
@pytest.mark.parametrize("p_valid", [1.0, 0.6])
def test_contrastive_loss_matches_eq1_loop(exclude_own, p_valid):
    gen = torch.Generator().manual_seed(1 + int(exclude_own) + int(10 * p_valid))
    C, B, d, n = 4, 5, 6, 9
    mem, bank, valid = flat_memory(C, B, d, gen, p_valid)
    q, k = unit(n, d, gen), unit(n, d, gen)
    labels = torch.randint(0, C, (n,), generator=gen)
    usable = negative_mask(labels, bank, valid, exclude_own=exclude_own)
    got = contrastive_loss(q, k, mem, usable, TAU)
    want = loop_mi_loss(q, k, mem, bank, valid, labels, exclude_own)
    assert got.shape == (n,)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_negative_mask_is_eq2_set():
    labels = torch.tensor([0, 2, 1])
    bank = torch.tensor([0, 0, 1, 1, 2, 2])
    valid = torch.tensor([True, False, True, True, True, False])
    own = negative_mask(labels, bank, valid, exclude_own=True)
    expected = torch.tensor(
        [
            [False, False, True, True, True, False],  # y=0: banks 1, 2, valid only
            [True, False, True, True, False, False],  # y=2: banks 0, 1
            [True, False, False, False, True, False],  # y=1: banks 0, 2
        ]
    )
    assert torch.equal(own, expected)
    allb = negative_mask(labels, bank, valid, exclude_own=False)
    assert torch.equal(allb, valid[None, :].expand(3, -1))


def test_exclude_own_changes_the_loss():
    """Cross-cluster ID really drops own-bank keys: filling the samples' own bank with a
    very hard negative (copies of query 0) raises the loss only when own keys are used."""
    gen = torch.Generator().manual_seed(3)
    C, B, d, n = 3, 4, 5, 6
    mem, bank, valid = flat_memory(C, B, d, gen)
    q, k = unit(n, d, gen), unit(n, d, gen)
    labels = torch.zeros(n, dtype=torch.long)
    mem = mem.clone()
    mem[:B] = q[0]  # bank 0 holds copies of query 0: a very hard negative if used
    with_own = contrastive_loss(q, k, mem, negative_mask(labels, bank, valid, False), TAU)
    without = contrastive_loss(q, k, mem, negative_mask(labels, bank, valid, True), TAU)
    assert (with_own > without).all()


def test_contrastive_loss_gradient_matches_loop_autograd():
    gen = torch.Generator().manual_seed(4)
    C, B, d, n = 3, 4, 5, 6
    mem, bank, valid = flat_memory(C, B, d, gen, p_valid=0.7)
    labels = torch.randint(0, C, (n,), generator=gen)
    q0, k = unit(n, d, gen), unit(n, d, gen)
    usable = negative_mask(labels, bank, valid, True)

    q1 = q0.clone().requires_grad_(True)
    contrastive_loss(q1, k, mem, usable, TAU).sum().backward()

    q2 = q0.clone().requires_grad_(True)
    total = 0
    for i in range(n):  # autograd through a loop version (tensor ops, one slot at a time)
        terms = [torch.exp(q2[i] @ k[i] / TAU)]
        for m in range(len(mem)):
            if valid[m] and bank[m] != labels[i]:
                terms.append(torch.exp(q2[i] @ mem[m] / TAU))
        total = total - torch.log(terms[0] / torch.stack(terms).sum())
    total.backward()
    torch.testing.assert_close(q1.grad, q2.grad, rtol=1e-9, atol=1e-10)


def test_contrastive_loss_without_negatives_is_zero_and_finite():
    """A sample whose every other bank is still empty has only its positive: loss 0."""
    gen = torch.Generator().manual_seed(5)
    mem, bank, _ = flat_memory(2, 3, 4, gen)
    valid = torch.tensor([True, True, True, False, False, False])  # only bank 0 filled
    q = unit(2, 4, gen).requires_grad_(True)
    k = unit(2, 4, gen)
    labels = torch.tensor([0, 1])
    loss = contrastive_loss(q, k, mem, negative_mask(labels, bank, valid, True), TAU)
    want = loop_mi_loss(q.detach(), k, mem, bank, valid, labels, True)
    torch.testing.assert_close(loss.detach(), want, rtol=1e-10, atol=1e-10)
    assert loss[0].item() == pytest.approx(0.0, abs=1e-12)
    loss.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_contrastive_loss_instance_queue_is_moco():
    """Over-clustering: the queue is one bank, every valid key a negative (MoCo)."""
    gen = torch.Generator().manual_seed(6)
    K, d, n = 10, 5, 7
    queue = InstanceQueue(K, d, init="empty").double()
    queue.enqueue(unit(7, d, gen))  # 7 of 10 slots written
    mem, bank, valid = queue.flat()
    assert int(valid.sum()) == 7
    q, k = unit(n, d, gen), unit(n, d, gen)
    usable = valid[None, :].expand(n, -1)  # what SCLModel uses for "instance"
    got = contrastive_loss(q, k, mem, usable, TAU)
    want = []
    for i in range(n):
        pos = math.exp(dot(q[i].tolist(), k[i].tolist()) / TAU)
        negs = [math.exp(dot(q[i].tolist(), mem[m].tolist()) / TAU) for m in range(K) if bool(valid[m])]
        want.append(-math.log(pos / (pos + sum(negs))))
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT), rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------- eq. 3 reference
def loop_soft_assignment(q, mem, bank, valid, C, tau=TAU):
    q, mem, bank, valid = (t.tolist() for t in (q, mem, bank, valid))
    out = []
    for i in range(len(q)):
        per_bank = [0.0] * C
        for j in range(C):
            for m in range(len(mem)):
                if int(bank[m]) == j and bool(valid[m]):
                    per_bank[j] += math.exp(dot(q[i], mem[m]) / tau)
        z = sum(per_bank)
        out.append([v / z for v in per_bank])
    return torch.tensor(out, dtype=DT)


@pytest.mark.parametrize("p_valid", [1.0, 0.5])
def test_memory_soft_assignment_matches_eq3_loop(p_valid):
    gen = torch.Generator().manual_seed(7)
    C, B, d, n = 5, 4, 6, 8
    mem, bank, valid = flat_memory(C, B, d, gen, p_valid)
    valid[:B] = True  # at least one non-empty bank
    q = unit(n, d, gen)
    got = memory_soft_assignment(q, mem, bank, valid, C, TAU)
    want = loop_soft_assignment(q, mem, bank, valid, C)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.sum(1), torch.ones(n, dtype=DT), rtol=0, atol=1e-12)


def test_memory_soft_assignment_empty_bank_gets_zero():
    gen = torch.Generator().manual_seed(8)
    C, B, d, n = 4, 3, 5, 6
    mem, bank, valid = flat_memory(C, B, d, gen)
    valid[2 * B : 3 * B] = False  # bank 2 empty
    valid[B] = False  # bank 1 partly filled
    q = unit(n, d, gen)
    got = memory_soft_assignment(q, mem, bank, valid, C, TAU)
    assert torch.isfinite(got).all()
    assert torch.equal(got[:, 2], torch.zeros(n, dtype=DT))
    torch.testing.assert_close(got, loop_soft_assignment(q, mem, bank, valid, C), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.sum(1), torch.ones(n, dtype=DT), rtol=0, atol=1e-12)


def test_memory_soft_assignment_from_semantic_memory_flat():
    """The bank-by-bank layout that the reshape relies on is what SemanticMemory.flat gives."""
    gen = torch.Generator().manual_seed(9)
    C, B, d = 3, 4, 5
    memory = SemanticMemory(C, B, d, init="empty").double()
    labels = torch.tensor([0, 0, 2, 2, 2, 0, 1])
    memory.enqueue(unit(len(labels), d, gen), labels)
    mem, bank, valid = memory.flat()
    q = unit(6, d, gen)
    got = memory_soft_assignment(q, mem, bank, valid, C, TAU)
    want = []
    for i in range(len(q)):
        per_bank = [sum(math.exp(dot(q[i].tolist(), kt) / TAU) for kt in memory.fifo(j).tolist()) for j in range(C)]
        want.append([v / sum(per_bank) for v in per_bank])
    torch.testing.assert_close(got, torch.tensor(want, dtype=DT), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- eq. 4 reference
def loop_cd_loss(logits, targets, weights=None):
    n, C = logits.shape
    logits, targets = logits.tolist(), targets.tolist()
    weights = None if weights is None else weights.tolist()
    total = 0.0
    for i in range(n):
        zmax = max(float(z) for z in logits[i])
        lse = zmax + math.log(sum(math.exp(float(z) - zmax) for z in logits[i]))
        for j in range(C):
            w = 1.0 if weights is None else float(weights[j])
            total += -w * targets[i][j] * (logits[i][j] - lse)
    return total / n


def random_targets(n, C, gen):
    return torch.softmax(torch.randn(n, C, generator=gen, dtype=DT) * 2, dim=1)


@pytest.mark.parametrize("weighted", [False, True])
def test_concept_discrimination_matches_eq4_loop(weighted):
    gen = torch.Generator().manual_seed(10 + weighted)
    n, C = 7, 5
    logits = torch.randn(n, C, generator=gen, dtype=DT) * 3
    targets = random_targets(n, C, gen)
    w = torch.rand(C, generator=gen, dtype=DT) + 0.5 if weighted else None
    got = concept_discrimination_loss(logits, targets, w)
    assert got.dim() == 0
    assert got.item() == pytest.approx(loop_cd_loss(logits, targets, w), rel=1e-12, abs=1e-12)


def test_concept_discrimination_unit_weights_equal_unweighted():
    gen = torch.Generator().manual_seed(12)
    logits, targets = torch.randn(5, 4, generator=gen, dtype=DT), random_targets(5, 4, gen)
    a = concept_discrimination_loss(logits, targets)
    b = concept_discrimination_loss(logits, targets, torch.ones(4, dtype=DT))
    assert a.item() == pytest.approx(b.item(), rel=1e-14)


def test_concept_discrimination_stop_gradient_and_analytic_grad():
    gen = torch.Generator().manual_seed(13)
    n, C = 6, 4
    logits = torch.randn(n, C, generator=gen, dtype=DT).requires_grad_(True)
    targets = random_targets(n, C, gen).requires_grad_(True)
    concept_discrimination_loss(logits, targets).backward()
    assert targets.grad is None  # p~ is a target: no gradient flows into it
    expected = (torch.softmax(logits.detach(), 1) - targets.detach()) / n
    torch.testing.assert_close(logits.grad, expected, rtol=1e-10, atol=1e-12)


def test_concept_discrimination_weighted_analytic_grad():
    gen = torch.Generator().manual_seed(14)
    n, C = 5, 3
    logits = torch.randn(n, C, generator=gen, dtype=DT).requires_grad_(True)
    targets = random_targets(n, C, gen).requires_grad_(True)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=DT)
    concept_discrimination_loss(logits, targets, w).backward()
    assert targets.grad is None
    p, t = torch.softmax(logits.detach(), 1), targets.detach()
    # d/dz_ij of -sum_j' w_j' t_ij' log softmax_j' = p_ij * sum_j' w_j' t_ij' - w_j t_ij
    expected = (p * (t * w).sum(1, keepdim=True) - w * t) / n
    torch.testing.assert_close(logits.grad, expected, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- eq. 6-7 reference
def loop_reweighted(losses, counts):
    S = sum(float(s) for s in counts)
    return sum((float(s) / S) * float(l) for s, l in zip(counts, losses))


def test_reweighted_mean_matches_eq7_loop():
    gen = torch.Generator().manual_seed(15)
    losses = torch.rand(9, generator=gen, dtype=DT) * 5
    counts = torch.randint(1, 6, (9,), generator=gen).to(DT)
    got = reweighted_mean(losses, counts)
    assert got.item() == pytest.approx(loop_reweighted(losses, counts), rel=1e-12)


def test_reweighted_mean_integer_counts():
    losses = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    got = reweighted_mean(losses, torch.tensor([1, 1, 2]))
    assert got.item() == pytest.approx((1 + 2 + 6) / 4, rel=1e-14)


def test_reweighted_mean_uniform_and_none_are_plain_mean():
    gen = torch.Generator().manual_seed(16)
    losses = torch.rand(8, generator=gen, dtype=DT)
    assert reweighted_mean(losses, None).item() == pytest.approx(losses.mean().item(), rel=1e-14)
    for s in (1.0, 2.5, 7.0):
        got = reweighted_mean(losses, torch.full((8,), s, dtype=DT))
        assert got.item() == pytest.approx(losses.mean().item(), rel=1e-14)


def test_reweighted_mean_triple_count_triple_weight():
    losses = torch.tensor([0.3, 1.7, 0.9, 2.2], dtype=DT, requires_grad=True)
    counts = torch.tensor([1.0, 3.0, 1.0, 1.0], dtype=DT)
    reweighted_mean(losses, counts).backward()
    g = losses.grad
    assert g[1].item() == pytest.approx(3 * g[0].item(), rel=1e-14)
    assert g[0].item() == pytest.approx(g[2].item(), rel=1e-14)
    assert g.sum().item() == pytest.approx(1.0, rel=1e-14)  # w_i = s_i / sum s


# ----------------------------------------------------------------- SCLModel.training_step
def tiny_cfg(**kw):
    base = dict(backbone="small_cnn", in_channels=1, num_classes=4, feature_dim=8, memory_size=12)
    base.update(kw)
    return SCLConfig(**base)


def tiny_batch(model, n=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_q = torch.randn(n, 1, 8, 8, generator=gen)
    x_k = torch.randn(n, 1, 8, 8, generator=gen)
    labels = {t: torch.randint(0, c, (n,), generator=gen) for t, c in model.num_clusters.items()}
    return x_q, x_k, labels


def build(seed=0, **kw):
    torch.manual_seed(seed)
    return SCLModel(tiny_cfg(**kw), generator=torch.Generator().manual_seed(seed))


def test_training_step_full_model_terms_and_total():
    model = build()
    x_q, x_k, labels = tiny_batch(model)
    loss, terms, keys = model.training_step(x_q, x_k, labels)
    assert set(terms) == {"mi_target", "mi_under", "mi_instance", "cd_target", "cd_under"}
    assert torch.isfinite(loss)
    assert all(torch.isfinite(v) and v.dim() == 0 for v in terms.values())
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    assert set(keys) == {"target", "under", "instance"}
    for k in keys.values():
        assert k.shape == (6, 8)
        torch.testing.assert_close(k.norm(dim=1), torch.ones(6))
        assert not k.requires_grad


def test_training_step_memory_sizes_in_tiny_model():
    model = build()
    assert model.num_clusters == {"target": 4, "under": 2}
    assert tuple(model.memories["target"].keys.shape) == (4, 12 // 3, 8)
    assert tuple(model.memories["under"].keys.shape) == (2, 12, 8)
    assert tuple(model.memories["instance"].keys.shape) == (1, 12, 8)


@pytest.mark.parametrize(
    "tasks,expected",
    [
        (("target",), {"mi_target", "cd_target"}),
        (("under",), {"mi_under", "cd_under"}),
        (("instance",), {"mi_instance"}),
        (("target", "instance"), {"mi_target", "cd_target", "mi_instance"}),
        (("under", "target"), {"mi_target", "cd_target", "mi_under", "cd_under"}),
    ],
)
def test_training_step_task_subsets(tasks, expected):
    model = build(tasks=tasks)
    x_q, x_k, labels = tiny_batch(model)
    loss, terms, keys = model.training_step(x_q, x_k, labels)
    assert set(terms) == expected
    assert set(keys) == set(tasks)
    assert set(model.memories) == set(tasks)
    assert torch.isfinite(loss)


def test_training_step_without_online_cd():
    model = build(online_cd=False)
    assert len(model.classifiers) == 0
    x_q, x_k, labels = tiny_batch(model)
    loss, terms, _ = model.training_step(x_q, x_k, labels)
    assert set(terms) == {"mi_target", "mi_under", "mi_instance"}
    assert torch.isfinite(loss)
    out = model.infer(x_q)  # pseudo-labels then come from eq. 3's p~
    for t, c in model.num_clusters.items():
        assert out[f"prob_{t}"].shape == (6, c)
        torch.testing.assert_close(out[f"prob_{t}"].sum(1), torch.ones(6))


def test_training_step_gradient_flow():
    model = build()
    x_q, x_k, labels = tiny_batch(model)
    loss, _, _ = model.training_step(x_q, x_k, labels)
    loss.backward()
    q_grads = [p.grad for p in model.encoder_q.parameters()]
    assert all(g is not None for g in q_grads)
    assert any(g.abs().sum() > 0 for g in q_grads)
    for name, clf in model.classifiers.items():
        for p in clf.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    for p in model.encoder_k.parameters():
        assert not p.requires_grad
        assert p.grad is None
    for buf in model.memories.buffers():
        assert not buf.requires_grad


def test_training_step_mi_matches_losses_of_encoder_outputs():
    """mi_t and cd_t of training_step are eq. 1 and eq. 4 on the encoders' outputs."""
    model = build()
    model.eval()  # BN in eval mode so the separate forward passes agree
    x_q, x_k, labels = tiny_batch(model)
    counts = torch.tensor([1.0, 2.0, 1.0, 4.0, 1.0, 1.0])
    _, terms, _ = model.training_step(x_q, x_k, labels, change_counts=counts)
    with torch.no_grad():
        _, q = model.encoder_q(x_q)
        _, k = model.encoder_k(x_k)
        mem, bank, valid = model.memories["target"].flat()
        want = loop_mi_loss(q["target"].double(), k["target"].double(), mem.double(), bank, valid, labels["target"], True)
        want_mi = loop_reweighted(want, counts)
        p = loop_soft_assignment(q["target"].double(), mem.double(), bank, valid, 4)
        want_cd = loop_cd_loss(model.classifiers["target"](q["target"]).double(), p)
    assert terms["mi_target"].item() == pytest.approx(want_mi, rel=1e-4)
    assert terms["cd_target"].item() == pytest.approx(want_cd, rel=1e-4)


def test_training_step_cross_cluster_flag_changes_mi():
    a = build(seed=1, tasks=("target",))
    b = build(seed=1, tasks=("target",), cross_cluster=False)
    x_q, x_k, labels = tiny_batch(a, seed=3)
    _, ta, _ = a.training_step(x_q, x_k, labels)
    _, tb, _ = b.training_step(x_q, x_k, labels)
    # more negatives (all banks) means a larger InfoNCE loss
    assert tb["mi_target"].item() > ta["mi_target"].item()
    assert ta["cd_target"].item() == pytest.approx(tb["cd_target"].item(), rel=1e-6)


def test_training_step_with_empty_memory_is_finite():
    model = build(memory_init="empty")
    x_q, x_k, labels = tiny_batch(model)
    loss, terms, _ = model.training_step(x_q, x_k, labels)
    assert torch.isfinite(loss), {k: v.item() for k, v in terms.items()}


# ----------------------------------------------------------------- warm-up (cluster_warmup_epochs)
def test_warmup_step_is_instance_discrimination_in_every_task():
    """clustering=False: each clustered task's MI term is eq. 1 with every valid slot as a
    negative (the loop with exclude_own=False), unweighted; the CD terms are 0 and no
    gradient reaches the classifiers."""
    model = build()
    x_q, x_k, labels = tiny_batch(model)
    counts = torch.tensor([1.0, 5.0, 1.0, 2.0, 1.0, 3.0])  # ignored in warm-up
    loss, terms, _ = model.training_step(x_q, x_k, labels, counts, None, clustering=False)
    _, q = model.encoder_q(x_q)
    _, k = model.encoder_k(x_k)
    for t in model.clustered:
        mem, bank, valid = model.memories[t].flat()
        expected = loop_mi_loss(q[t].double(), k[t].double(), mem.double(), bank, valid, labels[t],
                                exclude_own=False, tau=model.cfg.temperature)
        assert terms[f"mi_{t}"].item() == pytest.approx(expected.mean().item(), rel=1e-5)
        assert terms[f"cd_{t}"].item() == 0.0
    assert loss.item() == pytest.approx(sum(v.item() for v in terms.values()), rel=1e-6)
    loss.backward()
    assert all(p.grad is None for p in model.classifiers.parameters())
    # the clustering step of the same batch differs: its negatives exclude the own cluster
    _, clustered, _ = build().training_step(x_q, x_k, labels, counts)
    assert clustered["mi_target"].item() != pytest.approx(terms["mi_target"].item(), rel=1e-3)
