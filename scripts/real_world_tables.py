"""Print the tables of docs/real-world.md from a finished (or partial) run of config/smollm2-sentiment.yaml.

    python scripts/real_world_tables.py results [dataset]

Ties of the lexicon rewards (how often the n samples of a prompt all score the same, how many samples
score exactly 0.0), the pairs kept, the ties of the evaluation (each sample against the reference
opponents of its prompt), every evaluated policy (win rates by proxy and judge, KL, length), per-stage
times from benchmarks/ and CPU seconds from the jobs' logs, and a few samples of the reference,
best-of-8 and the trained policies.

With warm start (bonbon.warm) a job's benchmark times the client that hands the job to a warm worker:
its wall time is the job's, its max_rss and cpu_time are not. The worker logs its own CPU seconds
(children included) and peak RSS as the job log's last line ("warm worker N: X CPU-s ..."); the
per-stage CPU table sums those.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from bonbon.warm import worker_usage


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return "–" if pd.isna(value) else f"{value:.3f}"
    return str(value)


def markdown(frame: pd.DataFrame) -> str:
    rows = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    rows += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(rows)


def tie_table(rewards: pd.DataFrame, n_values: list[int]) -> pd.DataFrame:
    """Per n: the share of prompts whose first n rewards are all equal (no pair), whose best is tied
    with another sample, and the share of those samples scored exactly 0.0."""
    rows = []
    for n in n_values:
        first = rewards[rewards["sample_idx"] < n]
        grouped = first.groupby("prompt_id")["reward"]
        best_count = (first.assign(top=first["reward"] == grouped.transform("max"))
                      .groupby("prompt_id")["top"].sum())
        rows.append({"n": n, "prompts": grouped.ngroups, "all_tied": float((grouped.nunique() == 1).mean()),
                     "best_tied": float((best_count > 1).mean()),
                     "zero_samples": float((first["reward"] == 0).mean())})
    return pd.DataFrame(rows)


def eval_ties(results: Path, dataset: str = "sentiment") -> pd.DataFrame:
    """Per evaluated policy: the share of its (sample, opponent) comparisons that tie under the proxy
    and the judge (a tie counts 1/2 in the win rates), and of its samples each scores exactly 0.0."""
    opponents = [pd.read_parquet(p)
                 for p in sorted((results / "samples").glob(f"{dataset}-opponents*.parquet"))]
    if not opponents:
        return pd.DataFrame()
    against = pd.concat(opponents)[["prompt_id", "reward", "judge_reward"]]
    rows = []
    for path in sorted((results / "eval").glob(f"{dataset}-*.parquet")):
        table = pd.read_parquet(path)
        if "judge_reward" not in table.columns:
            continue
        pairs = table[["prompt_id", "reward", "judge_reward"]].merge(against, on="prompt_id",
                                                                     suffixes=("", "_opp"))
        rows.append({"policy": path.stem, "samples": len(table), "comparisons": len(pairs),
                     "proxy_ties": float((pairs["reward"] == pairs["reward_opp"]).mean()),
                     "judge_ties": float((pairs["judge_reward"] == pairs["judge_reward_opp"]).mean()),
                     "proxy_zero": float((table["reward"] == 0).mean()),
                     "judge_zero": float((table["judge_reward"] == 0).mean())})
    return pd.DataFrame(rows)


def stage_times(benchmarks: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(benchmarks.rglob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        stage = path.relative_to(benchmarks).parts[0]
        rows.append({"stage": stage, "job": str(path.relative_to(benchmarks).with_suffix("")),
                     "s": float(table["s"].iloc[-1]), "max_rss_mb": float(table["max_rss"].iloc[-1])})
    jobs = pd.DataFrame(rows)
    if jobs.empty:
        return jobs
    return jobs.groupby("stage").agg(jobs=("job", "count"), total_s=("s", "sum"), max_job_s=("s", "max"),
                                     max_rss_mb=("max_rss_mb", "max")).reset_index()


def worker_cpu(logs: Path) -> pd.DataFrame:
    """Per stage (the first folder under logs/): the jobs whose log ends with a warm worker's line, their
    CPU seconds (children included) in all and at most, and the largest peak RSS."""
    rows = []
    for path in sorted(logs.rglob("*.log")):
        for cpu, rss in worker_usage(path.read_text(errors="replace")):
            rows.append({"stage": path.relative_to(logs).parts[0], "cpu_s": cpu, "peak_rss_mb": rss})
    jobs = pd.DataFrame(rows)
    if jobs.empty:
        return jobs
    return jobs.groupby("stage").agg(jobs=("cpu_s", "count"), cpu_s=("cpu_s", "sum"),
                                     max_job_cpu_s=("cpu_s", "max"),
                                     max_peak_rss_mb=("peak_rss_mb", "max")).reset_index()


def samples(results: Path, policies: list[str], count: int = 4) -> str:
    """Sample 0 of the first `count` evaluation prompts by prompt id, from eval/<policy>.parquet."""
    tables = {p: pd.read_parquet(results / "eval" / f"{p}.parquet") for p in policies
              if (results / "eval" / f"{p}.parquet").exists()}
    if not tables:
        return ""
    reference = next(iter(tables.values()))
    lines = []
    for prompt_id in sorted(reference["prompt_id"].unique())[:count]:
        row = reference[reference["prompt_id"] == prompt_id].iloc[0]
        lines.append(f"**{json.loads(row['messages'])[-1]['content']}** (prompt {prompt_id})\n")
        for policy, table in tables.items():
            hit = table[(table["prompt_id"] == prompt_id) & (table["sample_idx"] == 0)]
            if len(hit):
                r = hit.iloc[0]
                text = r["response"].strip().replace("\n", " ").replace("|", "/")
                lines.append(f"- `{policy}` (VADER {r['reward']:.2f}, TextBlob {r['judge_reward']:.2f}, "
                             f"{r['n_tokens']} tokens{'' if r['finished'] else ', cut'}): {text}")
        lines.append("")
    return "\n".join(lines)


def main(results: Path, dataset: str = "sentiment") -> None:
    rewards_path = results / "score" / dataset / "rewards.parquet"
    if rewards_path.exists():
        rewards = pd.read_parquet(rewards_path)
        print("## Ties of the proxy (VADER) on the reference samples of the train prompts\n")
        print(markdown(tie_table(rewards, [2, 4, 8])))
        from bonbon.scorers import textblob  # the judge never scores these: scored here to compare ties

        print("\n## Ties the judge (TextBlob) would give the same samples\n")
        print(markdown(tie_table(rewards.assign(reward=textblob(None, rewards["response"].tolist())),
                                 [2, 4, 8])))
    pairs = [(p.stem, len(pd.read_parquet(p)))
             for p in sorted((results / "pairs" / dataset).glob("n*.parquet"))]
    if pairs:
        print("\n## Pairs kept\n")
        print(markdown(pd.DataFrame(pairs, columns=["pairs", "rows"])))
    ties = eval_ties(results, dataset)
    if len(ties):
        print("\n## Ties in the evaluation (each sample against the reference opponents of its prompt)\n")
        print(markdown(ties))
    summary_path = results / "eval" / "summary.parquet"
    if summary_path.exists():
        summary = pd.read_parquet(summary_path)
        columns = ["policy", "step", "win_rate", "win_rate_se", "judge_win_rate", "judge_win_rate_se", "kl",
                   "kl_se", "mean_reward", "mean_judge_reward", "mean_length", "unfinished_share",
                   "proxy_judge_corr"]
        print("\n## Every evaluated policy\n")
        print(markdown(summary[[c for c in columns if c in summary.columns]]))
    times = stage_times(results.parent / "benchmarks")
    if len(times):
        print("\n## Per-stage wall times (benchmarks/; with warm start max_rss is the client's)\n")
        print(markdown(times))
    cpu = worker_cpu(results.parent / "logs")
    if len(cpu):
        print("\n## Per-stage CPU seconds and peak RSS of the warm workers (the jobs' logs)\n")
        print(markdown(cpu))
    policies = [f"{dataset}-reference", f"{dataset}-bon-n8"] + sorted(
        p.stem for p in (results / "eval").glob(f"{dataset}-n*.parquet") if "-step" not in p.stem)
    text = samples(results, policies)
    if text:
        print("\n## Samples (sample 0 of the first eval prompts by id, from eval/<policy>.parquet)\n")
        print(text)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "results"), *sys.argv[2:3])
