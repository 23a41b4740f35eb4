"""Conversations and chat templates: prompts for instruct models and reward models that expect one.

A prompt is a *conversation*, a list of ``{"role", "content"}`` turns ending with a user turn. It comes
from a dataset's ``messages`` column (``format: messages``) or is parsed from HH text (``\\n\\nHuman:`` is
the user, ``\\n\\nAssistant:`` the assistant). Where the policy's tokenizer has a chat template, the prompt
the policy continues is ``apply_chat_template(conversation, add_generation_prompt=True)``, rendered as
text once in the prompts stage (every later stage tokenizes that text, as it does HH text), and a
response ends at EOS or at the template's end-of-turn token. A reward model (or judge) with a chat
template of its own scores ``conversation + [assistant: response]`` rendered with *its* template.
Without a template everything stays HH text (``bonbon.prompts``), byte for byte.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from bonbon.models import load_generation_config
from bonbon.prompts import ASSISTANT, HUMAN, PromptFileError, split_turns

ROLES = {"Human": "user", "Assistant": "assistant"}
Message = dict[str, str]


class ConversationError(ValueError):
    """A conversation that cannot be a prompt; the message names where it came from."""


def has_chat_template(tokenizer: Any) -> bool:
    """Whether ``tokenizer`` renders conversations itself (a non-empty ``chat_template``)."""
    return bool(getattr(tokenizer, "chat_template", None))


def hh_to_messages(prompt: str) -> list[Message]:
    """The conversation of an HH prompt: its turns as user/assistant messages, text stripped, the final
    empty ``Assistant:`` (where the response goes) left out."""
    turns = [{"role": ROLES[role], "content": text.strip()} for role, text in split_turns(prompt)]
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()
    return turns


def parse_messages(value: Any, where: str) -> list[Message]:
    """A ``messages`` cell (a JSON string or a list of ``{role, content}``) as a checked conversation:
    roles system/user/assistant, string contents, ending with a user turn. ``where`` (file and row) is
    named in the error."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise ConversationError(f"{where}: messages is not JSON: {error}") from error
    if hasattr(value, "tolist"):  # a list column read back from Parquet is an array
        value = value.tolist()
    if not isinstance(value, list) or not value:
        raise ConversationError(f"{where}: messages must be a non-empty list of {{role, content}}")
    out = []
    for i, turn in enumerate(value):
        if not isinstance(turn, dict) or set(turn) < {"role", "content"}:
            raise ConversationError(f"{where}: turn {i + 1} is not a {{role, content}} object: {turn!r:.80}")
        if turn["role"] not in ("system", "user", "assistant") or not isinstance(turn["content"], str):
            raise ConversationError(f"{where}: turn {i + 1} has role {turn['role']!r} "
                                    "(system, user or assistant) or a non-string content")
        out.append({"role": turn["role"], "content": turn["content"]})
    if out[-1]["role"] != "user":
        raise ConversationError(f"{where}: the last turn is {out[-1]['role']!r}; "
                                "a prompt ends with a user turn")
    return out


def to_json(messages: Sequence[Message]) -> str:
    """The conversation as the prompt table stores it (JSON, non-ASCII kept)."""
    return json.dumps(list(messages), ensure_ascii=False)


def messages_to_hh(messages: Sequence[Message]) -> str:
    """The HH text of a conversation (system turns folded into the first user turn), ending with
    ``\n\nAssistant:``: the prompt a policy without a chat template continues, and what ids hash."""
    system = " ".join(m["content"].strip() for m in messages if m["role"] == "system")
    parts, first = [], True
    for m in messages:
        if m["role"] == "system":
            continue
        text = m["content"].strip()
        if m["role"] == "user" and first and system:
            text, first = f"{system} {text}", False
        parts.append(f"{HUMAN if m['role'] == 'user' else ASSISTANT} {text}")
    return "".join(parts) + ASSISTANT


