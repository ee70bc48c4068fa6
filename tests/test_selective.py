"""The seed-0 paper: MA and EL_n against hand-computed values, the extractable count, SGA's selection,
TA/TAU's arithmetic and the stopping rule; notebook 07's runner on a tiny model."""
import types

import numpy as np
import pandas as pd
import pytest
import torch

from rwku_nb import config, models, seed0, selective, tables
from rwku_nb.paths import extraction_dir
from rwku_nb.training import Example, sft_loss, train

V = 16


class Successor(torch.nn.Module):
    """A fake causal LM whose argmax next token is always (last token + 1) mod V; ignores the cache."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None, past_key_values=None, use_cache=False):
        logits = 10 * torch.nn.functional.one_hot((input_ids + 1) % V, V).float() + self.w
        return types.SimpleNamespace(logits=logits, past_key_values=())


TOK = types.SimpleNamespace(pad_token_id=0, eos_token_id=None)


def test_ngram_overlap_hand_computed():
    assert selective.ngram_overlap([1, 2, 3, 4], [1, 2, 3, 5], 2) == pytest.approx(2 / 3)
    assert selective.ngram_overlap([1, 2, 1, 2], [1, 2, 3], 2) == 1.0  # prediction n-grams counted with repetition
    assert selective.ngram_overlap([7, 8, 9], [1, 2, 3], 1) == 0.0
    assert selective.ngram_overlap([1], [1], 2) is None  # undefined: the label has no 2-gram


def test_memorization_accuracy_hand_computed():
    # positions 1..5: 1 (0+1 yes), 2 (yes), 5 (3, no), 6 (yes), 9 (7, no) -> 3/5
    ma = selective.memorization_accuracy(Successor(), TOK, [[0, 1, 2, 5, 6, 9], [3, 4, 5]])
    assert ma.tolist() == pytest.approx([0.6, 1.0])


def test_extraction_likelihood_hand_computed():
    x = [0, 1, 2, 5, 6, 9, 10, 11]
    # prefix lengths 1..6 (T - n = 6) for n = 2; overlaps worked out by hand from the successor continuations
    per_position = [1 / 3, 1 / 5, 1 / 4, 0, 0, 1]
    el = selective.extraction_likelihood(Successor(), TOK, [x], n=2)
    assert el[0] == pytest.approx(sum(per_position) / 6)
    el2 = selective.extraction_likelihood(Successor(), TOK, [x], n=2, stride=2)  # positions 1, 3, 5
    assert el2[0] == pytest.approx((1 / 3 + 1 / 4 + 0) / 3)
    # EL is not MA (the seed code's slip): here they differ
    assert el[0] != pytest.approx(selective.memorization_accuracy(Successor(), TOK, [x])[0])


def test_extraction_likelihood_batches_sequences_of_different_lengths():
    seqs = [[0, 1, 2, 5, 6, 9, 10, 11], [3, 4, 5, 6, 7], [2, 3, 9, 9, 4, 5, 6, 7]]
    one = [selective.extraction_likelihood(Successor(), TOK, [s], n=2)[0] for s in seqs]
    assert selective.extraction_likelihood(Successor(), TOK, seqs, n=2, batch_size=2).tolist() == pytest.approx(one)


def test_greedy_continuation_stops_matching_after_eos():
    gen = selective.greedy_continuation(Successor(), torch.tensor([[0]]), 6, eos_id=3)
    assert gen.tolist() == [[1, 2, 3, -1, -1, -1]]


def test_greedy_continuation_with_cache_equals_full_forward_argmax(tiny):
    model, _ = tiny
    prefixes = torch.randint(5, 200, (3, 7), generator=torch.Generator().manual_seed(0))
    gen = selective.greedy_continuation(model, prefixes, 5)
    ids = prefixes
    with torch.no_grad():
        for _ in range(5):
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], 1)
    assert gen.tolist() == ids[:, 7:].tolist()


def test_threshold_and_extractable_count():
    assert selective.threshold([0.2, 0.4, 0.6]) == pytest.approx(0.4)
    assert selective.extractable([0.1, 0.5, 0.9], 0.5) == 1  # strictly above
    scores = np.random.default_rng(0).random(50)
    counts = [selective.extractable(scores, t) for t in np.linspace(0, 1, 21)]
    assert counts == sorted(counts, reverse=True) and counts[0] == 50 and counts[-1] == 0


def test_sga_selection_rule():
    assert selective.selected_rows(np.array([0.2, 0.8, 0.75, 0.1]), 0.7).tolist() == [False, True, True, False]
    assert selective.selected_rows(np.array([0.2, 0.3, 0.3]), 0.7).tolist() == [False, True, False]
    assert selective.selected_rows(np.array([0.2, 0.3]), None).all()


def _seqs(n=4, length=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(5, 300, (n, length), generator=g).tolist()


def test_sga_only_ascends_on_sequences_above_its_threshold(tiny, monkeypatch):
    model, tok = tiny
    seqs = _seqs()
    seen = []
    original = selective.sequence_nll

    def spy(m, batch):
        seen.append([seqs.index(row) for row in batch["input_ids"].tolist()])
        return original(m, batch)

    monkeypatch.setattr(selective, "sequence_nll", spy)
    mem = np.array([0.9, 0.1, 0.8, 0.1])  # sequences 0 and 2 are above gamma 0.7
    nll_before = _nll(model, tok, seqs)
    selective.unlearn(model, tok, seqs, selective.Plan(0.7), lambda m: {"ma": mem}, stop=0.0, lr=1e-2, epochs=2,
                      batch_size=2)
    assert len(seen) == 4  # 2 epochs x 2 batches of 2
    for rows in seen:  # a sequence below gamma is trained on only as its batch's most memorized one
        low = [r for r in rows if mem[r] < 0.7]
        assert len(low) <= 1 and (not low or rows == low)
    for epoch in (seen[:2], seen[2:]):
        assert {0, 2} <= {r for rows in epoch for r in rows}
    after = _nll(model, tok, seqs)
    assert after[0] > nll_before[0] + 0.5 and after[2] > nll_before[2] + 0.5  # ascended on the memorized ones


def test_ga_seq_ascends_on_every_sequence(tiny, monkeypatch):
    model, tok = tiny
    seqs = _seqs()
    seen = []
    original = selective.sequence_nll
    monkeypatch.setattr(selective, "sequence_nll", lambda m, b: seen.append(len(b["input_ids"])) or original(m, b))
    nll_before = _nll(model, tok, seqs)
    selective.unlearn(model, tok, seqs, selective.Plan(None), lambda m: {"ma": np.zeros(4)}, stop=-1.0, lr=1e-3,
                      epochs=2, batch_size=2)
    assert seen == [2, 2, 2, 2]
    assert (_nll(model, tok, seqs) > nll_before).all()


def _nll(model, tok, seqs):
    from rwku_nb.memorization import token_stats

    return token_stats(model, tok, [Example(s) for s in seqs])[0]


def test_task_arithmetic_parameter_by_parameter():
    s, t = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([0.5])}, {"a": torch.tensor([3.0, 1.0]), "b": torch.tensor([1.5])}
    out = selective.task_arithmetic(s, t, -1.0)
    assert out["a"].tolist() == [-1.0, 3.0] and out["b"].tolist() == [-0.5]
    assert selective.task_arithmetic(s, t, -3.0)["a"].tolist() == [-5.0, 5.0]


def test_tau_returns_theta_s_plus_c_times_the_task_vector(tiny):
    model, tok = tiny
    seqs = _seqs()
    theta_s = {n: p.detach().clone() for n, p in model.named_parameters()}
    measured = []
    # switch 1.0: below it at once, so theta_s = the original weights and training descends from there
    history = selective.unlearn(model, tok, seqs, selective.Plan(0.7, switch=1.0, coef=-1.0),
                                lambda m: measured.append(m.model.norm.weight.sum().item()) or {"ma": np.full(4, 0.5)},
                                stop=0.0, lr=1e-3, epochs=2, batch_size=2, seed=3)
    assert [r["phase"] for r in history] == ["ascent", "descent", "descent"]
    # the same descent, run directly with the shared loop
    reference, _ = models.load_model(models.TINY, device="cpu")
    train(reference, tok, [Example(s) for s in seqs], sft_loss, 1e-3, 2, 2, warmup_steps=0, seed=3,
          betas=(0.9, 0.98), schedule="constant")
    theta_t = dict(reference.named_parameters())
    for name, p in model.named_parameters():
        expected = theta_s[name] - (theta_t[name].detach() - theta_s[name])
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    assert measured[-1] == pytest.approx(model.model.norm.weight.sum().item())  # measured on the edited weights


def test_stopping_rule_uses_the_mean_ma_each_epoch(tiny):
    model, tok = tiny
    means = iter([0.8, 0.6, 0.4, 0.2, 0.1])
    history = selective.unlearn(model, tok, _seqs(), selective.Plan(None), lambda m: {"ma": np.full(4, next(means))},
                                stop=0.5, lr=1e-4, epochs=10, batch_size=4)
    assert [r["epoch"] for r in history] == [0, 1, 2]  # 0.4 < 0.5 after epoch 2
    means = iter([0.4, 0.3])
    history = selective.unlearn(model, tok, _seqs(), selective.Plan(None), lambda m: {"ma": np.full(4, next(means))},
                                stop=0.5, lr=1e-4, epochs=10, batch_size=4)
    assert [r["epoch"] for r in history] == [0, 1]  # at least one epoch is trained


def test_selective_config_errors_name_the_key():
    with pytest.raises(Exception, match="selective_unseen"):
        config.make_params({"selective_data": "rwku", "selective_unseen": "wikitext"})
    with pytest.raises(Exception, match="sga_gamma"):
        config.make_params({"sga_gamma": 1.5})
    with pytest.raises(Exception, match="el_n"):
        config.make_params({"el_n": 300})
    with pytest.raises(Exception, match="selective_stop"):
        config.make_params({"selective_stop": "average"})


def test_selective_tables_hand_made():
    runs = pd.DataFrame({"method": "sga", "variant": "full", "epoch": [0, 0, 1, 1], "phase": "ascent",
                         "seq": [0, 1, 0, 1], "ma": [0.8, 0.6, 0.5, 0.2], "el": [0.3, 0.1, 0.2, 0.0],
                         "ppl_wikitext": [10.0, 10.0, 12.0, 12.0], "ppl_lambada": [20.0, 20.0, 25.0, 25.0]})
    table = tables.selective_table(runs, {"ma": 0.4, "el": 0.05})
    assert table.loc[("SGA", "full", 0), "MA"] == pytest.approx(70.0)
    assert table.loc[("SGA", "full", 1), "extractable (MA)"] == 1
    assert table.loc[("SGA", "full", 1), "extractable (EL)"] == 1
    assert table.loc[("SGA", "full", 1), "PPL WikiText"] == 12.0
    final = tables.selective_final(table)
    assert list(final.index) == [("Before", ""), ("SGA", "full")] and final["Epoch"].tolist() == [0, 1]


def test_full_answers_count_per_method_mean_over_targets():
    preds = pd.DataFrame({"setting": "single", "method": "ga", "variant": "full", "set": "forget",
                          "target_index": [1, 1, 1, 2, 2], "rwku": [100.0, 50.0, 100.0, 100.0, 0.0]})
    out = tables.full_answers(preds)
    assert out.loc["GA Full", "full"] == pytest.approx(1.5)  # 2 and 1 full answers
    assert out.loc["GA Full", "probes"] == pytest.approx(2.5)


needs_extraction = pytest.mark.skipif(not (extraction_dir() / "lm_extraction_4_0.csv").exists(),
                                      reason="extraction data not found: set RWKU_NB_EXTRACTION")


@needs_extraction
def test_run_selective_on_extraction_data_is_stored_and_resumed(tiny, tmp_store, monkeypatch):
    p = config.make_params({"profile": "t", "model": models.TINY, "selective_file": "lm_extraction_4_0.csv",
                            "selective_size": 2, "selective_length": 24, "el_n": 4, "el_stride": 8,
                            "selective_epochs": 2, "selective_stop": 0.0, "ppl_size": 2, "ppl_max_length": 32,
                            "selective_methods": ["ga_seq", "tau"], "selective_variants": ["full", "lora"],
                            "selective_lr": 1e-3, "selective_batch_size": 2, "eval_batch_size": 4})
    runs = seed0.run_selective(p, tiny)
    assert set(zip(runs["method"], runs["variant"])) == {("ga_seq", "full"), ("ga_seq", "lora"), ("tau", "full"),
                                                         ("tau", "lora")}
    assert len(runs) == 4 * 3 * 2  # 4 runs x epochs 0-2 x 2 sequences
    before = runs[runs["epoch"] == 0].groupby(["method", "variant"])["ma"].apply(list)
    assert all(v == before.iloc[0] for v in before)  # every run starts from the same weights
    data = seed0.selective_data(p, tiny)
    assert (data["role"] == "forget").sum() == 2 and all(len(ids) == 24 for ids in data["ids"])
    monkeypatch.setattr(selective, "unlearn", lambda *a, **k: pytest.fail("recomputed a stored run"))
    pd.testing.assert_frame_equal(seed0.run_selective(p, tiny), runs)


@needs_extraction
def test_every_run_starts_from_the_original_weights_measured_once(tiny, tmp_store, monkeypatch):
    """Epoch 0 of every run (full and LoRA alike) is the original weights: its MA and EL are the selective data's
    and its perplexities are measured once, and they equal a fresh measurement of the model."""
    p = config.make_params({"profile": "t", "model": models.TINY, "selective_file": "lm_extraction_4_0.csv",
                            "selective_size": 2, "selective_length": 24, "el_n": 4, "el_stride": 8,
                            "selective_epochs": 2, "selective_stop": 0.0, "ppl_size": 2, "ppl_max_length": 32,
                            "selective_methods": ["ga_seq", "sga"], "selective_variants": ["full", "lora"],
                            "selective_lr": 1e-3, "selective_batch_size": 2, "eval_batch_size": 4})
    counted = {"el": 0, "ppl": 0}
    for name, key in (("extraction_likelihood", "el"), ("perplexity", "ppl")):
        real = getattr(selective, name)
        monkeypatch.setattr(selective, name, lambda *a, _r=real, _k=key, **k: counted.__setitem__(_k, counted[_k] + 1)
                            or _r(*a, **k))
    runs = seed0.run_selective(p, tiny)
    # EL: forget and unseen in the data, then epochs 1-2 of 4 runs; perplexity: 2 sets x (once + 4 runs x 2 epochs)
    assert counted == {"el": 2 + 4 * 2, "ppl": 2 * (1 + 4 * 2)}
    model, tok = tiny
    seqs = [list(ids) for ids in seed0.selective_data(p, tiny).query("role == 'forget'")["ids"]]
    fresh = {"ma": selective.memorization_accuracy(model, tok, seqs, 4), "el": selective.extraction_likelihood(
        model, tok, seqs, 4, 8, 4), "ppl_wikitext": selective.perplexity(model, tok, selective.read_csv_texts(
            "valid_wikitext.csv")[:2], 32, p["mia_batch_size"])}
    for _, run in runs[runs["epoch"] == 0].groupby(["method", "variant"]):
        assert list(run["ma"]) == list(fresh["ma"]) and list(run["el"]) == list(fresh["el"])
        assert (run["ppl_wikitext"] == fresh["ppl_wikitext"]).all()


@needs_extraction
def test_gpt_neo_architecture_runs_the_selective_methods(tiny, tmp_store):
    """The GPT-Neo profiles' code path on a tiny random GPT-Neo (global + local attention, q_proj/v_proj
    LoRA targets as in the gpu-gptneo-* profiles); the hub weights themselves need the network."""
    from transformers import GPTNeoConfig, GPTNeoForCausalLM

    _, tok = tiny
    torch.manual_seed(0)
    neo = GPTNeoForCausalLM(GPTNeoConfig(vocab_size=len(tok), hidden_size=32, num_layers=2, num_heads=2,
                                         attention_types=[[["global", "local"], 1]], window_size=8,
                                         max_position_embeddings=64)).eval()
    gpu_profile = config.load_profile("gpu-gptneo-125m")
    p = config.make_params({**{k: gpu_profile[k] for k in ("lora_r", "lora_alpha", "lora_dropout",
                                                            "lora_target_modules", "selective_data", "selective_unseen")},
                            "profile": "neo", "model": "tiny-neo", "device": "cpu", "dtype": "float32",
                            "selective_file": "lm_extraction_4_0.csv", "selective_size": 2, "selective_length": 20,
                            "el_n": 4, "el_stride": 4, "selective_epochs": 1, "selective_stop": 0.0, "ppl_size": 2,
                            "ppl_max_length": 32, "selective_methods": ["sga", "ta"],
                            "selective_variants": ["full", "lora"], "selective_lr": 1e-3, "selective_batch_size": 2})
    runs = seed0.run_selective(p, (neo, tok))
    assert len(runs) == 4 * 2 * 2 and runs["ma"].between(0, 1).all() and runs["el"].between(0, 1).all()
    changed = runs.groupby(["method", "variant"]).apply(
        lambda d: d.loc[d["epoch"] == d["epoch"].max(), "ppl_wikitext"].iloc[0] != d.loc[d["epoch"] == 0, "ppl_wikitext"].iloc[0])
    assert changed.all()  # every run changed the model


def test_selective_training_accumulates_gradients_like_every_method():
    """GA-seq on batches of 2 with 2 accumulation steps takes the same steps as on batches of 4 (equal lengths, so
    the mean of the two halves' token means is the batch's token mean): the OOM retry's halving keeps the run."""
    seqs, weights = _seqs(), []
    for batch_size, accum in ((4, 1), (2, 2)):
        model, tok = models.load_model(models.TINY, device="cpu")
        selective.unlearn(model, tok, seqs, selective.Plan(None), lambda m: {"ma": np.ones(4)}, stop=-1.0, lr=1e-3,
                          epochs=2, batch_size=batch_size, grad_accum=accum)
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    original = torch.cat([p.detach().flatten() for p in models.load_model(models.TINY, device="cpu")[0].parameters()])
    assert not torch.allclose(weights[0], original)  # it trained
    assert torch.allclose(weights[0], weights[1], atol=1e-6)
