"""The policies the evaluation samples from and compares, one :class:`Policy` each, built once from
the config by :func:`catalog` and read by the workflow (common.smk), the evaluation and the plots.

Per dataset of the config:

=============  ===================================================================================
reference      pi_ref's own k samples per eval prompt (the SFT model, or the base model)
best_of_n      for each n, the best of n reference draws per replicate (sampled as candidates)
candidates     a block of best-of-n's candidate draws: more samples of the reference's stream
opponents      a block of the M reference draws every sample is compared with, a stream of its own
trained        a run's final model, or one of its evaluated checkpoints ``{run}-step{S}``
=============  ===================================================================================

The reference, best-of-n and the final trained models are the *final* policies (the distributions
figures' rows); candidates and opponents are only sampled, never evaluated on their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from bonbon.evaluate import candidate_samples
from bonbon.sampling import sample_blocks

__all__ = ["Catalog", "Kind", "Policy", "block_names", "block_range", "catalog", "samples_path"]

SAMPLES_DIR = "results/samples"
CHECKPOINT_NAME = re.compile(r"^(?P<run>.+)-step(?P<step>[0-9]+)$")


class Kind(StrEnum):
    REFERENCE = "reference"
    BEST_OF_N = "best_of_n"
    CANDIDATES = "candidates"
    OPPONENTS = "opponents"
    TRAINED = "trained"


def block_names(n: int) -> list[str]:
    """The blocks, named 'first-stop', that hold samples 0 ... n-1 of a prompt
    (bonbon.sampling.sample_blocks)."""
    return ["{}-{}".format(*block) for block in sample_blocks(n)]


def block_range(name: str) -> tuple[int, int]:
    first, stop = name.split("-")
    return int(first), int(stop)


def samples_path(name: str) -> str:
    """The gathered samples of the policy (or block) ``name``."""
    return f"{SAMPLES_DIR}/{name}.parquet"


@dataclass(frozen=True)
class Policy:
    """One policy: ``name`` as in the results' file names, and what it is.

    ``positions`` (candidates) are best-of-n positions [a, b); ``samples`` (opponents) sample indices
    [first, stop) of the opponents' stream; ``run``/``step`` name a trained model: a checkpoint has
    both, a run's final model only once its step count is known (:meth:`at_step`).
    """

    name: str
    dataset: str
    kind: Kind
    n: int | None = None
    loss: str | None = None
    beta: float | None = None
    alpha: float | None = None
    positions: tuple[int, int] | None = None
    samples: tuple[int, int] | None = None
    run: str | None = None
    step: int | None = None
    snapshot: bool = False

    @property
    def samples_from_reference(self) -> bool:
        """Whether its samples are the reference model's: its own, best-of-n's candidates or the opponents."""
        return self.kind in (Kind.REFERENCE, Kind.CANDIDATES, Kind.OPPONENTS)

    @property
    def is_final(self) -> bool:
        """The reference, best-of-n, or a run's final model (not a block, not a checkpoint)."""
        return self.kind not in (Kind.CANDIDATES, Kind.OPPONENTS) and not self.snapshot

    @property
    def is_sampled(self) -> bool:
        """Whether it has samples of its own (best-of-n is built from the candidates' samples)."""
        return self.kind != Kind.BEST_OF_N

    @property
    def is_evaluated(self) -> bool:
        """Whether it gets an evaluation table (candidates and opponents are only sampled)."""
        return self.kind not in (Kind.CANDIDATES, Kind.OPPONENTS)

    def sample_range(self, k: int) -> tuple[int, int]:
        """(first, stop): the sample indices drawn on every eval prompt, k = samples_per_prompt: best-of-n's
        candidates after the reference's k (bonbon.evaluate.candidate_samples), the opponents' block in
        their own stream, else 0 ... k-1."""
        if self.samples is not None:
            return self.samples
        return candidate_samples(self.positions, k) if self.positions is not None else (0, k)

    @property
    def stream(self) -> str:
        """Whose random numbers its samples use (bonbon.sampling.policy_seed): the candidates are more draws
        of the reference's stream, the opponents' blocks share ``{dataset}-opponents``."""
        if self.kind == Kind.OPPONENTS:
            return f"{self.dataset}-opponents"
        return f"{self.dataset}-reference" if self.kind == Kind.CANDIDATES else self.name

    @property
    def model_dir(self) -> str | None:
        """A trained policy's model directory (a run's final model or one of its snapshots), else None."""
        if self.kind != Kind.TRAINED:
            return None
        if self.snapshot:
            return f"results/models/{self.run}/snapshots/step-{self.step:06d}"
        return f"results/models/{self.name}"

    def sample_files(self) -> list[str]:
        """The samples its evaluation reads: best-of-n's are the candidate blocks that hold its n draws."""
        if self.kind == Kind.BEST_OF_N:
            return [samples_path(f"{self.dataset}-bon-candidates{block}") for block in block_names(self.n)]
        return [samples_path(self.name)]

    def at_step(self, step: int) -> Policy:
        """A final trained policy with its run and step count known (the train checkpoint has finished)."""
        return replace(self, run=self.name, step=step)

    def spec(self) -> dict[str, Any]:
        """The policy as the plain mapping the scripts read (params compare by repr: no enum, no Nones)."""
        spec: dict[str, Any] = {"dataset": self.dataset, "kind": str(self.kind)}
        if self.kind in (Kind.BEST_OF_N, Kind.TRAINED):
            spec["n"] = self.n
        if self.kind == Kind.TRAINED:
            spec.update(loss=self.loss, beta=self.beta, alpha=self.alpha)
        if self.positions is not None:
            spec["positions"] = self.positions
        if self.samples is not None:
            spec["samples"] = self.samples
        if self.step is not None:
            spec.update(run=self.run, step=self.step)
        return spec


