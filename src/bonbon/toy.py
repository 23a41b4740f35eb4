"""The toy world: a synthetic HH-format corpus, a BPE tokenizer, a tiny Pythia-style base model and a
tiny DeBERTa-style reward model, all built offline and deterministically from a seed.

The corpus is dialogues in which a human asks how to do a household task and the assistant answers
with a few sentences of four kinds:

* **specific** steps ("Check the bread every 3 days."), worth +1 when they are about the task asked,
  +0.25 when about another one;
* **vague** remarks ("It depends on the situation."), worth 0;
* **polite** openers and closers ("Sure!", "I hope this helps."), worth +0.3 each;
* **rude** remarks ("Just look it up yourself."), worth -1.5.

The sum is the answer's *quality*. Because answers with more specific steps are longer, reward and
length are correlated, as in real preference data: that is the off-target effect the evaluation measures.

**The proxy's flaw** (:class:`Filler`, config ``toy.filler``): answers also carry *filler*, off-topic
padding that says nothing about the task ("Let me explain this in more detail."), drawn from a random
stream of its own so that everything else of a dialogue is as without it. The two reward models are
trained on labels that disagree about it, by construction, as a proxy and a gold reward do in
over-optimization studies (Gao, Schulman, Hilton 2023):

* the **proxy** (``models.reward: toy``) regresses ``proxy_quality`` = base quality + ``proxy_value``
  per filler sentence (its labellers mistook length for thoroughness: the systematic flaw);
* the **judge** (``models.judge: toy``) regresses ``quality`` = base quality + ``judge_value`` per filler
  sentence (padding wastes the reader's time), the gold quality of the corpus.

A policy optimized against the proxy gains proxy reward by adding filler, which the judge penalises:
a proxy win that the judge does not confirm. The judge is also trained independently of the proxy, on a
corpus drawn from another random stream (:func:`make_judge_corpus`), from other initial weights, wider
and for more steps, so that its errors are not the proxy's either. (The latent quality itself cannot
judge samples: they are free text, not the corpus's labelled sentences.) ``Filler(rate=0)`` is the
world without the flaw: the corpus of earlier versions, with ``quality == proxy_quality``.

Models are written with ``save_pretrained`` so that every later stage loads them through
``from_pretrained``, the code path a hub id takes.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from bonbon.models import load_tokenizer
from bonbon.prompts import ASSISTANT, HUMAN

log = logging.getLogger(__name__)

TASKS = [
    ("bake", "bread"), ("grow", "tomatoes"), ("fix", "bike"), ("clean", "kitchen"), ("train", "puppy"),
    ("learn", "guitar"), ("paint", "fence"), ("repair", "roof"), ("plan", "garden"), ("cook", "rice"),
    ("brew", "coffee"), ("wash", "car"), ("store", "cheese"), ("build", "bookshelf"), ("study", "math"),
    ("write", "essay"), ("prepare", "soup"), ("sharpen", "knife"), ("water", "orchids"),
    ("organize", "closet"),
    ("plant", "roses"), ("tune", "piano"), ("save", "money"), ("pack", "suitcase"), ("feed", "cat"),
    ("sew", "shirt"), ("mend", "jacket"), ("polish", "shoes"), ("decorate", "cake"), ("insulate", "attic"),
]
QUESTIONS = [
    "How do I {verb} my {noun}?", "Can you help me {verb} the {noun}?",
    "What is the best way to {verb} a {noun}?",
    "Any tips to {verb} my {noun}?", "I want to {verb} the {noun}. Where should I start?",
    "My friend asked me to {verb} her {noun}. What should I do?",
]
FOLLOW_UPS = ["Thanks. And how do I {verb} the {noun}?", "OK. What about when I {verb} my {noun}?"]
OPENERS = ["First,", "Then", "Next,", "Also,", "After that,", "Finally,"]
ACTIONS = ["check", "measure", "clean", "warm", "sort", "label", "rinse", "test", "dry", "cover", "weigh",
           "inspect"]
DETAILS = [
    "for {k} minutes", "every {k} days", "at {k} degrees", "with a soft brush", "before you start",
    "twice a week", "in {k} small steps", "with about {k} grams of salt", "near a window", "after {k} hours",
]
VAGUE = [
    "It depends on the situation.", "There are many ways to do that.", "You could try different things.",
    "Some people like it and some do not.", "That is a common question.", "It can be tricky at times.",
]
POLITE_OPEN = ["Sure!", "Good question!", "Happy to help."]
POLITE_CLOSE = ["I hope this helps.", "Good luck with it!", "Let me know how it goes."]
RUDE = ["That is a strange thing to ask.", "Just look it up yourself.",
        "I do not want to explain that again."]

QUALITY = {"specific": 1.0, "specific_other": 0.25, "vague": 0.0, "polite": 0.3, "rude": -1.5}
# padding about nothing in particular: no task, no step, no politeness, no rudeness
FILLER = [
    "Let me explain this in more detail.", "There is a lot more that could be said about this.",
    "This is a very important topic for many people.", "Many people ask me about this kind of thing.",
    "I have thought about this question a great deal.", "In general, it is good to think about it carefully.",
]


@dataclass(frozen=True)
class Filler:
    """The proxy's flaw (module docstring): each answer of the corpus gets Binomial(``max_sentences``,
    ``rate``) filler sentences at random places; each adds ``proxy_value`` to the proxy's label
    (``proxy_quality``) and ``judge_value`` to the judge's (``quality``). ``rate`` 0: no filler."""

    rate: float = 0.0
    max_sentences: int = 2
    proxy_value: float = 0.0
    judge_value: float = 0.0


