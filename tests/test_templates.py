"""Prompts from templates kept in the repository (datasets.<name>.source: templates)."""

import pytest

from bonbon.config import ConfigError, check_prompt_files
from bonbon.prompts import PromptFileError, build_prompt_table, check_prompt
from bonbon.templates import read_template_prompts

from conftest import REPO


def test_every_template_is_filled_with_every_subject_of_its_kind(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("kinds:\n  review:\n    templates: ['Review {subject}.', 'Rate {subject}!']\n"
                    "    subjects: [a cafe, a film, a bike]\n"
                    "  description:\n    templates: ['Describe {subject}.']\n"
                    "    subjects: [rain]\n")
    table = read_template_prompts(path)
    assert table["prompt"].tolist() == [
        "\n\nHuman: Review a cafe.\n\nAssistant:", "\n\nHuman: Review a film.\n\nAssistant:",
        "\n\nHuman: Review a bike.\n\nAssistant:", "\n\nHuman: Rate a cafe!\n\nAssistant:",
        "\n\nHuman: Rate a film!\n\nAssistant:", "\n\nHuman: Rate a bike!\n\nAssistant:",
        "\n\nHuman: Describe rain.\n\nAssistant:"]
    assert table["kind"].tolist() == ["review"] * 6 + ["description"]
    assert all(check_prompt(p) is None for p in table["prompt"])


@pytest.mark.parametrize(("text", "message"), [
    ("kinds: {}\n", "a template file needs 'kinds'"),
    ("kinds:\n  r: {templates: ['Review it.'], subjects: [x]}\n",
     r"kinds.r.templates\[0\] has no \{subject\} field"),
    ("kinds:\n  r: {templates: ['Review {subject}.'], subjects: []}\n",
     "kinds.r.subjects must be a non-empty list"),
    ("kinds:\n  r: {templates: ['{subject}', '{subject}'], subjects: [x]}\n", "is generated twice"),
])
def test_a_bad_template_file_is_named(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PromptFileError, match=message):
        read_template_prompts(path)
    with pytest.raises(ConfigError, match=f"config key datasets.s.path: .*bad.yaml: .*{message}"):
        check_prompt_files({"datasets": {"s": {"source": "templates", "path": str(path)}}})


def test_the_sentiment_templates_give_enough_train_and_eval_prompts():
    table = read_template_prompts(REPO / "config" / "prompts" / "sentiment.yaml")
    assert len(table) == 336 and table["kind"].value_counts().to_dict() == {
        "review": 112, "recommendation": 112, "description": 112}
    prompts, counts = build_prompt_table(table, 0.33, 0)
    assert (counts["train"], counts["eval"]) == (234, 102)
    # every kind is in both splits
    split_kinds = (table.set_index("prompt").loc[prompts["prompt"], "kind"]
                   .groupby(prompts["split"].to_numpy()).nunique())
    assert split_kinds.to_dict() == {"eval": 3, "train": 3}
