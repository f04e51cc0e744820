"""The About tab: ThinkRec against System-1 in a stakeholder's words, with the architecture figure."""

from __future__ import annotations

from thinkrec.config import PROJECT_ROOT

FIGURE = PROJECT_ROOT / "assets" / "architecture.svg"

ABOUT = """
## What you are looking at

**System-1 recommenders** (MF, LightGCN, SASRec) answer instantly from patterns in the 100,000 ratings of
MovieLens-100K (943 users, 1,682 movies): users who rated like you liked this movie. They are accurate on
average but cannot say *why*.

**ThinkRec** ([arXiv 2505.15091](https://arxiv.org/abs/2505.15091)) is a language model taught to *think*
before it recommends. It reads the user's recent ratings as text and the System-1 embeddings as extra
"soft tokens", then writes a short argument that cites the user's own history and ends in a verdict.

Users differ, so ThinkRec keeps **one expert per group of similar users** (the clusters on the map) beside a
**global** expert. For every request a **gate** measures how close the user is to each group's centre and
either hands the request to one expert, blends several, or falls back to the global expert when no group
fits. The blend is exact (each expert's LoRA update weighted by the gate) and computed per request, so two
visitors never share one another's weights.

## How to read the page

* **Map**: every MovieLens user, placed by UMAP so that similar tastes sit together; colours are clusters,
  crosses their centres, the star the user you picked.
* **Gate**: how much each expert contributes to this user's answer and which rule decided it.
* **Profile card**: the train-only summary the recommenders learnt from (favoured and avoided genres follow
  the Taste chart's rule: at least 3 ratings in the genre and a like share 10 points above or below the
  user's own), and, once a movie is picked, the history the model's prompt shows for it.
* **Reasoning**: a pick shows every score at once; the model starts writing when you press **Think**, or by
  itself once the case has stayed the same for a moment. Cited titles are marked ✓ when they are in the
  history the prompt showed, 🎯 when they are the target itself (naming it is no evidence), ✗ when they
  are neither; the footer counts each apart. Each checkable claim (a film's genres, era or year, the
  reaction the text gives the user to a film of their history, what viewers made of the target, the user's
  favoured or avoided genres) is underlined and signed ✓ true (solid line), ✗ false (wavy) or ? unchecked
  (dotted), checked against the data the prompt showed; hover over it for that fact. Marks appear as each
  sentence ends and do not change afterwards. The verdict and P(Yes) come first, from the answer's first
  decoding step (on a CPU without native bfloat16 that step runs in fp32, as the scores table does; with
  it, in bfloat16, so the two figures may differ in the third decimal); the text that follows is written
  greedily, at least 32 tokens long and never repeating a run of six tokens of its own, as a small model
  otherwise does. Expect fluent but shallow arguments.
* **Every system's prediction**: P(like) from each recommender beside the truth, when the case is held out.

## Beyond the paper

* **Build a profile**: pick at least three movies you liked or disliked. Your ratings are *folded in*: with
  every trained weight fixed, the backend solves for the CF vector that best explains them (for LightGCN,
  the user's own layer-0 embedding under the trained graph propagation). Refolding real users from their own
  ratings lands within a median cosine of 0.99 of their trained LightGCN vector. You then appear on the
  map, go through the gate and get ThinkRec's reasoning and every System-1 score for any movie.
* **Expert ablation**: the Explore tab's case answered by the global adapter, by each cluster expert alone
  and by the gate's choice, side by side; the temperature slider shows how the gate's weights, its rule and
  the fused verdict move (a low temperature hands the case to one expert, a high one to the global model).
* Every view has a shareable link, shown under it.

The Results under the Analyse tab come from `python -m thinkrec report`, recomputed from the shipped checkpoints.
This demo runs a 135M-parameter model on two CPU cores; the paper used an 8B model on GPUs.
"""


def architecture_html() -> str:
    """The architecture figure inline (the SVG is ours and holds no script), or a note if it is missing."""
    if not FIGURE.exists():
        return "<p><em>The architecture figure (assets/architecture.svg) is missing.</em></p>"
    return f'<div id="architecture">{FIGURE.read_text(encoding="utf-8")}</div>'
