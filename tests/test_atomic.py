"""The RecBole atomic-file reader and the raw dataset loader."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import FIXTURES
from thinkrec.data.atomic import DataFileError, read_atomic
from thinkrec.data.raw import load_raw_dataset, readable_title


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_types_and_sequences():
    frame = read_atomic(FIXTURES / "tiny" / "tiny.item")
    assert list(frame.columns) == ["item_id", "movie_title", "release_year", "class"]
    assert frame.loc[0, "class"] == ["Action", "Sci-Fi"]
    ratings = read_atomic(FIXTURES / "tiny" / "tiny.inter")["rating"]
    assert ratings.dtype == float and set(ratings) <= {1.0, 2.0, 3.0, 4.0, 5.0}


@pytest.mark.parametrize("text, message", [
    ("", "empty file"),
    ("user_id:token\titem_id:token\n", "no data rows"),
    ("user_id\titem_id:token\n1\t2\n", "line 1: header field 'user_id'"),
    ("user_id:token\trating:number\n1\t2\n", "type one of"),
    ("user_id:token\trating:float\n1\t4\n2\n", "line 3: 1 values for 2 header fields"),
    ("user_id:token\trating:float\n1\t4\n\n2\tgood\n", "line 4: field rating is a float field but holds 'good'"),
])
def test_malformed_files_name_the_file_and_line(tmp_path, text, message):
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(DataFileError) as err:
        read_atomic(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_missing_required_field(tmp_path):
    with pytest.raises(DataFileError, match="file not found"):
        read_atomic(tmp_path / "nope.inter")
    path = write(tmp_path / "x.inter", "user_id:token\titem_id:token\n1\t2\n")
    with pytest.raises(DataFileError, match="missing field.*rating"):
        read_atomic(path, required=("user_id", "item_id", "rating"))


def test_loader_maps_ids_and_labels(tiny_config):
    raw = load_raw_dataset(FIXTURES / "tiny", tiny_config.data)
    assert (raw.n_users, raw.n_items) == (4, 6)
    assert raw.users["user_id"].tolist() == ["1", "2", "3", "4"]
    assert raw.items.loc[2, "title"] == "The Garden"
    assert raw.items.loc[5, "year"] == 1952
    assert ((raw.interactions["rating"] >= 4) == raw.interactions["label"].astype(bool)).all()
    sequel = raw.kg[raw.kg["relation"] == "film.film.sequel"]
    assert sequel[["item", "tail_item"]].values.tolist() == [[0, 1]]


def test_optional_files_may_be_absent(tmp_path, tiny_config):
    shutil.copy(FIXTURES / "tiny" / "tiny.inter", tmp_path / "tiny.inter")
    raw = load_raw_dataset(tmp_path, tiny_config.data)
    assert raw.kg is None
    assert raw.items["title"].iloc[0] == "Item 1" and raw.items["genres"].iloc[0] == []


def test_empty_rating_is_an_error(tmp_path, tiny_config):
    write(tmp_path / "tiny.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t\t5\n")
    with pytest.raises(DataFileError, match="rating is empty"):
        load_raw_dataset(tmp_path, tiny_config.data)


@pytest.mark.parametrize("raw, nice", [("Usual Suspects, The", "The Usual Suspects"),
                                       ("Postino, Il", "Il Postino"), ("Heat", "Heat")])
def test_readable_title(raw, nice):
    assert readable_title(raw) == nice
