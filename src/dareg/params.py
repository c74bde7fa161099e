"""Typed params: one frozen dataclass per params.yaml section; unknown or missing keys fail at load."""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names the key and the fix."""


@dataclass(frozen=True)
class Wiki:
    source: Literal["demo", "url", "path"]
    url: str
    path: str
    sha256: str
    demo_entries: int
    demo_seed: int


@dataclass(frozen=True)
class Reddit:
    source: Literal["demo", "api"]
    base_url: str | None
    user_agent: str
    subreddits: list[str]
    listing: Literal["top", "hot", "new"]
    time_filter: Literal["hour", "day", "week", "month", "year", "all"]
    limit: int
    ids_csv: str
    demo_posts: int
    demo_seed: int


@dataclass(frozen=True)
class Flickr:
    source: Literal["demo", "api"]
    rest_url: str
    min_upload_date: str
    max_upload_date: str
    text: str
    tags: str
    license: str
    content_type: int
    url_size: str
    per_page: int
    max_photos: int
    calls_per_second: float
    demo_photos: int
    demo_seed: int


@dataclass(frozen=True)
class Download:
    workers: int
    per_host: int
    connect_timeout: float
    read_timeout: float
    retries: int
    backoff: float
    max_bytes: int


@dataclass(frozen=True)
class CleanWiki:
    min_face_score: float
    single_face: bool
    age_min: int
    age_max: int
    missing_images: Literal["drop", "error"]


@dataclass(frozen=True)
class AgeLabels:
    divisor: float


@dataclass(frozen=True)
class PopularityLabels:
    reddit_transform: Literal["log1p", "log2p1"]
    flickr_transform: Literal["khosla", "log1p"]


@dataclass(frozen=True)
class Labels:
    age: AgeLabels
    popularity: PopularityLabels


@dataclass(frozen=True)
class SplitSizes:
    source: int
    target_labeled: int
    target_unlabeled: int
    target_test: int
    scale: Literal["none", "minmax"]


@dataclass(frozen=True)
class Split:
    seed: int
    val_fraction: float
    age: SplitSizes
    popularity: SplitSizes


@dataclass(frozen=True)
class Cache:
    image_size: int


@dataclass(frozen=True)
class Model:
    backbone: Literal["singh7", "vgg16", "resnet18"]
    width: float
    norm: Literal["none", "batch"]
    head: Literal["sigmoid", "dex"]
    dropout: float
    bins: int
    binning: Literal["uniform", "balanced"]
    dex_loss: Literal["ce", "mse", "both"]
    weights: str


@dataclass(frozen=True)
class Train:
    epochs: int
    steps_per_epoch: int
    lr: float
    weight_decay: float
    seed: int
    repeats: int
    device: Literal["auto", "cpu", "cuda"]
    optimizer: Literal["adam", "sgd"]
    momentum: float
    lr_step_epochs: int
    patience: int
    freeze_backbone_epochs: int
    backbone_lr_scale: float
    processes: int
    precision: Literal["bf16", "fp32"]
    compile: bool

    def __post_init__(self):
        if self.repeats < 1:
            raise ParamsError(f"train.repeats is {self.repeats}: train each regime at least once")

    @property
    def seeds(self) -> list[int]:
        """The training seeds: seed, seed + 1, ..., one per repeat."""
        return list(range(self.seed, self.seed + self.repeats))


@dataclass(frozen=True)
class Losses:
    """Settings of the loss terms (dareg.losses); a regime may override any of them (its `losses`)."""

    bandwidth: Literal["median", "feature_dim"]
    scales: list[float]
    mmd_estimator: Literal["unbiased", "biased"]
    smoothing_form: Literal["graph", "seed"]
    rsd_tradeoff: float
    daregram_threshold: float
    dann_hidden: int

    def __post_init__(self):
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ParamsError(f"scales: {self.scales} must be positive multiples of the bandwidth")
        if not 0.0 < self.daregram_threshold <= 1.0:
            raise ParamsError(f"daregram_threshold: {self.daregram_threshold} must be in (0, 1]")
        if self.dann_hidden < 1 or self.rsd_tradeoff < 0:
            raise ParamsError("dann_hidden must be at least 1 and rsd_tradeoff at least 0")


@dataclass(frozen=True)
class Evaluate:
    """Bootstrap and alignment-diagnostic settings of the evaluate and summary stages."""

    bootstrap_samples: int
    seed: int
    mmd_samples: int

    def __post_init__(self):
        if self.bootstrap_samples < 100 or self.mmd_samples < 2:
            raise ParamsError("bootstrap_samples must be at least 100 and mmd_samples at least 2")


STREAMS = ("source", "target_labeled", "target_unlabeled")
LABELED_STREAMS = ("source", "target_labeled")
SUPERVISED = "supervised"  # the weight of the head's supervised loss (squared error, DEX's cross-entropy)
# The alignment terms registered in dareg.losses (kept here so loading params needs no torch;
# tests/test_losses.py checks the two lists agree).
ALIGNMENT_TERMS = ("mmd", "smoothing", "coral", "rsd", "daregram_angle", "daregram_scale", "dann")


@dataclass(frozen=True)
class Regime:
    """What one regime draws per batch (images per stream), how it weighs each loss term, which
    regime is its control, whether BatchNorm works per domain (AdaBN) and any `losses` overrides."""

    batch: dict[str, int]
    weights: dict[str, float] = field(default_factory=dict)
    control: str = ""
    adabn: bool = False
    losses: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name, count in self.batch.items():
            if name not in STREAMS:
                raise ParamsError(f"regime batch stream {name!r} unknown; use one of {STREAMS}")
            if count < 0:
                raise ParamsError(f"batch.{name}: {count} images a step; use 0 or more")
        for name in self.weights:
            if name == "mse":
                raise ParamsError("weights: 'mse' is now called 'supervised' (it weighs the "
                                  "head's supervised loss, DEX's cross-entropy included)")
            if name not in (SUPERVISED, *ALIGNMENT_TERMS):
                raise ParamsError(f"regime loss term {name!r} unknown; use one of "
                                  f"{(SUPERVISED, *ALIGNMENT_TERMS)}")
        if sum(self.batch.get(n, 0) for n in LABELED_STREAMS) <= 0:
            raise ParamsError("a regime must draw labeled images (source or target_labeled)")
        target = self.batch.get("target_labeled", 0) + self.batch.get("target_unlabeled", 0)
        if self.alignment_terms and (self.batch.get("source", 0) < 2 or target < 2):
            raise ParamsError(f"{', '.join(self.alignment_terms)} need at least 2 source and 2 "
                              f"target images a batch")
        unknown = sorted(set(self.losses) - {f.name for f in dataclasses.fields(Losses)})
        if unknown:
            raise ParamsError(f"losses: {unknown[0]!r} is not a key of the losses section")

    @property
    def alignment_terms(self) -> list[str]:
        """The alignment terms this regime weighs (non-zero weight), in params order."""
        return [n for n, w in self.weights.items() if w and n != SUPERVISED]

    def labeled_counts(self) -> dict[str, int]:
        """Labeled images a step per labeled stream: what a regime and its control must share."""
        return {n: self.batch.get(n, 0) for n in LABELED_STREAMS}


@dataclass(frozen=True)
class Run:
    """Which regimes the pipeline trains, evaluates and compares (dvc.yaml reads this list), and
    the regime every other one is compared with in the summary."""

    regimes: list[str]
    reference: str


@dataclass(frozen=True)
class Params:
    wiki: Wiki
    reddit: Reddit
    flickr: Flickr
    download: Download
    clean_wiki: CleanWiki
    labels: Labels
    split: Split
    cache: Cache
    model: Model
    train: Train
    losses: Losses
    regimes: dict[str, Regime]
    run: Run
    evaluate: Evaluate

    def __post_init__(self):
        for name in self.run.regimes:
            if name not in self.regimes:
                raise ParamsError(f"run.regimes: {name!r} is not defined under regimes; known: "
                                  f"{sorted(self.regimes)}")
        if self.run.reference not in self.run.regimes:
            raise ParamsError(f"run.reference: {self.run.reference!r} is not in run.regimes")
        for name, regime in self.regimes.items():
            check_control(name, regime, self.regimes, name in self.run.regimes and self.run.regimes)
            self.regime_losses(name)  # overrides of the right types

    def regime_losses(self, name: str) -> Losses:
        """The `losses` section with regime `name`'s overrides applied."""
        merged = {**dataclasses.asdict(self.losses), **self.regimes[name].losses}
        return _build(Losses, merged, f"regimes.{name}.losses")


