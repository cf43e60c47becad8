"""BiSeNet face parser (19 CelebAMask-HQ classes), a clean re-implementation.

The architecture of the public face-parsing checkpoint ``79999_iter.pth``: a ResNet-18 context
path whose 1/16 and 1/32 features are refined by attention modules and a global-context branch,
fused with the 1/8 features, and three output heads (main, and two auxiliary heads on the context
features), each resized bilinearly to the input size. Parameter names follow that checkpoint, so
``BiSeNet.from_checkpoint`` loads it directly. Nothing is downloaded: weights come only from the
file you give.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .._state_dict import load_state_dict_file, load_state_strict
from .base import FaceParser, FaceParsing, resize_to_square

__all__ = ["BiSeNet", "BiSeNetParser", "CELEBAMASK_CLASSES"]

CELEBAMASK_CLASSES = (
    "background", "skin", "l_brow", "r_brow", "l_eye", "r_eye", "eye_g", "l_ear", "r_ear", "ear_r",
    "nose", "mouth", "u_lip", "l_lip", "neck", "neck_l", "cloth", "hair", "hat",
)
"""The 19 CelebAMask-HQ labels in the checkpoint's order (``l_``/``r_`` are the subject's left/right)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _ConvBNReLU(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int = 3, stride: int = 1, padding: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(shortcut + residual)


class _ResNet18(nn.Module):
    """ResNet-18 trunk returning the 1/8, 1/16 and 1/32 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        channels = [(64, 64, 1), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
        for i, (c_in, c_out, stride) in enumerate(channels, start=1):
            self.add_module(f"layer{i}", nn.Sequential(_BasicBlock(c_in, c_out, stride), _BasicBlock(c_out, c_out, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        feat8 = self.layer2(self.layer1(x))
        feat16 = self.layer3(feat8)
        return feat8, feat16, self.layer4(feat16)


class _AttentionRefinement(nn.Module):
    """Features re-weighted per channel by a sigmoid of their global average."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(c_in, c_out)
        self.conv_atten = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        attention = torch.sigmoid(self.bn_atten(self.conv_atten(feat.mean(dim=(2, 3), keepdim=True))))
        return feat * attention


class _ContextPath(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.resnet = _ResNet18()
        self.arm16 = _AttentionRefinement(256, 128)
        self.arm32 = _AttentionRefinement(512, 128)
        self.conv_head32 = _ConvBNReLU(128, 128)
        self.conv_head16 = _ConvBNReLU(128, 128)
        self.conv_avg = _ConvBNReLU(512, 128, kernel=1, padding=0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feat8, feat16, feat32 = self.resnet(x)
        global_context = self.conv_avg(feat32.mean(dim=(2, 3), keepdim=True))
        feat32_sum = self.arm32(feat32) + global_context  # nearest up-sampling of a 1×1 map = broadcast
        feat32_up = self.conv_head32(F.interpolate(feat32_sum, size=feat16.shape[2:], mode="nearest"))
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = self.conv_head16(F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest"))
        return feat8, feat16_up, feat32_up


class _FeatureFusion(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.convblk = _ConvBNReLU(c_in, c_out, kernel=1, padding=0)
        self.conv1 = nn.Conv2d(c_out, c_out // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(c_out // 4, c_out, 1, bias=False)

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.convblk(torch.cat([spatial, context], dim=1))
        attention = torch.sigmoid(self.conv2(F.relu(self.conv1(feat.mean(dim=(2, 3), keepdim=True)))))
        return feat * attention + feat


class _OutputHead(nn.Module):
    def __init__(self, c_in: int, c_mid: int, n_classes: int) -> None:
        super().__init__()
        self.conv = _ConvBNReLU(c_in, c_mid)
        self.conv_out = nn.Conv2d(c_mid, n_classes, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv(x))


class BiSeNet(nn.Module):
    """The BiSeNet face-parsing network.

    ``forward(x)`` takes ImageNet-normalised RGB ``(N, 3, H, W)`` and returns the logits of the
    main head and the two auxiliary heads, each ``(N, n_classes, H, W)``.
    """

    def __init__(self, n_classes: int = 19) -> None:
        super().__init__()
        self.cp = _ContextPath()
        self.ffm = _FeatureFusion(256, 256)
        self.conv_out = _OutputHead(256, 256, n_classes)
        self.conv_out16 = _OutputHead(128, 64, n_classes)
        self.conv_out32 = _OutputHead(128, 64, n_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = x.shape[2:]
        feat8, context8, context16 = self.cp(x)
        heads = (self.conv_out(self.ffm(feat8, context8)), self.conv_out16(context8), self.conv_out32(context16))
        return tuple(F.interpolate(h, size=size, mode="bilinear", align_corners=True) for h in heads)


class BiSeNetParser(FaceParser):
    """A face parser backed by a :class:`BiSeNet` network.

    Generator images (``[-1, 1]``) are mapped to ``[0, 1]``, resized to ``input_size`` (512, as
    the checkpoint was trained), normalised with the ImageNet mean and standard deviation, and the
    main head's logits are resized back to the image size. Differentiable end to end.

    Args:
        network: a :class:`BiSeNet` with loaded weights.
        input_size: side of the square network input.
        class_names: names of the network's classes (default: the 19 CelebAMask-HQ labels).
    """

    regions = {
        "skin": ("skin",),
        "brows": ("l_brow", "r_brow"),
        "eyes": ("l_eye", "r_eye"),
        "nose": ("nose",),
        "mouth": ("mouth",),
        "upper_lip": ("u_lip",),
        "lower_lip": ("l_lip",),
        "lips": ("u_lip", "l_lip"),
        "face": ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "mouth", "u_lip", "l_lip"),
        "hair": ("hair",),
        "background": ("background",),
    }

    def __init__(self, network: BiSeNet, *, input_size: int = 512,
                 class_names: tuple[str, ...] = CELEBAMASK_CLASSES) -> None:
        super().__init__()
        self.network = network.eval().requires_grad_(False)
        self.input_size = input_size
        self.class_names = tuple(class_names)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, device: torch.device | str = "cpu",
                        input_size: int = 512) -> "BiSeNetParser":
        """Load the face-parsing ``79999_iter.pth`` state-dict layout (``num_batches_tracked`` optional)."""
        state = load_state_dict_file(path)
        n_classes = state["conv_out.conv_out.weight"].shape[0] if "conv_out.conv_out.weight" in state else 19
        network = BiSeNet(n_classes)
        load_state_strict(network, state, source=path)
        names = CELEBAMASK_CLASSES if n_classes == 19 else tuple(f"class_{i}" for i in range(n_classes))
        parser = cls(network, input_size=input_size, class_names=names).to(device)
        parser.source = {"bisenet": str(Path(path).resolve())}
        return parser

    def parse(self, images: torch.Tensor) -> FaceParsing:
        images = self.check_images(images)
        x = resize_to_square((images + 1) / 2, self.input_size)
        logits = self.network((x - self.mean) / self.std)[0]
        logits = F.interpolate(logits, size=images.shape[2:], mode="bilinear", align_corners=False)
        return FaceParsing(logits=logits, class_names=self.class_names, regions=self.regions)