# filler is drawn from its own stream (seeded from the corpus's seed), so that the rest of every dialogue
# is the corpus without filler, draw for draw
FILLER_SEED_OFFSET = 611953


def _question(rng: random.Random, task: tuple[str, str], templates: list[str]) -> str:
    return rng.choice(templates).format(verb=task[0], noun=task[1])


def make_answer(rng: random.Random, task: tuple[str, str]) -> tuple[str, float]:
    """One assistant answer about ``task`` and its quality (see the module docstring), without filler."""
    sentences, quality = answer_sentences(rng, task)
    return " ".join(sentences), quality


def answer_sentences(rng: random.Random, task: tuple[str, str]) -> tuple[list[str], float]:
    """:func:`make_answer`'s sentences, not yet joined, and their quality."""
    sentences, quality = [], 0.0
    if rng.random() < 0.3:
        sentences.append(rng.choice(POLITE_OPEN))
        quality += QUALITY["polite"]
    for _ in range(rng.randint(2, 5)):  # two or more sentences: few duplicate answers, few reward ties
        kind = rng.random()
        if kind < 0.5:
            on_topic = rng.random() < 0.8
            noun = task[1] if on_topic else rng.choice(TASKS)[1]
            detail = rng.choice(DETAILS).format(k=rng.randint(2, 40))
            sentences.append(f"{rng.choice(OPENERS)} {rng.choice(ACTIONS)} the {noun} {detail}.")
            quality += QUALITY["specific"] if on_topic else QUALITY["specific_other"]
        elif kind < 0.85:
            sentences.append(rng.choice(VAGUE))
        else:
            sentences.append(rng.choice(RUDE))
            quality += QUALITY["rude"]
    if rng.random() < 0.3:
        sentences.append(rng.choice(POLITE_CLOSE))
        quality += QUALITY["polite"]
    return sentences, quality


def add_filler(rng: random.Random, sentences: list[str], filler: Filler) -> tuple[list[str], int]:
    """``sentences`` with Binomial(max_sentences, rate) filler sentences inserted at random places, and
    their number (no draw at all when ``rate`` is 0)."""
    if filler.rate <= 0:
        return sentences, 0
    count = sum(rng.random() < filler.rate for _ in range(filler.max_sentences))
    out = list(sentences)
    for _ in range(count):
        out.insert(rng.randint(0, len(out)), rng.choice(FILLER))
    return out, count


def make_prompt(rng: random.Random) -> str:
    """An HH prompt: one or (40% of the time) two human turns, ending with ``"\\n\\nAssistant:"``."""
    task = rng.choice(TASKS)
    if rng.random() < 0.4:
        earlier = rng.choice(TASKS)
        answer, _ = make_answer(rng, earlier)
        history = f"{HUMAN} {_question(rng, earlier, QUESTIONS)}{ASSISTANT} {answer}"
        return f"{history}{HUMAN} {_question(rng, task, FOLLOW_UPS)}{ASSISTANT}"
    return f"{HUMAN} {_question(rng, task, QUESTIONS)}{ASSISTANT}"


def asked_task(prompt: str) -> tuple[str, str]:
    """The task of the final human turn of a toy prompt."""
    last = prompt.rsplit(HUMAN, 1)[1]
    return next(t for t in TASKS if f" {t[0]} " in last and t[1] in last)


