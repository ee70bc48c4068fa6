"""Bad input, catalogued: every case gives ONE RwkuError whose message names the file / key / row and says
how to fix it, and leaves no partial output (no result, cache, table or figure file appears or changes).

Each case builds its bad input under tmp_path (a copy of one target folder of the RWKU sample when it needs a
corrupted data directory; ../shared is never touched) and calls the public API. Sweeps use the tiny random
model (`model: tiny-random`), so a case that gets as far as loading a model costs about a second.

Tests run as root, and root ignores permission bits: a chmod-ed directory stays writable. "Not writable" is
therefore simulated two ways that also fail for root: a directory whose path runs through a regular FILE
(mkdir fails with NotADirectoryError), and os.access monkeypatched to deny writing under one directory (what
os.access reports on a read-only mount).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest
import yaml

from rwku_nb import config, paths, plots, runner, seed0, tables, utility
from rwku_nb.errors import RwkuError

PROFILE = "bad-input"
FOLDER = "2_Confucius"  # a small target folder (124 KB): probes, passages, retain MIA set


@dataclass
class Env:
    tmp: Path              # tmp_path, with results/, figures/, cache/ isolated by the tmp_store fixture
    mp: pytest.MonkeyPatch
    sample: Path           # the RWKU sample's Target/ directory (read only)

    def data(self) -> Path:
        """A copy of one target folder of the sample under tmp: tmp/rwku/Target/2_Confucius."""
        dest = self.tmp / "rwku" / "Target" / FOLDER
        if not dest.exists():
            shutil.copytree(self.sample / FOLDER, dest)
        return dest

    def blocker(self) -> Path:
        """A regular file: any directory 'inside' it cannot be created, not even by root."""
        path = self.tmp / "blocker"
        path.write_text("a regular file where a directory is expected\n")
        return path

    def deny_writes(self, directory: Path) -> None:
        """os.access says `directory` and everything below it is not writable (as on a read-only mount)."""
        real, directory = os.access, Path(directory)

        def access(path, mode, *args, **kwargs):
            if mode & os.W_OK and isinstance(path, (str, os.PathLike)):
                p = Path(path)
                if p == directory or directory in p.parents:
                    return False
            return real(path, mode, *args, **kwargs)

        self.mp.setattr(os, "access", access)

    def profile(self, text: str | None = None, **values) -> Path:
        """A profile file tmp/bad-input.yaml: the sweep's parameters with `values` on top, or raw `text`."""
        path = self.tmp / f"{PROFILE}.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(sweep(self, **values), sort_keys=False))
        return path


