"""Chat templates: rendering, stopping at the end-of-turn token, turn-wise truncation, reward-side
rendering."""

import json
from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from bonbon import toy
from bonbon.chat import (
    ConversationError,
    chat_sampling,
    drop_earlier_turns,
    encode_chat_pairs,
    end_of_turn_ids,
    hh_to_messages,
    messages_to_hh,
    read_messages_file,
    render_prompt,
    render_prompt_table,
)
from bonbon.generate import generate_samples
from bonbon.prompts import PromptFileError, build_prompt_table
from bonbon.sampling import SamplingConfig

DIALOGUE = ("\n\nHuman: How do I bake bread?\n\nAssistant: Sure! First, warm the oven.\n\nHuman: And then?"
            "\n\nAssistant:")


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("chat")
    corpus = toy.make_corpus(200, seed=2)
    texts = (corpus["prompt"] + corpus["response"]).tolist()
    toy.train_tokenizers(texts, 400, root / "policy", root / "reward", max_length=256, chat=True)
    toy.train_tokenizers(texts, 400, root / "hh_policy", root / "hh_reward", max_length=64)
    return {name: AutoTokenizer.from_pretrained(root / name)
            for name in ("policy", "reward", "hh_policy", "hh_reward")}


def test_hh_text_becomes_a_conversation_and_back():
    messages = hh_to_messages(DIALOGUE)
    assert messages == [{"role": "user", "content": "How do I bake bread?"},
                        {"role": "assistant", "content": "Sure! First, warm the oven."},
                        {"role": "user", "content": "And then?"}]
    assert messages_to_hh(messages) == DIALOGUE
    assert messages_to_hh([{"role": "system", "content": "Be brief."},
                           {"role": "user", "content": "Hi"}]) == "\n\nHuman: Be brief. Hi\n\nAssistant:"


def test_prompt_is_rendered_with_the_policy_template(tokenizers):
    rendered = render_prompt(tokenizers["policy"], hh_to_messages(DIALOGUE))
    assert rendered == ("<|user|>\nHow do I bake bread?<|end|>\n"
                        "<|assistant|>\nSure! First, warm the oven.<|end|>\n"
                        "<|user|>\nAnd then?<|end|>\n<|assistant|>\n")
    ids = tokenizers["policy"](rendered, add_special_tokens=False)["input_ids"]
    end = tokenizers["policy"].convert_tokens_to_ids("<|end|>")
    assistant = tokenizers["policy"].convert_tokens_to_ids("<|assistant|>")
    assert ids.count(end) == 3 and ids[-2] == assistant and tokenizers["policy"].decode(ids[-1:]) == "\n"
    assert tokenizers["policy"].eos_token_id == end  # the toy's end of turn is its EOS, as Qwen's <|im_end|>


def test_turn_wise_truncation(tokenizers):
    tok = tokenizers["policy"]
    messages = hh_to_messages(DIALOGUE)
    full = len(tok(render_prompt(tok, messages), add_special_tokens=False)["input_ids"])
    last = len(tok(render_prompt(tok, messages[-1:]), add_special_tokens=False)["input_ids"])
    assert drop_earlier_turns(tok, messages, full) == (messages, 0)
    # one token short: the first user turn and the assistant's answer go together, whole
    assert drop_earlier_turns(tok, messages, full - 1) == (messages[-1:], 2)
    assert drop_earlier_turns(tok, messages, last - 1) == (messages[-1:], 2)  # the last turn is never dropped
    system = [{"role": "system", "content": "Be brief."}, *messages]
    kept, dropped = drop_earlier_turns(tok, system, full)
    assert kept == [system[0], messages[-1]] and dropped == 2  # the system message stays


