"""Networks: a backbone (the original codebase's 7-conv net, a 4-conv net small enough for dSprites'
benchmark on a CPU, or torchvision's VGG-16 / ResNet-18 with ImageNet weights from a local file)
under a head from dareg.heads, with input normalization built in."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from dareg.errors import DataError
from dareg.hashes import sha256_file
from dareg.heads import DexHead, SigmoidHead
from dareg.params import Model, ParamsError

SINGH7_CHANNELS = (32, 64, 128, 256, 512, 256, 128)
SINGH7_POOLS = 6  # max-pool after conv 2..7
CONV4_CHANNELS = (32, 64, 128, 256)  # a max-pool after each
# x = (pixel / 255 - mean) / std per channel; torchvision's ImageNet weights expect ImageNet's.
INPUT_NORMS = {"singh7": {"mean": [0.5] * 3, "std": [0.25] * 3},
               "imagenet": {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
IMAGENET_FILES = {"vgg16": "vgg16-397923af.pth", "resnet18": "resnet18-f37072fd.pth"}


def singh7_features(width: float, image_size: int, norm: str) -> tuple[nn.Sequential, int]:
    """7 conv layers (3x3, same padding, ReLU, max-pool after conv 2-7), flattened: (layers, dim).

    norm="batch" adds BatchNorm after each conv (not in the seed): without it, narrow demo-width
    networks often die at a constant prediction.
    """
    if image_size % 2**SINGH7_POOLS:
        raise ParamsError(f"cache.image_size: {image_size} must be a multiple of 64 for singh7 "
                          f"(six 2x2 max-pools); the seed used 128")
    layers: list[nn.Module] = []
    c_in = 3
    for i, channels in enumerate(SINGH7_CHANNELS):
        c_out = max(1, round(channels * width))
        layers.append(nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(nn.ReLU(inplace=True))
        if i >= 1:
            layers.append(nn.MaxPool2d(2))
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten()), c_in * (image_size // 2**SINGH7_POOLS) ** 2


def conv4_features(width: float, image_size: int, norm: str) -> tuple[nn.Sequential, int]:
    """4 conv layers (3x3, same padding, ReLU, 2x2 max-pool after each; CONV4_CHANNELS times
    `width`), flattened, so the features keep where things are: (layers, dim). At 32 px and
    width 0.5 about 8 MFLOP an image, a fortieth of singh7's at 64 px (dSprites' benchmark)."""
    if image_size % 2 ** len(CONV4_CHANNELS):
        raise ParamsError(f"cache.image_size: {image_size} must be a multiple of 16 for conv4 "
                          f"(four 2x2 max-pools)")
    layers: list[nn.Module] = []
    c_in = 3
    for channels in CONV4_CHANNELS:
        c_out = max(1, round(channels * width))
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=norm == "none"),
                   *([nn.BatchNorm2d(c_out)] if norm == "batch" else []),
                   nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c_out
    return nn.Sequential(*layers, nn.Flatten()), c_in * (image_size // 2 ** len(CONV4_CHANNELS)) ** 2


def imagenet_weights_path(backbone: str, weights: str) -> Path:
    """`model.weights`, or torchvision's file in the torch hub cache when it is empty."""
    if weights:
        return Path(weights)
    return Path(torch.hub.get_dir()) / "checkpoints" / IMAGENET_FILES[backbone]


def check_weights_file(path: Path, backbone: str, expected: str) -> None:
    """The weights file is the one params name: its sha256 starts with `model.weights_sha256`
    (a full digest or a prefix of 8 or more hex digits), or, when that is empty, with the prefix
    torchvision puts in its own file names. A custom file needs the param: so a new file is a
    params change, and DVC retrains what used the old one."""
    digest = sha256_file(path)
    default = path.name == IMAGENET_FILES[backbone]
    if not expected and not default:
        raise DataError(f"{path}: set model.weights_sha256: {digest} (this file's sha256), so "
                        f"that a different file retrains the stages that used this one")
    expected = expected or IMAGENET_FILES[backbone].rsplit("-", 1)[1].split(".")[0]
    if not digest.startswith(expected.lower()):
        raise DataError(f"{path}: sha256 {digest} does not start with {expected} "
                        f"({'model.weights_sha256' if not default else 'torchvision'}'s); fetch the "
                        f"file again or, for a new file, set model.weights_sha256: {digest}")


