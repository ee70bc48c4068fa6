"""`python -m rwku_nb.evaluate MODEL`: a checkpoint unlearned elsewhere, scored with the official evaluation,
gives the numbers the sweep's Before row gives for the same weights; a directory of per-target checkpoints
is scored target by target; a missing checkpoint is named."""
import shutil

import pytest

from rwku_nb import evaluate, runner, store, tables
from rwku_nb.config import load_profile, parse_overrides

SMALL = "{utility: [mmlu], utility_size: 2, max_new_tokens: 4, device: cpu}"
SETTINGS = {"utility": ["mmlu"], "utility_size": 2, "max_new_tokens": 4, "inject": None, "methods": ["before"]}


@pytest.fixture
def checkpoint(tiny, tmp_path):
    model, tok = tiny
    path = tmp_path / "my-unlearned"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_saved_checkpoint_scores_as_the_sweeps_before_row(checkpoint, tmp_store, rwku, monkeypatch, capsys):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    assert evaluate.main([str(checkpoint), "--targets", "1", "--profile", "cpu-smoke", "-y", SMALL]) == 0
    out = capsys.readouterr().out
    written = tmp_store / "figures" / "evaluate_" f"{str(checkpoint).strip('/').replace('/', '_')}.csv"
    assert written.is_file() and "Paper, LLaMA3-8B-Instruct" in written.read_text() and "written:" in out
    table, _, robust = evaluate.score(str(checkpoint), "1", "cpu-smoke", {"utility": ["mmlu"], "utility_size": 2,
                                                                   "max_new_tokens": 4, "device": "cpu"})
    ours = table.loc[("this model", str(checkpoint))]
    sweep = runner.run_sweep(load_profile("cpu-smoke", {**SETTINGS, "model": "tiny-random", "targets": "1"}))
    before = tables.table1(sweep).loc["Before"]
    assert ours.notna().sum() >= 10 and ours.equals(before)  # the same weights, the same numbers
    assert robust is None
    assert len(list((tmp_store / "results" / "evaluate").rglob("target_001-*.json"))) == 1


def test_a_directory_of_per_target_checkpoints_is_scored_per_target(checkpoint, tmp_store, rwku, monkeypatch,
                                                                    capsys):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    root = checkpoint.parent / "per-target"
    shutil.copytree(checkpoint, root / "1_Stephen_King")
    table, rows, _ = evaluate.score(str(root), "1", "cpu-smoke", {**SETTINGS, "device": "cpu"})
    assert sorted(rows["target_index"].unique()) == [1] and (str(root), ) == tuple(table.loc["this model"].index)
    assert evaluate.main([str(root), "--targets", "1-2", "--profile", "cpu-smoke", "-y", SMALL]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint for target(s) 2_" in err and "<N>_<Name>/" in err


ATTACKS = "{utility: [mmlu], utility_size: 2, max_new_tokens: 4, device: cpu, relearn_steps: [1], relearn_size: 2, " \
          "quant_bits: [4], robust_utility: mmlu}"


def test_attacks_relearn_and_quantize_the_checkpoint(checkpoint, tmp_store, rwku, monkeypatch, capsys):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    assert evaluate.main([str(checkpoint), "--targets", "1", "--profile", "cpu-smoke", "--attacks", "-y", ATTACKS]) == 0
    out = capsys.readouterr().out
    slug = str(checkpoint).strip('/').replace('/', '_')
    written = (tmp_store / "figures" / f"evaluate_{slug}_robustness.md").read_text()
    assert "Relearn on Wikipedia passages" in written and "Relearn on WikiText" in written and "4-bit" in written
    assert "Relearn on forget text" not in written and "_robustness.csv" in out
    table, _, robust = evaluate.score(str(checkpoint), "1", "cpu-smoke", parse_overrides(ATTACKS), True)
    # the unattacked point is the checkpoint's own evaluation: its Table 1 forget All and neighbor All
    ours = table.loc[("this model", str(checkpoint))]
    assert robust.loc[str(checkpoint), ("Unlearned", "Forget All")] == ours[("Forget", "All")]
    assert robust.loc[str(checkpoint), ("Unlearned", "Neighbor All")] == ours[("Neighbor", "All")]
    assert list(robust.columns.get_level_values(0).unique()) == \
        ["Unlearned", "Relearn on Wikipedia passages", "Relearn on WikiText", "Quantized"]
    assert evaluate.main([str(checkpoint), "--targets", "1", "--profile", "cpu-smoke", "--attacks", "-y",
                          "{relearn_sources: [forget]}"]) == 2
    assert "comes without it" in capsys.readouterr().err


@pytest.mark.parametrize("tool", [evaluate.main, store.main])
def test_bad_overrides_get_one_message(tool, capsys):
    assert tool(["cpu-smoke" if tool is store.main else "tiny-random", "-y", "{targets: [1"]) == 2
    assert "--overrides '{targets: [1' is not valid YAML" in capsys.readouterr().err
    assert tool(["cpu-smoke" if tool is store.main else "tiny-random", "-y", "[1, 2]"]) == 2
    assert "--overrides '[1, 2]': expected a mapping of profile keys" in capsys.readouterr().err
