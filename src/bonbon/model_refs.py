"""Which model serves each role of a run, and from where: one :class:`ModelRef` per role, built once
from the config by :func:`model_refs` and read by the workflow's rules (common.smk).

============  =====================================================================================
base          ``models.base``: the policy's base model (SFT starts from it, the runs from the reference)
reward        ``models.reward``: the proxy reward model (or a reward function)
judge         ``models.judge``, or the reward model's where it is left unset (null)
reference     pi_ref: the SFT model with ``sft.enabled``, else the base model
tokenizer     the policy's tokenizer (the base model's, which SFT keeps; the toy one is built first)
============  =====================================================================================

A ``models.*`` setting is ``toy`` (the toy world's model, written by toy.smk), a hub id, a local
directory, a GGUF file (imported into a directory by models.smk) or a reward function.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bonbon.config import TOY, is_local_path, model_role
from bonbon.gguf_import import imported_dir, is_gguf
from bonbon.rerun import canonical
from bonbon.reward_functions import is_reward_function

__all__ = ["MODEL_FILES", "SFT_MODEL", "TOY_MODELS", "TOY_TOKENIZERS", "ModelRef", "model_files",
           "model_refs"]

# where the toy world writes its models (toy.smk), and so where "toy" in config key models.* reads them
TOY_MODELS = {role: f"results/toy/{role}_model" for role in ("base", "reward", "judge")}
TOY_TOKENIZERS = {"policy": "results/toy/tokenizer_policy", "reward": "results/toy/tokenizer_reward"}
TOY_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SFT_MODEL = "results/models/sft"

# The files of a model directory that later jobs read, config.json first (a job loads from its
# directory). A model the workflow writes declares them as outputs, so that deleting one reschedules
# its producer; the directory itself is not an output, as Snakemake deletes the outputs of a failed job
# and a training run's checkpoints must survive a kill to resume.
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer_config.json")


def model_files(directory: str) -> list[str]:
    return [f"{directory}/{name}" for name in MODEL_FILES]


@dataclass(frozen=True)
class ModelRef:
    """A model as a rule refers to it.

    ``setting`` is the config value as written; ``id`` the same in one spelling, for a rule's params
    (a local directory normalised, a mapping canonical, ``sft`` for the SFT model, whose files are
    inputs); ``inputs`` the files a job that loads it declares (none for a hub id or a reward
    function); ``location`` where it loads from: the directory of those files, else the setting.
    """

    role: str
    setting: Any
    id: Any
    inputs: tuple[str, ...]

    @property
    def files(self) -> list[str]:
        """``inputs`` as the list a rule's ``input:`` takes."""
        return list(self.inputs)

    @property
    def location(self) -> Any:
        return self.location_of(self.inputs)

    def location_of(self, files: Sequence[str]) -> Any:
        """Where a job whose input files for this model are ``files`` loads it from: their directory,
        else the setting (a hub id, a reward function)."""
        return os.path.dirname(files[0]) if len(files) else self.setting


def _setting_id(setting: Any) -> Any:
    if isinstance(setting, dict):
        return canonical(setting)
    return os.path.normpath(setting) if setting != TOY and is_local_path(setting) else setting


def _inputs(setting: Any, directory: str | None) -> list[str]:
    """A model's files as a job's inputs: all of a directory the workflow writes (toy, GGUF import),
    config.json alone of a directory of the user's, nothing for a hub id or a reward function."""
    if directory is not None:
        return model_files(directory)
    if is_reward_function(setting):
        return []
    return [os.path.join(setting, "config.json")] if is_local_path(setting) else []


def _written_dir(config: dict[str, Any], role: str, setting: Any) -> str | None:
    """The directory the workflow writes a model into (toy world, GGUF import), or None."""
    if is_gguf(setting):
        return imported_dir(setting)
    return TOY_MODELS[model_role(config, role)] if setting == TOY else None


def model_refs(config: dict[str, Any]) -> dict[str, ModelRef]:
    """The models of a validated config, by role: base, reward, judge, reference, tokenizer."""
    refs = {}
    for role in ("base", "reward", "judge"):
        setting = config["models"][model_role(config, role)]
        refs[role] = ModelRef(role, setting, _setting_id(setting),
                              tuple(_inputs(setting, _written_dir(config, role, setting))))
    base = refs["base"]
    refs["reference"] = (ModelRef("reference", base.setting, "sft", tuple(model_files(SFT_MODEL)))
                         if config["sft"]["enabled"]
                         else ModelRef("reference", base.setting, base.id, base.inputs))
    tokenizer_inputs = (tuple(f"{TOY_TOKENIZERS['policy']}/{name}" for name in TOY_TOKENIZER_FILES)
                        if base.setting == TOY else base.inputs)
    refs["tokenizer"] = ModelRef("tokenizer", base.setting, base.id, tokenizer_inputs)
    return refs
