"""Long work over many rows saved chunk by chunk, so that a run killed or stopped at a deadline continues where
it stopped (``thinkrec.timebox``): LLM scoring, generated answers, the faithfulness edits.

A job's folder is named after a digest of everything that decides its results (the caller's): rerunning the same
job finds its chunks, and any change starts a fresh folder instead of reusing stale results. Each chunk is one
small parquet file: the positions of its rows in the job (``row``), one column per result and each row's share of
the seconds the chunk took (``seconds``), written under a temporary name and renamed, so a kill never leaves half
a chunk behind. The plan keeps these folders under ``training/eval/``, committed with the training state, so a job
continues on another machine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from thinkrec.timebox import TimeBox

log = logging.getLogger(__name__)


class Unfinished(Exception):
    """A chunked job reached the end of its time box; the chunks done so far are saved and the same call continues."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} rows done when the time box ended")
        self.done, self.total = done, total


class Chunks:
    """The saved chunks of one job, ``chunk_00000.parquet`` ... in ``folder``."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, number: int) -> Path:
        return self.folder / f"chunk_{number:05d}.parquet"

    def load(self, number: int, rows: np.ndarray) -> pd.DataFrame | None:
        """Chunk ``number`` (its rows in the order of ``rows``); None when it is not saved, cannot be read or holds
        other rows (it is then done again)."""
        path = self.path(number)
        if not path.exists():
            return None
        try:
            saved = pd.read_parquet(path)
        except Exception as err:  # a damaged file: pyarrow raises several error types
            log.warning("%s: unreadable (%s); doing the chunk again", path, err)
            return None
        if not np.array_equal(saved["row"].to_numpy(), rows):
            log.warning("%s: holds other rows than this job's chunk %d; doing it again", path, number)
            return None
        return saved

    def save(self, number: int, frame: pd.DataFrame) -> None:
        """Write chunk ``number`` (``frame`` holds ``row``, the results and ``seconds``) atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.path(number)
        partial = path.with_name(path.name + ".partial")
        frame.to_parquet(partial, index=False)
        partial.replace(path)


def saved_rows(folder: Path) -> int:
    """Rows held by the chunks of every job under ``folder`` (a status read without loading any model)."""
    return sum(len(pd.read_parquet(path, columns=["row"])) for path in Path(folder).glob("*/chunk_*.parquet"))


def run_chunks(chunks: list[np.ndarray], work: Callable[[np.ndarray], pd.DataFrame], store: Chunks | None = None,
               timebox: TimeBox | None = None, desc: str = "rows") -> pd.DataFrame:
    """``work(rows)`` (a frame of results, one line per row) for each chunk of row positions, in order, with a
    progress bar; the results of every chunk (``row`` and ``seconds`` added) in one frame, sorted by ``row``.

    With ``store`` each chunk is saved once done and a saved one is read instead of done again. A chunk to do starts
    only while ``timebox`` lets work start (its first piece always does, so every run moves on); else
    ``Unfinished`` is raised."""
    done, total = [], sum(len(rows) for rows in chunks)
    with tqdm(total=total, desc=desc, unit="row", leave=False) as progress:
        for number, rows in enumerate(chunks):
            frame = store.load(number, rows) if store is not None else None
            if frame is None:
                if timebox is not None and not timebox.may_start():
                    raise Unfinished(sum(len(f) for f in done), total)
                started = time.perf_counter()
                frame = work(rows).assign(row=np.asarray(rows, dtype=np.int64))
                frame = frame.assign(seconds=(time.perf_counter() - started) / max(len(rows), 1))
                if timebox is not None:
                    timebox.started()
                if store is not None:
                    store.save(number, frame)
            done.append(frame)
            progress.update(len(rows))
    if not done:
        return pd.DataFrame({"row": np.zeros(0, dtype=np.int64), "seconds": np.zeros(0)})
    return pd.concat(done, ignore_index=True).sort_values("row", kind="stable").reset_index(drop=True)
