"""Tables between stages, logs of jobs, and the device a job runs on."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

# Columns of the tables between stages (the README's artifact table describes them).
SAMPLE_COLUMNS = ("prompt_id", "prompt", "sample_idx", "response", "n_tokens", "finished", "prompt_cut")
REWARD_COLUMNS = (*SAMPLE_COLUMNS, "reward")


class TableError(ValueError):
    """A stage's input table that cannot be used; the message names the file."""


def _column_types() -> dict:
    """The Arrow type of each column the stages pass on, for the columns of an empty table, whose
    values cannot tell (pandas writes an empty object column as type null)."""
    import pyarrow as pa

    text, count, flag = pa.large_string(), pa.int64(), pa.bool_()
    types = {c: text for c in ("prompt_id", "prompt", "response", "split", "chosen", "rejected")}
    types.update({c: count for c in ("sample_idx", "n_tokens", "chosen_idx", "rejected_idx", "chosen_length",
                                     "rejected_length", "n")})
    types.update({c: flag for c in ("finished", "prompt_cut", "chosen_finished", "rejected_finished")})
    types.update({c: pa.float64() for c in ("reward", "policy_logp", "reference_logp", "chosen_reward",
                                            "rejected_reward", "chosen_ref_logp", "rejected_ref_logp",
                                            "opponent_reward", "win")})
    types["response_ids"] = pa.list_(count)
    return types


def write_parquet(frame: pd.DataFrame, path: str | Path) -> None:
    """Write a table atomically: a killed job leaves either nothing or the whole file, never a part.

    An empty table (a shard with no prompts) gets the column types a full one has, so that readers
    and gathers see one schema.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if frame.empty:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        types = _column_types()
        for i, field in enumerate(table.schema):
            if pa.types.is_null(field.type) and field.name in types:
                table = table.set_column(i, pa.field(field.name, types[field.name]),
                                         table.column(i).cast(types[field.name]))
        pq.write_table(table, tmp)
    else:
        frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def read_table(path: str | Path, columns: Iterable[str], allow_empty: bool = False) -> pd.DataFrame:
    """Read a Parquet table and check it has ``columns`` (and rows, unless ``allow_empty``)."""
    path = Path(path)
    if not path.exists():
        raise TableError(f"{path}: file does not exist")
    try:
        frame = pd.read_parquet(path)
    except Exception as error:
        raise TableError(f"{path}: not a readable Parquet file: {error}") from error
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing columns {missing} (has {list(frame.columns)})")
    if not allow_empty and frame.empty:
        raise TableError(f"{path}: has no rows")
    return frame


def setup_job_logging(log_path: str | Path | None) -> logging.Logger:
    """Send this job's log records and its progress bars (stderr) to its Snakemake log file."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(log_path, "w", buffering=1)  # noqa: SIM115 - lives as long as the job
        sys.stderr = stream  # tqdm writes to stderr
        handlers = [logging.StreamHandler(stream)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        handlers=handlers, force=True)
    return logging.getLogger("bonbon")


def torch_device(setting: str) -> str:
    """``auto`` means CUDA where a GPU is visible (Snakemake or SLURM set CUDA_VISIBLE_DEVICES), else CPU."""
    import torch

    if setting == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if setting == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("config key device: 'cuda' was asked for but no GPU is visible to this job")
    return setting


def set_threads(threads: int) -> None:
    """Use the cores Snakemake gave this job, no more (torch takes every core by default)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
