"""LoRA through peft: adapters wrapped around the policy before training, merged into its weights when
it is saved (the adapter itself kept beside them)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from bonbon.models import load_causal_lm
from bonbon.train.options import LoraOptions

ADAPTER_DIR = "adapter"  # a LoRA policy's peft adapter, beside its merged weights
ONE_WEIGHTS_FILE = "10TB"  # max_shard_size of a saved policy: model.safetensors, never shards


def wrap_lora(model: Any, options: LoraOptions, info: dict[str, Any]) -> Any:
    """The model with peft LoRA adapters on ``options.target_modules`` when LoRA is on (only the adapters
    require grad: the optimizer keeps no state for the frozen weights, which get no grad), else the model
    itself. Records the trainable and total parameter counts in ``info`` (and so in the run summary)."""
    if options.enabled:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=options.r, lora_alpha=options.alpha, lora_dropout=options.dropout,
                          target_modules=options.target_modules, task_type="CAUSAL_LM")
        model = get_peft_model(model, lora)  # B = 0 at the start: the policy starts equal to the reference
    info["trainable_parameters"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info["parameters"] = sum(p.numel() for p in model.parameters())
    return model


def save_policy(model: Any, state_dict: dict[str, torch.Tensor], directory: Path) -> None:
    """The policy in from_pretrained form in ``directory``. A LoRA policy is saved with its adapters
    MERGED into the weights (W + B @ A * alpha / r), so sampling (transformers or vLLM), evaluation and
    every other reader load it as they load a full-weight run; its peft adapter goes to ``adapter/``
    beside it (``PeftModel.from_pretrained(reference, "adapter")`` rebuilds the unmerged policy).
    The weights are one file, never shards: the workflow declares model.safetensors as an output."""
    peft = sys.modules.get("peft")  # never imported: the model cannot be a peft model
    if peft is None or not isinstance(model, peft.PeftModel):
        model.save_pretrained(directory, state_dict=state_dict, max_shard_size=ONE_WEIGHTS_FILE)
        return
    import copy

    # merged in a CPU copy: merging in place and unmerging would not give the training weights back
    # bit for bit. The copy's frozen weights are the reference model's, reloaded from its directory.
    config = model.peft_config["default"]
    base = load_causal_lm(config.base_model_name_or_path, dtype=torch.float32)
    policy = peft.get_peft_model(base, copy.deepcopy(config))
    policy.load_state_dict({k: v.detach().to("cpu", torch.float32) for k, v in state_dict.items()})
    policy.save_pretrained(directory / ADAPTER_DIR)
    policy.merge_and_unload().save_pretrained(directory, max_shard_size=ONE_WEIGHTS_FILE)

