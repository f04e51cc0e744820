"""The faithfulness measure: citations, hits, the summary's rates and intervals, and one run on the tiny LLM."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from thinkrec.config import WhatIfConfig
from thinkrec.faithfulness import (
    AGAINST,
    NOTHING,
    SUPPORTED,
    citations,
    hit,
    read_result,
    report_section,
    result_file,
    stage_faithfulness,
    summarise,
)
from thinkrec.files import sha256_of, write_json
from thinkrec.manifest import verify_manifest

TITLES = ["Alpha", "Alpha Returns", "The Garden", "Quiet Sea", "Laugh Track", "Old Reel"]


def test_citations_split_the_shown_films_named_into_support_and_the_rest():
    text = 'Yes. They liked "Alpha Returns" and disliked "The Garden"; "Old Reel" is not in their history.'
    cited, support = citations(text, np.array([1, 2, 3]), np.array([1, 0, 1]), TITLES, verdict=1)
    assert cited == [1, 2] and support == [1]  # Old Reel is not shown; The Garden goes against a Yes
    assert citations(text, np.array([1, 2, 3]), np.array([1, 0, 1]), TITLES, verdict=0)[1] == [2]
    assert citations("No. Nothing here.", np.array([1]), np.array([1]), TITLES, verdict=0) == ([], [])


@pytest.mark.parametrize("verdict, before, after, expected", [
    (1, 0.70, 0.64, True),   # moved 0.06 against a Yes
    (1, 0.70, 0.68, False),  # moved 0.02 only
    (1, 0.70, 0.80, False),  # moved towards the verdict
    (0, 0.30, 0.36, True),   # moved 0.06 against a No
    (1, 0.52, 0.49, True),   # moved 0.03 but flipped a verdict that agreed
    (1, 0.40, 0.38, False),  # the refolded user already disagreed: no flip, too small a move
])
def test_a_hit_is_a_move_against_the_verdict_or_a_flip(verdict, before, after, expected):
    assert hit(verdict, before, after, 0.05) is expected


def record(kind, verdict, before, necessity=None, control=None, same=None, sufficiency=None, cited=1):
    return {"kind": kind, "verdict": verdict, "verdict_stated": True, "cited": cited, "p_before": before,
            "p_necessity": necessity, "p_control": control, "p_control_same_label": same,
            "p_sufficiency": sufficiency, "p_sufficiency_control": sufficiency}


def test_summary_counts_rates_and_paired_gaps():
    records = [record(SUPPORTED, 1, 0.8, necessity=0.6, control=0.79, same=0.7, sufficiency=0.7),  # hit, miss, hit
               record(SUPPORTED, 0, 0.2, necessity=0.3, control=0.21, same=0.22, sufficiency=0.6),  # hit, miss, miss
               record(SUPPORTED, 1, 0.9, necessity=0.89, control=None, same=0.95, sufficiency=0.9),  # miss, -, miss
               record(AGAINST, 1, 0.6, sufficiency=0.4),
               record(NOTHING, 0, 0.4, cited=0)]
    summary = summarise(records, WhatIfConfig(bootstrap=500))
    assert summary["kinds"] == {SUPPORTED: 3, AGAINST: 1, NOTHING: 1}
    assert summary["necessity"]["rate"] == pytest.approx(2 / 3, abs=1e-4) and summary["necessity"]["n"] == 3
    assert summary["control"]["rate"] == 0.0 and summary["control"]["n"] == 2
    assert summary["control_same_label"]["rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["gap_control"]["gap"] == 1.0 and summary["gap_control"]["n"] == 2  # paired rows only
    assert summary["gap_control_same_label"]["gap"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["sufficiency"]["rate"] == pytest.approx(2 / 4, abs=1e-4)  # rows 1 and 3 keep their verdict
    assert summary["refolded_agrees"] == pytest.approx(5 / 5, abs=1e-4)
    necessity = summary["necessity"]
    assert necessity["low"] <= necessity["rate"] <= necessity["high"]
    assert summary["necessity"]["mean_shift_against"] == pytest.approx(np.mean([0.2, 0.1, 0.01]), abs=1e-4)


def first_test_row(explorer):
    """The tiny data's first test row and the titles of the history films it shows."""
    row = explorer.data.rows[explorer.data.rows["split"] == "test"].iloc[0]
    return row, [TITLES[i] for i in row["hist_items"] if i >= 0]


