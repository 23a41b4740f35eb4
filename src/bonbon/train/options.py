"""What one training run is: its objective and loop settings (:class:`TrainConfig`), built and checked
against the config schema by :func:`config_from_dict`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bonbon.config import schema_errors, training_defaults, training_keys
from bonbon.losses import LOSSES

# fields a resumed run may change without changing what is computed: the training keys the schema marks
# x-runtime (they change no result) or x-resumable (where the run ends, which steps write snapshots)
RESUMABLE_CHANGES = {*training_keys("x-runtime"), *training_keys("x-resumable")}
OBJECTIVE_FIELDS = ("loss", "beta", "alpha", "label_smoothing", "reference_free")


@dataclass
class LoraOptions:
    """LoRA through peft: the policy trains rank-r adapters B @ A (scaled by alpha / r) on the frozen
    reference weights of ``target_modules`` (module names; "all-linear" for every Linear but the head).
    Defaults and bounds: the schema's ``training.lora`` (see :func:`config_from_dict`)."""

    enabled: bool
    r: int
    alpha: float
    dropout: float
    target_modules: list[str] | str


@dataclass
class TrainConfig:
    """One run: its objective and the loop settings of the config's ``training`` block.

    Every loop setting's default and bound is stated once, in the schema (``definitions.training`` of
    src/bonbon/schemas/config.schema.yaml): build a TrainConfig with :func:`config_from_dict`, which
    checks a mapping against it and fills what is unset. batch_size counts pairs per micro-batch and
    process: an optimizer step sees batch_size * gradient_accumulation_steps * processes pairs.
    max_steps, when set, overrides epochs. snapshot_every None means every checkpoint_every, 0 none.
    """

    loss: str  # a name in bonbon.losses.LOSSES
    learning_rate: float
    optimizer: str
    weight_decay: float
    warmup_steps: int
    batch_size: int
    gradient_accumulation_steps: int
    max_grad_norm: float
    epochs: int
    max_steps: int | None
    max_length: int
    max_prompt_length: int
    seed: int
    checkpoint_every: int
    keep_checkpoints: int
    checkpoints_after_training: str
    # checkpoints written with other settings: moved aside to <out_dir>.stale-<time>/ or deleted, then
    # the run starts afresh (a crashed run with the same settings resumes)
    on_config_change: str
    log_every: int
    mixed_precision: str
    gradient_checkpointing: bool
    # pack each micro-batch's sequences into one row (no padding; attention per sequence; a pair's prompt
    # computed once; the LM head only where a response token is predicted): same pairs per step, values
    # equal up to float32 rounding. "auto": where the model supports it (resolved by the loop at start)
    padding_free: bool | str
    snapshot_every: int | None
    validation_fraction: float
    eval_every: int
    lora: LoraOptions  # train LoRA adapters instead of every weight (a mapping of its fields is accepted)
    # experiment trackers through accelerate: "none", a tracker's name or "all", or a list of names
    report_to: str | list[str]
    tracker_dir: str | None  # None: {out_dir}/tracker
    tracker_project: str  # the project (wandb, trackio) or experiment (mlflow) name
    # the objective's parameters (a run of the config: bonbon.runs.expand_runs resolves beta 'auto')
    beta: float | None = None
    alpha: float | None = None
    label_smoothing: float = 0.0
    reference_free: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.lora, dict):  # from config_from_dict, YAML or asdict
            self.lora = LoraOptions(**self.lora)
        # what the schema cannot say of one run
        if self.padding_free not in (True, False, "auto"):
            raise ValueError(f"padding_free must be true, false or 'auto', got {self.padding_free!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {sorted(LOSSES)}, got {self.loss!r}")
        if self.loss != "sft" and self.beta is None:
            raise ValueError(f"loss {self.loss!r} needs beta (the workflow's beta 'auto' is beta*(n))")
        if self.loss == "bonbon" and self.alpha is None:
            raise ValueError("loss 'bonbon' needs alpha, the weight of its SFT term")


def config_from_dict(values: dict[str, Any]) -> TrainConfig:
    """A TrainConfig from a mapping: the objective (``OBJECTIVE_FIELDS``) and loop settings, which are
    checked against the schema's ``definitions.training`` and completed with its defaults (a partial
    ``lora`` block key by key). Raises ValueError naming each bad or unknown option."""
    loop = {k: v for k, v in values.items() if k not in OBJECTIVE_FIELDS}
    problems = schema_errors({"training": loop})
    if problems:
        raise ValueError("invalid training options:\n  " + "\n  ".join(problems))
    defaults = training_defaults()
    return TrainConfig(**{**defaults, **values, "lora": {**defaults["lora"], **values.get("lora", {})}})

