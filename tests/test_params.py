"""Typed params: the profiles load, and mistakes fail at load time naming the key."""
import json
from pathlib import Path

import pytest
import yaml

from dareg import params, profile
from dareg.params import ParamsError

ROOT = Path(__file__).resolve().parents[1]


def with_profile(name: str, tmp_path: Path) -> params.Params:
    """params.yaml with profiles/<name>.yaml applied, as `make profile` does."""
    out = tmp_path / "params.yaml"
    profile.apply(ROOT / "params.yaml", ROOT / "profiles" / f"{name}.yaml", out)
    return params.load(out)


def raw(path=ROOT / "params.yaml"):
    return yaml.safe_load(path.read_text())


CONTRACT_REGIMES = {"no_source", "no_da", "da", "da_coral", "da_rsd", "da_daregram", "da_dann",
                    "da_adabn"}


@pytest.mark.parametrize("name", ["original", "tiny", "faces"])
def test_profiles_apply_and_load(name, tmp_path):
    p = with_profile(name, tmp_path)
    assert set(p.regimes) >= CONTRACT_REGIMES


@pytest.mark.parametrize("name", ["tiny", "faces"])
def test_the_tests_and_the_face_benchmark_run_every_contract_regime(name, tmp_path):
    """The demo may run a subset (time); the tests' profile and the benchmark run them all."""
    p = with_profile(name, tmp_path)
    assert set(p.run.regimes) >= CONTRACT_REGIMES
    assert set(params.load(ROOT / "params.yaml").run.regimes) >= {"no_source", "no_da", "da"}


@pytest.mark.parametrize("name", [None, "original", "tiny", "faces"])
def test_every_declared_control_draws_the_same_labeled_images(name, tmp_path):
    """In every profile, a regime and its control draw the same source and target_labeled counts
    a step and the control weighs no alignment term: only the alignment (and unlabeled) differs."""
    p = params.load(ROOT / "params.yaml") if name is None else with_profile(name, tmp_path)
    declared = {n: r for n, r in p.regimes.items() if r.control}
    assert set(declared) >= CONTRACT_REGIMES - {"no_source", "no_da"}
    for regime_name, regime in declared.items():
        control = p.regimes[regime.control]
        assert control.labeled_counts() == regime.labeled_counts(), regime_name
        assert not control.alignment_terms and regime.control in p.run.regimes + [regime.control]


def test_a_control_that_draws_other_labeled_images_is_refused():
    data = raw()
    data["regimes"]["da"]["batch"]["target_labeled"] = 2
    with pytest.raises(ParamsError, match="regimes.da.control: no_da draws .* a control must draw the same"):
        params.parse(data)
    data = raw()
    data["regimes"]["da"]["control"] = "da_coral"
    with pytest.raises(ParamsError, match="control weighs the supervised loss only"):
        params.parse(data)


def test_run_regimes_must_be_defined_and_list_their_controls():
    data = raw()
    data["run"]["regimes"] = ["no_da", "da_typo"]
    with pytest.raises(ParamsError, match="run.regimes: 'da_typo' is not defined"):
        params.parse(data)
    data["run"]["regimes"] = ["no_source", "da"]
    with pytest.raises(ParamsError, match="run.reference: 'no_da' is not in run.regimes"):
        params.parse(data)
    data["run"] = {"tasks": ["age"], "regimes": ["no_da", "da_seed"], "reference": "no_da"}
    with pytest.raises(ParamsError, match="lists da_seed but not its control no_da_seed"):
        params.parse(data)


def test_run_lists_tasks_and_regimes_once_each():
    """dvc.yaml crosses run.tasks with run.regimes: a name listed twice, an empty list or a task
    dareg does not have fails at load."""
    for key, value, message in (("tasks", ["age", "age"], "run: tasks: .* each once"),
                                ("regimes", [], "run: regimes: .* at least one"),
                                ("tasks", ["faces"], r"run.tasks\[0\]: 'faces' is not one of")):
        data = raw()
        data["run"][key] = value
        with pytest.raises(ParamsError, match=message):
            params.parse(data)


