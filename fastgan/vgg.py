"""VGG19 feature extractor for the SRGAN content loss, loaded from a local weights file.

The layer indices and state_dict keys (`features.<i>.weight`) are torchvision's vgg19, so
its published state_dict (vgg19-dcbb9e9d.pth) loads as is; torchvision itself is not
needed, and nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Output channels of each 3x3 convolution, "M" a 2x2 max pool: torchvision's configuration "E".
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
                512, 512, 512, 512, "M")
# ReLU outputs by name -> index in `features`; relu5_4 is the paper's VGG54, relu2_2 its VGG22.
VGG19_RELUS = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17, "relu4_4": 26, "relu5_4": 35}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXPECTED_WEIGHTS = "torchvision's vgg19 state_dict (keys features.<i>.weight/bias, e.g. vgg19-dcbb9e9d.pth)"


def _layers(last: int) -> list[nn.Module]:
    layers: list[nn.Module] = []
    channels = 3
    for item in VGG19_LAYOUT:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return layers[:last + 1]


class VGG19Features(nn.Module):
    """[-1, 1] RGB images -> VGG19 activations after `layer`, frozen (no layer behaves differently in training).

    Inputs are mapped to [0, 1] and normalized with the ImageNet statistics torchvision's
    weights were trained with. Only the layers up to `layer` are built.
    """

    def __init__(self, layer: str = "relu5_4"):
        super().__init__()
        if layer not in VGG19_RELUS:
            raise ValueError(f"layer must be one of {', '.join(VGG19_RELUS)}; got {layer!r}")
        self.layer = layer
        self.features = nn.Sequential(*_layers(VGG19_RELUS[layer]))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = ((images + 1.0) / 2.0 - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return self.features(x)


def load_vgg19_features(path: str | Path, layer: str = "relu5_4") -> VGG19Features:
    """VGG19Features with weights from a local torchvision-layout file; other keys (the classifier) are ignored."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG19 weights file not found: {path}; expected {EXPECTED_WEIGHTS}. Nothing is "
                                f"downloaded: copy the file in, or use the pixel MSE content loss")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a file that is not a state_dict
        raise ValueError(f"{path} could not be read as a state_dict ({error}); expected {EXPECTED_WEIGHTS}") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state_dict; expected {EXPECTED_WEIGHTS}")
    model = VGG19Features(layer)
    wanted = model.features.state_dict()
    missing = [f"features.{k}" for k in wanted if f"features.{k}" not in state]
    if missing:
        raise ValueError(f"{path} lacks {len(missing)} VGG19 key(s) needed up to {layer}, e.g. {missing[0]}; "
                         f"expected {EXPECTED_WEIGHTS}")
    for key, value in wanted.items():
        given = state[f"features.{key}"]
        if given.shape != value.shape:
            raise ValueError(f"{path}: features.{key} has shape {tuple(given.shape)}, VGG19 needs {tuple(value.shape)}")
    model.features.load_state_dict({k: state[f"features.{k}"] for k in wanted})
    return model