def test_prompt_table_keeps_the_conversation_and_ids(tokenizers):
    table, _ = build_prompt_table(pd.DataFrame({"prompt": [DIALOGUE, "\n\nHuman: Hi\n\nAssistant:"]}), 0.0, 0)
    rendered, counts = render_prompt_table(table, tokenizers["policy"], max_length=12)
    assert rendered["prompt_id"].tolist() == table["prompt_id"].tolist()  # ids of the HH text
    by_id = rendered.set_index("prompt_id")
    row = by_id.loc[table.loc[table["prompt"] == DIALOGUE, "prompt_id"].iloc[0]]
    assert json.loads(row["messages"]) == hh_to_messages(DIALOGUE)  # the whole conversation
    assert row["prompt"] == "<|user|>\nAnd then?<|end|>\n<|assistant|>\n" and row["turns_dropped"] == 2
    assert counts == {"rendered_with_chat_template": 2, "prompts_with_turns_dropped": 1}


def test_end_of_turn_ids(tokenizers):
    tok = tokenizers["policy"]
    end, eos = tok.convert_tokens_to_ids("<|end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert end_of_turn_ids(tok) == (end,)
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=[end, 300]))
    assert end_of_turn_ids(tok, model) == (end, 300)
    tok.eos_token = "<|endoftext|>"  # a template whose end of turn is not EOS: found in the template
    try:
        assert end_of_turn_ids(tok) == (eos, end)
    finally:
        tok.eos_token = "<|end|>"
    cfg = SamplingConfig(n=2)
    assert chat_sampling(cfg, tokenizers["hh_policy"]) is cfg  # no template: the HH path as it was
    chat = chat_sampling(cfg, tok)
    assert chat.stop_strings == () and chat.stop_token_ids == (end,)


class ScriptedModel(torch.nn.Module):
    """Emits ``script`` token by token (one forward per token), whatever the input: a sampler test bench."""

    def __init__(self, script: list[int], vocab: int):
        super().__init__()
        self.script, self.vocab, self.calls = script, vocab, 0
        self.weight = torch.nn.Parameter(torch.zeros(1))

    class Cache:
        def batch_repeat_interleave(self, n):
            pass

        def batch_select_indices(self, index):
            pass

    def forward(self, input_ids, attention_mask=None, position_ids=None, cache=None, use_cache=True,
                logits_to_keep=0):
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e4)
        logits[:, -1, self.script[min(self.calls, len(self.script) - 1)]] = 1e4
        self.calls += 1
        return SimpleNamespace(logits=logits[:, -logits_to_keep:], cache=cache or self.Cache())


