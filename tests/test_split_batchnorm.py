"""Split BN (MoCo's shuffle BN on one device, `bn_splits`) and the MLP projection (`projection`):
each checked against the same thing done by hand, group by group."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scl.config import ConfigError, load_params, resolve
from scl.models.backbones import build_backbone
from scl.models.scl_model import projection_head
from scl.models.split_batchnorm import SplitBatchNorm2d, key_order
from scl.step import build_model

ROOT = Path(__file__).resolve().parents[1]


def _bn(splits=4, channels=3):
    torch.manual_seed(0)
    bn = SplitBatchNorm2d(channels, splits)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    return bn


def test_split_bn_normalises_each_contiguous_group_with_its_own_statistics():
    bn = _bn()
    x = torch.randn(16, 3, 5, 5, requires_grad=True)
    y = bn(x)
    # by hand: group g = samples 4g..4g+3, (x - mean_g) / sqrt(var_g + eps) * w + b
    for g in range(4):
        xg = x[4 * g : 4 * g + 4].detach()
        mean = xg.mean(dim=(0, 2, 3), keepdim=True)
        var = xg.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        ref = (xg - mean) / torch.sqrt(var + bn.eps) * bn.weight.view(1, -1, 1, 1) + bn.bias.view(1, -1, 1, 1)
        torch.testing.assert_close(y[4 * g : 4 * g + 4].detach(), ref, rtol=1e-5, atol=1e-5)
    # gradients flow group by group too: the same as S separate batch_norm calls
    y.square().sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    parts = [F.batch_norm(c, None, None, bn.weight, bn.bias, True, 0.1, bn.eps) for c in x2.chunk(4)]
    torch.cat(parts).square().sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_split_bn_running_statistics_are_the_mean_of_the_groups_updates():
    bn = _bn()
    rm0, rv0 = bn.running_mean.clone(), bn.running_var.clone()
    x = torch.randn(16, 3, 5, 5)
    bn(x)
    m = bn.momentum
    means = torch.stack([c.mean(dim=(0, 2, 3)) for c in x.chunk(4)])
    variances = torch.stack([c.var(dim=(0, 2, 3), unbiased=True) for c in x.chunk(4)])  # BN keeps the unbiased one
    torch.testing.assert_close(bn.running_mean, (1 - m) * rm0 + m * means.mean(0))
    torch.testing.assert_close(bn.running_var, (1 - m) * rv0 + m * variances.mean(0))
    assert int(bn.num_batches_tracked) == 1


def test_split_bn_is_plain_bn_in_eval_mode_for_one_split_and_for_an_undivided_batch():
    bn = _bn()
    plain = nn.BatchNorm2d(3)
    plain.load_state_dict(bn.state_dict())  # the same parameters and buffers: checkpoints load into either
    x = torch.randn(8, 3, 4, 4)
    bn.eval(), plain.eval()
    torch.testing.assert_close(bn(x), plain(x), rtol=0, atol=0)
    bn.train(), plain.train()
    odd = torch.randn(6, 3, 4, 4)  # 4 does not divide 6: whole-batch statistics
    torch.testing.assert_close(bn(odd), plain(odd), rtol=0, atol=0)
    one = SplitBatchNorm2d(3, 1)
    one.load_state_dict(plain.state_dict())
    torch.testing.assert_close(one(x), plain(x), rtol=0, atol=0)
    with pytest.raises(ValueError, match="splits"):
        SplitBatchNorm2d(3, 0)


def test_split_bn_keeps_channels_last():
    bn = _bn()
    x = torch.randn(8, 3, 4, 4).to(memory_format=torch.channels_last)
    assert bn(x).is_contiguous(memory_format=torch.channels_last)


def test_key_order_mixes_every_query_group_into_every_key_group():
    b, s = 32, 4
    order = key_order(b, s)
    assert sorted(order.tolist()) == list(range(b))  # a permutation
    query_group = torch.arange(b) // (b // s)  # contiguous slices
    for g, chunk in enumerate(order.chunk(s)):
        assert chunk.tolist() == list(range(g, b, s))  # key group g = residues g mod S
        assert torch.bincount(query_group[chunk], minlength=s).tolist() == [b // s**2] * s
    assert key_order(b, 1) is None and key_order(30, 4) is None


def test_backbone_uses_split_bn_only_when_asked():
    kinds = lambda m: {type(x) for x in m.modules() if isinstance(x, nn.BatchNorm2d)}  # noqa: E731
    assert kinds(build_backbone("small_cnn", 1, 4)) == {nn.BatchNorm2d}
    assert kinds(build_backbone("small_cnn", 1, 4, bn_splits=2)) == {SplitBatchNorm2d}
    assert kinds(build_backbone("resnet18", 3, bn_splits=2)) == {SplitBatchNorm2d}


def _settings(**overrides):
    base = {"memory_size": 36, "cnn_width": 4, "feature_dim": 8, "device": "cpu", "batch_size": 8}
    return resolve(load_params(ROOT / "params.yaml"), "digits", "scl", 0, {**base, **overrides})


def test_training_step_keys_come_from_the_other_grouping_in_batch_order():
    s = _settings(bn_splits=4)
    model = build_model(s).train()
    g = torch.Generator().manual_seed(3)
    x_q, x_k = torch.randn(16, 1, 8, 8, generator=g), torch.randn(16, 1, 8, 8, generator=g)
    labels = {"target": torch.randint(0, 10, (16,), generator=g), "under": torch.randint(0, 5, (16,), generator=g)}
    _, _, keys = model.training_step(x_q, x_k, labels)
    # by hand: each residue class mod 4 of the key batch is one BN group; plain BN over it alone
    plain = build_model(_settings()).train()
    plain.load_state_dict(model.state_dict())
    with torch.no_grad():
        for r in range(4):
            _, k = plain.encoder_k(x_k[r::4])
            for t in keys:
                torch.testing.assert_close(keys[t][r::4], k[t], rtol=1e-5, atol=1e-6)


def test_mlp_projection_and_its_settings():
    head = projection_head("mlp", 16, 8)
    assert [type(m) for m in head] == [nn.Linear, nn.ReLU, nn.Linear]
    assert head[0].in_features == head[0].out_features == 16 and head[2].out_features == 8
    assert isinstance(projection_head("linear", 16, 8), nn.Linear)
    with pytest.raises(ValueError, match="projection"):
        projection_head("mlp3", 16, 8)
    model = build_model(_settings(projection="mlp"))
    assert all(isinstance(h, nn.Sequential) for h in model.encoder_q.heads.values())
    assert all(isinstance(h, nn.Sequential) for h in model.encoder_k.heads.values())
    with pytest.raises(ConfigError, match="projection"):
        _settings(projection="mlp3")


def test_bn_splits_must_divide_the_batch():
    assert _settings(bn_splits=4).train.bn_splits == 4
    with pytest.raises(ConfigError, match="bn_splits 3 does not divide batch_size 8"):
        _settings(bn_splits=3)
    with pytest.raises(ConfigError, match="bn_splits"):
        _settings(bn_splits=0)