@dataclass(frozen=True)
class Catalog:
    """Every policy of a config: ``finals`` (reference, best-of-n per n, each run's final model, per
    dataset), best-of-n's ``candidates`` blocks and the ``opponents`` blocks; checkpoints by name."""

    finals: Mapping[str, Policy]
    candidates: Mapping[str, Policy]
    opponents: Mapping[str, Policy]
    runs: tuple[str, ...]

    def __getitem__(self, name: str) -> Policy:
        for table in (self.finals, self.candidates, self.opponents):
            if name in table:
                return table[name]
        match = CHECKPOINT_NAME.match(name)
        if not match or match["run"] not in self.runs:
            raise KeyError(f"unknown policy {name!r}")
        return self.checkpoint(match["run"], int(match["step"]))

    def checkpoint(self, run: str, step: int) -> Policy:
        """The snapshot of ``run`` at ``step``, named ``{run}-step{step}``."""
        return replace(self.finals[run], name=f"{run}-step{step}", run=run, step=step, snapshot=True)

    def sampled(self) -> list[Policy]:
        """Every policy with samples of its own (all but best-of-n), final models and blocks."""
        return [p for p in (*self.finals.values(), *self.candidates.values(), *self.opponents.values())
                if p.is_sampled]

    def opponents_of(self, dataset: str) -> list[Policy]:
        return [p for p in self.opponents.values() if p.dataset == dataset]

    def name_pattern(self) -> str:
        """A regex of every policy name, checkpoints included (the {policy} wildcard's constraint)."""
        return "|".join([re.escape(p) for p in [*self.finals, *self.candidates, *self.opponents]]
                        + [f"{re.escape(r)}-step[0-9]+" for r in self.runs])


def catalog(datasets: Iterable[str], n_values: Iterable[int], opponents: int,
            runs: Mapping[str, Mapping[str, Any]]) -> Catalog:
    """The policies of a config: its datasets, n values, ``evaluation.opponents`` (M) and expanded runs
    (bonbon.runs.expand_runs), in the order the workflow lists them."""
    datasets, n_values = sorted(datasets), sorted(n_values)
    blocks = block_names(max(n_values))
    finals: dict[str, Policy] = {}
    for dataset in datasets:
        finals[f"{dataset}-reference"] = Policy(f"{dataset}-reference", dataset, Kind.REFERENCE)
        for n in n_values:
            finals[f"{dataset}-bon-n{n}"] = Policy(f"{dataset}-bon-n{n}", dataset, Kind.BEST_OF_N, n=n)
    candidates = {
        f"{d}-bon-candidates{b}": Policy(f"{d}-bon-candidates{b}", d, Kind.CANDIDATES,
                                         positions=block_range(b))
        for d in datasets for b in blocks
    }
    opponent_blocks = {
        f"{d}-opponents{b}": Policy(f"{d}-opponents{b}", d, Kind.OPPONENTS, samples=block_range(b))
        for d in datasets for b in block_names(opponents)
    }
    for run, spec in runs.items():
        finals[run] = Policy(run, spec["dataset"], Kind.TRAINED, n=spec["n"], loss=spec["loss"],
                             beta=spec["beta"], alpha=spec["alpha"])
    return Catalog(finals, candidates, opponent_blocks, tuple(runs))
