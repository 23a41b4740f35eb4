import numpy as np
import pandas as pd
import pytest

from bonbon.pairs import select_pairs


def rewards_table(rewards: dict[str, list[float]]) -> pd.DataFrame:
    rows = [
        {"prompt_id": pid, "prompt": f"P{pid}", "sample_idx": j, "response": f"{pid}-{j}", "reward": r,
         "finished": j != 1}
        for pid, values in rewards.items()
        for j, r in enumerate(values)
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order of rows must not matter


def test_known_best_and_worst_with_nested_prefixes():
    table = rewards_table({"a": [0.1, 0.9, -0.3, 2.0], "b": [1.0, 0.5, 0.7, -1.0]})
    pairs2, _ = select_pairs(table, 2)
    pairs4, _ = select_pairs(table, 4)
    p2, p4 = pairs2.set_index("prompt_id"), pairs4.set_index("prompt_id")
    assert (p2.loc["a", "chosen_idx"], p2.loc["a", "rejected_idx"]) == (1, 0)
    assert (p2.loc["b", "chosen_idx"], p2.loc["b", "rejected_idx"]) == (0, 1)
    assert (p4.loc["a", "chosen_idx"], p4.loc["a", "rejected_idx"]) == (3, 2)
    assert (p4.loc["b", "chosen_idx"], p4.loc["b", "rejected_idx"]) == (0, 3)
    assert p4.loc["a", "chosen"] == "a-3" and p4.loc["a", "rejected"] == "a-2"
    assert p4.loc["a", "chosen_reward"] == 2.0 and p4.loc["a", "rejected_reward"] == -0.3
    assert p2.loc["a", "chosen_finished"] == np.False_ and p2.loc["a", "rejected_finished"] == np.True_
    assert (pairs4["n"] == 4).all() and (pairs2["n"] == 2).all()


def test_ties_drop_only_fully_tied_prompts():
    table = rewards_table({"tied": [0.5, 0.5, 0.5], "partly": [0.5, 0.5, 0.1], "top": [0.2, 0.9, 0.9]})
    pairs, counts = select_pairs(table, 3)
    assert counts == {"prompts": 3, "pairs": 2, "all_tied": 1}
    p = pairs.set_index("prompt_id")
    assert "tied" not in p.index
    # the first of the tied best
    assert (p.loc["partly", "chosen_idx"], p.loc["partly", "rejected_idx"]) == (0, 2)
    assert (p.loc["top", "chosen_idx"], p.loc["top", "rejected_idx"]) == (1, 0)
    assert (pairs["chosen_idx"] != pairs["rejected_idx"]).all()


def test_enumeration_against_brute_force():
    rng = np.random.default_rng(0)
    rewards = {f"p{i}": rng.normal(size=8).round(1).tolist() for i in range(200)}  # rounding makes ties
    table = rewards_table(rewards)
    for n in (2, 4, 8):
        pairs, counts = select_pairs(table, n)
        expected = {}
        for pid, values in rewards.items():
            first = values[:n]
            if max(first) != min(first):
                expected[pid] = (first.index(max(first)), first.index(min(first)))
        got = {r.prompt_id: (r.chosen_idx, r.rejected_idx) for r in pairs.itertuples()}
        assert got == expected
        assert counts["all_tied"] == 200 - len(expected)


def test_errors():
    table = rewards_table({"a": [0.1, 0.2], "b": [0.3, 0.4, 0.5, 0.6]})
    with pytest.raises(ValueError, match="fewer than n=4"):
        select_pairs(table, 4)
    with pytest.raises(ValueError, match="at least 2"):
        select_pairs(table, 1)
    nan = rewards_table({"a": [0.1, float("nan")]})
    with pytest.raises(ValueError, match="NaN"):
        select_pairs(nan, 2)


def test_a_prompt_with_n_minus_1_samples_or_a_gap_is_an_error():
    """Exactly n - 1 samples, or n samples with one of the first n missing (indices 0, 1, 2, 4 for n = 4), is
    a best-of-fewer: an error naming the prompt and its count. Pins an off-by-one in the check and counting
    all of a prompt's samples instead of its first n."""
    with pytest.raises(ValueError,
                       match=r"1 prompts have fewer than n=4 samples \(e.g. prompt_id 'a' has 3\)"):
        select_pairs(rewards_table({"a": [0.1, 0.2, 0.3], "b": [0.3, 0.4, 0.5, 0.6]}), 4)
    gap = rewards_table({"a": [0.1, 0.2, 0.3, 0.9, 0.4], "b": [0.3, 0.4, 0.5, 0.6]})
    gap = gap[~((gap["prompt_id"] == "a") & (gap["sample_idx"] == 3))]
    with pytest.raises(ValueError, match=r"prompt_id 'a' has 3"):
        select_pairs(gap, 4)
    pairs, counts = select_pairs(gap, 3)  # the first 3 are all there: fine, and sample 4 is not read
    assert counts == {"prompts": 2, "pairs": 2, "all_tied": 0}
    assert pairs.set_index("prompt_id").loc["a", "chosen_idx"] == 2


def test_the_worst_tie_goes_to_the_lower_index_too():
    pairs, _ = select_pairs(rewards_table({"w": [0.9, 0.1, 0.1, 0.5]}), 4)
    assert (pairs["chosen_idx"].iloc[0], pairs["rejected_idx"].iloc[0]) == (0, 1)
    assert pairs["chosen_reward"].iloc[0] == 0.9 and pairs["rejected_reward"].iloc[0] == 0.1


def _shard(path, rows: dict[str, list[int]]):
    from bonbon.tables import write_parquet

    frame = pd.DataFrame([{"prompt_id": pid, "sample_idx": j, "reward": float(j)} for pid, idx in rows.items()
                          for j in idx], columns=["prompt_id", "sample_idx", "reward"])
    write_parquet(frame.astype({"sample_idx": "int64"}), path)
    return path


def test_shards_read_as_one_table_and_overlapping_shards_are_an_error(tmp_path):
    """Shards (and an empty one) read back as the one table in (prompt_id, sample_idx) order; two shards that
    hold the same (prompt, sample) are an error naming what is read and the row, as is all shards empty.
    Pins dropping duplicates silently, checking duplicates on prompt_id alone, and the order."""
    from bonbon.tables import TableError, read_shards

    columns = ["prompt_id", "sample_idx", "reward"]
    a = _shard(tmp_path / "a.parquet", {"p2": [1, 0], "p1": [2]})
    b = _shard(tmp_path / "b.parquet", {"p1": [0, 1]})
    empty = _shard(tmp_path / "e.parquet", {})
    table = read_shards([a, empty, b], columns, "rewards.parquet")
    assert list(zip(table["prompt_id"], table["sample_idx"], strict=True)) == \
        [("p1", 0), ("p1", 1), ("p1", 2), ("p2", 0), ("p2", 1)]
    assert table.index.tolist() == list(range(5))
    overlap = _shard(tmp_path / "o.parquet", {"p3": [0], "p1": [1]})
    with pytest.raises(TableError,
                       match=r"pairs\.parquet: the input tables overlap: prompt 'p1' sample 1 appears twice"):
        read_shards([a, b, overlap], columns, "pairs.parquet")
    with pytest.raises(TableError, match=r"x: all 2 input tables are empty"):
        read_shards([empty, empty], columns, "x")


def test_read_table_errors_and_empty_tables_keep_their_types(tmp_path):
    """A missing file, a file that is not Parquet, an empty table where rows are needed: each an error naming
    the file; an empty table written by write_parquet reads back with the types a full one has (an empty
    shard's columns are not null-typed), and no temporary file is left. Pins a dropped check, a type lost."""
    import pyarrow.parquet as pq

    from bonbon.tables import TableError, read_table, write_parquet

    with pytest.raises(TableError, match=r"nope\.parquet: file does not exist"):
        read_table(tmp_path / "nope.parquet", ["a"])
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(TableError, match=r"text\.parquet: not a readable Parquet file"):
        read_table(tmp_path / "text.parquet", ["a"])
    empty = pd.DataFrame({"prompt_id": [], "sample_idx": [], "reward": [], "finished": [],
                          "response_ids": []})
    write_parquet(empty.astype(object), tmp_path / "e.parquet")
    with pytest.raises(TableError, match=r"e\.parquet: has no rows"):
        read_table(tmp_path / "e.parquet", ["prompt_id"])
    assert read_table(tmp_path / "e.parquet", ["prompt_id"], allow_empty=True).empty
    types = {f.name: str(f.type) for f in pq.read_schema(tmp_path / "e.parquet")}
    assert types == {"prompt_id": "large_string", "sample_idx": "int64", "reward": "double",
                     "finished": "bool", "response_ids": "list<element: int64>"}
    with pytest.raises(TableError, match=r"e\.parquet: missing columns \['chosen'\]"):
        read_table(tmp_path / "e.parquet", ["prompt_id", "chosen"], allow_empty=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet", "text.parquet"]
