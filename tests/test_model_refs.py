"""bonbon.model_refs: which model serves each role and where it loads from, without Snakemake."""

from bonbon.model_refs import model_refs


def config(base, reward, judge=None, sft=True):
    return {"models": {"base": base, "reward": reward, "judge": judge}, "sft": {"enabled": sft}}


def test_toy_world_models_are_the_files_toy_smk_writes():
    refs = model_refs(config("toy", "toy"))
    files = ("config.json", "model.safetensors", "tokenizer_config.json")
    assert refs["base"].files == [f"results/toy/base_model/{f}" for f in files]
    assert refs["base"].location == "results/toy/base_model"
    # the judge left unset is the reward model: the same files, so no separate judge figure
    assert (refs["judge"].inputs == refs["reward"].inputs
            and refs["judge"].location == "results/toy/reward_model")
    # the SFT model is the reference, named 'sft' in params (its files are inputs)
    assert (refs["reference"].id, refs["reference"].location) == ("sft", "results/models/sft")
    # the toy tokenizer is built before the toy model
    assert refs["tokenizer"].files == ["results/toy/tokenizer_policy/tokenizer.json",
                                       "results/toy/tokenizer_policy/tokenizer_config.json"]
    assert refs["tokenizer"].id == "toy"
    assert model_refs(config("toy", "toy", judge="toy"))["judge"].location == "results/toy/judge_model"


def test_hub_ids_local_directories_and_reward_functions(tmp_path):
    local = tmp_path / "policy"
    function = {"function": "bonbon.reward_functions:vader", "kwargs": {"b": 1, "a": 2}}
    refs = model_refs(config(f"{local}/", "OpenAssistant/reward-model-deberta", judge=function, sft=False))
    # a directory of the user's: config.json alone, the path normalised in params, loaded from itself
    assert refs["base"].files == [f"{local}/config.json"]
    assert (refs["base"].id, refs["base"].location) == (str(local), str(local))
    # without SFT the reference is the base model
    assert refs["reference"].inputs == refs["base"].inputs and refs["reference"].id == str(local)
    # a hub id: nothing on disk to depend on, loaded by its id
    assert refs["reward"].files == [] and refs["reward"].location == "OpenAssistant/reward-model-deberta"
    # a reward function: no files, its mapping in one spelling
    assert refs["judge"].files == [] and list(refs["judge"].id["kwargs"]) == ["a", "b"]
    assert refs["judge"].location is function
    # a job whose input holds a trained policy's files loads from their directory, else the setting
    assert refs["reference"].location_of(["results/models/run/config.json"]) == "results/models/run"
    assert refs["reward"].location_of([]) == "OpenAssistant/reward-model-deberta"


def test_gguf_models_load_from_their_imported_directory(tmp_path):
    refs = model_refs(config({"gguf": str(tmp_path / "m.gguf")}, "toy"))
    assert refs["base"].location.startswith("results/models/imported/")
    assert refs["base"].files[0] == refs["base"].location + "/config.json"
