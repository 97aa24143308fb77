"""Small classifiers in the style of well-known architectures, for 3×32×32 inputs, defined here because
torchvision is not installable: MobileNetV3-Small (depthwise convolutions, squeeze-and-excitation,
hard-swish), SqueezeNet (fire modules, ceil-mode pooling), ResNet (BatchNorm, residual Add), DenseNet
(Concat), Inception (branches, LocalResponseNorm), MobileNetV2 (ReLU6), EfficientNet (SiLU, squeeze-excite,
Resize, GroupNorm), ConvNeXt (LayerNorm over channels-last, GELU), ViT (LayerNorm, multi-head attention, GELU)
and a U-Net-like net (Resize on the decoder path). ``ARCHITECTURES`` maps a short name to each builder."""
from __future__ import annotations

from functools import partial

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


def squeezenet_like(classes: int = 10, flatten: bool = True) -> nn.Module:
    """``flatten=False`` ends with (N, classes, 1, 1) scores, as the ONNX model zoo's SqueezeNet does."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3), nn.ReLU(), nn.MaxPool2d(3, 2, ceil_mode=True),
        Fire(32, 16, 32, 32), Fire(64, 16, 32, 32), nn.MaxPool2d(3, 2, ceil_mode=True), Fire(64, 32, 64, 64),
        nn.Dropout(0.5), nn.Conv2d(128, classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        *([nn.Flatten()] if flatten else []))


# ---- ResNet: BatchNorm, residual Add ----------------------------------------------------------------------
class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                         if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + self.shortcut(x))


def resnet_like(classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
                         BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, classes))


# ---- DenseNet: Concat of every earlier feature map ---------------------------------------------------------
class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, 4 * growth, 1, bias=False),
                                  nn.BatchNorm2d(4 * growth), nn.ReLU(), nn.Conv2d(4 * growth, growth, 3, 1, 1, bias=False))

    def forward(self, x):
        return torch.cat([x, self.body(x)], 1)


def densenet_like(classes: int = 10, growth: int = 8) -> nn.Module:
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False)]
    channels = 16
    for block in range(2):
        for _ in range(3):
            layers.append(DenseLayer(channels, growth))
            channels += growth
        if block == 0:  # transition
            layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.Conv2d(channels, channels // 2, 1, bias=False),
                       nn.AvgPool2d(2)]
            channels //= 2
    return nn.Sequential(*layers, nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(channels, classes))


# ---- Inception (GoogLeNet v1 style): parallel branches, LocalResponseNorm ---------------------------------
class InceptionBlock(nn.Module):
    def __init__(self, cin: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool: int):
        super().__init__()
        self.b1 = nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU())
        self.b3 = nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.ReLU(), nn.Conv2d(c3r, c3, 3, padding=1), nn.ReLU())
        self.b5 = nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.ReLU(), nn.Conv2d(c5r, c5, 5, padding=2), nn.ReLU())
        self.bp = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pool, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.bp(x)], 1)


def inception_like(classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 16, 5, 1, 2), nn.ReLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                         nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
                         InceptionBlock(16, 8, 8, 12, 4, 6, 6), InceptionBlock(32, 12, 12, 16, 4, 8, 8),
                         nn.MaxPool2d(3, 2, 1, ceil_mode=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(44, classes))


# ---- MobileNetV2: depthwise convolutions, ReLU6, linear bottlenecks ---------------------------------------
def mobilenet_v2_like(classes: int = 10) -> nn.Module:
    R6 = nn.ReLU6
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), R6(),
        InvertedResidual(16, 16, 8, 3, 1, False, R6), InvertedResidual(8, 48, 12, 3, 2, False, R6),
        InvertedResidual(12, 72, 12, 3, 1, False, R6), InvertedResidual(12, 72, 16, 3, 2, False, R6),
        nn.Conv2d(16, 64, 1, bias=False), nn.BatchNorm2d(64), R6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Dropout(0.2), nn.Linear(64, classes))


# ---- EfficientNet: MBConv with SiLU and squeeze-and-excitation --------------------------------------------
class SiLUSqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.expand = nn.Conv2d(reduced, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * torch.sigmoid(self.expand(nn.functional.silu(self.reduce(s))))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.block = nn.Sequential(
            nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
            nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU(),
            SiLUSqueezeExcite(mid, max(4, cin // 4)), nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


def efficientnet_like(classes: int = 10) -> nn.Module:
    """MBConv blocks, then the last feature map resized ×2 (bilinear) into a GroupNorm head."""
    return nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.SiLU(),
                         MBConv(16, 16, 1, 3, 1), MBConv(16, 24, 4, 3, 2), MBConv(24, 24, 4, 3, 1),
                         MBConv(24, 40, 4, 5, 2), nn.Upsample(scale_factor=2, mode="bilinear"),
                         nn.Conv2d(40, 96, 1, bias=False), nn.GroupNorm(8, 96), nn.SiLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(96, classes))


# ---- ConvNeXt: depthwise 7×7, LayerNorm over channels-last, GELU, layer scale -----------------------------
class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 0.5))

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)  # N, H, W, C
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2)


class ChannelsFirstLayerNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x):
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def convnext_like(classes: int = 10) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 24, 4, 4), ChannelsFirstLayerNorm(24), ConvNeXtBlock(24), ConvNeXtBlock(24),
                         ChannelsFirstLayerNorm(24), nn.Conv2d(24, 48, 2, 2), ConvNeXtBlock(48),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(48, eps=1e-6), nn.Linear(48, classes))


# ---- ViT: patch embedding, class token, pre-norm multi-head attention, GELU MLP ---------------------------
class EncoderBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, classes: int = 10, size: int = 32, patch: int = 8, dim: int = 32, depth: int = 2,
                 heads: int = 4, mlp: int = 64):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*(EncoderBlock(dim, heads, mlp) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.embed(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos  # shape[0]: traced, not baked
        return self.head(self.norm(self.blocks(tokens))[:, 0])


def vit_like(classes: int = 10) -> nn.Module:
    return ViT(classes)


# ---- U-Net-like: an encoder, a decoder upsampling with Resize and skip connections, a classifier head -----
class UNetLike(nn.Module):
    def __init__(self, classes: int = 10):
        super().__init__()

        def conv(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

        self.down1, self.down2, self.bottom = conv(3, 16), conv(16, 32), conv(32, 32)
        self.pool = nn.MaxPool2d(2)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec2, self.dec1 = conv(64, 16), conv(32, 16)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x):
        d1 = self.down1(x)
        d2 = self.down2(self.pool(d1))
        b = self.bottom(self.pool(d2))
        u2 = self.dec2(torch.cat([nn.functional.interpolate(b, scale_factor=2.0, mode="nearest"), d2], 1))
        u1 = self.dec1(torch.cat([self.up2(u2), d1], 1))
        return self.head(u1)


def unet_like(classes: int = 10) -> nn.Module:
    return UNetLike(classes)


ARCHITECTURES = {
    "resnet": resnet_like, "densenet": densenet_like, "inception": inception_like,
    "mobilenet_v2": mobilenet_v2_like, "mobilenet_v3": mobilenet_v3_small_like, "efficientnet": efficientnet_like,
    "convnext": convnext_like, "vit": vit_like, "unet": unet_like,
    "squeezenet": partial(squeezenet_like, flatten=False),
}
