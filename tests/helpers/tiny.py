"""Tiny HH-style text (prompts and responses of a few words), a byte-level BPE trained on it, a tiny
random GPT-NeoX saved beside it, and one (prompt, response) through tokenize_pairs: shared by the tests
that need a small policy (test_batching, test_train, test_vllm_backend, test_vs_trl, test_export)."""

from __future__ import annotations

import random

import pandas as pd
import torch

from bonbon.batching import tokenize_pairs

EOS, PAD = "<|endoftext|>", "<|padding|>"
WORDS = (
    "how do I bake bread grow tomatoes fix my bike clean the kitchen sure first check it every day".split()
)


def hh_prompt(rng: random.Random, turns: int) -> str:
    """An HH prompt with ``turns`` human turns, ending with the opening of an assistant turn."""
    parts = []
    for t in range(turns):
        parts.append("\n\nHuman: " + " ".join(rng.choices(WORDS, k=rng.randint(4, 10))) + "?")
        if t < turns - 1:
            parts.append("\n\nAssistant: " + " ".join(rng.choices(WORDS, k=rng.randint(4, 10))) + ".")
    return "".join(parts) + "\n\nAssistant:"


def hh_response(rng: random.Random) -> str:
    return " " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + "."


def build_tokenizer(path):
    """A byte-level BPE trained on a few hundred synthetic HH strings, saved to ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(0)
    texts = [hh_prompt(rng, rng.randint(1, 3)) + hh_response(rng) for _ in range(300)]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD)
    tokenizer.save_pretrained(path)
    return tokenizer


def save_tiny_policy(model_dir, **config):
    """build_tokenizer(model_dir) and a tiny random GPT-NeoX (d=32, 2 layers, 4 heads, torch seed 0) saved
    beside it, from_pretrained-ready; ``config`` overrides GPTNeoXConfig fields. Returns the tokenizer."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    tokenizer = build_tokenizer(model_dir)
    torch.manual_seed(0)
    fields = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
              "max_position_embeddings": 128, **config}
    GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
                                     pad_token_id=tokenizer.pad_token_id,
                                     **fields)).save_pretrained(model_dir)
    return tokenizer


def tokenize_one(tokenizer, prompt: str, response: str, max_prompt_length: int, max_length: int,
                 finished: bool = True):
    """One (prompt, response) through tokenize_pairs, the path training takes: its chosen sequence,
    or None when truncation emptied it."""
    frame = pd.DataFrame({"prompt_id": ["p"], "prompt": [prompt], "chosen": [response], "rejected": [" x."],
                          "chosen_idx": [0], "rejected_idx": [1], "chosen_finished": [finished]})
    examples, _ = tokenize_pairs(frame, tokenizer, max_prompt_length, max_length)
    return examples[0]["chosen"] if examples else None