def test_sampling_stops_at_the_end_of_turn_token(tokenizers):
    tok = tokenizers["policy"]
    words = tok("Sure! Check it.", add_special_tokens=False)["input_ids"]
    end, eos = tok.convert_tokens_to_ids("<|end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    human = tok("\n\nHuman:", add_special_tokens=False)["input_ids"]
    prompts = pd.DataFrame({"prompt_id": ["p"],
                            "prompt": [render_prompt(tok, [{"role": "user", "content": "Hi"}])],
                            "messages": ['[{"role": "user", "content": "Hi"}]']})
    cfg = SamplingConfig(n=1, max_new_tokens=40)
    tok.eos_token = "<|endoftext|>"  # so that it is the template's end of turn that stops, not EOS
    try:
        # "\n\nHuman:" is text inside a chat response, not a turn: sampling goes on to <|end|>
        model = ScriptedModel([*words, *human, *words, end, *words], len(tok))
        samples, _ = generate_samples(model, tok, prompts, cfg)
    finally:
        tok.eos_token = "<|end|>"
    row = samples.iloc[0]
    assert list(row["response_ids"]) == [*words, *human, *words, end] and bool(row["finished"])
    assert (row["response"] == "Sure! Check it.\n\nHuman:Sure! Check it."
            and row["messages"] == prompts["messages"][0])
    assert eos != end
    # the HH tokenizer (no template) stops at the HH turn instead, and has no messages column
    hh = pd.DataFrame({"prompt_id": ["p"], "prompt": ["\n\nHuman: Hi\n\nAssistant:"]})
    hh_tok = tokenizers["hh_policy"]
    hh_words = hh_tok("Sure! Check it.", add_special_tokens=False)["input_ids"]
    hh_human = hh_tok("\n\nHuman:", add_special_tokens=False)["input_ids"]
    samples, _ = generate_samples(ScriptedModel([*hh_words, *hh_human, *hh_words], len(hh_tok)), hh_tok, hh,
                                  cfg)
    assert samples.iloc[0]["response"] == "Sure! Check it." and "messages" not in samples.columns


def test_reward_model_renders_with_its_own_template(tokenizers):
    tok = tokenizers["reward"]
    batch, cut = encode_chat_pairs(tok, [DIALOGUE], [" Knead it."])
    text = ("[CLS]USER: How do I bake bread?\nASSISTANT: Sure! First, warm the oven.\nUSER: And then?\n"
            "ASSISTANT: Knead it.\n[SEP]")
    assert batch["input_ids"][0].tolist() == tok(text, add_special_tokens=False)["input_ids"] and cut == [""]
    assert (batch["input_ids"][0, 0].item() == tok.cls_token_id
            and batch["input_ids"][0, -1].item() == tok.sep_token_id)
    # conversations given as messages (a chat-rendered prompt) win over the prompt text
    messages = ['[{"role": "user", "content": "Hi"}]']
    batch, _ = encode_chat_pairs(tok, ["<|user|>\nHi<|end|>\n<|assistant|>\n"], ["Hello"], messages)
    assert tok.decode(batch["input_ids"][0]) == "[CLS]USER: Hi\nASSISTANT: Hello\n[SEP]"
    # too long: whole earlier turns go first, the response and the end stay
    short = tok("[CLS]USER: And then?\nASSISTANT: Knead it.\n[SEP]", add_special_tokens=False)["input_ids"]
    batch, cut = encode_chat_pairs(tok, [DIALOGUE], [" Knead it."], max_length=len(short) + 1)
    assert batch["input_ids"][0].tolist()[-len(short) + 1:] == short[1:] and cut == ["prompt"]
    assert batch["input_ids"].shape[1] <= len(short) + 1


def test_messages_file(tmp_path):
    good = tmp_path / "chat.jsonl"
    rows = [{"messages": [{"role": "user", "content": "Hi"}], "split": "eval"},
            {"messages": json.dumps([{"role": "system", "content": "S"}, {"role": "user", "content": "Yo"}]),
             "split": "train"}]
    good.write_text("\n".join(json.dumps(r) for r in rows))
    table = read_messages_file(good)
    assert table["prompt"].tolist() == ["\n\nHuman: Hi\n\nAssistant:", "\n\nHuman: S Yo\n\nAssistant:"]
    assert json.loads(table["messages"][1])[0] == {"role": "system", "content": "S"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n"
                   + json.dumps({"messages": [{"role": "user", "content": "a"},
                                              {"role": "assistant", "content": "b"}]}))
    with pytest.raises(ConversationError, match=r"bad.jsonl: row 2: the last turn is 'assistant'"):
        read_messages_file(bad)
    with pytest.raises(PromptFileError, match=r"no 'messages' column"):
        (tmp_path / "x.jsonl").write_text('{"prompt": "a"}')
        read_messages_file(tmp_path / "x.jsonl")


@pytest.mark.parametrize("name", ["smol-instruct.yaml", "toy-chat.yaml"])
def test_example_configs_are_valid_and_their_dags_build_offline(name, tmp_path):
    import yaml

    from bonbon.config import SCHEMA, hub_ids, schema_errors

    from conftest import REPO, run_workflow

    config = yaml.safe_load((REPO / "config" / name).read_text())
    assert schema_errors(config, SCHEMA) == []
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules")
    for rule in ("prompts", "generate", "score", "pairs", "ref_logps", "train", "sample", "evaluate",
                 "summary", "plot_judge"):
        assert rule in result.stdout, result.stdout
    assert not (tmp_path / "results").exists()
    if name == "smol-instruct.yaml":
        assert [key for key, _, _ in hub_ids(config)] == ["models.base", "models.reward", "models.judge",
                                                          "datasets.hh.path"]
        assert "sft" not in result.stdout.split()  # the instruct model is the reference
    else:
        assert config["toy"]["chat"] and config["models"]["judge"] == "toy"
        assert "toy_judge_model" in result.stdout


CHATML = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
          "{{ message['content'] }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
LLAMA3 = ("<|begin_of_text|>{% for message in messages %}"
          "<|start_header_id|>{{ message['role'] }}<|end_header_id|>"
          "\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
          "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}")


@pytest.fixture(scope="module")
def hub_like(tmp_path_factory):
    """Tiny byte-level BPEs with a ChatML template (Qwen's, SmolLM2's) and a Llama-3 one, built locally."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = toy.make_corpus(200, seed=2)
    texts = (corpus["prompt"] + corpus["response"]).tolist()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|begin_of_text|>", "<|start_header_id|>",
               "<|end_header_id|>", "<|eot_id|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.train_from_iterator(texts, trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    out = {}
    for name, template, eos in (("chatml", CHATML, "<|im_end|>"), ("llama3", LLAMA3, "<|endoftext|>")):
        tok = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token=eos, pad_token="<|endoftext|>",
                                      additional_special_tokens=special[1:], model_max_length=64)
        tok.chat_template = template
        tok.save_pretrained(tmp_path_factory.mktemp(name))  # no generation config beside it
        out[name] = tok
    return out


LONG = " Knead the dough for ten minutes, then let it rise in a warm place until it doubles in size."


@pytest.mark.parametrize("name", ["reward", "chatml"])
def test_a_response_too_long_to_fit_keeps_one_token_before_it_then_its_start(tokenizers, hub_like, name):
    """The cut of a response that alone does not fit: the window starts one token before the response (the
    comment's promise), for the toy reward template (tail "\\n[SEP]") and ChatML (tail "<|im_end|>\\n").
    Pins the start computed from a head that already holds the template's tail (kept window began at the
    response's second token: the "K" of "Knead" lost)."""
    tok = tokenizers.get(name) or hub_like[name]
    last = [{"role": "user", "content": "And then?"}, {"role": "assistant", "content": LONG.strip()}]
    rendered = tok.apply_chat_template(last, tokenize=False)
    before = rendered[: rendered.index("Knead")]  # "...ASSISTANT: " / "...<|im_start|>assistant\n"
    ids = tok(rendered, add_special_tokens=False)["input_ids"]
    # the response's first token: the first whose text reaches past the template's opening; its tail's first
    # the first past the response's text
    response_start = next(i for i in range(len(ids)) if len(tok.decode(ids[: i + 1])) > len(before))
    tail_start = next(i for i in range(len(ids))
                      if len(tok.decode(ids[: i + 1])) > len(before) + len(LONG) - 1)
    assert tok.decode(ids[response_start:]).lstrip().startswith("Knead") and response_start > 1
    assert tok.decode(ids[tail_start:]).startswith("\n[SEP]" if name == "reward" else "<|im_end|>\n")
    length = tail_start - response_start
    # the response and its tail do not fit
    for max_length in (8, 12, length, len(ids) - tail_start + length - 1):
        batch, cut = encode_chat_pairs(tok, [DIALOGUE], [LONG], max_length=max_length)
        row = batch["input_ids"][0].tolist()
        assert cut == ["prompt+response"] and row == ids[response_start - 1 : response_start - 1 + max_length]
        assert tok.decode(row[1:]).lstrip().startswith("Knead")
    # they just fit: the prompt goes, the whole response and the tail stay
    batch, cut = encode_chat_pairs(tok, [DIALOGUE], [LONG], max_length=len(ids) - response_start)
    assert cut == ["prompt"] and batch["input_ids"][0].tolist() == ids[response_start:]


def test_end_of_turn_ids_of_hub_templates(hub_like):
    """ChatML's <|im_end|> is EOS (one id); Llama-3's <|eot_id|> is found in the template beside EOS; the
    token every turn opens with (<|im_start|>, <|start_header_id|>) ends a response too, last; the other
    header token (<|end_header_id|>, written after content in the generation prompt) never does. Pins the
    "end"/"eot" name check and the start-of-turn search."""
    chatml, llama3 = hub_like["chatml"], hub_like["llama3"]
    im_end, im_start = (chatml.convert_tokens_to_ids("<|im_end|>"),
                        chatml.convert_tokens_to_ids("<|im_start|>"))
    assert end_of_turn_ids(chatml) == (im_end, im_start)
    assert end_of_turn_ids(llama3) == (llama3.convert_tokens_to_ids("<|endoftext|>"),
                                       llama3.convert_tokens_to_ids("<|eot_id|>"),
                                       llama3.convert_tokens_to_ids("<|start_header_id|>"))
    assert chat_sampling(SamplingConfig(n=2), llama3).stop_token_ids == end_of_turn_ids(llama3)
    scalar = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=301))  # one id, not a list
    assert end_of_turn_ids(chatml, scalar) == (im_end, 301, im_start)
    rendered = render_prompt(chatml, [{"role": "system", "content": "S"}, {"role": "user", "content": "Hi"}])
    assert rendered == ("<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                        "<|im_start|>assistant\n")


def test_a_response_that_opens_a_new_turn_ends_there(hub_like):
    """A ChatML model that samples <|im_start|> before <|im_end|> (SmolLM2 at temperature 1) has begun a
    new turn: the response ends at it, finished, the id kept (its log-prob is the policy's), the text without
    it and without what would follow."""
    tok = hub_like["chatml"]
    words = tok(" Sure, check it.", add_special_tokens=False)["input_ids"]
    im_start = tok.convert_tokens_to_ids("<|im_start|>")
    user = tok("user\nMore?", add_special_tokens=False)["input_ids"]
    prompts = pd.DataFrame({"prompt_id": ["p"],
                            "prompt": [render_prompt(tok, [{"role": "user", "content": "Hi"}])],
                            "messages": ['[{"role": "user", "content": "Hi"}]']})
    model = ScriptedModel([*words, im_start, *user, tok.eos_token_id], len(tok))
    samples, counts = generate_samples(model, tok, prompts, SamplingConfig(n=1, max_new_tokens=40))
    row = samples.iloc[0]
    assert (list(row["response_ids"]) == [*words, im_start] and bool(row["finished"])
            and counts["unfinished"] == 0)
    assert row["response"] == " Sure, check it." and row["n_tokens"] == len(words)


def test_a_system_message_with_several_user_turns():
    """The system text joins the first user turn only (HH text), and whole earlier turns go after it while
    it stays (turn-wise truncation), one user turn at a time."""
    system = {"role": "system", "content": " Be brief. "}
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
             {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
             {"role": "user", "content": "e"}]
    assert messages_to_hh([system, *turns]) == \
        "\n\nHuman: Be brief. a\n\nAssistant: b\n\nHuman: c\n\nAssistant: d\n\nHuman: e\n\nAssistant:"
    assert hh_to_messages(messages_to_hh([system, *turns]))[1:] == turns[1:]


def test_turn_wise_truncation_keeps_the_system_message_and_goes_one_exchange_at_a_time(hub_like):
    tok = hub_like["chatml"]
    system = {"role": "system", "content": "Be brief."}
    turns = [{"role": "user", "content": "How do I bake bread?"},
             {"role": "assistant", "content": "Warm the oven."},
             {"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Knead it."},
             {"role": "user", "content": "How long?"}]

    def length(messages):
        return len(tok(render_prompt(tok, messages), add_special_tokens=False)["input_ids"])

    full, middle, last = length([system, *turns]), length([system, *turns[2:]]), length([system, *turns[4:]])
    assert full > middle > last
    assert drop_earlier_turns(tok, [system, *turns], full) == ([system, *turns], 0)
    assert drop_earlier_turns(tok, [system, *turns], full - 1) == ([system, *turns[2:]], 2)
    assert drop_earlier_turns(tok, [system, *turns], middle) == ([system, *turns[2:]], 2)
    assert drop_earlier_turns(tok, [system, *turns], middle - 1) == ([system, turns[4]], 4)
    assert drop_earlier_turns(tok, [system, *turns], 1) == ([system, turns[4]], 4)
    assert drop_earlier_turns(tok, turns, length(turns[2:])) == (turns[2:], 2)  # no system message
    # a system message that is not the first turn is an ordinary turn: nothing is held back for it
    late = [turns[0], system, *turns[2:]]
    assert drop_earlier_turns(tok, late, length(late)) == (late, 0)


# SmolLM2-135M-Instruct's template (from its GGUF file): a default system prompt where none is given
CHATML_DEFAULT_SYSTEM = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
    "trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    """A tiny ChatML tokenizer built here (the toy BPE with <|im_start|>/<|im_end|>) whose template inserts
    SmolLM2's default system prompt."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = toy.make_corpus(100, seed=3)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator((corpus["prompt"] + corpus["response"]).tolist(),
                                trainers.BpeTrainer(vocab_size=300,
                                                    special_tokens=["<|im_start|>", "<|im_end|>"]))
    from tokenizers import decoders

    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  bos_token="<|im_start|>")
    tok.chat_template = CHATML_DEFAULT_SYSTEM
    return tok


