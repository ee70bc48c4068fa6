"""Profiles: every file validates, notebooks take every key, bad keys and types fail clearly."""
import json
from pathlib import Path

import papermill
import pytest

from rwku_nb.config import PARAMS_DIR, load_profile, make_params, notebook_params
from rwku_nb.errors import RwkuError

PROFILES = sorted(p.stem for p in PARAMS_DIR.glob("*.yaml"))


def test_profiles_exist():
    assert {"cpu-smoke", "cpu", "gpu-llama3-8b", "gpu-phi3-mini"} <= set(PROFILES)


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_is_valid_and_named_after_its_file(profile):
    p = load_profile(profile)
    assert p["profile"] == profile


@pytest.mark.parametrize("nb", sorted((PARAMS_DIR.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_notebook_parameters_cell_names_the_profile_only(nb):
    cells = json.loads(Path(nb).read_text())["cells"]
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1
    # As papermill itself reads the cell: the YAML profile is the one place every other value lives.
    assert set(papermill.inspect_notebook(str(nb))) == {"profile", "overrides"}


def test_notebook_params_are_the_profile_with_overrides():
    assert notebook_params("cpu-smoke") == load_profile("cpu-smoke")
    p = notebook_params("cpu-smoke", {"targets": "2", "utility": []})
    assert p["targets"] == "2" and p["utility"] == [] and p["model"] == load_profile("cpu-smoke")["model"]
    with pytest.raises(RwkuError, match=r"cpu-smoke.yaml with overrides \['modle'\]: unknown key.*'modle'"):
        notebook_params("cpu-smoke", {"modle": "x"})
    with pytest.raises(RwkuError, match="overrides of .* must be a mapping"):
        notebook_params("cpu-smoke", ["targets", "2"])
    with pytest.raises(RwkuError, match="No profile file .*nope.yaml. Known profiles"):
        notebook_params("nope")


def test_gpu_profiles_carry_the_paper_hyperparameters():
    p = load_profile("gpu-llama3-8b")
    assert p["hparams"]["ga"]["full"] == {"lr": 6e-8, "epochs": 3, "batch_size": 8}
    assert p["hparams"]["npo"]["lora"]["lr"] == 5e-5
    assert p["npo_beta"] == 0.2 and p["max_new_tokens"] == 30 and p["dtype"] == "bfloat16"


def test_a_profile_extends_its_base_and_states_only_what_differs(tmp_path):
    llama, phi = load_profile("gpu-llama3-8b"), load_profile("gpu-phi3-mini")
    assert {k for k in llama if llama[k] != phi[k]} == {"profile", "model", "lora_target_modules"}
    assert phi["lora_target_modules"] == ["qkv_proj"] and phi["hparams"] == llama["hparams"]
    neo = load_profile("gpu-gptneo-2.7b")
    assert neo["model"] == "EleutherAI/gpt-neo-2.7B" and neo["selective_lr"] == load_profile("gpu-gptneo-125m")["selective_lr"]
    child = tmp_path / "mine.yaml"
    child.write_text("base: gpu-phi3-mini\nprofile: mine\ntargets: '1-3'\n")  # a chain of two bases
    mine = load_profile(str(child))
    assert mine["targets"] == "1-3" and mine["model"] == phi["model"] and mine["npo_beta"] == llama["npo_beta"]
    child.write_text("base: gpu-phi3-mini\n")
    assert load_profile(str(child))["profile"] == "mine"  # its own store, not its base's
    child.write_text("base: gpu-llama3-8b\nprofile: mine\nseed: zero\n")
    with pytest.raises(RwkuError, match=r"mine.yaml \(base .*gpu-llama3-8b.yaml\).*'seed' has value 'zero'"):
        load_profile(str(child))


@pytest.mark.parametrize("base, message", [
    ("gpu-lama3", r"No profile file .*gpu-lama3.yaml \(the base of .*mine.yaml\). Known profiles: .*gpu-llama3-8b"),
    (3, r"mine.yaml: key 'base' has value 3; expected the name of another profile"),
    ("MINE", r"key 'base': profiles extend each other in a cycle \(.*mine.yaml -> .*other.yaml -> .*mine.yaml\)"),
])
def test_bad_base_is_named(tmp_path, base, message):
    child, other = tmp_path / "mine.yaml", tmp_path / "other.yaml"
    other.write_text(f"base: {child}\nprofile: other\n")
    child.write_text(f"base: {other if base == 'MINE' else base}\nprofile: mine\n")
    with pytest.raises(RwkuError, match=message):
        load_profile(str(child))


@pytest.mark.parametrize("values, message", [
    ({"modle": "x"}, "unknown key.*'modle'"),
    ({"seed": "zero"}, "'seed' has value 'zero' of type str; expected int"),
    ({"seed": True}, "'seed'"),
    ({"methods": ["ga", "forgetting"]}, "unknown method 'forgetting'"),
    ({"variants": ["qlora"]}, "'variants' has value 'qlora'"),
    ({"scorer": "bleu"}, "'scorer' has value 'bleu'"),
    ({"hparams": {"ga": {"full": {"lr": "fast"}}}}, r"hparams.ga.full.lr: got 'fast'; expected a number"),
    ({"hparams": {"ga": {"full": {"learning_rate": 1}}}}, r"hparams.ga.full has unknown key"),
    ({"hparams": {"icu": {"full": {"lr": 1}}}}, "not a trained method"),
    ({"utility": ["mmlu", "gsm8k"]}, "'utility' has value 'gsm8k'; expected one of"),
    ({"utility_size": 0}, "'utility_size' has value 0; expected a positive whole number"),
    ({"mia_size": 0}, "'mia_size' has value 0; expected a positive whole number of texts"),
    ({"curve_variants": ["layers-0-2"]}, "'curve_variants' has value .*expected a list of 'full' and/or 'lora'"),
    ({"utility": ["mmlu"], "curve_utility": ["mmlu", "fluency"]},
     r"'curve_utility' lists \['fluency'\], which key 'utility' \['mmlu'\] leaves out"),
])
def test_bad_parameters(values, message):
    with pytest.raises(RwkuError, match=message):
        make_params(values, source="params/x.yaml")


def test_yaml_exponent_without_dot_is_read_as_number():
    assert make_params({"hparams": {"ga": {"full": {"lr": "6e-8"}}}})["hparams"]["ga"]["full"]["lr"] == 6e-8


def test_missing_and_broken_profile_files(tmp_path):
    with pytest.raises(RwkuError, match="Known profiles: .*cpu-smoke"):
        load_profile("no-such-profile")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(RwkuError, match="bad.yaml: not valid YAML"):
        load_profile(str(bad))


def test_defaults_and_method_settings_come_from_their_declarations():
    from rwku_nb import methods, settings
    from rwku_nb.methods import npo, rmu

    params = make_params({})
    assert set(params) == set(settings.SETTINGS)  # every key declared, each in one section
    assert sorted(k for keys in settings.SECTIONS.values() for k in keys) == sorted(settings.SETTINGS)
    assert settings.section_of("npo_beta") == "npo" and settings.section_of("max_new_tokens") == "evaluation"
    # a method's own keys and hyperparameters, declared beside its code, are the defaults and its identity keys
    assert params["npo_beta"] == 0.2 and methods.METHODS["npo"].args == ("npo_beta",)
    assert params["hparams"]["npo"] == npo.HPARAMS and params["hparams"]["rmu"]["full"]["lr"] == 5e-5
    assert set(methods.METHODS["rmu"].args) == {"rmu_layer", "rmu_steering", "rmu_alpha"}
    assert methods.METHODS["repe"].args == ("repe_alpha", "repe_layer")  # repe_alphas: the curve's identity
    assert rmu.run is methods.METHODS["rmu"].run
    with pytest.raises(RwkuError, match=r"x.yaml: key 'rmu_alpha' has value -1; expected a number >= 0"):
        make_params({"rmu_alpha": -1}, source="x.yaml")
    with pytest.raises(RwkuError, match=r"reads profile key\(s\) \['no_such_key'\] that no module declares"):
        methods.register("undeclared", "U", trains=False, args=("no_such_key",))
    assert "undeclared" not in methods.METHODS