def sweep(env: Env, **values) -> dict:
    """A cheap single-target sweep on the tiny model (target 2 of the sample unless `data` says otherwise)."""
    p = {"profile": PROFILE, "model": "tiny-random", "device": "cpu", "data": str(env.sample), "targets": "2",
         "methods": ["before"], "variants": ["full"], "corpus": "provided", "corpus_size": 2, "max_length": 32,
         "warmup_steps": 0, "max_new_tokens": 4, "mia_batch_size": 4, "eval_batch_size": 16, "curve": False,
         "utility": [], "hparams": {"ga": {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}}
    p.update(values)
    return p


def run_profile(env: Env, run: Callable, text: str | None = None, **values) -> Callable:
    """Write the profile file now; the call `run(<its path>)` comes later."""
    path = str(env.profile(text, **values))
    return lambda: run(path)


def local(env: Env, **values) -> dict:
    """`sweep` on the tmp copy of the target folder (make it with env.data() first)."""
    return sweep(env, data=str(env.tmp / "rwku"), **values)


def edit(path: Path, change: Callable) -> None:
    """Rewrite a JSON data file as change(rows)."""
    path.write_text(json.dumps(change(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")


def without(key: str, row: int):
    def change(rows):
        del rows[row][key]
        return rows
    return change


# ------------------------------------------------------------------------------------------- the cases
# Each setup builds the bad input under env.tmp and returns the call that must fail; the pattern (re.search,
# "<TMP>" = tmp_path) must match the whole story: where (file / key / row) and the fix.

def malformed_json(env):
    (env.data() / "forget_level2.json").write_text('[{"query": "a", "answer": "b",\n "level": "2"')
    return lambda: runner.run_sweep(local(env))


def not_utf8(env):
    (env.data() / "forget_level1.json").write_bytes(b'\xff\xfe[{"query": "x"}]')
    return lambda: runner.run_sweep(local(env))


def row_missing_field(env):
    edit(env.data() / "forget_level2.json", without("answer", 1))
    return lambda: runner.run_sweep(local(env))


def row_not_an_object(env):
    edit(env.data() / "neighbor_level1.json", lambda rows: ["just a string"] + rows[1:])
    return lambda: runner.run_sweep(local(env))


def file_not_a_list(env):
    edit(env.data() / "forget_level1.json", lambda rows: rows[0])
    return lambda: runner.run_sweep(local(env))


def bad_intro(env):
    (env.data() / "intro.json").write_text("[]")
    return lambda: runner.run_sweep(local(env))


def empty_probe_set(env):
    for level in (1, 2, 3):
        (env.data() / f"forget_level{level}.json").write_text("[]")
    return lambda: runner.run_sweep(local(env))


def prompt_too_long(env):
    edit(env.data() / "forget_level1.json", lambda rows: [{**rows[0], "query": "word " * 9000 + "___"}] + rows[1:])
    return lambda: runner.run_sweep(local(env))


def empty_forget_corpus(env):
    (env.data() / "positive.json").write_text("[]")
    return lambda: runner.run_sweep(local(env, methods=["ga"], corpus="provided"))


def unknown_target(env):
    return lambda: runner.run_sweep(sweep(env, targets="Nobody At All"))


def bad_target_range(env):
    return lambda: runner.run_sweep(sweep(env, targets="5-2"))


def data_source_unset(env):
    env.mp.delenv(paths.DATA_ENV, raising=False)
    return lambda: runner.run_sweep(sweep(env, data=None))


def missing_data_dir(env):
    env.mp.setenv(paths.DATA_ENV, str(env.tmp / "nowhere"))
    return lambda: runner.run_sweep(sweep(env, data=None))


def data_dir_without_targets(env):
    (env.tmp / "empty").mkdir()
    return lambda: runner.run_sweep(sweep(env, data=str(env.tmp / "empty")))


def profile_not_yaml(env):
    return run_profile(env, runner.run_sweep, "model: [unclosed\n")


def profile_not_a_mapping(env):
    return run_profile(env, runner.run_sweep, "- before\n- ga\n")


def unknown_profile(env):
    return lambda: runner.run_sweep("no-such-profile")


def overrides_not_a_mapping(env):
    path = str(env.profile())
    return lambda: config.load_profile(path, ["targets", "2"])


def unknown_params_key(env):
    return run_profile(env, runner.run_sweep, modle="tiny-random")


def wrong_type(env):
    return run_profile(env, runner.run_sweep, seed="zero")


def zero_size(env):
    return run_profile(env, runner.run_sweep, corpus_size=0)


def unknown_method(env):
    return run_profile(env, runner.run_sweep, methods=["before", "forgetful"])


def unknown_variant(env):
    return run_profile(env, runner.run_sweep, variants=["qlora"])


def unknown_metric(env):
    return run_profile(env, runner.run_sweep, utility=["mmlu", "gsm8k"])


def unknown_metric_set(env):
    return lambda: utility.evaluate_utility(None, None, {"mmlu": [], "gsm8k": []})


def unknown_scorer(env):
    return run_profile(env, runner.run_sweep, scorer="bleu")


def unknown_stop_mode(env):
    return run_profile(env, runner.run_sweep, stop="sometimes")


def unknown_hparams_key(env):
    return run_profile(env, runner.run_sweep, hparams={"ga": {"full": {"learning_rate": 1e-3}}})


def bad_layer_window(env):
    return run_profile(env, runner.run_layers, layer_windows=[[4, 2]])


def batch_sizes_over_batch_targets(env):
    return run_profile(env, runner.run_batch, batch_targets="1-2", batch_sizes=[3], batch_methods=["ga"])


def unknown_device(env):
    return run_profile(env, runner.run_sweep, device="tpu")


def unknown_dtype(env):
    return run_profile(env, runner.run_sweep, dtype="int8")


def cache_dir_uncreatable(env):
    env.mp.setenv(paths.CACHE_ENV, str(env.blocker() / "cache"))
    return lambda: runner.run_sweep(sweep(env))


def results_dir_uncreatable(env):
    env.mp.setenv(paths.RESULTS_ENV, str(env.blocker() / "results"))
    return lambda: runner.run_sweep(sweep(env))


def results_dir_read_only(env):
    (env.tmp / "results").mkdir()
    env.deny_writes(env.tmp / "results")
    return lambda: runner.run_sweep(sweep(env))


def figures_dir_uncreatable(env):
    env.mp.setenv(paths.FIGURES_ENV, str(env.blocker() / "figures"))
    return lambda: tables.write_table(pd.DataFrame({"Forget All": [41.5]}, index=["Before"]), "table1_x", "caption")


def figures_dir_read_only(env):
    import matplotlib.pyplot as plt

    (env.tmp / "figures").mkdir()
    env.deny_writes(env.tmp / "figures")
    fig = plt.figure()

    def call():
        try:
            plots.save(fig, "fig_x")
        finally:
            plt.close(fig)
    return call


def model_path_missing(env):
    # With `inject`, the model is first named (its tokenizer read for the injection key), then loaded.
    return lambda: runner.run_sweep(sweep(env, model="/nonexistent/model", inject=[2]))


def model_hub_id_unreachable(env):
    return lambda: runner.run_sweep(sweep(env, model="nonexistent-org/nonexistent-model-xyz"))


def missing_extraction_csv(env):
    (env.tmp / "extraction").mkdir()
    env.mp.setenv(paths.EXTRACTION_ENV, str(env.tmp / "extraction"))
    return lambda: seed0.selective_data(sweep(env, selective_data="extraction"))


def csv_without_text_column(env):
    (env.tmp / "extraction").mkdir()
    (env.tmp / "extraction" / "lm_extraction_32_0.csv").write_text("doc_id,body\n1,some text\n")
    env.mp.setenv(paths.EXTRACTION_ENV, str(env.tmp / "extraction"))
    return lambda: seed0.selective_data(sweep(env, selective_data="extraction"))


D = r"<TMP>/rwku/Target/2_Confucius/"  # the corrupted copy of the target folder
P = r"<TMP>/bad-input\.yaml"           # the profile file
RESTORE = r"Restore the file from the RWKU release"
SET = r"Set {0} to a writable directory \(export {0}=/path/to/dir\)"

CASES = [
    # data files (rwku_nb.data; RWKU_DATA)
    ("malformed_json", malformed_json, D + r"forget_level2\.json: malformed JSON at line 2, column \d+.*" + RESTORE),
    ("not_utf8", not_utf8, D + r"forget_level1\.json: not UTF-8 text \(byte 0\)\. " + RESTORE),
    ("row_missing_field", row_missing_field,
     D + r"forget_level2\.json: row 1: field 'answer' is missing; expected a string .*" + RESTORE),
    ("row_not_an_object", row_not_an_object,
     D + r"neighbor_level1\.json: row 0 is 'just a string' \(str\); expected a JSON object\. " + RESTORE),
    ("file_not_a_list", file_not_a_list, D + r"forget_level1\.json: expected a JSON list of row objects; got dict\. "
     + RESTORE),
    ("bad_intro", bad_intro, D + r"intro\.json: expected an object \{target, intro\} or a one-row list of it; "
     r"got \[\]\. " + RESTORE),
    ("empty_probe_set", empty_probe_set, r"<TMP>/rwku/Target/2_Confucius: target 2 \(Confucius\) has no forget "
     r"probes \(forget_level1/2/3\.json are missing or empty\).*Restore the files .*drop the target from `targets`"),
    ("prompt_too_long", prompt_too_long, D + r"forget_level1\.json row 0: the prompt has \d+ tokens; with 4 new "
     r"tokens it exceeds the model's context of 8192\. Shorten the prompt or lower max_new_tokens"),
    ("empty_forget_corpus", empty_forget_corpus, D + r"positive\.json: the provided 'positive' corpus of target 2 "
     r"\(Confucius\) holds no rows: nothing to unlearn from\. .*or use corpus: generated"),
    ("unknown_target", unknown_target,
     r"unknown target 'Nobody At All'\. Available: 1: Stephen King, 2: Confucius.*Specify a target by index"),
    ("bad_target_range", bad_target_range, r"unknown target '5-2' \(an empty range\)\. Available: .*a range \('1-5'\)"),
    ("data_source_unset", data_source_unset,
     r"no RWKU data source: \$RWKU_DATA is not set\. Set RWKU_DATA to a local copy .*RWKU_DATA=hub"),
    ("missing_data_dir", missing_data_dir,
     r"RWKU data directory not found: <TMP>/nowhere \(from \$RWKU_DATA.*Set RWKU_DATA to a local copy"),
    ("data_dir_without_targets", data_dir_without_targets,
     r"<TMP>/empty \(from argument\) holds no Target/ folder .*point it at the RWKU data directory"),
    # profiles (rwku_nb.config)
    ("profile_not_yaml", profile_not_yaml, P + r": not valid YAML \(.*line 1.*\)\. Fix the syntax at the line shown"),
    ("profile_not_a_mapping", profile_not_a_mapping,
     P + r": expected a mapping of parameter names to values, got list"),
    ("unknown_profile", unknown_profile, r"No profile file .*params/no-such-profile\.yaml\. Known profiles: .*cpu-smoke"),
    ("overrides_not_a_mapping", overrides_not_a_mapping,
     r"overrides of " + P + r" must be a mapping of parameter names to values, got \['targets', '2'\]"),
    ("unknown_params_key", unknown_params_key,
     P + r": unknown key\(s\) \['modle'\]\. Valid keys: profile, model, .*Fix the spelling or remove the key"),
    ("wrong_type", wrong_type, P + r": key 'seed' has value 'zero' of type str; expected int"),
    ("zero_size", zero_size, P + r": key 'corpus_size' has value 0; expected a positive whole number"),
    ("unknown_method", unknown_method,
     P + r": unknown method 'forgetful' in 'methods'; known methods: \[.*'ga'.*'npo'.*\]"),
    ("unknown_variant", unknown_variant,
     P + r": key 'variants' has value 'qlora'; expected 'full', 'lora' or 'layers-A-B'"),
    ("unknown_metric", unknown_metric, P + r": key 'utility' has value 'gsm8k'; expected one of \['mmlu', 'bbh', "
     r"'truthfulqa', 'triviaqa', 'fluency'\]"),
    ("unknown_metric_set", unknown_metric_set, r"unknown utility metric\(s\) \['gsm8k'\]; expected one of mmlu, bbh, "
     r"truthfulqa, triviaqa, fluency \(the names the profile key 'utility' takes\)\. Fix the spelling"),
    ("unknown_scorer", unknown_scorer, P + r": key 'scorer' has value 'bleu'; expected one of \['rwku', 'rouge-score'\]"),
    ("unknown_stop_mode", unknown_stop_mode,
     P + r": key 'stop' has value 'sometimes'; expected one of \['newline', 'official'\]"),
    ("unknown_hparams_key", unknown_hparams_key,
     P + r": hparams\.ga\.full has unknown key\(s\) \['learning_rate'\]; valid: lr, epochs, batch_size"),
    ("bad_layer_window", bad_layer_window,
     P + r": 'layer_windows' entry \[4, 2\] must be \[start, stop\] with 0 <= start < stop"),
    ("batch_sizes_over_batch_targets", batch_sizes_over_batch_targets,
     r"batch_sizes goes up to 3 targets but batch_targets '1-2' holds 2; shrink batch_sizes or widen batch_targets"),
    ("unknown_device", unknown_device, r"device='tpu' is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ("unknown_dtype", unknown_dtype, r"dtype='int8' is not supported; use one of 'auto', 'float32'"),
    # output and cache directories (rwku_nb.paths), the results store, the extraction data
    ("cache_dir_uncreatable", cache_dir_uncreatable,
     r"The cache directory <TMP>/blocker/cache cannot be created \(Not a directory\)\. " + SET.format("RWKU_NB_CACHE")),
    ("results_dir_uncreatable", results_dir_uncreatable, r"The results directory <TMP>/blocker/results/bad-input "
     r"cannot be created \(Not a directory\)\. " + SET.format("RWKU_NB_RESULTS")),
    ("results_dir_read_only", results_dir_read_only,
     r"The results directory <TMP>/results/bad-input is not writable\. " + SET.format("RWKU_NB_RESULTS")),
    ("figures_dir_uncreatable", figures_dir_uncreatable, r"The figures directory <TMP>/blocker/figures cannot be "
     r"created \(Not a directory\)\. " + SET.format("RWKU_NB_FIGURES")),
    ("figures_dir_read_only", figures_dir_read_only,
     r"The figures directory <TMP>/figures is not writable\. " + SET.format("RWKU_NB_FIGURES")),
    ("model_path_missing", model_path_missing, r"Model directory /nonexistent/model does not exist; pass a "
     r"directory written by save_pretrained"),
    ("model_hub_id_unreachable", model_hub_id_unreachable, r"Could not load model 'nonexistent-org/nonexistent-"
     r"model-xyz' from the Hugging Face hub or its local cache .* Fixes: check the id for typos"),
    ("missing_extraction_csv", missing_extraction_csv, r"<TMP>/extraction/lm_extraction_32_0\.csv not found: .*"
     r"set RWKU_NB_EXTRACTION to the folder that holds it"),
    ("csv_without_text_column", csv_without_text_column, r"<TMP>/extraction/lm_extraction_32_0\.csv: no column "
     r"'text' \(columns: \['doc_id', 'body'\]\); expected the extraction data's layout"),
]


def _files(root: Path) -> dict[str, str]:
    """Every regular file under `root` with the SHA-256 of its bytes (symlinks not followed; the SmolLM2
    weights that tmp_store links into cache/models are the tiny model's tokenizer, not output). Digests,
    not bytes: a failing comparison must not print a model's weights."""
    out = {}
    for folder, dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            if not path.is_symlink():
                out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def test_catalogue_has_at_least_20_distinct_cases():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) >= 20
    assert len({case[1] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("setup, pattern", [pytest.param(s, p, id=i) for i, s, p in CASES])
def test_bad_input(setup, pattern, tmp_store, rwku, monkeypatch):
    env = Env(tmp_store, monkeypatch, rwku.root)
    call = setup(env)
    before = _files(tmp_store)
    with pytest.raises(RwkuError) as err:
        call()
    message = str(err.value)
    expected = pattern.replace("<TMP>", re.escape(str(tmp_store)))
    assert re.search(expected, message, re.DOTALL), f"\n{message}\n!~\n{expected}"
    # ONE error: no other exception chained to it (the user sees a single traceback).
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)
    # No partial output: no result, cache, table, figure or temporary file appeared, none changed.
    assert _files(tmp_store) == before
