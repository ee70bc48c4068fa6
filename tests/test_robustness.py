"""Relearning and quantization attacks (rwku_nb.robustness): relearning brings a GA-unlearned model's
forget-corpus NLL back down; a robustness job's unattacked point is its Table 1 run; attacks never leak."""
import pytest
import torch

from rwku_nb import config, robustness, runner, variants
from rwku_nb.methods import METHODS, Context
from rwku_nb.training import collate, sequence_nll, text_examples

CORPUS = ["Stephen King is an American author of horror novels such as Carrie and The Shining.",
          "He was born in Portland, Maine, in 1947 and has sold hundreds of millions of books."]

# before + GA full on target 1, the tiny model; relearning 1 and 2 steps on both sources, 8- and 4-bit.
BASE = {"profile": "robust-test", "model": "tiny-random", "inject": [], "targets": "1", "methods": ["before", "ga"],
        "variants": ["full"], "curve": False, "utility": ["mmlu"], "utility_size": 2, "corpus_size": 2,
        "corpus_max_new_tokens": 8, "max_new_tokens": 4, "max_length": 32, "warmup_steps": 0,
        "hparams": {"ga": {"full": {"lr": 1e-3, "epochs": 2, "batch_size": 2}}},
        "robust_methods": ["ga"], "robust_variants": ["full"], "relearn_steps": [1, 2], "relearn_size": 2,
        "relearn_lr": 1e-3, "quant_bits": [8, 4], "quant_group_size": 32, "robust_utility": "mmlu"}


class _Target:
    index, name = 1, "Stephen King"


def _nll(model, tok, texts=CORPUS):
    with torch.no_grad():
        return float(sequence_nll(model, collate(text_examples(tok, texts, 64), tok.pad_token_id, "cpu")).sum())


def test_relearning_lowers_the_forget_nll_of_a_ga_unlearned_model(tiny):
    model, tok = tiny
    snap = variants.snapshot_weights(model)
    params = config.make_params({**BASE, "hparams": {"ga": {"full": {"lr": 1e-3, "epochs": 3, "batch_size": 2}}}})
    for q in model.parameters():
        q.requires_grad_(True)
    original = _nll(model, tok)
    METHODS["ga"].run(Context(model, tok, [_Target()], [{"positive": CORPUS}], params, "full"))
    model.eval()
    unlearned = _nll(model, tok)
    assert unlearned > original + 1.0
    seen = {}
    robustness._relearn(model, tok, "forget", CORPUS, {**params, "relearn_steps": [1, 3]},
                        lambda k: seen.setdefault(k, _nll(model, tok)))
    assert sorted(seen) == [1, 3] and seen[3] < seen[1] < unlearned  # every step takes some of it back
    variants.restore_weights(model, snap)


def test_robustness_job_attacks_the_table1_run_and_restores_the_weights(tmp_store, rwku, monkeypatch, tiny):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    model, tok = tiny
    snap = variants.snapshot_weights(model)
    rows = robustness.run_robustness(BASE, (model, tok))
    assert all(torch.equal(v, variants.snapshot_weights(model)[k]) for k, v in snap.items())  # nothing leaks
    settings = set(rows["setting"])
    assert settings == {"robust", "quant-8", "quant-4", "relearn-forget-1", "relearn-forget-2",
                        "relearn-wikitext-1", "relearn-wikitext-2"}, settings
    assert set(rows.query("setting == 'robust'")["metric"]) >= {"forget_all", "neighbor_all", "utility_mmlu"}
    # The unattacked point is exactly the Table 1 run of the same method and settings.
    single = runner.run_sweep(BASE, (model, tok)).query("method == 'ga' and setting == 'single'")
    robust = rows.query("setting == 'robust'")
    for metric in ("forget_fb", "forget_qa", "forget_aa", "neighbor_all", "utility_mmlu"):
        assert robust.set_index("metric").loc[metric, "value"] == single.set_index("metric").loc[metric, "value"]
    assert [robustness.attack_of(s) for s in ("robust", "relearn-wikitext-2", "quant-4")] == \
        [("none", "", 0), ("relearn", "wikitext", 2), ("quant", "", 4)]
    # A changed attack setting is a new job; the unlearning settings alone do not reuse it.
    again = robustness.robust_jobs(config.make_params({**BASE, "relearn_lr": 2e-3}))[0]
    assert again.key != robustness.robust_jobs(config.make_params(BASE))[0].key


def test_bad_attack_settings_are_named():
    for bad, match in (({"relearn_steps": [5, 2]}, "relearn_steps"), ({"quant_bits": [16]}, "quant_bits"),
                       ({"relearn_sources": ["web"]}, "relearn_sources"), ({"robust_methods": ["icu"]}, "trains nothing")):
        with pytest.raises(Exception, match=match):
            config.make_params({**BASE, **bad})


def test_relearning_sources_and_what_shapes_them(rwku, monkeypatch):
    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    from rwku_nb.data import RWKU

    [target] = RWKU(str(rwku.root)).select("1")
    forget = ["a", "b", "c"]
    assert robustness.relearn_texts("forget", target, lambda: forget, 2) == ["a", "b"]
    assert robustness.relearn_texts("passage", target, None, 2) == [r["text"] for r in target.passages][:2]
    assert len(robustness.relearn_texts("wikitext", target, None, 2)) == 2
    # a method without a positive corpus relearns on one written for the attack: its settings join the identity
    rt = {**BASE, "data": str(rwku.root), "robust_methods": ["rt", "before"],
          "hparams": {"rt": {"full": {"lr": 1e-3, "epochs": 1, "batch_size": 2}}}}
    jobs = {j.method: j for j in robustness.robust_jobs(config.make_params(rt))}
    assert jobs["rt"].identity["robustness"]["forget_corpus"]["size"] == 2
    assert jobs["before"].identity["robustness"]["forget_corpus"] == jobs["rt"].identity["robustness"]["forget_corpus"]
    no_forget = {j.method: j for j in robustness.robust_jobs(config.make_params({**rt, "relearn_sources": ["passage"]}))}
    assert "forget_corpus" not in no_forget["rt"].identity["robustness"]
    assert "forget_corpus" not in robustness.robust_jobs(config.make_params(BASE))[0].identity["robustness"]
