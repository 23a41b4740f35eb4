"""The tables stages pass to each other: every table's columns (docs/outputs.md's artifact table describes
them), the one reader and the one writer."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

PROMPT_COLUMNS = ("prompt_id", "prompt", "split")
SAMPLE_COLUMNS = ("prompt_id", "prompt", "sample_idx", "response", "n_tokens", "finished", "prompt_cut")
REWARD_COLUMNS = (*SAMPLE_COLUMNS, "reward")
# a policy's evaluation samples (results/samples/{policy}): + the sampled ids' log-probs and the judge's
# reward (models.judge; a copy of reward where the judge is the reward model)
POLICY_SAMPLE_COLUMNS = (*REWARD_COLUMNS, "policy_logp", "reference_logp", "judge_reward")
# what the pairs stages write (bonbon.pairs, bonbon.sources.hh_pairs)
PAIR_COLUMNS = (
    "prompt_id", "prompt", "chosen", "rejected", "chosen_reward", "rejected_reward",
    "chosen_idx", "rejected_idx", "chosen_finished", "rejected_finished", "n",
)
# what training and the reference pass read of a pair table (a pair is keyed by its first, fifth and
# sixth); a hand-made one may lack the rest (a missing *_finished counts as finished)
PAIR_TEXT_COLUMNS = ("prompt_id", "prompt", "chosen", "rejected", "chosen_idx", "rejected_idx")
REF_COLUMNS = (
    "prompt_id", "chosen_idx", "rejected_idx", "chosen_ref_logp", "rejected_ref_logp", "chosen_length",
    "rejected_length",
)
SUMMARY_COLUMNS = (
    "policy", "dataset", "kind", "run", "step", "loss", "n", "beta", "alpha", "win_rate", "win_rate_se", "kl",
    "kl_se", "kl_method", "win_rate_ci_low", "win_rate_ci_high", "kl_ci_low", "kl_ci_high", "mean_reward",
    "mean_length", "median_length", "p90_length", "unfinished_share", "n_prompts", "n_samples",
    # win rates are against n_opponents reference draws per prompt; the reference row is the calibration
    # (bonbon.evaluate.add_calibration)
    "n_opponents", "calibration_z", "calibration",
)
# what bonbon.frontier adds to every summary row: the distance to best-of-n
FRONTIER_COLUMNS = (
    "frontier_gap", "frontier_gap_se", "empirical_frontier_gap", "empirical_frontier_gap_se",
    "length_change", "bon_length", "length_excess",
)
# the judge's (models.judge) columns, after every proxy column: in the summary its win rate (SE, interval)
# and mean reward, then the frontier gaps measured with its win rates; in the runs table the win-rate
# columns of bonbon.frontier.run_table measured with them
JUDGE_SUMMARY_COLUMNS = (
    "judge_win_rate", "judge_win_rate_se", "judge_win_rate_ci_low", "judge_win_rate_ci_high",
    "mean_judge_reward", "judge_calibration_z", "judge_calibration",
)
JUDGE_FRONTIER_COLUMNS = tuple(f"judge_{c}" for c in FRONTIER_COLUMNS[:4])
JUDGE_RUN_COLUMNS = tuple(f"judge_{c}" for c in (
    "final_win_rate", "final_frontier_gap", "win_rate_at_matched_kl", "win_rate_at_matched_kl_se",
    "gap_at_matched_kl", "gap_at_matched_kl_se", "empirical_gap_at_matched_kl",
    "empirical_gap_at_matched_kl_se",
    "best_gap_within_matched_kl", "best_gap_within_matched_kl_se", "best_gap_within_matched_kl_step",
))
# a run's metrics.csv: the loss and the batch means of the metrics the losses return (bonbon.losses),
# NaN where a loss has none, and the held-out pairs' every eval_every steps
LOSS_METRICS = ("loss", "sft", "ipo", "chosen_reward", "rejected_reward", "margin", "reward_accuracy")
VALIDATION_COLUMNS = ("val_loss", "val_sft", "val_ipo", "val_margin", "val_reward_accuracy")
METRIC_COLUMNS = ("step", "epoch", *LOSS_METRICS, "grad_norm", "lr", "tokens_per_s", *VALIDATION_COLUMNS)


class TableError(ValueError):
    """A table that cannot be used; the message names the file."""


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
                                            "win", "judge_win")})
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


def read_shards(paths: Sequence[str | Path], columns: Iterable[str], what: str) -> pd.DataFrame:
    """The rows of sample tables written in pieces (shards of prompts, blocks of sample indices) as one
    table in (prompt_id, sample_idx) order: the table one job would have written. A piece may be empty
    (more shards than batches of prompts); all empty, or a (prompt_id, sample_idx) twice, is an error
    that names ``what`` is being read."""
    pieces = [read_table(path, columns, allow_empty=True) for path in paths]
    filled = [piece for piece in pieces if not piece.empty]  # an empty piece adds no rows, nor its dtypes
    if not filled:
        raise TableError(f"{what}: all {len(pieces)} input tables are empty ({', '.join(map(str, paths))})")
    table = pd.concat(filled, ignore_index=True).sort_values(["prompt_id", "sample_idx"], kind="stable")
    duplicated = table.duplicated(["prompt_id", "sample_idx"])
    if duplicated.any():
        row = table.loc[duplicated].iloc[0]
        raise TableError(f"{what}: the input tables overlap: prompt {row['prompt_id']!r} sample "
                         f"{row['sample_idx']} appears twice")
    return table.reset_index(drop=True)
