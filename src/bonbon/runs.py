"""The alignment runs a config declares, expanded from grids into named runs (no torch needed)."""

from __future__ import annotations

import itertools
import re
from typing import Any

from bonbon.config import ConfigError
from bonbon.theory import beta_star

# truncation must match the reference log-prob pass that all runs of a pair file share
SHARED_TRAINING_KEYS = ("max_length", "max_prompt_length")
# name parts after the grid's: a LoRA run's, then a runs entry's tag (so LoRA and full-weight runs of one
# grid point, or LoRA runs of several ranks, get distinct names)
LORA_PART = "lora"
_LORA_NAME = re.compile(rf"-{LORA_PART}(-|$)")


def _fmt(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:g}"


def run_name(dataset: str, n: int | None, loss: str, beta: float | str, alpha: float | None = None,
             lora: bool = False, tag: str | None = None) -> str:
    """A readable, unique run name: ``{dataset}-n{n}-{loss}-beta{beta}[-alpha{alpha}][-lora][-{tag}]``,
    with ``original`` in place of ``n{n}`` for a dataset's own preference pairs."""
    name = f"{dataset}-{'original' if n is None else f'n{n}'}-{loss}-beta{_fmt(beta)}"
    parts = [name] + ([f"alpha{_fmt(alpha)}"] if alpha is not None else []) + ([LORA_PART] if lora else [])
    return "-".join(parts + ([tag] if tag else []))


def is_lora_run(name: str) -> bool:
    """Whether a run (or policy) name is a LoRA run's, by its ``-lora`` name part."""
    return bool(_LORA_NAME.search(name))


SEED_PART = "seed"


def seed_list(seed: int | list[int]) -> list[int]:
    """``training.seed`` as a list: one seed, or the seeds a run is replicated over."""
    return list(seed) if isinstance(seed, list) else [seed]


def replicate_name(name: str, seed: int, seeds: list[int]) -> str:
    """The name of a run's replicate with ``seed``: the run's own name where it has one seed (so a
    config of one seed names its runs as before seeds could be lists), else ``{name}-seed{seed}``."""
    return name if len(seeds) == 1 else f"{name}-{SEED_PART}{seed}"


def expand_runs(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every run of a validated config's ``runs`` as ``name -> {dataset, n, loss, beta, beta_auto,
    alpha, training, pairs, seed, base_run}``, ``pairs`` naming the pair file (``n{n}`` or ``original``).

    ``training.seed`` (the shared block's or the entry's) may be a list: each grid point is then trained
    once per seed, as runs named ``{name}-seed{s}`` (:func:`replicate_name`) whose ``training.seed`` is
    that seed; ``base_run`` is the grid point's name without the suffix (the replicates' common name),
    ``seed`` the replicate's seed. One seed (a number, or a list of one) keeps the name unsuffixed.

    ``beta: auto`` is resolved here, once: ``beta`` is beta*(n) and ``beta_auto`` True (the name keeps
    ``betaauto``). ``training`` is the TrainConfig mapping: the shared ``training`` block, the run's
    overrides (its ``lora`` block merged key by key into the shared one), then the loss and its
    parameters. LoRA runs' names end in ``-lora``, then the entry's ``tag`` if it has one. Raises
    ConfigError naming the ``runs[i]`` key for unknown datasets, n outside ``n_values``, ``auto`` with
    DPO, per-run truncation overrides and duplicate runs.
    """
    runs: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(config["runs"]):
        key = f"runs[{i}]"
        datasets, ns = _grid(config, spec, key)
        alphas = spec["alpha"] if spec["loss"] == "bonbon" else [None]
        shared = _merged_training(config["training"], spec["training"])
        seeds = seed_list(shared["seed"])
        for dataset, n, beta, alpha, seed in itertools.product(datasets, ns, spec["beta"], alphas, seeds):
            base = run_name(dataset, n, spec["loss"], beta, alpha, lora=shared["lora"]["enabled"],
                            tag=spec.get("tag"))
            name = replicate_name(base, seed, seeds)
            if name in runs:
                raise ConfigError(f"config key {key}: run {name!r} is declared twice (a 'tag' tells runs of "
                                  "the same grid point apart)")
            # a preference dataset's own pairs have an n only where its config states one (datasets.*.n)
            value = beta_star(n or config["datasets"][dataset].get("n")) if beta == "auto" else float(beta)
            training = {**shared, "seed": seed, "loss": spec["loss"], "beta": value}
            if alpha is not None:
                training["alpha"] = float(alpha)
            if spec["loss"] == "dpo":
                training.update(label_smoothing=spec["label_smoothing"],
                                reference_free=spec["reference_free"])
            runs[name] = {"dataset": dataset, "n": n, "loss": spec["loss"], "beta": value,
                          "beta_auto": beta == "auto",
                          "alpha": alpha, "training": training, "pairs": "original" if n is None else f"n{n}",
                          "checkpoints": spec["checkpoints"] if "checkpoints" in spec
                          else config["evaluation"]["checkpoints"], "seed": seed, "base_run": base}
    return runs


def replicates(runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``run -> {base_run, seed}`` of :func:`expand_runs`' runs: which runs are seeds of one grid point."""
    return {name: {"base_run": run["base_run"], "seed": run["seed"]} for name, run in runs.items()}


