"""How well fold-in places a user: refold every user from their own train ratings, with the trained weights fixed.

    python benchmarks/fold_in.py [--l2 1.0]

For each System-1 encoder, prints the distribution of the cosine similarity between a user's
folded vector and their trained one, the time per fold-in, and the test AUC / UAUC the encoder
reaches when every user is replaced by their folded self (beside the trained model's own).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from thinkrec.cf.fold_in import fold_in, refold_cosines
from thinkrec.cf.store import cf_dir, load_cf_model
from thinkrec.cf.train import predict, rows_to_batch
from thinkrec.config import load_config
from thinkrec.data.prepared import prepare_dataset
from thinkrec.metrics import auc_report


def folded_test_scores(model, prepared, l2: float) -> np.ndarray:
    """P(like) of every test row with its user folded in from their train ratings (MF and LightGCN)."""
    train = prepared.split("train").sort_values(["user", "timestamp"], kind="stable")
    folded = {user: fold_in(model, rows["item"].to_numpy(), rows["label"].to_numpy(),
                                 prepared.summary["history_len"], l2)
              for user, rows in train.groupby("user")}
    test = prepared.split("test")
    with torch.no_grad():
        items = model.item_vectors().double().numpy()
        item_bias = model.item_bias.weight[:, 0].double().numpy()
        global_bias = float(model.global_bias)
    logits = [folded[u].vector @ items[i] + folded[u].bias + item_bias[i] + global_bias
              for u, i in zip(test["user"], test["item"])]
    return 1 / (1 + np.exp(-np.asarray(logits)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--l2", type=float, default=None, help="fold-in L2 weight (default: the configuration's)")
    args = parser.parse_args()
    config = load_config()
    prepared = prepare_dataset(config)
    l2 = config.guest.fold_in_l2 if args.l2 is None else args.l2
    test = prepared.split("test")
    print(f"fold-in with L2 {l2}, {prepared.n_users} users, {torch.get_num_threads()} threads")
    for name in config.cf.models:
        model, _ = load_cf_model(cf_dir(config) / name, prepared, config)
        started = time.perf_counter()
        cosines = refold_cosines(model, prepared, prepared.summary["history_len"], l2)
        per_user = (time.perf_counter() - started) / prepared.n_users * 1000
        p10, p25, median, p75 = np.percentile(cosines, [10, 25, 50, 75])
        print(f"{name:9s} cosine to the trained user: min {cosines.min():.3f}  p10 {p10:.3f}  p25 {p25:.3f}  "
              f"median {median:.3f}  p75 {p75:.3f}  max {cosines.max():.3f}  ({per_user:.1f} ms per user)")
        trained = auc_report(test["user"], test["label"], predict(model, rows_to_batch(prepared, test)))
        line = f"{'':9s} test AUC / UAUC: trained users {trained['auc']:.4f} / {trained['uauc']:.4f}"
        if name != "sasrec":  # SASRec's user vector is its history encoding: nothing to fold but the bias
            refolded = auc_report(test["user"], test["label"], folded_test_scores(model, prepared, l2))
            line += f", folded users {refolded['auc']:.4f} / {refolded['uauc']:.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