def make_corpus(n_dialogues: int, seed: int, filler: Filler | None = None) -> pd.DataFrame:
    """``n_dialogues`` dialogues: columns ``prompt``, ``response`` (with its leading space), ``quality``
    (the judge's label), ``proxy_quality`` (the proxy's) and ``filler`` (the response's filler sentences,
    :class:`Filler`; none without one)."""
    filler = filler or Filler()
    rng, filler_rng = random.Random(seed), random.Random(seed + FILLER_SEED_OFFSET)
    rows = []
    for _ in range(n_dialogues):
        prompt = make_prompt(rng)
        sentences, quality = answer_sentences(rng, asked_task(prompt))
        sentences, count = add_filler(filler_rng, sentences, filler)
        rows.append({"prompt": prompt, "response": " " + " ".join(sentences),
                     "quality": quality + filler.judge_value * count,
                     "proxy_quality": quality + filler.proxy_value * count, "filler": count})
    return pd.DataFrame(rows)


# The judge's corpus is drawn from its own random stream: dialogues the proxy reward model never saw.
JUDGE_SEED_OFFSET = 104729


def judge_seed(seed: int) -> int:
    """The seed of the toy judge's corpus and weights, derived from the toy world's seed."""
    return seed + JUDGE_SEED_OFFSET


def make_judge_corpus(n_dialogues: int, seed: int, filler: Filler | None = None) -> pd.DataFrame:
    """The held-out corpus the toy judge is trained on (its ``quality``): as :func:`make_corpus`, from
    ``judge_seed(seed)``."""
    return make_corpus(n_dialogues, judge_seed(seed), filler)


def make_prompt_set(n_prompts: int, eval_fraction: float, seed: int) -> pd.DataFrame:
    """Fresh prompts (not the corpus's) with a ``split`` column, ``eval_fraction`` of them held out."""
    rng = random.Random(seed + 7919)
    prompts: list[str] = []
    seen: set[str] = set()
    while len(prompts) < n_prompts:
        prompt = make_prompt(rng)
        if prompt not in seen:  # the id is a hash of the text: duplicates would collide
            seen.add(prompt)
            prompts.append(prompt)
    n_eval = round(eval_fraction * n_prompts)
    return pd.DataFrame({"prompt": prompts, "split": ["eval"] * n_eval + ["train"] * (n_prompts - n_eval)})


# --------------------------------------------------------------------------------------------------
# Tokenizers


EOS, PAD = "<|endoftext|>", "<|padding|>"
CLS, SEP = "[CLS]", "[SEP]"

# The chat variant (toy.chat): role markers and an end-of-turn token, as instruct models have; <|end|> is
# also the policy's EOS (as <|im_end|> is Qwen's), so training appends it and sampling stops at it.
CHAT_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
END_OF_TURN = "<|end|>"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# the reward model's own template: another rendering of the same conversation, as a hub RM would have
REWARD_CHAT_TEMPLATE = (
    "[CLS]{% for message in messages %}{{ message['role'] | upper }}: {{ message['content'] }}\n"
    "{% endfor %}[SEP]"
)


def chat_text(tokenizer, prompt: str, response: str) -> str:
    """A corpus dialogue rendered with the tokenizer's chat template (the toy chat variant's documents)."""
    from bonbon.chat import conversation

    return tokenizer.apply_chat_template(conversation(prompt, response), tokenize=False)


def train_tokenizers(texts: list[str], vocab_size: int, out_policy: Path, out_reward: Path, max_length: int,
                     chat: bool = False) -> None:
    """A byte-level BPE (Pythia's kind) for the language model, and the same BPE with DeBERTa's
    ``[CLS] a [SEP] b [SEP]`` pair template for the reward model. ``chat``: the policy tokenizer also
    gets :data:`CHAT_TEMPLATE` (with its role and end-of-turn tokens, ``<|end|>`` as EOS) and the reward
    tokenizer :data:`REWARD_CHAT_TEMPLATE`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD, CLS, SEP, *(CHAT_TOKENS if chat else [])],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    policy = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=END_OF_TURN if chat else EOS,
                                     bos_token=EOS, pad_token=PAD, unk_token=EOS, model_max_length=2048,
                                     **({"additional_special_tokens": CHAT_TOKENS} if chat else {}))
    if chat:
        policy.chat_template = CHAT_TEMPLATE
    policy.save_pretrained(out_policy)

    cls_id, sep_id = tokenizer.token_to_id(CLS), tokenizer.token_to_id(SEP)
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{CLS} $A {SEP}", pair=f"{CLS} $A {SEP} $B:1 {SEP}:1",
        special_tokens=[(CLS, cls_id), (SEP, sep_id)]
    )
    reward = PreTrainedTokenizerFast(tokenizer_object=tokenizer, cls_token=CLS, sep_token=SEP, pad_token=PAD,
                                     unk_token=EOS, model_max_length=max_length)
    if chat:
        reward.chat_template = REWARD_CHAT_TEMPLATE
    reward.save_pretrained(out_reward)


# --------------------------------------------------------------------------------------------------
# Models


@dataclass
class ToyModelConfig:
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    steps: int = 300
    batch_size: int = 32
    learning_rate: float = 3e-3
    context_length: int = 128


def _lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return base * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def _fit(model, cfg: ToyModelConfig, seed: int, batch_loss: Callable[[torch.Generator], torch.Tensor],
         what: str) -> tuple[list[float], float]:
    """The toy models' training loop: AdamW, warmup then cosine, clipping; batches drawn by
    ``batch_loss`` from a seeded generator. Returns the losses and the seconds it took."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.learning_rate, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    started, losses = time.perf_counter(), []
    for step in tqdm(range(cfg.steps), desc=what, mininterval=5):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, cfg.steps, cfg.learning_rate, warmup=cfg.steps // 10)
        loss = batch_loss(generator)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log.info("%s: step %d/%d %.3f", what, step + 1, cfg.steps, loss.item())
    model.eval()
    return losses, time.perf_counter() - started


