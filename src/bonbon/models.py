"""Every model the workflow loads, through ``from_pretrained`` (a hub id or a local directory): the
policy / reference causal LM with its tokenizer and generation config, and the reward model (the
judge, ``models.judge``, is one too). (vLLM's engine is loaded by
:mod:`bonbon.vllm_backend`, the one module that imports vllm.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_tokenizer(path: str | Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def load_generation_config(path: str | Path) -> Any | None:
    """The model's ``generation_config.json`` (instruct models list their end-of-turn ids as EOS there),
    or None where it has none."""
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(path)
    except Exception:  # no generation_config.json: EOS and the chat template are all there is
        return None


def load_causal_lm(path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """A causal LM (policy or reference) in eval mode, on ``device``, in ``dtype`` or its saved one."""
    from transformers import AutoModelForCausalLM

    kwargs = {"dtype": dtype} if dtype is not None else {}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs).to(device).eval()


def load_policy(path: str | Path, device: str = "cpu", dtype: torch.dtype | None = None) -> tuple[Any, Any]:
    """:func:`load_causal_lm` and the model's tokenizer."""
    return load_causal_lm(path, device, dtype), load_tokenizer(path)


def load_reward_model(path: str | Path, device: str = "cpu") -> tuple[Any, Any]:
    """A sequence-classification reward model (eval mode, on ``device``) and its tokenizer. (A reward
    function setting, ``{function: ...}``, is loaded by :func:`bonbon.reward_functions.load_scorer`.)"""
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
    return model, load_tokenizer(path)