def torchvision_features(backbone: str, weights: str, pretrained: bool,
                         weights_sha256: str = "") -> tuple[nn.Module, int]:
    """VGG-16 up to its second 4096-unit layer (as DEX) or ResNet-18 up to its pooling (512)."""
    import torchvision  # here, not at the top: importing it costs every stage about a second

    net = getattr(torchvision.models, backbone)(weights=None)
    if pretrained:
        path = imagenet_weights_path(backbone, weights)
        if not path.exists():
            url = f"https://download.pytorch.org/models/{IMAGENET_FILES[backbone]}"
            raise DataError(f"{path}: ImageNet weights for {backbone} not found (dareg never "
                            f"downloads at run time); fetch {url} to that path, or set "
                            f"model.weights to a copy")
        check_weights_file(path, backbone, weights_sha256)
        url = f"https://download.pytorch.org/models/{IMAGENET_FILES[backbone]}"
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # torch raises many kinds for a file it cannot read
            raise DataError(f"{path}: not {backbone}'s ImageNet weights (torch.load cannot read "
                            f"it: {type(err).__name__}); fetch {url} again") from None
        if not isinstance(state, dict):
            raise DataError(f"{path}: not {backbone}'s ImageNet weights (it holds a "
                            f"{type(state).__name__}, not a state dict); fetch {url} again")
        mine = net.state_dict()
        missing = [k for k in mine if k not in state]
        misshapen = [k for k in mine if k in state and getattr(state[k], "shape", None) != mine[k].shape]
        if missing or misshapen or set(state) - set(mine):
            what = (f"missing key {missing[0]!r}" if missing else f"{misshapen[0]!r} has shape "
                    f"{tuple(state[misshapen[0]].shape)}" if misshapen else
                    f"unexpected key {sorted(set(state) - set(mine))[0]!r}")
            raise DataError(f"{path}: not {backbone}'s ImageNet weights ({what}); fetch {url} "
                            f"again")
        net.load_state_dict(state)
    if backbone == "vgg16":
        return nn.Sequential(net.features, net.avgpool, nn.Flatten(), *net.classifier[:-1]), 4096
    net.fc = nn.Identity()
    return net, 512


class Regressor(nn.Module):
    """backbone -> features -> head. Takes images scaled to [0, 1] (N, 3, H, W) and normalizes them.

    forward(x) returns (predictions (N, outputs) in the scaled label range, one per factor,
    features (N, feature_dim)); with_logits=True adds the DEX head's logits (N, bins), or None
    for the sigmoid head.
    domains=[n_1, n_2, ...] runs the backbone on each consecutive group of images separately, so
    BatchNorm normalizes each domain with its own batch statistics (AdaBN).
    `adapters` holds modules an adaptation term trains with the network (DANN's discriminator);
    they are not part of a saved checkpoint.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, input_norm: dict, feature_dim: int,
                 outputs: int = 1):
        super().__init__()
        self.backbone, self.head, self.feature_dim, self.outputs = backbone, head, feature_dim, outputs
        self.adapters = nn.ModuleDict()
        self.register_buffer("input_mean", torch.tensor(input_norm["mean"]).view(1, 3, 1, 1))
        self.register_buffer("input_std", torch.tensor(input_norm["std"]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor, with_logits: bool = False, domains: list[int] | None = None):
        x = (x - self.input_mean) / self.input_std
        if domains and len(domains) > 1:
            features = torch.cat([self.backbone(part) for part in x.split(domains)])
        else:
            features = self.backbone(x)
        pred, logits = self.head(features)
        return (pred, features, logits) if with_logits else (pred, features)

    def predictor_state(self) -> dict:
        """The state dict without the adapters: what predicting needs."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("adapters.")}


def batchnorm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def reestimate_batchnorm(model: Regressor, batches) -> None:
    """AdaBN (Li et al. 2016): replace every BatchNorm's running mean and variance by the
    statistics of the given image batches (float (B, 3, H, W) in [0, 1]), averaged with equal
    weight per batch; dropout stays off and no random state is consumed."""
    layers, was_training = batchnorm_layers(model), model.training
    model.eval()
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches
        layer.train()
    for x in batches:
        model.backbone((x - model.input_mean) / model.input_std)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    model.train(was_training)


def input_norm(params: Model) -> dict:
    return INPUT_NORMS["imagenet" if params.backbone in IMAGENET_FILES else "singh7"]


def build_model(params: Model, image_size: int, seed: int | None = None,
                pretrained: bool = True, outputs: int = 1) -> Regressor:
    """The network `params` names, predicting `outputs` factors; `seed` fixes the initial weights
    without touching the global random state; `pretrained` loads ImageNet weights into a
    torchvision backbone."""
    if params.head == "dex" and outputs > 1:
        raise ParamsError(f"model.head: dex predicts one label over one set of bins, but this task "
                          f"has {outputs} factors; use model.head: sigmoid")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if params.backbone == "singh7":
            backbone, dim = singh7_features(params.width, image_size, params.norm)
        elif params.backbone == "conv4":
            backbone, dim = conv4_features(params.width, image_size, params.norm)
        else:
            backbone, dim = torchvision_features(params.backbone, params.weights, pretrained,
                                                 params.weights_sha256)
        head = (SigmoidHead(dim, params.dropout, outputs) if params.head == "sigmoid"
                else DexHead(dim, params.bins, params.binning, params.dex_loss, params.dropout))
        return Regressor(backbone, head, input_norm(params), dim, outputs)
