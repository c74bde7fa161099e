"""Typed params: one frozen dataclass per params.yaml section; unknown or missing keys fail at load."""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import yaml


class ParamsError(ValueError):
    """A params file that does not match the schema; the message names the key and the fix."""


@dataclass(frozen=True)
class Bound:
    """The range a numeric key may take (checked at load, like its type): low and high, each
    inclusive unless `open_low` / `open_high`; None: unbounded on that side."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def admits(self, value: float) -> bool:
        above = self.low is None or (value > self.low if self.open_low else value >= self.low)
        below = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return above and below

    def describe(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        if self.low is None:
            return f"{'<' if self.open_high else '<='} {self.high:g}"
        return (f"in {'(' if self.open_low else '['}{self.low:g}, "
                f"{self.high:g}{')' if self.open_high else ']'}")


def at_least(low: float) -> Any:
    """A field whose value must be >= low."""
    return field(metadata={"bound": Bound(low)})


def above(low: float) -> Any:
    """A field whose value must be > low."""
    return field(metadata={"bound": Bound(low, open_low=True)})


def within(low: float, high: float, *, open_low: bool = False, open_high: bool = False) -> Any:
    """A field whose value must lie between low and high (inclusive unless open)."""
    return field(metadata={"bound": Bound(low, high, open_low, open_high)})


@dataclass(frozen=True)
class Wiki:
    source: Literal["demo", "url", "path"]
    url: str
    path: str
    sha256: str
    demo_entries: int = at_least(1)
    demo_seed: int


@dataclass(frozen=True)
class Reddit:
    source: Literal["demo", "api"]
    base_url: str | None
    user_agent: str
    subreddits: list[str]
    listing: Literal["top", "hot", "new"]
    time_filter: Literal["hour", "day", "week", "month", "year", "all"]
    limit: int = at_least(1)
    ids_csv: str
    demo_posts: int = at_least(1)
    demo_seed: int
    demo_now: str  # the demo's fixed "now", ISO 8601 UTC (dareg.download.scrape_clock)

    def __post_init__(self):
        utc_seconds(self.demo_now, "demo_now")


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
    per_page: int = within(1, 500)  # Flickr's own bounds for photos.search
    max_photos: int = at_least(1)
    calls_per_second: float = above(0)
    demo_photos: int = at_least(1)
    demo_seed: int
    demo_now: str  # as reddit.demo_now

    def __post_init__(self):
        utc_seconds(self.demo_now, "demo_now")


def utc_seconds(value: str, key: str) -> float:
    """Unix seconds of an ISO 8601 UTC time ("2015-01-01T00:00:00Z"); a ParamsError naming `key`
    for anything else (no zone, another zone, not a time)."""
    try:
        moment = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.utcoffset() != timedelta(0):
        raise ParamsError(f"{key}: {value!r} is not an ISO 8601 UTC time; write it quoted, like "
                          f"\"2015-01-01T00:00:00Z\"")
    return moment.timestamp()


DOMAINS = ("color", "noisy", "scream")  # dSprites' domains (disentanglement_lib's variants)


@dataclass(frozen=True)
class Dsprites:
    """The dSprites task's data: where DeepMind's binary sprites and The Scream come from, the
    transfer pair, and how many images each domain's seeded draw from the latent grid holds."""

    images: Literal["generate", "path", "url"]
    images_path: str
    images_url: str
    images_sha256: str
    painting: Literal["generate", "path", "url"]
    painting_path: str
    painting_url: str
    painting_sha256: str
    source_domain: Literal["color", "noisy", "scream"]
    target_domain: Literal["color", "noisy", "scream"]
    source_images: int = at_least(1)
    target_images: int = at_least(1)
    seed: int

    def __post_init__(self):
        for kind in ("images", "painting"):
            if getattr(self, kind) == "path" and not getattr(self, f"{kind}_path"):
                raise ParamsError(f"{kind}: path needs {kind}_path (a file you have); or set "
                                  f"{kind}: generate")


@dataclass(frozen=True)
class Download:
    workers: int = at_least(1)
    per_host: int = at_least(1)
    connect_timeout: float = above(0)
    read_timeout: float = above(0)
    retries: int = at_least(0)
    backoff: float = at_least(0)
    max_bytes: int = at_least(1)


@dataclass(frozen=True)
class CleanWiki:
    min_face_score: float
    single_face: bool
    age_min: int = at_least(0)
    age_max: int = at_least(0)
    missing_images: Literal["drop", "error"]

    def __post_init__(self):
        if self.age_min > self.age_max:
            raise ParamsError(f"age_min {self.age_min} is above age_max {self.age_max}; no age "
                              f"would be kept")


