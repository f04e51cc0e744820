"""The reasoning measures on the shipped teacher references (integration: real data and checkpoints)."""

from __future__ import annotations

import pytest

from thinkrec.config import load_config
from thinkrec.pipeline import reference_traces
from thinkrec.reasoning_scores import check_claims, references_report, with_history

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def config():
    return load_config()


@pytest.fixture(scope="module")
def prepared(config):
    from thinkrec.data.prepared import prepare_dataset

    return prepare_dataset(config)


@pytest.fixture(scope="module")
def first_teacher_claims(prepared):
    """The claims of the first teacher's references (``teacher/traces.parquet``, halves era rule)."""
    config = load_config(overrides=["llm.traces_file=teacher/traces.parquet"])
    references = with_history(prepared, reference_traces(config)[["user", "item", "trace"]])
    return references, check_claims(prepared, config, references, "trace")


def test_references_state_only_true_facts(prepared, config):
    report = references_report(prepared, config, reference_traces(config))
    assert report["claims_checked"] >= 300 and report["claim_accuracy"] >= 0.99


def test_the_first_teachers_only_false_claims_are_mid_decade_eras(prepared, first_teacher_claims):
    references, claims = first_teacher_claims
    years = prepared.items["year"]
    false = [(claim, item) for item, found in zip(references["item"], claims) for claim in found
             if claim.verdict == "false"]
    assert all(claim.kind == "era" and claim.fact.endswith("mid nineties") for claim, _ in false)
    assert {int(years[item]) % 10 for _, item in false} <= {4, 5, 6}
    assert sum(len(found) for found in claims) >= 300


def test_references_loop_and_complete_like_a_teacher(prepared, config):
    report = references_report(prepared, config, reference_traces(config))
    assert report["rows"] == config.llm.reference_rows
    assert report["completion_rate"] == 1.0 and report["loop_rate"] <= 0.05 and report["repetition_rate"] <= 0.01
    assert report["conclusion_agreement"] == 1.0 and report["conclusion_unclear_share"] == 0.0
    assert report["argument_agreement"] == 1.0 and report["arguments_judged"] >= 100  # each reaction in its place