def _merged_training(shared: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A run entry's training mapping: the shared block, then its overrides, whose ``lora`` block
    changes the shared one key by key (``{lora: {enabled: true}}`` keeps the shared rank)."""
    return {**shared, **overrides, "lora": {**shared["lora"], **overrides.get("lora", {})}}


def _grid(config: dict[str, Any], spec: dict[str, Any], key: str) -> tuple[list[str], list[int | None]]:
    """The datasets and the n (None: the dataset's original pairs) of run entry ``key``, checked."""
    datasets = spec.get("datasets") or sorted(config["datasets"])
    unknown = [d for d in datasets if d not in config["datasets"]]
    if unknown:
        raise ConfigError(f"config key {key}.datasets: unknown dataset(s) {unknown}; "
                          f"known: {sorted(config['datasets'])}")
    if spec["loss"] == "dpo" and "auto" in spec["beta"]:
        raise ConfigError(f"config key {key}.beta: 'auto' (beta*(n)) is defined for ipo and bonbon, not dpo")
    overridden = [k for k in SHARED_TRAINING_KEYS if k in spec["training"]]
    if overridden:
        raise ConfigError(f"config key {key}.training: {overridden} must be set in the shared 'training' "
                          "block (the reference log-probs of a pair file are computed once for every run)")
    if spec["source"] != "original":
        unbuilt = [d for d in datasets if config["datasets"][d].get("build_pairs") is False]
        if unbuilt:
            raise ConfigError(f"config key {key}.source: datasets {unbuilt} build no pairs "
                              "(build_pairs: false); train on their own pairs with source: original")
        ns = spec.get("n") or sorted(config["n_values"])
        outside = [n for n in ns if n not in config["n_values"]]
        if outside:
            raise ConfigError(f"config key {key}.n: {outside} not in n_values {config['n_values']} "
                              "(no pairs are made for it)")
        return datasets, ns
    not_hf = [d for d in datasets if config["datasets"][d]["source"] != "hf"]
    if not_hf:
        raise ConfigError(f"config key {key}.source: 'original' pairs exist only for hf datasets, "
                          f"not {not_hf}")
    no_n = [d for d in datasets if not config["datasets"][d].get("n")]
    if "auto" in spec["beta"] and no_n:
        raise ConfigError(f"config key {key}.beta: 'auto' needs the n of best-of-n pairs; the original "
                          f"pairs of {no_n} have none (set datasets.<name>.n where they are best/worst of n "
                          "samples)")
    if "n" in spec:
        raise ConfigError(f"config key {key}.n: source 'original' has no n")
    return datasets, [None]


def snapshot_interval(training: dict[str, Any]) -> int:
    """Steps between a run's from_pretrained snapshots: ``snapshot_every``, null meaning every
    ``checkpoint_every``; 0 means none."""
    every = training.get("snapshot_every")
    return int(training["checkpoint_every"] if every is None else every)


def check_checkpoints(config: dict[str, Any], runs: dict[str, dict[str, Any]]) -> None:
    """ConfigError naming ``evaluation.checkpoints`` (or a run entry's ``checkpoints``) when a requested
    step can fall between a run's snapshots."""
    for name, run in runs.items():
        spec = run.get("checkpoints", config["evaluation"]["checkpoints"])
        wanted = (([("every", spec["every"])] if spec.get("every") else [])
                  + [("steps", s) for s in spec.get("steps", [])])
        if not (wanted or spec.get("fractions")):
            continue
        interval = snapshot_interval(run["training"])
        if interval == 0:
            raise ConfigError(f"config key evaluation.checkpoints: run {name} writes no snapshots "
                              "(training.snapshot_every: 0); set snapshot_every or drop the checkpoints")
        for key, step in wanted:
            if step % interval:
                raise ConfigError(f"config key evaluation.checkpoints.{key}: {step} is not a multiple of run "
                                  f"{name}'s snapshot interval {interval} (training.snapshot_every, or "
                                  "checkpoint_every when that is null)")


def checkpoint_steps(spec: dict[str, Any], total_steps: int, snapshot_steps: list[int]) -> list[int]:
    """The intermediate steps of a finished run that ``evaluation.checkpoints`` asks for.

    ``every`` and ``steps`` name steps directly (those at or past the run's last step are skipped: the
    final model is evaluated anyway); each fraction f takes the snapshot nearest to f * total_steps.
    Raises ValueError naming the key for a requested step the run has no snapshot of.
    """
    available = sorted(s for s in snapshot_steps if 0 < s < total_steps)
    requested = {s for s in spec.get("steps", []) if s < total_steps}
    every = spec.get("every")
    if every:
        requested |= set(range(every, total_steps, every))
    for fraction in spec.get("fractions", []):
        if available:
            requested.add(min(available, key=lambda s: (abs(s - fraction * total_steps), s)))
    missing = sorted(requested - set(available))
    if missing:
        raise ValueError(f"config key evaluation.checkpoints: steps {missing} have no snapshot "
                         f"(the run has {available}); check training.snapshot_every")
    return sorted(requested)
