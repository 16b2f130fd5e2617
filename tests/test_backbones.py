"""Backbones: the small-input ResNet of IIC/PICA (spec section 2) and the small CNN."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from scl.models.backbones import BasicBlock, SmallInputResNet, build_backbone

# the ResNet-34 forward passes are the slowest tests; one thread avoids contention on 2 cores
torch.set_num_threads(1)


def expected_resnet_params(blocks, in_channels):
    """Parameter count written from the spec's description of PICA's variant."""
    conv = lambda cin, cout, k: cin * cout * k * k  # noqa: E731  (no bias: BN follows)
    bn = lambda c: 2 * c  # noqa: E731  (weight and bias)
    total = conv(in_channels, 64, 3) + bn(64)  # stem
    cin = 64
    for width, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
        for s in [stride] + [1] * (n - 1):
            total += conv(cin, width, 3) + bn(width) + conv(width, width, 3) + bn(width)
            if s != 1 or cin != width:
                total += conv(cin, width, 1) + bn(width)  # 1x1 conv + BN shortcut
            cin = width
    return total


def n_params(m):
    return sum(p.numel() for p in m.parameters())


def test_resnet34_parameter_count():
    net = build_backbone("resnet34", 3)
    expected = expected_resnet_params([3, 4, 6, 3], 3)
    assert n_params(net) == expected == 21_276_992  # ~21.3M: torchvision 21,797,672 - fc 513,000 - (7x7 - 3x3) stem 7,680
    assert n_params(build_backbone("resnet34", 1)) == expected_resnet_params([3, 4, 6, 3], 1)


def test_resnet18_parameter_count():
    assert n_params(build_backbone("resnet18", 3)) == expected_resnet_params([2, 2, 2, 2], 3) == 11_168_832


@pytest.mark.parametrize("name,blocks", [("resnet34", [3, 4, 6, 3]), ("resnet18", [2, 2, 2, 2])])
def test_resnet_block_structure(name, blocks):
    net = build_backbone(name, 3)
    assert isinstance(net, SmallInputResNet)
    basic = [m for m in net.modules() if isinstance(m, BasicBlock)]
    assert len(basic) == sum(blocks)
    widths = [b.conv1.out_channels for b in basic]
    assert [widths.count(w) for w in (64, 128, 256, 512)] == blocks
    firsts = [sum(blocks[:i]) for i in range(4)]  # first block of each stage
    assert [basic[i].conv1.stride for i in firsts] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    for i, b in enumerate(basic):
        if i not in firsts:
            assert b.conv1.stride == (1, 1)
        has_shortcut = len(b.shortcut) > 0
        assert has_shortcut == (i in firsts[1:])  # only where the shape changes
        if has_shortcut:
            conv, bn = b.shortcut
            assert conv.kernel_size == (1, 1) and isinstance(bn, nn.BatchNorm2d)


def test_resnet_stem():
    net = build_backbone("resnet34", 3)
    convs = [m for m in net.stem if isinstance(m, nn.Conv2d)]
    pools = [m for m in net.stem if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 1 and len(pools) == 1
    c = convs[0]
    assert (c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) == (3, 64, (3, 3), (1, 1), (1, 1))
    p = pools[0]
    assert (p.kernel_size, p.stride, p.padding) == (2, 2, 1)
    assert any(isinstance(m, nn.BatchNorm2d) for m in net.stem)
    assert any(isinstance(m, nn.ReLU) for m in net.stem)
    with torch.no_grad():
        assert net.stem(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 17, 17)  # (32 + 2 - 2) / 2 + 1


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
@pytest.mark.parametrize("size", [32, 96])
def test_resnet_output_shape(name, size):
    net = build_backbone(name, 3).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 512)
    assert net.out_dim == 512
    assert torch.isfinite(out).all()


def test_resnet_grayscale_input():
    net = build_backbone("resnet18", 1).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 1, 32, 32)).shape == (2, 512)


@pytest.mark.parametrize("size", [8, 28])
def test_small_cnn_output_shape(size):
    net = build_backbone("small_cnn", 1)
    out = net(torch.randn(3, 1, size, size))  # train mode: BN on the batch
    assert out.shape == (3, net.out_dim) == (3, 256)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_resnet_is_randomly_initialised():
    torch.manual_seed(0)
    a = build_backbone("resnet18", 3)
    torch.manual_seed(1)
    b = build_backbone("resnet18", 3)
    assert not torch.equal(a.stem[0].weight, b.stem[0].weight)


@pytest.mark.parametrize("name", ["resnet50", "ResNet34", "", "cnn"])
def test_unknown_backbone(name):
    with pytest.raises(ValueError, match="unknown backbone"):
        build_backbone(name, 3)