SMOL_DEFAULT = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def test_system_prompt_is_an_explicit_choice(chatml, tokenizers):
    from bonbon.chat import chat_texts, template_system_prompt

    hi = [{"role": "user", "content": "Hi"}]
    ask = "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert template_system_prompt(chatml) == SMOL_DEFAULT
    assert render_prompt(chatml, hi) == render_prompt(chatml, hi, "template") == \
        f"<|im_start|>system\n{SMOL_DEFAULT}<|im_end|>\n" + ask
    # none: no system turn at all (the BOS-named <|im_start|> of ChatML is not a BOS the template writes)
    assert render_prompt(chatml, hi, "none") == ask
    assert render_prompt(chatml, hi, "Be brief.") == "<|im_start|>system\nBe brief.<|im_end|>\n" + ask
    # a conversation's own system message is kept whatever the choice
    own = [{"role": "system", "content": "Rhyme."}, *hi]
    for choice in ("template", "none", "Be brief."):
        assert render_prompt(chatml, own, choice) == "<|im_start|>system\nRhyme.<|im_end|>\n" + ask
    # several turns: only the system turn goes
    dialogue = render_prompt(chatml, hh_to_messages(DIALOGUE), "none")
    assert dialogue.startswith("<|im_start|>user\nHow do I bake bread?<|im_end|>\n"
                               "<|im_start|>assistant\nSure!")
    assert "system" not in dialogue and dialogue.endswith("<|im_start|>user\nAnd then?<|im_end|>\n"
                                                          "<|im_start|>assistant\n")
    # the toy template inserts no default: template and none are the same text, a string adds a system turn
    policy = tokenizers["policy"]
    assert template_system_prompt(policy) is None
    assert (render_prompt(policy, hi, "none") == render_prompt(policy, hi, "template")
            == "<|user|>\nHi<|end|>\n<|assistant|>\n")
    assert (render_prompt(policy, hi, "Be brief.")
            == "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n")
    # the prompts stage and SFT targets render with the choice; the stored conversation stays as given
    table = pd.DataFrame({"prompt": ["\n\nHuman: Hi\n\nAssistant:"]})
    rendered, _ = render_prompt_table(table, chatml, 256, "none")
    assert rendered["prompt"][0] == ask and json.loads(rendered["messages"][0]) == hi
    sft = chat_texts(chatml, pd.DataFrame({"prompt": ["\n\nHuman: Hi\n\nAssistant:"],
                                           "response": [" Hello"]}), "Be brief.")
    assert sft["prompt"][0] == "<|im_start|>system\nBe brief.<|im_end|>\n" + ask


