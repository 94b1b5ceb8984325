"""CIFAR ResNets (He et al. 2016, Sec. 4.2): a 3x3 stem, three stages of n basic blocks at 16/32/64
channels, global average pooling and a linear head; depth 6n+2. Shortcuts are option A (stride-2
subsampling plus zero channel padding, no parameters), as in the paper. timm has none of these.

Weights map: the ResNet depth rule (see resnet.py), last base block to last motivated block. Any input size
works (global pooling), so ``img_size`` is not a model argument; exported files load through the constructor
and ``load_state_dict`` (the registry's default).
"""
import torch.nn.functional as F
from torch import nn

from fastmotive.families._registry import map_by_rule, register_family
from fastmotive.families.resnet import last_to_last

DEPTHS = {"resnet20": 3, "resnet32": 5, "resnet44": 7, "resnet56": 9, "resnet110": 18}


class BasicBlock(nn.Module):
    def __init__(self, in_chs: int, out_chs: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chs, out_chs, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_chs)
        self.conv2 = nn.Conv2d(out_chs, out_chs, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.stride, self.pad = stride, out_chs - in_chs

    def shortcut(self, x):
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, ::self.stride, ::self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, blocks_per_stage: int, num_classes: int = 10, in_chans: int = 3, widths=(16, 32, 64)):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        in_chs, stages = widths[0], []
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(*[BasicBlock(in_chs if j == 0 else width, width, stride if j == 0 else 1)
                                          for j in range(blocks_per_stage)]))
            in_chs = width
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(widths[-1], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def get_classifier(self) -> nn.Module:
        """The head, under timm's name for it (so every family's models answer the same call)."""
        return self.fc

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def cifar_resnet(name: str, num_classes: int = 10, **kwargs) -> CifarResNet:
    """Build ``resnet20`` .. ``resnet110``; extra kwargs: ``in_chans``, ``widths``."""
    if name not in DEPTHS:
        raise ValueError(f"unknown CIFAR ResNet {name!r}; choices: {', '.join(DEPTHS)}")
    kwargs.pop("pretrained", None)
    return CifarResNet(DEPTHS[name], num_classes=num_classes, **kwargs)


def block_skip(block: BasicBlock) -> bool:
    """Option-A shortcuts are the identity only at stride 1 with in == out channels."""
    return block.stride == 1 and block.pad == 0


def identity_tensors(block: BasicBlock) -> list[str]:
    return ["bn2.weight", "bn2.bias"]


@register_family("cifar_resnet", pattern=r"resnet(?P<member>20|32|44|56|110)", members=list(DEPTHS),
                 build=cifar_resnet, rates=None, block_skip=block_skip, identity_tensors=identity_tensors,
                 channels_last=True)
def cifar_resnet_map(base, motivated):
    return map_by_rule(base, motivated, "cifar_resnet", rename=last_to_last(base, motivated))
