"""System-1 encoders: they learn on the tiny dataset, handle empty histories, save and load."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thinkrec.cf.item_prior import item_prior_scores
from thinkrec.cf.models import make_batch
from thinkrec.cf.store import load_cf_model, save_trained, train_all_cf, user_table
from thinkrec.cf.train import MODEL_NAMES, build_model, rows_to_batch, train_cf_model
from thinkrec.errors import CheckpointError


@pytest.fixture
def small_grid(tiny_config):
    for name in MODEL_NAMES:
        grid = getattr(tiny_config.cf, name)
        grid.dims, grid.learning_rates, grid.weight_decays = (8,), (0.05,), (0.0,)
        grid.max_epochs, grid.batch_size = 3, 8
    return tiny_config


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_few_steps_lower_the_training_loss(name, tiny_prepared, small_grid):
    torch.manual_seed(0)
    model = build_model(name, {"dim": 8}, tiny_prepared, small_grid.cf)
    train = tiny_prepared.split("train")
    batch = rows_to_batch(tiny_prepared, train)
    labels = torch.tensor(train["label"].to_numpy(), dtype=torch.float32)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(20):
        model.train()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(batch), labels)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_sasrec_handles_an_empty_history(tiny_prepared, small_grid):
    model = build_model("sasrec", {"dim": 8}, tiny_prepared, small_grid.cf).eval()
    batch = make_batch([0, 1], [2, 3], np.full((2, 4), -1), np.full((2, 4), -1), tiny_prepared.n_items)
    assert torch.isfinite(model(batch)).all()


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_and_load_round_trip(name, tiny_prepared, small_grid, tmp_path):
    trained = train_cf_model(name, tiny_prepared, small_grid.cf)
    assert set(trained.report) >= {"valid", "test", "seconds"}
    save_trained(trained, tiny_prepared, tmp_path / name, small_grid)
    model, meta = load_cf_model(tmp_path / name, tiny_prepared, small_grid)
    batch = rows_to_batch(tiny_prepared, tiny_prepared.split("test"))
    with torch.no_grad():
        assert torch.allclose(model(batch), trained.model.eval()(batch), atol=1e-6)
    assert user_table(model, tiny_prepared).shape == (tiny_prepared.n_users, 8)
    assert meta["hparams"]["dim"] == 8


def test_corrupt_weights_are_named(tiny_prepared, small_grid, tmp_path):
    trained = train_cf_model("mf", tiny_prepared, small_grid.cf)
    save_trained(trained, tiny_prepared, tmp_path / "mf", small_grid)
    (tmp_path / "mf" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_cf_model(tmp_path / "mf", tiny_prepared, small_grid)


def test_train_all_writes_metrics_and_predictions_and_resumes(tiny_prepared, small_grid, caplog):
    metrics = train_all_cf(tiny_prepared, small_grid)
    assert set(metrics) == {"item_prior", *MODEL_NAMES}
    root = small_grid.paths.checkpoints / "cf"
    assert (root / "predictions.parquet").exists() and (root / "mf" / "embeddings.safetensors").exists()
    caplog.set_level("INFO")
    train_all_cf(tiny_prepared, small_grid)
    assert "mf: up to date" in caplog.text


def test_item_prior_is_the_smoothed_train_like_rate(tiny_prepared):
    train = tiny_prepared.split("train")
    item = int(train["item"].iloc[0])
    part = train[train["item"] == item]
    expected = (part["label"].sum() + 5 * train["label"].mean()) / (len(part) + 5)
    frame = train[train["item"] == item].head(1)
    assert item_prior_scores(tiny_prepared, frame)[0] == pytest.approx(expected)