def test_system_prompt_counts_in_the_prompt_length(chatml):
    """Dropping earlier turns to fit max_length counts the system prompt the choice renders."""
    messages = hh_to_messages(DIALOGUE)
    full = len(chatml(render_prompt(chatml, messages, "none"), add_special_tokens=False)["input_ids"])
    kept, dropped = drop_earlier_turns(chatml, messages, full, "none")
    assert dropped == 0 and kept == messages
    # the default system prompt is longer
    kept, dropped = drop_earlier_turns(chatml, messages, full, "template")
    assert dropped == 2 and kept == messages[2:]


def test_system_prompt_none_refuses_a_template_it_cannot_strip(chatml):
    import copy

    # the system text folded into the first user turn (Llama 2 style) plus a default
    odd = copy.deepcopy(chatml)
    odd.chat_template = ("{% if messages[0]['role'] == 'system' %}{% set sys = messages[0]['content'] %}"
                         "{% set rest = messages[1:] %}{% else %}{% set sys = 'Default.' %}"
                         "{% set rest = messages %}"
                         "{% endif %}{% for m in rest %}<|im_start|>{{ m['role'] }}\n"
                         "{% if loop.first %}{{ sys }} "
                         "{% endif %}{{ m['content'] }}<|im_end|>\n{% endfor %}"
                         "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    hi = [{"role": "user", "content": "Hi"}]
    assert render_prompt(odd, hi) == "<|im_start|>user\nDefault. Hi<|im_end|>\n<|im_start|>assistant\n"
    with pytest.raises(ConversationError, match="chat.system_prompt"):
        render_prompt(odd, hi, "none")



def test_sft_targets_and_bad_conversations(tokenizers, tmp_path):
    """chat_texts renders the HH prompt with the policy's template and strips the response (EOS is added by
    training); without a template the frame is returned as it is. parse_messages names the row and the
    turn of a bad conversation; a split other than train/eval names its row. Pins a response left
    unstripped, the generation prompt left off, and each check of a turn."""
    from bonbon.chat import chat_texts, parse_messages

    frame = pd.DataFrame({"prompt": ["\n\nHuman: Hi\n\nAssistant:"], "response": ["  Hello there. "]})
    out = chat_texts(tokenizers["policy"], frame)
    assert out["prompt"].tolist() == ["<|user|>\nHi<|end|>\n<|assistant|>\n"]
    assert out["response"].tolist() == ["Hello there."]
    assert chat_texts(tokenizers["hh_policy"], frame) is frame
    with pytest.raises(ConversationError, match=r"f: row 3: messages is not JSON"):
        parse_messages("[{", "f: row 3")
    with pytest.raises(ConversationError, match=r"w: messages must be a non-empty list"):
        parse_messages([], "w")
    with pytest.raises(ConversationError, match=r"w: turn 2 is not a \{role, content\} object"):
        parse_messages([{"role": "user", "content": "a"}, {"role": "user"}], "w")
    with pytest.raises(ConversationError, match=r"w: turn 1 has role 'bot'"):
        parse_messages([{"role": "bot", "content": "a"}], "w")
    with pytest.raises(ConversationError, match=r"w: turn 1 has role 'user' .* or a non-string content"):
        parse_messages([{"role": "user", "content": 3}], "w")
    extra = parse_messages(json.dumps([{"role": "user", "content": "a", "name": "x"}]), "w")
    assert extra == [{"role": "user", "content": "a"}]  # other keys dropped
    bad = tmp_path / "split.jsonl"
    bad.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": "a"}], "split": s})
                             for s in ("train", "test")))
    with pytest.raises(PromptFileError, match=r"split.jsonl: row 2: split 'test' is not 'train' or 'eval'"):
        read_messages_file(bad)