def test_dsprites_test_split_is_a_count_or_the_official_one():
    data = raw()
    for value in (300, "official"):
        data["split"]["dsprites"]["target_test"] = value
        assert params.parse(data).split.dsprites.target_test == value
    for value in ("oficial", 0):
        data["split"]["dsprites"]["target_test"] = value
        with pytest.raises(ParamsError, match="split.dsprites: target_test|split.dsprites.target_test"):
            params.parse(data)
    counts = params.parse(raw()).split.dsprites.counts(0.2)  # counts, not a fraction, for dsprites
    assert counts == {"target_test": 300, "target_train": 300, "target_val": 100, "target_unlabeled": 300}


def test_a_dsprites_source_by_path_needs_the_path():
    data = raw()
    data["dsprites"]["painting"] = "path"
    with pytest.raises(ParamsError, match="dsprites: painting: path needs painting_path"):
        params.parse(data)


def test_the_seeds_own_regime_keeps_its_form_in_every_profile(tmp_path):
    """da_seed: the original codebase's 8/2/6 batch, MMD 1000, smoothing 100, its kernel and its sum
    smoothing with gradient through the kernel; its control no_da_seed draws the same labels."""
    for p in (params.load(ROOT / "params.yaml"), with_profile("original", tmp_path)):
        seed = p.regimes["da_seed"]
        assert seed.batch == {"source": 8, "target_labeled": 2, "target_unlabeled": 6}
        assert seed.weights == {"supervised": 1.0, "mmd": 1000.0, "smoothing": 100.0}
        losses = p.regime_losses("da_seed")
        assert (losses.bandwidth, losses.scales, losses.mmd_estimator, losses.smoothing_form) == (
            "feature_dim", [1.0], "biased", "seed")
        assert p.regimes["no_da_seed"].batch == {"source": 8, "target_labeled": 2}
    assert p.run.regimes[-2:] == ["no_da_seed", "da_seed"]


def test_old_weight_name_and_bad_overrides_are_explained():
    data = raw()
    data["regimes"]["no_da"]["weights"] = {"mse": 1.0}
    with pytest.raises(ParamsError, match="'mse' is now called 'supervised'"):
        params.parse(data)
    data = raw()
    data["regimes"]["da"]["losses"] = {"bandwith": "median"}
    with pytest.raises(ParamsError, match="regimes.da.*'bandwith' is not a key of the losses section"):
        params.parse(data)
    data = raw()
    data["regimes"]["da"]["losses"] = {"scales": "wide"}
    with pytest.raises(ParamsError, match="regimes.da.losses.scales: expected a list"):
        params.parse(data)


def test_demo_profile_loads():
    assert params.load(ROOT / "params.yaml").wiki.source == "demo"


def test_original_profile_matches_the_original_codebases(tmp_path):
    """The original codebases' profile: their split sizes, 128x128, full width, 10 epochs, real sources."""
    p = with_profile("original", tmp_path)
    assert (p.split.age.source, p.split.age.target_labeled, p.split.age.target_unlabeled,
            p.split.age.target_test) == (3480, 870, 2610, 4000)
    assert (p.split.popularity.source, p.split.popularity.target_labeled,
            p.split.popularity.target_unlabeled, p.split.popularity.target_test) == (9977, 1440, 5500, 5500)
    assert (p.cache.image_size, p.model.width, p.train.epochs, p.train.lr) == (128, 1.0, 10, 1e-5)
    assert (p.wiki.source, p.reddit.source, p.flickr.source) == ("url", "api", "api")
    assert (p.losses.bandwidth, p.losses.scales) == ("feature_dim", [1.0])  # the original codebase's kernel


def test_original_split_sizes_are_consistent_with_the_datasets(tmp_path):
    """Age: 870 + 4000 labeled male faces, 2610 unlabeled; popularity: 1440 + 5500 + 5500 = 12440."""
    p = with_profile("original", tmp_path).split
    assert p.age.target_labeled + p.age.target_test == 4870
    pop = p.popularity
    assert pop.target_labeled + pop.target_test + pop.target_unlabeled == 12440


