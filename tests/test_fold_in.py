"""Fold-in and guest users: new users placed in the CF spaces with the trained weights fixed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from thinkrec.cf.fold_in import FoldedUser, _propagated_terms, fold_in
from thinkrec.cf.models import MF, LightGCN, SASRec, normalised_adjacency
from thinkrec.config import GuestConfig
from thinkrec.guest import GUEST, GuestError, GuestUser, make_guest


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fold_in_recovers_a_planted_mf_user():
    torch.manual_seed(0)
    model = MF(n_users=1, n_items=600, dim=8).eval()
    with torch.no_grad():
        model.item_embedding.weight.normal_(std=1.0)
    planted = np.random.default_rng(0).normal(size=8)
    logits = model.item_embedding.weight.detach().double().numpy() @ planted
    labels = (np.random.default_rng(1).random(600) < 1 / (1 + np.exp(-logits))).astype(int)
    folded = fold_in(model, np.arange(600), labels, history_len=4, l2=1.0)
    assert cosine(folded.vector, planted) > 0.95
    assert cosine(fold_in(model, np.arange(600), 1 - labels, 4, 1.0).vector, planted) < -0.95


def test_lightgcn_fold_in_rebuilds_the_propagated_layers():
    """With the trained layer-0 embedding, the fold-in's formula gives the trained final vector exactly."""
    torch.manual_seed(0)
    users, items = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 2, 3, 3])
    model = LightGCN(3, 4, 5, layers=2, adjacency=normalised_adjacency(users, items, 3, 4)).eval()
    final = model.propagate()[0].detach().double().numpy()
    layer0 = model.embedding.weight[0].detach().double().numpy()
    assert np.allclose((layer0 + _propagated_terms(model, np.array([0, 1, 1]))) / 3, final, atol=1e-6)


def test_sasrec_fold_in_reads_the_history_and_fits_only_the_bias():
    torch.manual_seed(0)
    model = SASRec(2, 6, 8, history_len=4, layers=1, heads=2, dropout=0.0).eval()
    items, labels = np.array([5, 1, 2, 3, 4]), np.array([1, 0, 1, 1, 0])
    folded = fold_in(model, items, labels, history_len=4, l2=1.0)
    hist = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 1, 1, 0]])
    from thinkrec.cf.models import RowBatch

    expected = model.user_vectors(RowBatch(torch.tensor([0]), torch.tensor([0]), *hist))[0]
    assert np.allclose(folded.vector, expected.detach().double().numpy(), atol=1e-6)
    assert np.isfinite(folded.bias)


@pytest.mark.parametrize("items, labels, message", [
    ([], [], "non-empty"), ([1, 2], [1], "matching"), ([99], [1], "item indexes"), ([1], [2], "labels must be"),
])
def test_fold_in_refuses_bad_input(items, labels, message):
    with pytest.raises(ValueError, match=message):
        fold_in(MF(1, 6, 4).eval(), np.array(items), np.array(labels), 4, 1.0)


def test_make_guest_orders_and_checks_the_picks():
    models = {"mf": MF(1, 10, 4).eval()}
    settings = GuestConfig(min_picks=3, max_picks=5)
    guest = make_guest(models, liked=[1, 2, 3], disliked=[7], history_len=4, settings=settings)
    assert guest.items.tolist() == [1, 7, 2, 3] and guest.labels.tolist() == [1, 0, 1, 1]
    items, labels = guest.history(6)
    assert items.tolist() == [-1, -1, 1, 7, 2, 3] and labels.tolist() == [-1, -1, 1, 0, 1, 1]
    assert guest.rated(7) is False and guest.rated(2) is True and guest.rated(9) is None
    assert isinstance(guest.folded["mf"], FoldedUser) and guest.folded["mf"].vector.shape == (4,)
    with pytest.raises(GuestError, match="at least 3"):
        make_guest(models, [1, 1], [], 4, settings)  # a repeated pick counts once
    with pytest.raises(GuestError, match="both liked and disliked"):
        make_guest(models, [1, 2, 3], [3], 4, settings)
    with pytest.raises(GuestError, match="at most 5"):
        make_guest(models, [1, 2, 3], [4, 5, 6], 4, settings)


def test_a_guest_prompt_reads_the_folded_vector(tiny_prepared, tiny_pipeline_config, tiny_llama, tiny_tokenizer):
    from thinkrec.llm.model import collate
    from thinkrec.llm.systems import build_model, prompt_builder, system_spec

    config = tiny_pipeline_config
    spec = system_spec("collm")
    model = build_model(spec, tiny_llama, tiny_tokenizer, config).eval()
    builder = prompt_builder(spec, tiny_prepared, tiny_tokenizer, config)
    row = tiny_prepared.split("test").iloc[0]
    user, item = int(row["user"]), int(row["item"])
    twin = GuestUser(np.array([0]), np.array([1]), {config.llm.cf_encoder: FoldedUser(
        model.user_table[user].double().numpy(), float(model.user_bias_table[user]))})
    as_guest = builder.encode(twin, item, row["hist_items"], row["hist_labels"])
    as_user = builder.encode(user, item, row["hist_items"], row["hist_labels"])
    assert as_guest.soft_tokens[0].index == GUEST and "guest user" in builder.readable(as_guest)
    assert "User <|cf|>" in as_guest.text  # a guest has no demographics
    batch = collate([as_user, as_guest], tiny_tokenizer.pad_token_id)
    with torch.no_grad():
        embeds = model.input_embeddings(batch)
    # Every soft token of the twin guest equals the data user's: user vector, items and the match token.
    first = batch.soft_rows == 0
    assert torch.allclose(embeds[0, batch.soft_cols[first]], embeds[1, batch.soft_cols[~first]], atol=1e-5)
    with pytest.raises(ValueError, match="carries no guest vector"):
        as_guest.guest = None
        model.input_embeddings(collate([as_guest], tiny_tokenizer.pad_token_id))


def test_explorer_scores_a_guest_like_the_user_it_copies(tiny_explorer):
    """A guest whose folded vectors are a user's trained ones, with that user's history, scores the same."""
    explorer = tiny_explorer
    user_id = "2"
    case = explorer.case(user_id, "1")
    items = case.hist_items[case.hist_items >= 0]
    labels = case.hist_labels[case.hist_items >= 0]
    folded = {}
    for name, model in explorer.models.items():
        vector = fold_in(model, items, labels, 4, 1.0).vector if name == "sasrec" else \
            explorer.models[name].user_vectors(_one_row(case))[0].detach().double().numpy()
        folded[name] = FoldedUser(vector, model.user_bias.weight[case.user, 0].item())
    twin = explorer.case(GuestUser(items, labels, folded), "1")
    assert np.allclose(explorer.system1_scores(twin)["p_like"], explorer.system1_scores(case)["p_like"], atol=2e-4)


def _one_row(case):
    from thinkrec.cf.models import make_batch

    return make_batch([case.user], [case.item], case.hist_items[None], case.hist_labels[None], 6)


def test_explorer_builds_and_places_a_guest(tiny_explorer):
    guest = tiny_explorer.guest(["1", "2"], ["5"])
    case = tiny_explorer.case(guest, "2")
    assert case.truth is True and tiny_explorer.case(guest, "4").truth is None
    table = tiny_explorer.system1_scores(case)
    assert table["p_like"].between(0, 1).all() and len(table) == 4
    with pytest.raises(GuestError, match="at least 3"):
        tiny_explorer.guest(["1"], [])
    from thinkrec.explorer import UnknownIdError

    with pytest.raises(UnknownIdError, match="unknown item id"):
        tiny_explorer.guest(["1", "2", "<b>"], [])
