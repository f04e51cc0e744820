"""The teacher's phrases as drafts: counted right, chained, cut by the rules, and never changing the answer."""

import logging

import torch

from thinkrec.llm.lookup_decoding import AnswerRules, greedy_lookup_decode
from thinkrec.llm.phrasebook import Phrasebook
from thinkrec.serving.bank import trace_phrasebook

END = 0


def test_each_context_keeps_the_token_that_followed_it_most_often():
    book = Phrasebook.from_token_ids([[1, 2, 3], [1, 2, 3], [1, 2, 4], [5, 2, 4]], END)
    assert book.next_token[(1, 2)] == 3  # 3 twice, 4 once
    assert book.next_token[(2, 4)] == END  # every sequence ends with the end token
    assert book.next_token[(1, 2, 3)] == END
    assert (2,) not in book.next_token  # one token is too short a context


def test_a_draft_chains_guesses_the_longest_known_context_deciding_each():
    book = Phrasebook.from_token_ids([[7, 1, 2, 3, 4, 5], [8, 9, 2, 3, 6]], END)
    assert book.draft([7, 1, 2], 10) == [3, 4, 5, END]  # stops at the end token
    assert book.draft([8, 9, 2], 2) == [3, 6]  # (9, 2) -> 3, then (9, 2, 3) -> 6, not (2, 3) -> 4
    assert book.draft([42, 43], 5) == []  # nothing known
    assert book.draft([7, 1, 2], 0) == []
    assert book.draft([7, 1, 2], 10, trim=lambda draft: draft[:2]) == [3, 4]


def test_phrasebook_drafts_leave_the_greedy_answer_as_it_is_in_fewer_passes(tiny_llama):
    torch.manual_seed(5)
    ids = torch.randint(5, tiny_llama.config.vocab_size, (1, 12))
    with torch.no_grad():
        embeds = tiny_llama.get_input_embeddings()(ids)

    def decode(phrasebook):
        groups = list(greedy_lookup_decode(tiny_llama, embeds, ids[0].tolist(), 40, AnswerRules(-1),
                                           phrasebook=phrasebook))
        return [token for group in groups for token in group], len(groups)

    plain, plain_passes = decode(None)
    taught = Phrasebook.from_token_ids([plain], END)  # a phrasebook that knows this very answer
    wrong = Phrasebook.from_token_ids([[(t + 1) % tiny_llama.config.vocab_size for t in plain]], END)
    assert decode(taught)[0] == plain and decode(taught)[1] < plain_passes
    assert decode(wrong)[0] == plain  # bad guesses are checked and dropped


def test_a_missing_trace_file_leaves_decoding_without_a_phrasebook_and_says_so(tiny_config, tiny_tokenizer, caplog):
    with caplog.at_level(logging.WARNING):
        assert trace_phrasebook(tiny_config, tiny_tokenizer) is None
    assert "no phrasebook for decoding" in caplog.text and str(tiny_config.traces_path) in caplog.text


def test_the_bank_phrasebook_learns_the_training_traces_only(tiny_config, tiny_tokenizer):
    import pandas as pd

    tiny_config.traces_path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"split": ["train", "test"], "trace": ["Yes. They enjoyed it.", "No. Quite unlike."]}).to_parquet(
        tiny_config.traces_path)
    book = trace_phrasebook(tiny_config, tiny_tokenizer)
    taught = tiny_tokenizer("Yes. They enjoyed it.", add_special_tokens=False).input_ids
    held_out = tiny_tokenizer("No. Quite unlike.", add_special_tokens=False).input_ids
    assert book.draft(taught[:3], 40) == [*taught[3:], tiny_tokenizer.eos_token_id]
    assert tuple(held_out[:4]) not in book.next_token


def test_the_bank_phrasebook_reads_the_trace_file_thinkrec_records(tiny_config, tiny_tokenizer):
    import json

    import pandas as pd

    from thinkrec.llm.systems import llm_dir

    folder = llm_dir(tiny_config, "thinkrec")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"llm_config": {"traces_file": "teacher/its_own.parquet"}}))
    path = tiny_config.paths.checkpoints / "teacher" / "its_own.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"split": ["train"], "trace": ["Its own words."]}).to_parquet(path)
    assert len(trace_phrasebook(tiny_config, tiny_tokenizer)) > 0