def check_control(name: str, regime: Regime, regimes: dict[str, Regime], listed) -> None:
    """A regime's control draws exactly its labeled images and weighs no alignment term, so the
    two differ only in the unlabeled stream and the alignment (and AdaBN); a listed regime's
    control is listed too (`listed`: run.regimes, or False for a regime that is not run)."""
    if not regime.control:
        return
    where = f"regimes.{name}.control"
    control = regimes.get(regime.control)
    if control is None:
        raise ParamsError(f"{where}: {regime.control!r} is not defined under regimes")
    if control.labeled_counts() != regime.labeled_counts():
        raise ParamsError(f"{where}: {regime.control} draws {control.labeled_counts()} labeled "
                          f"images a step, {name} {regime.labeled_counts()}; a control must draw "
                          f"the same, so that only the alignment differs")
    if control.alignment_terms:
        raise ParamsError(f"{where}: {regime.control} weighs {control.alignment_terms}; a "
                          f"control weighs the supervised loss only")
    if listed and regime.control not in listed:
        raise ParamsError(f"run.regimes lists {name} but not its control {regime.control}")


def _build(tp: Any, value: Any, where: str) -> Any:
    """Check `value` against the type `tp` and build dataclasses recursively; `where` names the key."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ParamsError(f"{where}: unknown key {unknown[0]!r}; known keys: {sorted(names)}")
        required = {f.name for f in dataclasses.fields(tp)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(value))
        if missing:
            raise ParamsError(f"{where}: missing key {missing[0]!r}")
        args = {k: _build(hints[k], v, f"{where}.{k}" if where else k) for k, v in value.items()}
        try:
            return tp(**args)
        except ParamsError as err:
            raise ParamsError(f"{where}: {err}") from None
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ParamsError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in typing.get_args(tp):
            return None
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _build(inner[0], value, where)
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _build(val_tp, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        return [_build(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
    return _scalar(tp, value, where)


def _scalar(tp: type, value: Any, where: str) -> Any:
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        raise ParamsError(f"{where}: {value!r} is a string; YAML reads 1e-3 as text, write 1.0e-3")
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ParamsError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def parse(raw: dict, origin: str = "params") -> Params:
    """Build typed Params from a parsed params mapping; errors name `origin` and the key."""
    try:
        return _build(Params, raw, "")
    except ParamsError as err:
        raise ParamsError(f"{origin}: {err}".replace(": : ", ": ")) from None


def load(path: str | Path = "params.yaml") -> Params:
    """Read and check a params file."""
    path = Path(path)
    if not path.exists():
        raise ParamsError(f"{path}: not found; run from the repository root, where params.yaml lives")
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    return parse(raw or {}, str(path))
