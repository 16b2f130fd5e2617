"""Backbones f_theta: image -> feature vector.

`resnet18` / `resnet34`: the small-input ResNet variant of IIC and PICA (spec section 2):
3x3 conv stem, stride 1, 64 channels, BN, ReLU, max-pool k2 s2 p1; BasicBlock stages
[2,2,2,2] / [3,4,6,3], widths 64/128/256/512, strides 1/2/2/2; global average pool.

`small_cnn`: for tiny grayscale images (8x8 digits, 28x28 Fashion-MNIST), where a
ResNet-34 is wasted compute and its max-pool stem throws away most of an 8x8 image.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from scl.models.split_batchnorm import SplitBatchNorm2d


def norm_layer(bn_splits: int = 1):
    """BatchNorm2d, or its split version (MoCo's shuffle BN on one device) for bn_splits > 1."""
    return nn.BatchNorm2d if bn_splits <= 1 else functools.partial(SplitBatchNorm2d, splits=bn_splits)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, norm=nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:  # 1x1 conv + BN when the shape changes
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), norm(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class SmallInputResNet(nn.Module):
    def __init__(self, blocks: list[int], in_channels: int = 3, norm=nn.BatchNorm2d):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False),
            norm(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=2, stride=2, padding=1),
        )
        layers, in_planes = [], 64
        for planes, n, stride in zip((64, 128, 256, 512), blocks, (1, 2, 2, 2)):
            for s in [stride] + [1] * (n - 1):
                layers.append(BasicBlock(in_planes, planes, s, norm))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)  # B x 512


class SmallCNN(nn.Module):
    """Three conv stages without early down-sampling, for 8x8 and 28x28 grayscale images."""

    def __init__(self, in_channels: int = 1, width: int = 64, norm=nn.BatchNorm2d):
        super().__init__()

        def stage(cin, cout, pool):
            layers = [nn.Conv2d(cin, cout, 3, 1, 1, bias=False), norm(cout), nn.ReLU(inplace=True)]
            layers += [nn.Conv2d(cout, cout, 3, 1, 1, bias=False), norm(cout), nn.ReLU(inplace=True)]
            return layers + ([nn.MaxPool2d(2)] if pool else [])

        self.features = nn.Sequential(
            *stage(in_channels, width, pool=True),
            *stage(width, 2 * width, pool=True),
            *stage(2 * width, 4 * width, pool=False),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)  # B x 4*width


BACKBONES = ("resnet18", "resnet34", "small_cnn")


def build_backbone(name: str, in_channels: int, width: int = 64, bn_splits: int = 1) -> nn.Module:
    """`width` is the first stage's channel count of small_cnn (ResNets ignore it); bn_splits > 1
    normalises that many groups of a training batch separately (scl/models/split_batchnorm.py)."""
    norm = norm_layer(bn_splits)
    if name == "resnet18":
        return SmallInputResNet([2, 2, 2, 2], in_channels, norm)
    if name == "resnet34":
        return SmallInputResNet([3, 4, 6, 3], in_channels, norm)
    if name == "small_cnn":
        return SmallCNN(in_channels, width, norm)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
