"""Small CNNs in the style of well-known ones, defined here because torchvision is not installable:
a MobileNetV3-Small-like net (depthwise convolutions, squeeze-and-excitation, hard-swish) and a
SqueezeNet-like net (fire modules, ceil-mode pooling), both for 32×32×3 inputs."""
from __future__ import annotations

import torch
from torch import nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.expand(self.relu(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expand: int, cout: int, kernel: int, stride: int, se: bool, act: type):
        super().__init__()
        layers = []
        if expand != cin:
            layers += [nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), act()]
        layers += [nn.Conv2d(expand, expand, kernel, stride, kernel // 2, groups=expand, bias=False),
                   nn.BatchNorm2d(expand), act()]
        if se:
            layers.append(SqueezeExcite(expand, max(8, expand // 4)))
        layers += [nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def mobilenet_v3_small_like(classes: int = 10) -> nn.Module:
    HS, RE = nn.Hardswish, nn.ReLU
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), HS(),
        InvertedResidual(16, 16, 16, 3, 2, True, RE), InvertedResidual(16, 72, 24, 3, 2, False, RE),
        InvertedResidual(24, 88, 24, 3, 1, False, RE), InvertedResidual(24, 96, 40, 5, 2, True, HS),
        InvertedResidual(40, 240, 40, 5, 1, True, HS),
        nn.Conv2d(40, 96, 1, bias=False), nn.BatchNorm2d(96), HS(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(96, 128), HS(), nn.Dropout(0.2), nn.Linear(128, classes))


class Fire(nn.Module):
    def __init__(self, cin: int, squeeze: int, expand1: int, expand3: int):
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(cin, squeeze, 1), nn.ReLU())
        self.expand1 = nn.Sequential(nn.Conv2d(squeeze, expand1, 1), nn.ReLU())
        self.expand3 = nn.Sequential(nn.Conv2d(squeeze, expand3, 3, padding=1), nn.ReLU())

    def forward(self, x):
        s = self.squeeze(x)
        return torch.cat([self.expand1(s), self.expand3(s)], 1)


def squeezenet_like(classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(32, 16, 32, 32), Fire(64, 16, 32, 32), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(64, 32, 64, 64),
        nn.Dropout(0.5), nn.Conv2d(128, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
