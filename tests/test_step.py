"""scl.step: the one training step, checked against its parts done by hand; the model and
optimiser built from resolved settings. A tiny CNN on 8x8 images: well under a second."""

from __future__ import annotations

from pathlib import Path

import torch

from scl.config import load_params, resolve
from scl.step import build_model, build_optimizer, epoch_generator, set_lr, train_step

ROOT = Path(__file__).resolve().parents[1]


def _settings(**overrides):
    base = {"memory_size": 36, "cnn_width": 4, "feature_dim": 8, "device": "cpu", "ema_momentum": 0.5,
            "sgd_momentum": 0.0, "weight_decay": 0.0, "lr": 0.1, "classifier_lr_mult": 2.0}
    return resolve(load_params(ROOT / "params.yaml"), "digits", "scl", 0, {**base, **overrides})


def _batch(b=6):
    g = torch.Generator().manual_seed(1)
    x_q, x_k = torch.randn(b, 1, 8, 8, generator=g), torch.randn(b, 1, 8, 8, generator=g)
    labels = {"target": torch.randint(0, 10, (b,), generator=g), "under": torch.randint(0, 5, (b,), generator=g)}
    return x_q, x_k, labels


def test_train_step_is_forward_sgd_momentum_update_and_enqueue():
    s = _settings()
    model, twin = build_model(s), build_model(s)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    opt, opt_twin = build_optimizer(model, s.train), build_optimizer(twin, s.train)
    set_lr(opt, 0.1)
    set_lr(opt_twin, 0.1)
    x_q, x_k, labels = _batch()
    counts = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0])

    loss, terms = train_step(model, opt, x_q, x_k, labels, counts, None)

    # the same by hand: losses, SGD step, key encoder m * k + (1 - m) * q, keys into the memories
    loss_h, terms_h, keys = twin.training_step(x_q, x_k, labels, counts, None)
    opt_twin.zero_grad()
    loss_h.backward()
    opt_twin.step()
    m = s.train.ema_momentum
    with torch.no_grad():
        expected_k = [m * k + (1 - m) * q for k, q in zip(twin.encoder_k.parameters(), twin.encoder_q.parameters())]
    twin.enqueue(keys, labels)
    assert not loss.requires_grad and torch.equal(loss, loss_h.detach())
    assert set(terms) == set(terms_h) and all(torch.equal(terms[k], terms_h[k].detach()) for k in terms)
    for p, q in zip(model.encoder_q.parameters(), twin.encoder_q.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    for p, e in zip(model.encoder_k.parameters(), expected_k):
        torch.testing.assert_close(p, e, rtol=0, atol=1e-7)
    for t in ("target", "under", "instance"):
        torch.testing.assert_close(model.memories[t].keys, twin.memories[t].keys, rtol=0, atol=0)
        assert torch.equal(model.memories[t].ptr, twin.memories[t].ptr)
    # the step really enqueued: the instance queue's pointer moved on by the batch size
    assert int(model.memories["instance"].ptr) == 6


def test_optimizer_groups_and_learning_rates_follow_the_settings():
    s = _settings(classifier_lr_mult=3.0, sgd_momentum=0.7, weight_decay=0.01)
    model = build_model(s)
    opt = build_optimizer(model, s.train)
    set_lr(opt, 0.2)
    enc, heads = opt.param_groups
    assert enc["lr"] == 0.2 and heads["lr"] == 0.2 * 3.0
    assert {id(p) for p in heads["params"]} == {id(p) for p in model.classifiers.parameters()}
    assert not any(id(p) in {id(q) for q in model.encoder_k.parameters()} for p in enc["params"])
    assert (enc["momentum"], enc["weight_decay"]) == (0.7, 0.01)
    # without classifiers (online_cd: false) one group
    assert len(build_optimizer(build_model(_settings(online_cd=False)), s.train).param_groups) == 1


def test_epoch_generator_depends_on_seed_and_epoch():
    draw = lambda seed, epoch: torch.randperm(50, generator=epoch_generator(seed, epoch)).tolist()  # noqa: E731
    assert draw(0, 3) == draw(0, 3)
    assert draw(0, 3) != draw(0, 4) and draw(0, 3) != draw(1, 3)