def read_messages_file(path: str | Path) -> pd.DataFrame:
    """Prompts as conversations (``format: messages``): a JSONL or Parquet file with a ``messages``
    column (a list of ``{role, content}`` ending with a user turn, or that as a JSON string) and an
    optional ``split`` column. Returns ``prompt`` (the HH text of each conversation), ``messages``
    (JSON) and ``split`` where given; a bad row raises naming the file and the row (1-based)."""
    path = Path(path)
    if not path.exists():
        raise PromptFileError(f"{path}: prompt file does not exist")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_json(path, lines=True)
    except Exception as error:
        raise PromptFileError(f"{path}: cannot be parsed ({type(error).__name__}: {error})") from error
    if "messages" not in frame.columns:
        raise PromptFileError(f"{path}: no 'messages' column (columns: {list(frame.columns)})")
    conversations = [parse_messages(m, f"{path}: row {i + 1}") for i, m in enumerate(frame["messages"])]
    out = pd.DataFrame({"prompt": [messages_to_hh(c) for c in conversations],
                        "messages": [to_json(c) for c in conversations]})
    if "split" in frame.columns:
        out["split"] = frame["split"].astype(str).to_numpy()
        bad = ~out["split"].isin(["train", "eval"])
        if bad.any():
            row = int(bad.to_numpy().nonzero()[0][0])
            raise PromptFileError(f"{path}: row {row + 1}: split {out['split'].iloc[row]!r} "
                                  "is not 'train' or 'eval'")
    return out


# chat.system_prompt: "template" (what the template does without a system message: SmolLM2's inserts "You
# are a helpful AI assistant named SmolLM, ..."), "none" (no system turn), or the text of a system message
SYSTEM_PROMPT_DEFAULT = "template"
_PROBE = "\u2063bonbon-probe\u2063"  # text no conversation holds: marks where a message's content goes


def _apply(tokenizer: Any, messages: Sequence[Message], generation: bool = True) -> str:
    return tokenizer.apply_chat_template(list(messages), add_generation_prompt=generation, tokenize=False)


def template_system_prompt(tokenizer: Any) -> str | None:
    """The system prompt the policy's chat template inserts into a conversation that has none (SmolLM2's:
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face"), or None where it inserts
    none. Found by rendering a probe conversation without and with a system message: a template with a
    default renders both alike but for the system content."""
    user = [{"role": "user", "content": _PROBE}]
    try:
        bare = _apply(tokenizer, user)
        head, found, tail = _apply(tokenizer, [{"role": "system", "content": _PROBE + "s"},
                                               *user]).partition(_PROBE + "s")
    except Exception:  # a template without a system role: it inserts none either
        return None
    if not found or not bare.startswith(head) or not bare.endswith(tail) or len(bare) < len(head) + len(tail):
        return None
    return bare[len(head) : len(bare) - len(tail)]


def _without_system_turn(tokenizer: Any, messages: list[Message]) -> str:
    """The conversation rendered with no system turn by a template that inserts a default one: rendered
    with a probe system message, whose whole turn (as the template renders it alone) is then cut off."""
    system = {"role": "system", "content": _PROBE}
    full, turn = _apply(tokenizer, [system, *messages]), _apply(tokenizer, [system], generation=False)
    template = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else ""
    bos = tokenizer.bos_token if tokenizer.bos_token and "bos_token" in template else ""
    keep = bos if bos and turn.startswith(bos) else ""  # a BOS the template writes first stays
    if not full.startswith(turn) or turn.count(_PROBE) != 1:
        raise ConversationError(
            "config key chat.system_prompt: 'none' needs a template that renders the system message as its "
            "own leading turn; this one does not (set chat.system_prompt to 'template' or to a text)")
    return keep + full[len(turn) :]


def render_prompt(tokenizer: Any, messages: Sequence[Message],
                  system_prompt: str = SYSTEM_PROMPT_DEFAULT) -> str:
    """The text the policy continues: the conversation with the template's assistant opening.

    ``system_prompt`` (``chat.system_prompt``) applies to a conversation without a system message of its
    own (one that has one keeps it): ``"template"`` renders it as the template does (with the template's
    default system prompt where it has one, see :func:`template_system_prompt`), ``"none"`` with no
    system turn, any other text as the content of a system message put first."""
    messages = list(messages)
    if system_prompt == "template" or (messages and messages[0]["role"] == "system"):
        return _apply(tokenizer, messages)
    if system_prompt != "none":
        return _apply(tokenizer, [{"role": "system", "content": system_prompt}, *messages])
    if template_system_prompt(tokenizer) is None:
        return _apply(tokenizer, messages)
    return _without_system_turn(tokenizer, messages)


def _prompt_length(tokenizer: Any, messages: Sequence[Message],
                   system_prompt: str = SYSTEM_PROMPT_DEFAULT) -> int:
    return len(tokenizer(render_prompt(tokenizer, messages, system_prompt),
                         add_special_tokens=False)["input_ids"])