def test_unknown_key_is_named():
    data = raw()
    data["train"]["epoch"] = 3
    with pytest.raises(ParamsError, match="train: unknown key 'epoch'"):
        params.parse(data)


def test_missing_key_is_named():
    data = raw()
    del data["cache"]["image_size"]
    with pytest.raises(ParamsError, match="cache: missing key 'image_size'"):
        params.parse(data)


def test_float_written_as_yaml_string_is_explained(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("lr: 1.0e-3", "lr: 1e-3")
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match="train.lr: '1e-3' is a string"):
        params.load(tmp_path / "params.yaml")


def test_bad_choice_lists_the_options():
    data = raw()
    data["wiki"]["source"] = "ftp"
    with pytest.raises(ParamsError, match=r"wiki.source: 'ftp' is not one of \['demo', 'url', 'path'\]"):
        params.parse(data)


def test_regime_with_unknown_stream_or_term_fails():
    data = raw()
    data["regimes"]["mine"] = {"batch": {"sauce": 8}, "weights": {"supervised": 1.0}}
    with pytest.raises(ParamsError, match="regimes.mine.*'sauce'"):
        params.parse(data)
    data["regimes"]["mine"] = {"batch": {"source": 8}, "weights": {"supervised": 1.0, "mmd": 1.0}}
    with pytest.raises(ParamsError, match="regimes.mine.*mmd need at least 2 source and 2 target"):
        params.parse(data)
    data["regimes"]["mine"] = {"batch": {"source": -8}, "weights": {"supervised": 1.0}}
    with pytest.raises(ParamsError, match="regimes.mine.*batch.source: -8 images a step"):
        params.parse(data)


def test_missing_file_says_where_to_run(tmp_path):
    with pytest.raises(ParamsError, match="run from the repository root"):
        params.load(tmp_path / "params.yaml")


def test_profile_with_a_misspelled_key_fails(tmp_path):
    overlay = tmp_path / "bad.yaml"
    overlay.write_text("train:\n  epoch: 3\n")
    with pytest.raises(ParamsError, match="'train.epoch' is not in params.yaml"):
        profile.apply(ROOT / "params.yaml", overlay, tmp_path / "out.yaml")


@pytest.mark.parametrize("key, value, message", [
    ("train.epochs", 0, r"train.epochs: 0 is out of range; use an integer >= 1"),
    ("train.steps_per_epoch", -5, r"train.steps_per_epoch: -5 is out of range; use an integer >= 1"),
    ("train.lr", 0.0, r"train.lr: 0.0 is out of range; use a number > 0"),
    ("train.lr", float("nan"), r"train.lr: nan is not a finite number"),
    ("train.momentum", 1.0, r"train.momentum: 1.0 is out of range; use a number in \[0, 1\)"),
    ("train.processes", 0, r"train.processes: 0 is out of range"),
    ("train.repeats", 0, r"train.repeats: 0 is out of range; use an integer >= 1"),
    ("model.dropout", 1.0, r"model.dropout: 1.0 is out of range; use a number in \[0, 1\)"),
    ("model.bins", 1, r"model.bins: 1 is out of range; use an integer >= 2"),
    ("model.width", 0.0, r"model.width: 0.0 is out of range; use a number > 0"),
    ("split.val_fraction", 0.0, r"split.val_fraction: 0.0 is out of range; use a number in \(0, 1\)"),
    ("split.val_fraction", 1.0, r"split.val_fraction: 1.0 is out of range"),
    ("split.age.target_test", 0, r"split.age.target_test: 0 is out of range; use an integer >= 1"),
    ("split.popularity.source", -1, r"split.popularity.source: -1 is out of range"),
    ("split.age.target_labeled", 1, r"split.age.target_labeled: 1 is out of range; use an integer >= 2"),
    ("download.workers", 0, r"download.workers: 0 is out of range"),
    ("flickr.per_page", 501, r"flickr.per_page: 501 is out of range; use an integer in \[1, 500\]"),
    ("flickr.calls_per_second", 0.0, r"flickr.calls_per_second: 0.0 is out of range; use a number > 0"),
    ("reddit.limit", 0, r"reddit.limit: 0 is out of range; use an integer >= 1"),
    ("download.read_timeout", -1.0, r"download.read_timeout: -1.0 is out of range; use a number > 0"),
    ("cache.image_size", 0, r"cache.image_size: 0 is out of range; use an integer >= 8"),
    ("losses.daregram_threshold", 0.0, r"losses.daregram_threshold: 0.0 is out of range; use a number in \(0, 1\]"),
    ("losses.dann_hidden", 0, r"losses.dann_hidden: 0 is out of range"),
    ("evaluate.bootstrap_samples", 10, r"evaluate.bootstrap_samples: 10 is out of range; use an integer >= 100"),
    ("labels.age.divisor", 0, r"labels.age.divisor: 0.0 is out of range; use a number > 0"),
    ("clean_wiki.age_min", 120, r"clean_wiki: age_min 120 is above age_max 100"),
    ("regimes.da.weights.mmd", -0.5, r"regimes.da: weights.mmd: -0.5 is negative"),
    ("regimes.da.weights.mmd", float("inf"), r"regimes.da.weights.mmd: inf is not a finite number"),
    ("regimes.da.losses", {"rsd_tradeoff": -1.0}, r"regimes.da.losses.rsd_tradeoff: -1.0 is out of range"),
])
def test_a_value_out_of_range_is_refused_at_load_naming_the_key_and_the_range(key, value, message):
    data = raw()
    *parents, last = key.split(".")
    node = data
    for name in parents:
        node = node[name]
    node[last] = value
    with pytest.raises(ParamsError, match=message):
        params.parse(data)