def two_answers(row, generated: list[str]) -> pd.DataFrame:
    """Two stored answers to ``row`` (P(Yes) 0.7 and 0.3) with the texts ``generated``."""
    return pd.DataFrame({"user": [int(row["user"])] * 2, "item": [int(row["item"])] * 2,
                         "label": [int(row["label"])] * 2, "p_yes": [0.7, 0.3], "generated": generated})


def test_a_run_on_stored_answers_writes_records_and_a_report_section(tiny_llm_explorer, tmp_path):
    explorer = tiny_llm_explorer
    config = explorer.config
    row, shown = first_test_row(explorer)
    answers = two_answers(row, [f'Yes. They liked "{shown[-1]}" and "{shown[-2]}".', "No. No reason."])
    path = tmp_path / "answers.parquet"
    answers.to_parquet(path)
    config.whatif.bootstrap = 100
    summary = stage_faithfulness(explorer, config, ["thinkrec"], answers_path=path)["thinkrec"]
    result = read_result(config, "thinkrec")
    first, second = result["records"]
    assert first["verdict"] == 1 and first["cited"] == 2 and second["kind"] == NOTHING
    assert first["support"] == sum(int(label) == 1 for label in row["hist_labels"][-2:])
    for name in ("p_before", "p_sufficiency"):
        assert 0.0 <= first[name] <= 1.0
    assert summary["answers"] == 2 and summary["kinds"][NOTHING] == 1
    assert "## Are the cited reasons the real ones?" in "\n".join(report_section(config))
    listed = verify_manifest(config.paths.checkpoints)["files"]  # the tree still loads, the new result listed
    assert result_file(config, "thinkrec").relative_to(config.paths.checkpoints).as_posix() in listed


def test_rewritten_answers_carry_over_the_records_of_answers_citing_the_same_films(tiny_llm_explorer, tmp_path):
    explorer = tiny_llm_explorer
    config = explorer.config
    config.whatif.bootstrap = 100
    row, shown = first_test_row(explorer)
    answers = two_answers(row, [f'Yes. They liked "{shown[-1]}".', "No. No reason."])
    first_path, rewritten_path = tmp_path / "answers.parquet", tmp_path / "rewritten.parquet"
    answers.to_parquet(first_path)
    answers.assign(generated=[f'Yes. They liked "{shown[-1]}". It is well liked.',  # the same film cited
                              f'Yes. They liked "{shown[-1]}".']).to_parquet(rewritten_path)  # now cites one
    result_file(config, "thinkrec").unlink(missing_ok=True)
    stage_faithfulness(explorer, config, ["thinkrec"], answers_path=first_path)
    before = read_result(config, "thinkrec")
    stage_faithfulness(explorer, config, ["thinkrec"], answers_path=rewritten_path)
    after = read_result(config, "thinkrec")
    assert after["carried"] == 1 and after["records"][0] == before["records"][0]
    assert after["records"][1]["cited"] == 1 and after["answers_sha256"] == sha256_of(rewritten_path)

    tampered = after | {"records": [after["records"][0] | {"p_before": after["records"][0]["p_before"] + 0.5},
                                    after["records"][1]]}
    write_json(result_file(config, "thinkrec"), tampered)  # a record that no longer reproduces is never carried
    stage_faithfulness(explorer, config, ["thinkrec"], answers_path=rewritten_path)
    again = read_result(config, "thinkrec")
    assert again["carried"] == 0 and again["records"][0]["p_before"] == pytest.approx(before["records"][0]["p_before"])