def drop_earlier_turns(tokenizer: Any, messages: Sequence[Message], max_length: int,
                       system_prompt: str = SYSTEM_PROMPT_DEFAULT) -> tuple[list[Message], int]:
    """Drop whole turns from the start (system messages stay) until the rendered prompt has at most
    ``max_length`` tokens or only the last user turn is left; returns the kept turns and how many were
    dropped. A last turn still too long is then cut inside, from the left, by generation's token cut."""
    messages = list(messages)
    system = ([m for m in messages if m["role"] == "system"][:1]
              if messages and messages[0]["role"] == "system" else [])
    turns = messages[len(system):]
    dropped = 0
    while len(turns) > 1 and _prompt_length(tokenizer, system + turns, system_prompt) > max_length:
        turns.pop(0)
        dropped += 1
        while len(turns) > 1 and turns[0]["role"] != "user":  # a conversation restarts at a user turn
            turns.pop(0)
            dropped += 1
    return system + turns, dropped


def render_prompt_table(prompts: pd.DataFrame, tokenizer: Any, max_length: int,
                        system_prompt: str = SYSTEM_PROMPT_DEFAULT) -> tuple[pd.DataFrame, dict[str, int]]:
    """A prompt table (``prompt`` HH text, optional ``messages``) rendered for a chat-template policy:
    ``messages`` (JSON) holds the whole conversation (as given: without the added system prompt),
    ``prompt`` the rendered prompt (``system_prompt``: see :func:`render_prompt`) after dropping whole
    earlier turns to fit ``max_length`` tokens, ``turns_dropped`` how many were dropped."""
    out = prompts.copy()
    conversations = [parse_messages(m, f"row {i + 1}") for i, m in enumerate(out["messages"])] \
        if "messages" in out.columns else [hh_to_messages(p) for p in out["prompt"]]
    rendered, dropped = [], []
    for conversation in conversations:
        kept, n = drop_earlier_turns(tokenizer, conversation, max_length, system_prompt)
        rendered.append(render_prompt(tokenizer, kept, system_prompt))
        dropped.append(n)
    out["prompt"], out["messages"], out["turns_dropped"] = (rendered, [to_json(c) for c in conversations],
                                                            dropped)
    return out, {"rendered_with_chat_template": len(out),
                 "prompts_with_turns_dropped": sum(d > 0 for d in dropped)}


def end_of_turn_ids(tokenizer: Any, model: Any = None) -> tuple[int, ...]:
    """The ids a response of a chat model ends at: EOS, the EOS ids of the model's generation config
    (instruct models list their end-of-turn token there) and the template's own end-of-turn token
    where it is a special token the template writes after each message's content."""
    ids: list[int] = [] if tokenizer.eos_token_id is None else [int(tokenizer.eos_token_id)]
    config = getattr(model, "generation_config", None)
    if config is None:  # a vLLM engine or no model: read the model directory's (None where it has none)
        config = load_generation_config(tokenizer.name_or_path)
    eos = getattr(config, "eos_token_id", None)
    ids += [int(i) for i in (eos if isinstance(eos, list | tuple) else [eos]) if i is not None]
    after = _after_assistant_content(tokenizer)
    for token in getattr(tokenizer, "all_special_tokens", []):
        if after.startswith(token) and any(k in token.lower() for k in ("end", "eot")):
            ids.append(int(tokenizer.convert_tokens_to_ids(token)))
    start = _turn_start_token(tokenizer)
    if start is not None:
        ids.append(int(tokenizer.convert_tokens_to_ids(start)))
    return tuple(dict.fromkeys(ids))


def _turn_start_token(tokenizer: Any) -> str | None:
    """The special token every turn of the template opens with (ChatML's <|im_start|>, Llama-3's
    <|start_header_id|>), or None where the turns open with their role's own token (the toy's <|user|>,
    <|assistant|>). A response that samples it has begun a new turn without ending its own (SmolLM2 does
    at temperature 1: "shutton<|im_start|>citre"), so it ends there too."""
    if not has_chat_template(tokenizer):
        return None
    user = [{"role": "user", "content": "Hi"}]
    try:
        bare, opened = _apply(tokenizer, user, generation=False), _apply(tokenizer, user)
    except Exception:  # a template that cannot render a lone user turn: no start token to find
        return None
    generation_prompt = opened[len(bare):] if opened.startswith(bare) else ""
    # the token the assistant's turn opens with, where the user's turn holds it too (not a role's own token)
    found = [t for t in getattr(tokenizer, "all_special_tokens", [])
             if generation_prompt.startswith(t) and t in bare]
    return max(found, key=len) if found else None