@dataclass(frozen=True)
class AgeLabels:
    divisor: float = above(0)


@dataclass(frozen=True)
class PopularityLabels:
    reddit_transform: Literal["log1p", "log2p1"]
    flickr_transform: Literal["khosla", "log1p"]


FACTORS = ("scale", "orientation", "x", "y")  # dSprites' continuous latents


@dataclass(frozen=True)
class DspritesLabels:
    factors: list[Literal["scale", "orientation", "x", "y"]]

    def __post_init__(self):
        if not self.factors or len(set(self.factors)) != len(self.factors):
            raise ParamsError(f"factors: {self.factors} must name each regressed latent once")


@dataclass(frozen=True)
class Labels:
    age: AgeLabels
    popularity: PopularityLabels
    dsprites: DspritesLabels


@dataclass(frozen=True)
class SplitSizes:
    source: int = at_least(1)  # the evaluate stage measures source/target feature MMD
    target_labeled: int = at_least(2)  # at least one to train on and one to validate on
    target_unlabeled: int = at_least(0)
    target_test: int = at_least(1)
    scale: Literal["none", "minmax"]

    def counts(self, val_fraction: float) -> dict[str, int]:
        """Images per target split: target_labeled is cut into train and val by val_fraction."""
        val = validation_count(self.target_labeled, val_fraction)
        return {"target_test": self.target_test, "target_train": self.target_labeled - val,
                "target_val": val, "target_unlabeled": self.target_unlabeled}


@dataclass(frozen=True)
class DspritesSplitSizes:
    """dSprites' splits by count: target_train is the oracle's (the adaptation regimes draw no
    labeled target image), target_val a small labeled set that only chooses; target_test a count
    drawn like the others, or `official`: the test indices RSD and DARE-GRAM use."""

    source: int = at_least(1)
    target_train: int = at_least(1)
    target_val: int = at_least(1)
    target_unlabeled: int = at_least(0)
    target_test: int | Literal["official"]
    scale: Literal["none", "minmax"]

    def __post_init__(self):
        if isinstance(self.target_test, int) and self.target_test < 1:
            raise ParamsError(f"target_test: {self.target_test} is out of range; use an integer "
                              f">= 1 or official")

    def counts(self, val_fraction: float) -> dict[str, int]:
        """Images per target split (val_fraction unused: target_val is a count here)."""
        return {"target_test": self.target_test, "target_train": self.target_train,
                "target_val": self.target_val, "target_unlabeled": self.target_unlabeled}


TASKS = ("age", "popularity", "dsprites")


@dataclass(frozen=True)
class Split:
    seed: int
    val_fraction: float = within(0, 1, open_low=True, open_high=True)
    age: SplitSizes
    popularity: SplitSizes
    dsprites: DspritesSplitSizes

    def __post_init__(self):
        for task in ("age", "popularity"):
            labeled = getattr(self, task).target_labeled
            val = validation_count(labeled, self.val_fraction)
            if not 0 < val < labeled:
                raise ParamsError(f"val_fraction {self.val_fraction} of {task}.target_labeled "
                                  f"{labeled} gives {val} validation and {labeled - val} training "
                                  f"images; both need at least 1: raise {task}.target_labeled or "
                                  f"change val_fraction")


def validation_count(labeled: int, val_fraction: float) -> int:
    """How many of the target's labeled images the split holds out for validation."""
    return int(round(val_fraction * labeled))


@dataclass(frozen=True)
class Cache:
    image_size: int = at_least(8)


@dataclass(frozen=True)
class Model:
    backbone: Literal["singh7", "conv4", "vgg16", "resnet18"]
    width: float = above(0)
    norm: Literal["none", "batch"]
    head: Literal["sigmoid", "dex"]
    dropout: float = within(0, 1, open_high=True)
    bins: int = at_least(2)
    binning: Literal["uniform", "balanced"]
    dex_loss: Literal["ce", "mse", "both"]
    weights: str
    weights_sha256: str

    def __post_init__(self):
        if self.weights_sha256 and not re.fullmatch(r"[0-9a-fA-F]{8,64}", self.weights_sha256):
            raise ParamsError(f"weights_sha256: {self.weights_sha256!r} is not a sha256 digest "
                              f"(or a prefix of 8 or more hex digits)")


