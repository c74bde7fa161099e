"""The papers' dSprites profile (for a GPU and ImageNet weights): its settings load as the papers
have them, and its network, optimiser and terms train here at a toy size."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from dareg import params, profile, train
from dareg.data import Split
from dareg.hashes import sha256_file
from dareg.models import build_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def paper(tmp_path_factory) -> params.Params:
    """params.yaml + profiles/dsprites.yaml + profiles/dsprites_paper.yaml, as the README says."""
    out = tmp_path_factory.mktemp("paper") / "params.yaml"
    profile.apply(ROOT / "params.yaml", ROOT / "profiles" / "dsprites.yaml", out)
    profile.apply(out, ROOT / "profiles" / "dsprites_paper.yaml", out)
    return params.load(out)


def test_the_papers_optimiser_network_and_budget(paper):
    t = paper.train
    assert (t.optimizer, t.nesterov, t.momentum, t.lr, t.weight_decay) == ("sgd", True, 0.9, 0.1, 5e-4)
    assert (t.lr_schedule, t.lr_gamma, t.lr_power, t.backbone_lr_scale) == ("inverse", 1e-4, 0.75, 0.1)
    assert t.epochs * t.steps_per_epoch == 20000
    assert (paper.model.backbone, paper.cache.image_size, paper.model.head) == ("resnet18", 224, "sigmoid")
    for name in paper.run.regimes:
        batch = paper.regimes[name].batch
        assert batch == ({"target_labeled": 36} if name == "oracle" else
                         {"source": 36} if name == "source_only" else
                         {"source": 36, "target_unlabeled": 36}), name


def test_the_papers_c_to_n_weights(paper):
    """RSD 0.001 x (rsd + 0.1 base mismatch); DARE-GRAM alpha 0.1, gamma 0.001 (x 36: dareg's Gram
    matrix is divided by the batch), T 0.999; DD trade-off 1 (tllib)."""
    assert (paper.dsprites.source_domain, paper.dsprites.target_domain) == ("color", "noisy")
    assert paper.regimes["da_rsd"].weights["rsd"] == 0.001 and paper.losses.rsd_tradeoff == 0.1
    w = paper.regimes["da_daregram"].weights
    assert (w["daregram_angle"], w["daregram_scale"], paper.losses.daregram_threshold) == (0.1, 0.036, 0.999)
    assert paper.regimes["da_dd"].weights["dd"] == 1.0


def test_the_papers_profile_trains_at_toy_size(paper, tmp_path):
    """ResNet-18 from a weights file (random here, checked by its sha256), SGD with Nesterov and
    the inverse schedule, on 32 px images with three factors: every term stays finite and the
    learning rate follows the papers' curve."""
    import torchvision

    weights = tmp_path / "resnet18-test.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), weights)
    p = replace(paper, model=replace(paper.model, weights=str(weights), weights_sha256=sha256_file(weights)),
                train=replace(paper.train, epochs=1, steps_per_epoch=2, device="cpu"))
    rng = np.random.default_rng(0)
    data = {name: Split(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
                        None if name == "target_unlabeled" else rng.random((n, 3), dtype=np.float32))
            for name, n in (("source", 40), ("target_train", 40), ("target_unlabeled", 40), ("target_val", 8))}
    for name in ("source_only", "da_daregram", "da_rsd", "da_dd", "oracle"):
        logged = []
        model = build_model(p.model, 32, seed=0, outputs=3)
        best = train.fit(model, data, p.regimes[name], p.train, p.regime_losses(name),
                         lambda net: float(np.abs(train.predict(net, data["target_val"].images, "cpu")
                                                  - data["target_val"].labels).mean()),
                         lambda epoch, values: logged.append(values))
        assert np.isfinite(best["val_mae"]), name
        assert logged[0]["lr"] == pytest.approx(0.1 * (1 + 1e-4) ** -0.75)  # after step 1 (0-based)
        assert logged[0]["lr_backbone"] == pytest.approx(logged[0]["lr"] / 10)
