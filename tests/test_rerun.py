"""The keys that change no result are stated once, by the schema's marks (``x-runtime``,
``x-resumable``): bonbon.rerun and bonbon.train read them from there, and config/README.md's tables
must name exactly the marked keys."""

from __future__ import annotations

import copy
import re
from dataclasses import fields

from bonbon import rerun, train
from bonbon.config import load_schema, marked_keys, training_keys

from conftest import REPO

MARKS = ("x-runtime", "x-resumable")
# the header of config/README.md's table of each mark's keys
TABLES = {"x-runtime": "| key | why it changes no result |",
          "x-resumable": "| key | why a run resumes across it |"}
# the training blocks that share definitions.training_options with `training`: the README and
# RUNTIME_KEYS name a training key once, as training.<key>
OTHER_TRAINING_BLOCKS = ("sft.training", "runs[].training")


def table_keys(readme: str, header: str) -> list[str]:
    """The keys of the README table under ``header``: the backticked names in each row's first cell,
    leaving out a parenthesised note (``(and in `sft.training`, `runs[i].training`)``)."""
    lines = readme.splitlines()
    keys = []
    for line in lines[lines.index(header) + 2:]:  # past the header and its | --- | row
        if not line.startswith("|"):
            break
        keys += re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", line.split("|")[1]))
    return keys


def named_once(keys: tuple[str, ...]) -> list[str]:
    return [k for k in keys if not k.startswith(tuple(f"{block}." for block in OTHER_TRAINING_BLOCKS))]


def disagreements(readme: str, schema: dict) -> dict[str, tuple[list[str], list[str]]]:
    """Per mark, (keys marked but not in the README's table, keys in the table but not marked)."""
    found = {}
    for mark, header in TABLES.items():
        marked, listed = named_once(marked_keys(mark, schema)), table_keys(readme, header)
        assert len(set(listed)) == len(listed), f"a key listed twice in the {mark} table: {listed}"
        missing, extra = sorted(set(marked) - set(listed)), sorted(set(listed) - set(marked))
        if missing or extra:
            found[mark] = (missing, extra)
    return found


def test_the_readme_tables_name_exactly_the_marked_keys():
    readme = (REPO / "config" / "README.md").read_text()
    assert disagreements(readme, load_schema()) == {}
    assert set(table_keys(readme, TABLES["x-runtime"])) == set(rerun.RUNTIME_KEYS)


def test_a_key_marked_or_listed_on_one_side_only_is_a_disagreement():
    readme, schema = (REPO / "config" / "README.md").read_text(), load_schema()
    marked = copy.deepcopy(schema)
    marked["properties"]["generation"]["properties"]["max_new_tokens"]["x-runtime"] = True
    assert disagreements(readme, marked) == {"x-runtime": (["generation.max_new_tokens"], [])}
    header = TABLES["x-resumable"]
    listed = readme.replace(f"{header}\n| --- | --- |\n",
                            f"{header}\n| --- | --- |\n| `training.seed` | no |\n")
    assert disagreements(listed, schema) == {"x-resumable": ([], ["training.seed"])}
    unmarked = copy.deepcopy(schema)
    del unmarked["definitions"]["training_options"]["properties"]["log_every"]["x-runtime"]
    assert disagreements(readme, unmarked) == {"x-runtime": ([], ["training.log_every"])}


SMALL = {
    "definitions": {
        "flag": {"type": "boolean", "x-runtime": True},
        "block": {
            "type": "object",
            "properties": {
                "fast": {"x-runtime": True},
                "slow": {"type": "integer"},
                "inner": {"type": "object", "properties": {"deep": {"x-runtime": True, "x-resumable": True}}},
            },
        },
    },
    "type": "object",
    "properties": {
        "b": {"type": "integer", "x-runtime": True},
        "a": {"type": "object", "properties": {"z": {"x-runtime": True}, "y": {"x-runtime": False},
                                                "x": {"$ref": "#/definitions/flag"}}},
        # a key beside the $ref is merged in: slow is marked here, where it stays in the block's order
        "training": {"$ref": "#/definitions/block", "properties": {"slow": {"x-resumable": True}}},
        "runs": {"type": "array",
                 "items": {"type": "object", "properties": {"training": {"$ref": "#/definitions/block"}}}},
        "whole": {"type": "object", "x-runtime": True, "properties": {"c": {"type": "string"}}},
    },
}


def test_marked_keys_walks_nested_objects_refs_and_list_items_in_schema_order():
    assert marked_keys("x-runtime", SMALL) == (
        "b", "a.z", "a.x", "training.fast", "training.inner.deep", "runs[].training.fast",
        "runs[].training.inner.deep", "whole")
    assert marked_keys("x-resumable", SMALL) == (
        "training.slow", "training.inner.deep", "runs[].training.inner.deep")
    assert marked_keys("x-other", SMALL) == ()
    assert training_keys("x-runtime", SMALL) == ("fast", "inner.deep")
    assert training_keys("x-resumable", SMALL) == ("slow", "inner.deep")


def test_the_code_reads_its_keys_from_the_marks():
    runtime = marked_keys("x-runtime")
    assert rerun.RUNTIME_TRAINING_KEYS == training_keys("x-runtime")
    assert rerun.RUNTIME_KEYS == tuple(named_once(runtime))
    assert train.RESUMABLE_CHANGES == {*training_keys("x-runtime"), *training_keys("x-resumable")}
    # every training block carries the same marks (one definition), so naming them once is enough
    for mark in MARKS:
        keys = marked_keys(mark)
        for block in OTHER_TRAINING_BLOCKS:
            assert ([k.removeprefix(f"{block}.") for k in keys if k.startswith(f"{block}.")]
                    == list(training_keys(mark)))
    # a marked training key is a loop setting, and a runtime one is split from the result-affecting ones
    assert (set(training_keys("x-runtime")) | set(training_keys("x-resumable"))
            <= {f.name for f in fields(train.TrainConfig)})
    block = {f.name: None for f in fields(train.TrainConfig)}
    assert set(rerun.runtime_training(block)) == set(training_keys("x-runtime"))
    assert not set(rerun.result_training(block)) & set(training_keys("x-runtime"))


def test_the_schema_has_no_other_marks():
    """A mark is ``true`` and one of MARKS: a misspelt one (``x-runtim``) would mark nothing."""
    found = []

    def walk(value):
        if isinstance(value, dict):
            found.extend((k, v) for k, v in value.items() if k.startswith("x-"))
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(load_schema())
    assert found and {k for k, _ in found} <= set(MARKS) and all(v is True for _, v in found)