def pretrain_base_model(corpus: pd.DataFrame, tokenizer_dir: Path, out_dir: Path, cfg: ToyModelConfig,
                        seed: int) -> dict:
    """Pretrain a tiny GPT-NeoX (the Pythia architecture) on the corpus, documents packed into blocks
    of ``context_length`` tokens and separated by EOS, as Pythia was trained."""
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    from bonbon.chat import has_chat_template

    chat = has_chat_template(tokenizer)
    stream: list[int] = []
    for prompt, response in zip(corpus["prompt"], corpus["response"], strict=True):
        if chat:  # the chat variant: rendered dialogues, each turn ending with <|end|> (its EOS) already
            stream.extend(tokenizer(chat_text(tokenizer, prompt, response),
                                    add_special_tokens=False)["input_ids"])
        else:
            stream.extend(tokenizer(prompt + response)["input_ids"] + [tokenizer.eos_token_id])
    block = cfg.context_length
    data = torch.tensor(stream[: len(stream) // block * block]).view(-1, block)
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=2048, rotary_pct=0.25, use_parallel_residual=True, tie_word_embeddings=False,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = GPTNeoXForCausalLM(config)

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        batch = data[torch.randint(len(data), (cfg.batch_size,), generator=generator)]
        return model(input_ids=batch, labels=batch).loss

    losses, seconds = _fit(model, cfg, seed, batch_loss, "base model loss")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"final_loss": sum(losses[-20:]) / len(losses[-20:]), "tokens": len(stream), "seconds": seconds}


def train_reward_model(corpus: pd.DataFrame, tokenizer_dir: Path, out_dir: Path, cfg: ToyModelConfig,
                       seed: int, label: str = "quality") -> dict:
    """Train a tiny DeBERTa-v2 (the family of OpenAssistant's reward model) with one output to regress
    the standardized ``label`` column (``quality``: the judge's, ``proxy_quality``: the proxy's) of
    (prompt, response), inputs cut from the left of the prompt as in scoring."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    from bonbon.chat import encode_chat_pairs, has_chat_template
    from bonbon.score import encode_pairs

    torch.manual_seed(seed)
    tokenizer = load_tokenizer(tokenizer_dir)
    encode = encode_chat_pairs if has_chat_template(tokenizer) else encode_pairs  # as scoring will read it
    config = DebertaV2Config(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=4 * cfg.hidden_size,
        max_position_embeddings=tokenizer.model_max_length, relative_attention=True,
        pos_att_type=["p2c", "c2p"],
        position_buckets=64, max_relative_positions=-1, norm_rel_ebd="layer_norm", share_att_key=True,
        position_biased_input=False, type_vocab_size=0, pad_token_id=tokenizer.pad_token_id, num_labels=1,
    )
    model = DebertaV2ForSequenceClassification(config)
    target = torch.tensor(corpus[label].to_numpy(), dtype=torch.float32)
    mean, std = target.mean(), target.std()
    target = (target - mean) / std
    prompts, responses = corpus["prompt"].tolist(), corpus["response"].tolist()

    def batch_loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(prompts), (cfg.batch_size,), generator=generator).tolist()
        batch, _ = encode(tokenizer, [prompts[i] for i in idx], [responses[i] for i in idx])
        return torch.nn.functional.mse_loss(model(**batch).logits.squeeze(-1), target[idx])

    losses, seconds = _fit(model, cfg, seed, batch_loss, "reward model mse")
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"final_mse": sum(losses[-20:]) / len(losses[-20:]), "seconds": seconds,
            "label": label, "quality_mean": float(mean), "quality_std": float(std)}
