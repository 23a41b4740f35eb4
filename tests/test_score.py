import pytest
import torch

from bonbon.models import load_reward_model
from bonbon.prompts import ASSISTANT
from bonbon.score import encode_pairs, score_responses

LONG = "\n\nHuman: How do I bake my bread?\n\nAssistant: Sure! First, check the bread." * 12 + \
    "\n\nHuman: And how do I fix my bike?\n\nAssistant:"


@pytest.fixture(scope="module")
def reward(toy_models):
    torch.set_num_threads(2)
    return load_reward_model(str(toy_models["reward"]))


def test_long_prompt_is_cut_from_the_left(reward):
    _, tokenizer = reward
    response = " First, check the bike every 3 days."
    batch, cut = encode_pairs(tokenizer, [LONG, "\n\nHuman: Hi\n\nAssistant:"], [response, response])
    assert cut == ["prompt", ""]
    assert tokenizer.model_max_length == 64
    ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
    assert len(ids) == 64
    text = tokenizer.decode(ids, skip_special_tokens=True)
    assert text.endswith(response.strip()) or response.strip() in text  # the whole response is kept
    prompt_part = tokenizer.decode(ids[1 : ids.index(tokenizer.sep_token_id)])
    assert prompt_part.endswith(ASSISTANT) and "fix my bike" in prompt_part  # the end of the dialogue is kept
    assert "bake my bread" not in prompt_part.split("\n\nHuman:")[-1]


def test_response_longer_than_the_model_is_cut_at_its_end(reward):
    _, tokenizer = reward
    response = " First, check the bike." * 40
    batch, cut = encode_pairs(tokenizer, ["\n\nHuman: Hi\n\nAssistant:"], [response])
    assert cut == ["prompt+response"]
    assert int(batch["attention_mask"][0].sum()) <= 64


def test_scores_do_not_depend_on_batching_and_carry_no_graph(reward):
    model, tokenizer = reward
    prompts = ["\n\nHuman: How do I bake my bread?\n\nAssistant:"] * 3 + [LONG]
    responses = [" Sure! First, check the bread for 5 minutes.", " Just look it up yourself.",
                 " It depends on the situation.", " First, check the bike."]
    together, cuts = score_responses(model, tokenizer, prompts, responses, batch_size=4)
    one_by_one, _ = score_responses(model, tokenizer, prompts, responses, batch_size=1)
    assert together == pytest.approx(one_by_one, abs=1e-5)
    assert cuts == ["", "", "", "prompt"]
    assert len(set(together)) == 4  # continuous rewards: distinct responses, distinct scores
