"""Backbones and heads: DEX bins and expected value, ImageNet weights from a local file only."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from dareg import checkpoint, heads, params, train
from dareg.data import Split
from dareg.errors import DataError
from dareg.hashes import sha256_file
from dareg.models import INPUT_NORMS, build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_params():
    return replace(params.load(ROOT / "params.yaml").model, width=0.125, dropout=0.0)


def test_balanced_bins_hold_equal_shares_and_uniform_bins_equal_widths():
    labels = np.random.default_rng(0).exponential(size=1000)
    balanced = heads.bin_edges(labels, 4, "balanced")
    index = heads.bin_index(torch.from_numpy(labels), torch.from_numpy(balanced)).numpy()
    assert np.bincount(index, minlength=4).tolist() == [250, 250, 250, 250]
    uniform = heads.bin_edges(labels, 4, "uniform")
    assert np.allclose(np.diff(uniform), (labels.max() - labels.min()) / 4)


def test_bin_means_are_the_mean_label_in_each_bin_and_empty_bins_take_their_centre():
    labels = np.array([0.0, 0.1, 0.2, 0.9, 1.0])
    edges = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    assert heads.bin_means(labels, edges) == pytest.approx([0.1, 0.375, 0.625, 0.95])


def test_dex_prediction_is_the_softmax_expectation_of_the_bin_means():
    head = heads.DexHead(5, 3, "balanced", "both", 0.0)
    head.fit_labels(np.array([0.1, 0.2, 0.5, 0.6, 0.8, 0.9], dtype=np.float32))
    features = torch.randn(4, 5)
    pred, logits = head(features)
    assert torch.allclose(pred[:, 0], (logits.softmax(1) * head.bin_means).sum(1))
    assert head.bin_means.tolist() == pytest.approx([0.15, 0.55, 0.85])


@pytest.mark.parametrize("loss, names", [("ce", {"ce"}), ("mse", {"mse"}), ("both", {"ce", "mse"})])
def test_dex_loss_param_picks_the_terms(loss, names):
    head = heads.DexHead(5, 3, "uniform", loss, 0.0)
    head.fit_labels(np.linspace(0, 1, 9, dtype=np.float32))
    labels = torch.tensor([0.0, 0.5, 1.0])
    pred, logits = head(torch.randn(3, 5))
    terms = head.loss_terms(pred, logits, labels)
    assert set(terms) == names
    if "ce" in terms:  # bins of 0, 0.5, 1 with edges 0, 1/3, 2/3, 1 are 0, 1, 2
        expected = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2]))
        assert float(terms["ce"].detach()) == pytest.approx(float(expected.detach()))


def test_a_dex_run_trains_and_its_checkpoint_predicts_the_same(model_params):
    """A DEX fit on tiny arrays; the restored checkpoint carries the bins and predicts alike."""
    rng = np.random.default_rng(0)
    def split(n):
        return Split(rng.integers(0, 255, (n, 64, 64, 3), dtype=np.uint8),
                     rng.random(n, dtype=np.float32))
    data = {"source": split(20), "target_train": split(12), "target_unlabeled": split(8),
            "target_val": split(6)}
    p = params.load(ROOT / "params.yaml")
    dex = replace(model_params, head="dex", bins=4)
    model = build_model(dex, 64, seed=0)
    cfg = replace(p.train, epochs=1, steps_per_epoch=2, device="cpu")
    best = train.fit(model, data, p.regimes["da"], cfg, p.losses, lambda m: 1.0, lambda e, v: None)
    ckpt = checkpoint.make(best["state"], dex, 64, {}, {})
    restored = checkpoint.restore_model(ckpt)
    assert torch.equal(restored.head.bin_means, model.head.bin_means)
    expected = train.predict(model, data["target_val"].images, "cpu")
    assert np.allclose(train.predict(restored, data["target_val"].images, "cpu"), expected)
    assert np.all((expected >= 0) & (expected <= 1))


@pytest.mark.parametrize("backbone, dim", [("resnet18", 512), ("vgg16", 4096)])
def test_torchvision_backbones_normalize_as_imagenet_and_give_features(model_params, backbone,
                                                                         dim):
    model = build_model(replace(model_params, backbone=backbone), 64, pretrained=False).eval()
    pred, features = model(torch.rand(2, 3, 64, 64))
    assert features.shape == (2, dim) and pred.shape == (2, 1)
    assert model.input_mean.flatten().tolist() == pytest.approx(INPUT_NORMS["imagenet"]["mean"])


def test_imagenet_weights_come_from_the_local_file_its_sha256_a_param(model_params, tmp_path):
    """A file of one's own needs model.weights_sha256 (so a new file is a params change and
    DVC retrains); the error prints the digest to set, and a different file is refused."""
    weights = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(weights, path)
    cfg = replace(model_params, backbone="resnet18", weights=str(path))
    digest = sha256_file(path)
    with pytest.raises(DataError, match=f"resnet18.pth: set model.weights_sha256: {digest}"):
        build_model(cfg, 64)
    model = build_model(replace(cfg, weights_sha256=digest), 64)
    assert torch.equal(model.backbone.conv1.weight, weights["conv1.weight"])
    assert build_model(replace(cfg, weights_sha256=digest[:8].upper()), 64)  # a prefix will do
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)  # another file
    with pytest.raises(DataError, match=f"sha256 {sha256_file(path)} does not start with {digest}"):
        build_model(replace(cfg, weights_sha256=digest), 64)


def test_torchvisions_own_file_is_checked_against_the_prefix_in_its_name(model_params, tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"  # torchvision's name: its sha256 starts f37072fd
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(DataError, match=r"does not start with f37072fd \(torchvision's\)"):
        build_model(replace(model_params, backbone="resnet18", weights=str(path)), 64)


@pytest.mark.parametrize("content, reason", [
    (b"<html>502 Bad Gateway</html>", "torch.load cannot read it"),  # an error page as .pth
    (None, "missing key 'features.0.weight'"),                         # another network's weights
])
def test_a_file_that_is_not_the_weights_is_one_line_naming_it(model_params, tmp_path, content,
                                                              reason):
    path = tmp_path / "weights.pth"
    if content is None:
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    else:
        path.write_bytes(content)
    cfg = replace(model_params, backbone="vgg16", weights=str(path), weights_sha256=sha256_file(path))
    with pytest.raises(DataError, match=f"weights.pth: not vgg16's ImageNet weights .*{reason}") as err:
        build_model(cfg, 64)
    assert "\n" not in str(err.value) and "vgg16-397923af.pth again" in str(err.value)


def test_missing_imagenet_weights_name_the_file_and_the_fix(model_params, tmp_path):
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(DataError, match="nowhere.pth: ImageNet weights for vgg16 not found") as err:
        build_model(replace(model_params, backbone="vgg16", weights=str(missing)), 64)
    assert "download.pytorch.org/models/vgg16-397923af.pth" in str(err.value)
