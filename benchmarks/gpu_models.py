"""The models of the GPU benchmarks, with random weights (nothing can be downloaded), in plain
PyTorch so that they need no torchvision build to match the installed torch.

`resnet50` is torchvision's ResNet-50 architecture (bottleneck blocks 3, 4, 6, 3; 25.6 M
parameters), and torchvision's own when it imports. `Encoder` is BERT-base-sized (12 layers,
hidden 768, 12 heads, feed-forward 3072; 110 M parameters with its 30,522-word vocabulary).
`tokenize` maps words to ids through a vocabulary generated from a seed. This file is copied
beside each benchmark's handler (`code/`), whose helper modules import as in SageMaker.
"""

from __future__ import annotations

import random

import torch
from torch import nn

VOCABULARY_SIZE = 30_522
SEQUENCE_LENGTH = 128


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dtype() -> torch.dtype:
    return torch.bfloat16 if torch.cuda.is_available() else torch.float32


class _Bottleneck(nn.Module):
    def __init__(self, inputs: int, width: int, stride: int) -> None:
        super().__init__()
        outputs = width * 4
        self.layers = nn.Sequential(
            nn.Conv2d(inputs, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, outputs, 1, bias=False), nn.BatchNorm2d(outputs),
        )  # fmt: skip
        self.shortcut = (
            nn.Sequential(nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs))
            if stride != 1 or inputs != outputs
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.layers(x) + self.shortcut(x))


def resnet50() -> nn.Module:
    try:
        from torchvision.models import resnet50 as torchvision_resnet50

        return torchvision_resnet50(weights=None)
    except Exception:  # no torchvision, or one built for another torch
        pass
    layers: list[nn.Module] = [nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    inputs = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            layers.append(_Bottleneck(inputs, width, stride if block == 0 else 1))
            inputs = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Token and position embeddings, a Transformer encoder, mean pooling over the tokens."""

    def __init__(self, layers: int = 12, hidden: int = 768, heads: int = 12) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCABULARY_SIZE, hidden)
        self.positions = nn.Embedding(SEQUENCE_LENGTH, hidden)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, batch_first=True, activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.encoder(self.tokens(ids) + self.positions(positions)).mean(dim=1)


def vocabulary(seed: int = 7) -> dict[str, int]:
    """Made-up words, each with its id (0 is padding, 1 unknown)."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    words: dict[str, int] = {}
    while len(words) < VOCABULARY_SIZE - 2:
        words.setdefault("".join(rng.choice(letters) for _ in range(rng.randint(2, 9))), len(words) + 2)
    return words


def tokenize(text: str, words: dict[str, int]) -> torch.Tensor:
    """The ids of `text`'s lower-cased words, cut or padded to SEQUENCE_LENGTH."""
    ids = [words.get(word, 1) for word in text.lower().split()][:SEQUENCE_LENGTH]
    return torch.tensor(ids + [0] * (SEQUENCE_LENGTH - len(ids)), dtype=torch.long)
