"""Model cards: what a trained policy is, for a reader of its directory or of the Hub.

Every trained model and evaluated snapshot gets a ``README.md`` (a YAML header that
``huggingface_hub.ModelCard`` reads, then the run, its evaluation row with standard errors, and the
command and config that produced it) and its ``generation_config.json`` gets the sampling settings the
evaluation used (``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``max_new_tokens``), keeping what
``save_pretrained`` wrote there (EOS, pad). ``push_to_hub`` of the directory then publishes both.

The header's ``base_model`` and ``datasets`` are Hub ids; a local or toy model or dataset (no Hub id) is
named in the ``bonbon`` block of the header instead, which also holds the loss, n, beta, alpha, steps,
learning rate and the evaluation row.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from bonbon.config import is_local_path

__all__ = ["card_metadata", "card_text", "update_generation_config", "write_card"]

LIBRARY = "transformers"
# the summary row's columns a card shows first, with their standard errors
HEADLINE = (("win_rate", "win_rate_se"), ("kl", "kl_se"), ("judge_win_rate", "judge_win_rate_se"),
            ("frontier_gap", "frontier_gap_se"))


def _hub_id(value: str | None) -> str | None:
    """``value`` where it is a Hub id (org/name), else None (toy, a local directory, a file)."""
    if not value or value == "toy" or is_local_path(value) or value.count("/") != 1:
        return None
    return value


def _plain(value: Any) -> Any:
    """A summary cell as YAML/JSON takes it: numpy scalars as Python ones, NaN and NA as None."""
    if hasattr(value, "item"):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value is pd.NA:
        return None
    return value


def _steps(value: Any) -> int | None:
    """The summary's step (a float column: NaN for untrained policies) as the int it is."""
    value = _plain(value)
    return None if value is None else int(value)


def card_metadata(policy: str, run: dict[str, Any], row: dict[str, Any], base_model: str,
                  dataset: dict[str, Any]) -> dict[str, Any]:
    """The YAML header: Hub fields (base_model, datasets where they are Hub ids; library_name, tags) and
    the ``bonbon`` block (run, loss, n, beta, alpha, steps, learning_rate, base model, dataset, the
    evaluation row)."""
    training = run["training"]
    source = dataset.get("path") if dataset.get("source") in ("hf", "preference") else None
    meta: dict[str, Any] = {"library_name": LIBRARY, "license": "other",
                            "tags": ["bonbon", "best-of-n", "alignment", run["loss"], "trl-compatible"]}
    if _hub_id(base_model):
        meta["base_model"] = base_model
    if _hub_id(source):
        meta["datasets"] = [source]
    meta["bonbon"] = {
        # a preference dataset's own pairs have no run n, but may state theirs (datasets.<name>.n)
        "policy": policy, "run": row.get("run") or policy, "loss": run["loss"],
        "n": run.get("n") or dataset.get("n"),
        "beta": run["beta"], "beta_auto": bool(run.get("beta_auto")), "alpha": run.get("alpha"),
        "steps": _steps(row.get("step")), "learning_rate": training["learning_rate"],
        "base_model": base_model, "dataset": {"name": run["dataset"], "source": dataset.get("source"),
                                              "path": dataset.get("path")},
        "evaluation": {k: _plain(v) for k, v in row.items()},
    }
    return meta


def _fmt(value: Any) -> str:
    value = _plain(value)
    return "–" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def card_text(meta: dict[str, Any], command: str, config: dict[str, Any], sampling: dict[str, Any]) -> str:
    """The whole README.md: the YAML header, then the run, the evaluation (headline numbers with their
    standard errors, then every column of its summary row), the sampling settings, command and config."""
    b = meta["bonbon"]
    ev = b["evaluation"]
    lines = [f"# {b['policy']}", "",
             f"A policy trained with the **{b['loss']}** loss by the best-of-n alignment workflow "
             "(BoNBoN, DPO, IPO: Gui, Garbacea, Veitch, NeurIPS 2024) from the reference model of "
             f"`{b['base_model']}`, on dataset `{b['dataset']['name']}` (source {b['dataset']['source']}"
             + (f", `{b['dataset']['path']}`" if b["dataset"]["path"] else "") + ").", "",
             "## Training", "", "| loss | n | beta | alpha | steps | learning rate |",
             "|---|---|---|---|---|---|",
             f"| {b['loss']} | {_fmt(b['n'])} | {_fmt(b['beta'])}{' (beta*(n))' if b['beta_auto'] else ''} | "
             f"{_fmt(b['alpha'])} | {_fmt(b['steps'])} | {_fmt(b['learning_rate'])} |", "",
             "## Evaluation", "",
             "Against the reference policy on the held-out prompts (± one standard error):", ""]
    lines += [f"- {value}: {_fmt(ev.get(value))} ± {_fmt(ev.get(se))}" for value, se in HEADLINE
              if ev.get(value) is not None]
    lines += ["", "| column | value |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in ev.items()]
    lines += ["", "## Sampling (as evaluated; also in generation_config.json)", "", "```json",
              json.dumps(sampling, indent=2, sort_keys=True), "```", "", "## Reproduce", "", "```bash",
              command, "```",
              "", "The workflow config that produced it:", "", "```yaml",
              yaml.safe_dump(config, sort_keys=True).rstrip(), "```", ""]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False).rstrip() + "\n---\n\n" + "\n".join(lines)


def update_generation_config(directory: str | Path, sampling: dict[str, Any]) -> dict[str, Any]:
    """The directory's generation_config.json with the evaluation's sampling settings set (the other
    fields kept); written to a temporary name, then renamed. Returns what was written."""
    path = Path(directory) / "generation_config.json"
    values = json.loads(path.read_text()) if path.is_file() else {}
    values.update({"do_sample": True, "temperature": sampling["temperature"], "top_k": sampling["top_k"],
                   "top_p": sampling["top_p"], "max_new_tokens": sampling["max_new_tokens"]})
    values.pop("_from_model_config", None)  # now a config of its own, not one derived from config.json
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return values


def write_card(directory: str | Path, text: str) -> Path:
    """README.md in ``directory``, written whole (temporary name, then rename)."""
    path = Path(directory) / "README.md"
    if not (Path(directory) / "config.json").is_file():
        raise FileNotFoundError(f"{directory}: no model here (config.json missing) to write a card for")
    tmp = path.with_name(".README.md.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