def test_a_validation_split_that_would_be_empty_is_refused_at_load():
    data = raw()
    data["split"]["age"]["target_labeled"] = 2
    data["split"]["val_fraction"] = 0.1  # round(0.2) = 0 validation images
    with pytest.raises(ParamsError, match="split: val_fraction 0.1 of age.target_labeled 2 gives 0 "
                                          "validation and 2 training images"):
        params.parse(data)
    data["split"]["val_fraction"] = 0.9  # round(1.8) = 2: nothing left to train on
    with pytest.raises(ParamsError, match="gives 2 validation and 0 training images"):
        params.parse(data)


def test_a_listed_regime_that_draws_unlabeled_images_needs_some():
    data = raw()
    data["split"]["popularity"]["target_unlabeled"] = 0
    with pytest.raises(ParamsError, match="split.popularity.target_unlabeled is 0 but regime da "
                                          r"\(in run.regimes\) draws target_unlabeled images"):
        params.parse(data)


@pytest.mark.parametrize("text, message", [
    ("train:\n  epochs: 3\n   lr: 1\n", r"not valid YAML at line 3, column 6 \(mapping values"),
    ("train: [epochs: 3\n", r"not valid YAML at line 2"),
    ("- just\n- a list\n", r"expected a mapping of sections \(wiki, reddit, ...\), got list"),
])
def test_a_malformed_params_file_is_one_line_naming_where(tmp_path, text, message):
    (tmp_path / "params.yaml").write_text(text)
    with pytest.raises(ParamsError, match=message) as err:
        params.load(tmp_path / "params.yaml")
    assert "\n" not in str(err.value) and "git checkout params.yaml" in str(err.value)


def test_dsprites_profile_holds_the_sweeps_choice(tmp_path):
    """profiles/dsprites.yaml runs the weights (and DD's warm start) that the validation sweep
    chose (benchmarks/dsprites_sweep.json), so the committed table is the sweep's."""
    chosen = json.loads((ROOT / "benchmarks" / "dsprites_sweep.json").read_text())
    p = with_profile("dsprites", tmp_path)
    for method, weights in chosen["chosen"].items():
        assert p.regimes[method].weights == pytest.approx(weights), method
    for method, losses in chosen["losses"].items():
        assert {k: p.regimes[method].losses.get(k) for k in losses} == losses, method
