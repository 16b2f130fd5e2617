"""SemanticMemory (C FIFO banks, spec section 3) and InstanceQueue (MoCo queue)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scl.losses import negative_mask
from scl.memory import InstanceQueue, SemanticMemory
from scl.models.scl_model import SCLConfig, SCLModel

# tiny networks on a shared 2-core machine: one intra-op thread avoids OpenMP contention
torch.set_num_threads(1)


def distinct_keys(n, d=3, start=0):
    """Keys whose first coordinate is their arrival index: easy to track, exact in float32."""
    keys = torch.zeros(n, d)
    keys[:, 0] = torch.arange(start, start + n, dtype=torch.float32)
    keys[:, 1] = 1.0
    return keys


class LoopFifo:
    """Reference: one Python list per bank, keys appended one at a time, oldest dropped."""

    def __init__(self, num_banks, bank_size, initial=None):
        self.B = bank_size
        self.banks = [list(initial[c]) if initial is not None else [] for c in range(num_banks)]

    def enqueue(self, keys, labels):
        for key, y in zip(keys.tolist(), labels.tolist()):
            self.banks[y].append(key)
            if len(self.banks[y]) > self.B:
                self.banks[y].pop(0)


def assert_same_as_loop(memory, ref):
    for c in range(memory.num_clusters):
        got = memory.fifo(c).tolist()
        assert got == ref.banks[c], f"bank {c}"


# ----------------------------------------------------------------- sizes
def test_bank_sizes_from_scl_model_paper_setting():
    cfg = SCLConfig(backbone="small_cnn", in_channels=1, num_classes=10, feature_dim=8, memory_size=4096)
    model = SCLModel(cfg)
    target, under, inst = model.memories["target"], model.memories["under"], model.memories["instance"]
    assert (target.num_clusters, target.bank_size) == (10, 455)  # K / (C - 1) = 4096 // 9
    assert tuple(target.keys.shape) == (10, 455, 8)
    assert (under.num_clusters, under.bank_size) == (5, 1024)  # ceil(10/2) banks of 4096 // 4
    assert (inst.num_clusters, inst.bank_size) == (1, 4096)


@pytest.mark.parametrize("C,under", [(15, 8), (20, 10), (7, 4)])
def test_under_clustering_rounds_up(C, under):
    cfg = SCLConfig(backbone="small_cnn", in_channels=1, num_classes=C, feature_dim=4, memory_size=256, tasks=("target", "under"))
    model = SCLModel(cfg)
    assert model.num_clusters == {"target": C, "under": under} and under == math.ceil(C / 2)
    assert model.memories["under"].bank_size == 256 // (under - 1)
    assert model.memories["target"].bank_size == 256 // (C - 1)


def test_random_init_is_unit_and_valid():
    m = SemanticMemory(3, 5, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(m.keys.norm(dim=-1), torch.ones(3, 5))
    assert m.valid.all() and (m.ptr == 0).all()
    again = SemanticMemory(3, 5, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m.keys, again.keys)  # seeded


def test_bad_construction():
    with pytest.raises(ValueError, match="init"):
        SemanticMemory(3, 5, 4, init="zeros")
    with pytest.raises(ValueError):
        SemanticMemory(0, 5, 4)
    with pytest.raises(ValueError):
        SemanticMemory(3, 0, 4)


# ----------------------------------------------------------------- FIFO behaviour
def test_fifo_order_per_bank_over_several_batches():
    """Batches with at most B keys per bank: fifo(c) = the last B keys of label c, oldest first."""
    C, B = 3, 4
    m = SemanticMemory(C, B, 3, init="empty")
    gen = torch.Generator().manual_seed(1)
    arrived = {c: [] for c in range(C)}
    start = 0
    for _ in range(7):
        labels = torch.cat([torch.randperm(C, generator=gen)[:2], torch.randint(0, C, (3,), generator=gen)])
        # keep each batch within B keys per bank
        labels = labels[torch.bincount(labels, minlength=C)[labels] <= B]
        keys = distinct_keys(len(labels), start=start)
        start += len(labels)
        m.enqueue(keys, labels)
        for key, y in zip(keys.tolist(), labels.tolist()):
            arrived[y].append(key)
        for c in range(C):
            assert m.fifo(c).tolist() == arrived[c][-B:]


def test_enqueue_only_touches_own_bank():
    m = SemanticMemory(4, 3, 5, generator=torch.Generator().manual_seed(2))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    m.enqueue(F.normalize(torch.randn(2, 5), dim=1), torch.tensor([2, 2]))
    for c in (0, 1, 3):
        assert torch.equal(m.keys[c], before["keys"][c])
        assert torch.equal(m.valid[c], before["valid"][c])
        assert m.ptr[c] == before["ptr"][c]
    assert not torch.equal(m.keys[2], before["keys"][2])
    assert m.ptr[2] == 2
    assert torch.equal(m.keys[2, 2], before["keys"][2, 2])  # the third slot is not yet reached


def test_enqueue_overwrites_oldest_of_random_init():
    m = SemanticMemory(2, 3, 3, generator=torch.Generator().manual_seed(3))
    init = [m.fifo(c).tolist() for c in range(2)]
    ref = LoopFifo(2, 3, initial=init)
    for i in range(4):
        labels = torch.tensor([0, 1, 1])
        keys = distinct_keys(3, start=10 * i)
        m.enqueue(keys, labels)
        ref.enqueue(keys, labels)
        assert_same_as_loop(m, ref)


def test_batch_with_more_than_B_keys_keeps_the_last_B_as_a_set():
    m = SemanticMemory(2, 3, 3, init="empty")
    labels = torch.tensor([0, 0, 1, 0, 0, 0])  # five keys for bank 0 (B = 3)
    keys = distinct_keys(6)
    m.enqueue(keys, labels)
    assert sorted(m.fifo(0)[:, 0].tolist()) == [3.0, 4.0, 5.0]
    assert m.fifo(1)[:, 0].tolist() == [2.0]
    assert m.valid[0].all() and int(m.valid[1].sum()) == 1


def test_overflowing_batch_keeps_fifo_order():
    m = SemanticMemory(1, 3, 3, init="empty")
    ref = LoopFifo(1, 3)
    keys, labels = distinct_keys(5), torch.zeros(5, dtype=torch.long)
    m.enqueue(keys, labels)
    ref.enqueue(keys, labels)
    assert m.fifo(0)[:, 0].tolist() == [2.0, 3.0, 4.0]  # oldest first
    more = distinct_keys(1, start=5)
    m.enqueue(more, torch.zeros(1, dtype=torch.long))
    ref.enqueue(more, torch.zeros(1, dtype=torch.long))
    assert_same_as_loop(m, ref)  # key 2 (the oldest) must be the one dropped


def test_vectorised_enqueue_matches_one_by_one_loop():
    """Big batches (each within B keys per bank) against the one-key-at-a-time reference."""
    C, B, d = 5, 16, 4
    gen = torch.Generator().manual_seed(4)
    m = SemanticMemory(C, B, d, init="random", generator=gen)
    ref = LoopFifo(C, B, initial=[m.fifo(c).tolist() for c in range(C)])
    one_by_one = SemanticMemory(C, B, d, init="random", generator=torch.Generator().manual_seed(4))
    for step in range(6):
        labels = torch.randint(0, C, (40,), generator=gen)
        labels = labels[torch.bincount(labels, minlength=C)[labels] <= B]
        keys = F.normalize(torch.randn(len(labels), d, generator=gen), dim=1)
        m.enqueue(keys, labels)
        ref.enqueue(keys, labels)
        for key, y in zip(keys, labels):
            one_by_one.enqueue(key[None], y[None])
        assert_same_as_loop(m, ref)
        # same physical state as the module itself fed one key at a time
        assert torch.equal(m.keys, one_by_one.keys)
        assert torch.equal(m.ptr, one_by_one.ptr)
        assert torch.equal(m.valid, one_by_one.valid)


def test_vectorised_enqueue_matches_loop_with_overflowing_batches():
    C, B, d = 3, 5, 2
    gen = torch.Generator().manual_seed(5)
    m = SemanticMemory(C, B, d, init="empty")
    ref = LoopFifo(C, B)
    start = 0
    for _ in range(4):
        labels = torch.randint(0, C, (23,), generator=gen)  # about 8 keys per bank of 5
        keys = distinct_keys(23, d, start=start)
        start += 23
        m.enqueue(keys, labels)
        ref.enqueue(keys, labels)
        assert_same_as_loop(m, ref)


# ----------------------------------------------------------------- empty init
def test_empty_banks_expose_only_valid_entries():
    C, B, d = 3, 4, 3
    m = SemanticMemory(C, B, d, init="empty")
    assert not m.valid.any()
    assert all(len(m.fifo(c)) == 0 for c in range(C))
    labels = torch.tensor([0, 0, 2])
    m.enqueue(distinct_keys(3, d), labels)
    keys, bank, valid = m.flat()
    assert keys.shape == (C * B, d) and bank.tolist() == [0] * B + [1] * B + [2] * B
    assert valid.tolist() == [True, True, False, False] + [False] * 4 + [True, False, False, False]
    assert m.fifo(0)[:, 0].tolist() == [0.0, 1.0]
    assert len(m.fifo(1)) == 0
    assert m.fifo(2)[:, 0].tolist() == [2.0]
    # eq. 2 negatives never include a slot that was never written
    usable = negative_mask(torch.tensor([1, 0, 2]), bank, valid, exclude_own=True)
    assert not usable[:, ~valid].any()
    assert usable.sum(1).tolist() == [3, 1, 2]
    assert torch.equal(negative_mask(torch.tensor([1]), bank, valid, exclude_own=False)[0], valid)


def test_flat_is_a_view_of_bank_layout():
    m = SemanticMemory(3, 2, 4, generator=torch.Generator().manual_seed(6))
    keys, bank, valid = m.flat()
    for c in range(3):
        assert torch.equal(keys[bank == c], m.keys[c])
    assert valid.all()


# ----------------------------------------------------------------- instance queue
def test_instance_queue_is_a_moco_queue_of_K():
    K, d = 6, 3
    q = InstanceQueue(K, d, init="empty")
    assert (q.num_clusters, q.bank_size) == (1, K)
    arrived = []
    start = 0
    for n in (2, 3, 4, 1, 5):
        keys = distinct_keys(n, d, start=start)
        start += n
        q.enqueue(keys)  # no labels needed
        arrived += keys.tolist()
        assert q.fifo(0).tolist() == arrived[-K:]
    keys, bank, valid = q.flat()
    assert keys.shape == (K, d) and (bank == 0).all() and valid.all()


def test_instance_queue_ignores_labels():
    a, b = InstanceQueue(4, 3, init="empty"), InstanceQueue(4, 3, init="empty")
    keys = distinct_keys(3)
    a.enqueue(keys)
    b.enqueue(keys, torch.tensor([2, 7, 1]))
    assert torch.equal(a.keys, b.keys) and torch.equal(a.ptr, b.ptr)


def test_memory_lives_in_state_dict():
    m = SemanticMemory(2, 3, 4, init="empty")
    m.enqueue(distinct_keys(2, 4), torch.tensor([1, 1]))
    sd = m.state_dict()
    assert set(sd) == {"keys", "valid", "ptr"}
    fresh = SemanticMemory(2, 3, 4, init="empty")
    fresh.load_state_dict(sd)
    assert fresh.fifo(1).tolist() == m.fifo(1).tolist() and torch.equal(fresh.ptr, m.ptr)


def test_refill_rebuilds_each_bank_from_its_cluster_members():
    gen = torch.Generator().manual_seed(0)
    m = SemanticMemory(3, 4, 2, init="random", generator=gen)
    old_bank2 = m.keys[2].clone()
    # cluster 0: 6 members (>= B, drawn without replacement), cluster 1: 2 members (with
    # replacement, bank still full), cluster 2: no member (bank kept as it was)
    feats = torch.nn.functional.normalize(torch.randn(8, 2, generator=gen), dim=1)
    labels = torch.tensor([0, 0, 0, 1, 0, 1, 0, 0])
    m.ptr.fill_(3)
    m.refill(feats, labels, torch.Generator().manual_seed(1))
    rows = {tuple(r.tolist()) for r in feats[labels == 0]}
    bank0 = [tuple(r.tolist()) for r in m.keys[0]]
    assert set(bank0) <= rows and len(set(bank0)) == 4  # distinct members of cluster 0
    bank1 = {tuple(r.tolist()) for r in m.keys[1]}
    assert bank1 <= {tuple(r.tolist()) for r in feats[labels == 1]}
    assert torch.equal(m.keys[2], old_bank2)
    assert m.valid.all() and (m.ptr == 0).all()


# ----------------------------------------------------------------- fixed shapes (issue 11)
def test_instance_queue_ring_buffer_equals_one_bank_memory_with_overflowing_batches():
    """The ring-buffer enqueue leaves the very state the general bank enqueue leaves with
    one bank, also for batches larger than the queue."""
    K, d = 7, 3
    ring, bank = InstanceQueue(K, d, init="empty"), SemanticMemory(1, K, d, init="empty")
    start = 0
    for n in (3, 9, 2, 7, 15, 1):
        keys = distinct_keys(n, d, start=start)
        start += n
        ring.enqueue(keys)
        bank.enqueue(keys, torch.zeros(n, dtype=torch.long))
        for name in ("keys", "valid", "ptr"):
            assert torch.equal(getattr(ring, name), getattr(bank, name)), (n, name)


def test_enqueue_reads_nothing_on_the_host():
    from scl.hostsync import HostSyncRecorder

    gen = torch.Generator().manual_seed(9)
    memories = [SemanticMemory(4, 5, 3, generator=gen), InstanceQueue(6, 3, generator=gen)]
    for m in memories:
        labels = torch.randint(0, 4, (11,), generator=gen)  # overflowing banks too
        keys = torch.randn(11, 3, generator=gen)
        with HostSyncRecorder() as rec:
            m.enqueue(keys, labels)
            m.flat()
        assert rec.events == [], rec.report()