def _after_assistant_content(tokenizer: Any) -> str:
    """What the template writes right after an assistant message's content ("" without a template): a
    token merely written after some content in the template's text (Llama-3's <|end_header_id|> in its
    generation prompt) is no end of turn."""
    if not has_chat_template(tokenizer):
        return ""
    probe = "bonbon probe"
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                          {"role": "assistant", "content": probe}],
                                         tokenize=False)
    return text[text.rindex(probe) + len(probe):].lstrip() if probe in text else ""


def chat_sampling(cfg: Any, tokenizer: Any, model: Any = None) -> Any:
    """A ``SamplingConfig`` for a chat-template policy: stop at :func:`end_of_turn_ids`, not at the HH
    turn strings (a chat response may contain ``\\n\\nHuman:`` as text). Unchanged without a template."""
    if not has_chat_template(tokenizer):
        return cfg
    return replace(cfg, stop_strings=(), stop_token_ids=end_of_turn_ids(tokenizer, model))


def conversation(prompt: str, response: str, messages: Any = None) -> list[Message]:
    """The scored conversation: the prompt's turns (``messages`` where given, else parsed from HH text)
    and the response as the assistant's last turn, stripped as a template's content is."""
    turns = parse_messages(messages, "messages") if messages is not None else hh_to_messages(prompt)
    return [*turns, {"role": "assistant", "content": response.strip()}]


def _shared_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading ids ``a`` and ``b`` have in common."""
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def encode_chat_pairs(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str],
                      messages: Sequence[Any] | None = None, max_length: int | None = None):
    """``bonbon.score.encode_pairs`` for a reward model with a chat template: each row is
    ``conversation(prompt, response)`` rendered with the reward tokenizer's own template. Too long, whole
    earlier turns are dropped first, then the rendering is cut from the left (the response and the end
    of the dialogue stay); a response that alone does not fit keeps its start. Returns the padded batch
    and, per row, ``""``, ``"prompt"`` or ``"prompt+response"``."""
    max_length = max_length or tokenizer.model_max_length
    rows, cut = [], []
    for i, (prompt, response) in enumerate(zip(prompts, responses, strict=True)):
        turns = conversation(prompt, response, None if messages is None else messages[i])

        def ids_of(t: list[Message]) -> list[int]:
            return tokenizer(tokenizer.apply_chat_template(t, tokenize=False),
                             add_special_tokens=False)["input_ids"]

        ids = ids_of(turns)
        if len(ids) <= max_length:
            rows.append(ids)
            cut.append("")
            continue
        head = ids_of(turns[:-1] + [{"role": "assistant", "content": ""}])
        response_length = len(ids) - len(head)
        # head ends with the template's tail after the content too ("\n[SEP]", "<|im_end|>\n"): the
        # response starts where head parts from ids, and that many tokens of the tail follow it
        tail = len(head) - _shared_prefix(ids, head)
        while len(turns) > 2 and len(ids) > max_length:  # whole earlier turns first, as the policy's prompt
            turns = turns[1:]
            ids = ids_of(turns)
        if response_length + tail > max_length:  # one token before the response stays, then its start
            start = len(ids) - response_length - tail - 1
            rows.append(ids[start : start + max_length])
            cut.append("prompt+response")
        else:
            rows.append(ids[-max_length:])
            cut.append("prompt")
    batch = tokenizer.pad({"input_ids": rows}, padding=True, return_tensors="pt")
    batch.pop("token_type_ids", None)
    return batch, cut


def chat_texts(tokenizer: Any, frame: pd.DataFrame,
               system_prompt: str = SYSTEM_PROMPT_DEFAULT) -> pd.DataFrame:
    """SFT targets (``prompt`` HH text, ``response``) for a chat-template policy: the prompt rendered with
    the template (and ``system_prompt``, as the prompts stage renders), the response stripped (EOS, the
    end-of-turn token, is appended by training)."""
    if not has_chat_template(tokenizer):
        return frame
    return frame.assign(prompt=[render_prompt(tokenizer, hh_to_messages(p), system_prompt)
                                for p in frame["prompt"]],
                        response=[r.strip() for r in frame["response"]])