@dataclass(frozen=True)
class Train:
    epochs: int = at_least(1)
    steps_per_epoch: int = at_least(1)
    lr: float = above(0)
    weight_decay: float = at_least(0)
    seed: int
    repeats: int = at_least(1)  # train each regime at least once
    device: Literal["auto", "cpu", "cuda"]
    optimizer: Literal["adam", "sgd"]
    momentum: float = within(0, 1, open_high=True)
    nesterov: bool
    lr_schedule: Literal["step", "inverse"]
    lr_step_epochs: int = at_least(0)
    lr_gamma: float = at_least(0)
    lr_power: float = at_least(0)
    patience: int = at_least(0)
    freeze_backbone_epochs: int = at_least(0)
    backbone_lr_scale: float = at_least(0)
    processes: int = at_least(1)
    precision: Literal["bf16", "fp32"]
    compile: bool

    def __post_init__(self):
        if self.nesterov and (self.optimizer != "sgd" or not self.momentum):
            raise ParamsError("nesterov: true needs optimizer: sgd with momentum > 0")

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
    rsd_tradeoff: float = at_least(0)
    daregram_threshold: float = within(0, 1, open_low=True)
    dann_hidden: int = at_least(1)
    dd_margin: float = at_least(0)
    dd_grl_max: float = at_least(0)
    dd_grl_steps: int = at_least(1)

    def __post_init__(self):
        if not self.scales or any(s <= 0 for s in self.scales):
            raise ParamsError(f"scales: {self.scales} must be positive multiples of the bandwidth")


@dataclass(frozen=True)
class Evaluate:
    """Bootstrap and alignment-diagnostic settings of the evaluate and summary stages."""

    bootstrap_samples: int = at_least(100)
    seed: int
    mmd_samples: int = at_least(2)


STREAMS = ("source", "target_labeled", "target_unlabeled")
LABELED_STREAMS = ("source", "target_labeled")
SUPERVISED = "supervised"  # the weight of the head's supervised loss (squared error, DEX's cross-entropy)
# The alignment terms registered in dareg.losses (kept here so loading params needs no torch;
# tests/test_losses.py checks the two lists agree).
ALIGNMENT_TERMS = ("mmd", "smoothing", "coral", "rsd", "daregram_angle", "daregram_scale", "dann",
                   "dd")


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
            if self.weights[name] < 0:
                raise ParamsError(f"weights.{name}: {self.weights[name]} is negative; a weight "
                                  f"is 0 (off) or more")
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
    """Which tasks and regimes the pipeline trains, evaluates and compares (dvc.yaml crosses the
    two lists), and the regime every other one is compared with in the summary."""

    tasks: list[Literal["age", "popularity", "dsprites"]]
    regimes: list[str]
    reference: str

    def __post_init__(self):
        for key in ("tasks", "regimes"):
            values = getattr(self, key)
            if not values or len(set(values)) != len(values):
                raise ParamsError(f"{key}: {values} must list at least one name, each once")


@dataclass(frozen=True)
class Params:
    wiki: Wiki
    reddit: Reddit
    flickr: Flickr
    dsprites: Dsprites
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
        for name in self.run.regimes:
            for task in self.run.tasks:
                if self.regimes[name].batch.get("target_unlabeled") and \
                        not getattr(self.split, task).target_unlabeled:
                    raise ParamsError(f"split.{task}.target_unlabeled is 0 but regime {name} (in "
                                      f"run.regimes) draws target_unlabeled images; raise the "
                                      f"count or drop the regime from run.regimes")

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
        for f in dataclasses.fields(tp):
            bound = f.metadata.get("bound")
            if bound is not None and f.name in args and not bound.admits(args[f.name]):
                key = f"{where}.{f.name}" if where else f.name
                kind = "an integer" if hints[f.name] is int else "a number"
                raise ParamsError(f"{key}: {args[f.name]!r} is out of range; use {kind} "
                                  f"{bound.describe()}")
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
        for option in inner[:-1]:  # the first type that takes the value; the last one's error
            try:
                return _build(option, value, where)
            except ParamsError:
                pass
        return _build(inner[-1], value, where)
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
    if tp is float and isinstance(value, float) and not math.isfinite(value):
        raise ParamsError(f"{where}: {value!r} is not a finite number")
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
        try:
            raw = yaml.safe_load(f)
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise ParamsError(f"{path}: not valid YAML{at} ({problem}); fix the file or "
                              f"`git checkout {path.name}`") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections (wiki, reddit, ...), got "
                          f"{type(raw).__name__}; fix the file or `git checkout {path.name}`")
    return parse(raw or {}, str(path))
