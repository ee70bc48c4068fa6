"""Exact memorization (EM) and NLL per text, and the target knowledge ranking."""
import math

import pytest
import torch

from rwku_nb import memorization
from rwku_nb.errors import RwkuError
from rwku_nb.training import Example


@torch.no_grad()
def _one_by_one(model, ids, scored_from=1):
    """EM and mean NLL of one sequence, position by position from its own forward pass."""
    logits = model(input_ids=torch.tensor([ids])).logits[0]
    nll, hits = [], []
    for t in range(scored_from, len(ids)):
        logprobs = torch.log_softmax(logits[t - 1], -1)
        nll.append(-float(logprobs[ids[t]]))
        hits.append(int(logits[t - 1].argmax()) == ids[t])
    return sum(nll) / len(nll), sum(hits) / len(hits)


def test_token_stats_equal_a_per_position_loop(tiny):
    model, tok = tiny
    texts = ["Stephen King wrote Carrie in 1974.", "A short one.", "The quick brown fox jumps over the lazy dog again"]
    examples = memorization.text_examples(tok, texts, max_length=64)
    nll, em = memorization.token_stats(model, tok, examples, batch_size=2)  # padded batches
    for i, ex in enumerate(examples):
        ref_nll, ref_em = _one_by_one(model, ex.input_ids)
        assert nll[i] == pytest.approx(ref_nll, rel=1e-4) and em[i] == pytest.approx(ref_em)


def test_only_masked_tokens_are_scored(tiny):
    model, tok = tiny
    ids = tok("Who wrote Carrie? Stephen King")["input_ids"]
    mask = [0] * (len(ids) - 2) + [1, 1]
    nll, em = memorization.token_stats(model, tok, [Example(ids, mask)])
    ref_nll, ref_em = _one_by_one(model, ids, scored_from=len(ids) - 2)
    assert nll[0] == pytest.approx(ref_nll, rel=1e-4) and em[0] == pytest.approx(ref_em)


def test_em_is_one_and_nll_small_on_a_text_the_model_repeats(tiny):
    # A model trained to continue "a b a b ..." predicts every next token: EM 1, NLL near 0.
    model, tok = tiny
    ids = tok(" ab" * 12)["input_ids"]
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = torch.tensor([ids])
    for _ in range(60):
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(); loss.backward(); opt.step()
    nll, em = memorization.token_stats(model, tok, [Example(ids, None)])
    assert em[0] == 1.0 and nll[0] < 0.1 and math.isfinite(nll[0])


def test_memorization_rows_and_ranking_on_the_sample(tiny, rwku):
    model, tok = tiny
    targets = rwku.select([1, 2])
    rows = memorization.memorization_rows(model, tok, targets, n=2, max_length=32, model_name="tiny")
    one = rows[rows["target_index"] == 1]
    assert set(one["kind"]) == set(memorization.KINDS)  # target 1 has every kind of text
    assert set(rows[rows["target_index"] == 2]["kind"]) == {"passage", "retain member", "generic"}
    assert (rows.groupby(["target_index", "kind"]).size() <= 2).all()
    table = memorization.memorization_table(rows)
    assert list(table.index.get_level_values("kind")) == [k for k in memorization.KINDS]
    ranking = memorization.knowledge_ranking(model, tok, targets, batch_size=8)
    assert list(ranking.index) == [1, 2] and ranking["answer NLL"].is_monotonic_increasing
    assert dict(zip(ranking["target_index"], ranking["complete"])) == {1: True, 2: False}  # 2 lacks forget_mia
    assert memorization.top_targets(ranking, 2) == [1]


def test_missing_generic_texts_name_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("RWKU_NB_EXTRACTION", str(tmp_path))
    with pytest.raises(RwkuError, match="valid_wikitext.csv not found.*RWKU_NB_EXTRACTION"):
        memorization.wikitext(3)


def test_runner_memorization_and_ranking_on_a_profile(tmp_store, rwku, monkeypatch):
    from rwku_nb import runner

    monkeypatch.setenv("RWKU_DATA", str(rwku.root))
    params = {"profile": "test", "model": "tiny-random", "device": "cpu", "targets": "1",
              "memorization_size": 2, "max_length": 32}
    rows = runner.memorization(params)
    assert set(rows["knowledge"]) == {"real-world knowledge"} and set(rows["kind"]) == set(memorization.KINDS)
    ranking = runner.knowledge_ranking(params)
    assert sorted(ranking["target_index"]) == [i for i, _ in rwku.targets()]  # every target of the source


def test_derived_tables_are_computed_once_per_key(tmp_store):
    import pandas as pd

    from rwku_nb import results

    calls = []

    def compute():
        calls.append(1)
        df = pd.DataFrame({"target": ["a", "b"], "nll": [0.125, 2.0], "complete": [True, False]})
        df.index = pd.RangeIndex(1, 3, name="rank")
        return df

    first = results.cached_frame("test", "m", "ranking", {"k": 1}, compute)
    again = results.cached_frame("test", "m", "ranking", {"k": 1}, compute)
    pd.testing.assert_frame_equal(first, again, check_index_type=False)
    assert len(calls) == 1
    results.cached_frame("test", "m", "ranking", {"k": 2}, compute)  # another key: computed anew
    assert len(calls) == 2
