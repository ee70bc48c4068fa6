"""Probe summaries (hand-computed) and batched MIA against one-text-per-pass scoring."""
import math

import pytest
import torch

from rwku_nb.evaluate import evaluate_mia, mia_member_scores, summarize_probes
from rwku_nb.metrics import mia_scores, token_statistics


def test_summary_pools_all_probes_not_level_means():
    recs = ([{"set": "forget", "level": 1, "rwku": 100.0}]
            + [{"set": "forget", "level": 2, "rwku": 0.0}] * 3
            + [{"set": "forget", "level": 3, "rwku": 50.0}] * 2
            + [{"set": "neighbor", "level": 1, "rwku": 40.0}, {"set": "neighbor", "level": 2, "rwku": 80.0}])
    got = {r["metric"]: (r["value"], r["n"]) for r in summarize_probes(recs, "rwku")}
    assert got["forget_fb"] == (100.0, 1)
    assert got["forget_qa"] == (0.0, 3)
    assert got["forget_aa"] == (50.0, 2)
    # All = (100 + 0 + 0 + 0 + 50 + 50) / 6 = 33.33..., not the mean of level means (50).
    assert got["forget_all"][0] == pytest.approx(200 / 6) and got["forget_all"][1] == 6
    assert got["neighbor_all"] == (60.0, 2)


def test_batched_mia_equals_one_text_per_pass(tiny):
    model, tok = tiny
    texts = ["Stephen King wrote Carrie.", "A much longer text about many different things, " * 3, "Short."]
    batched = mia_member_scores(model, tok, texts, batch_size=2)
    for text, got in zip(texts, batched):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits
        (lp, mu, var), = token_statistics(logits, ids, torch.ones_like(ids))
        want = mia_scores(lp, mu, var, text)
        for key in want:
            if math.isnan(want[key]):
                assert math.isnan(got[key])
            else:
                # Padded and unpadded passes run different matmul shapes (float32 sums in another order,
                # ~1e-7); Min-K%++ divides by the random model's small sigma (~0.16), so with 2 threads it
                # moves by up to ~6e-6 (measured). A pad leaking into a row moves it by far more.
                assert got[key] == pytest.approx(want[key], rel=5e-5, abs=1e-6), key


class _Target:
    name = "Someone"
    mia_forget = [{"text": "Someone was born in a small town."}, {"text": "Someone wrote many books."}]
    mia_retain = [{"text": "Paris is the capital of France."}]


def test_evaluate_mia_reports_paper_units(tiny):
    model, tok = tiny
    rows = {r["metric"]: r for r in evaluate_mia(model, tok, _Target())}
    fm = mia_member_scores(model, tok, [r["text"] for r in _Target.mia_forget])
    assert rows["mia_fm_loss"]["value"] == pytest.approx(-100 * sum(s["loss"] for s in fm) / 2)
    assert rows["mia_fm_loss"]["n"] == 2 and rows["mia_rm_loss"]["n"] == 1
    assert 0.0 <= rows["mia_auc_loss"]["value"] <= 1.0
    # ICU prepends its instruction to each member text (official eval_mia.py), which changes the scores.
    icu = {r["metric"]: r for r in evaluate_mia(model, tok, _Target(), icu=True)}
    assert icu["mia_fm_loss"]["value"] != rows["mia_fm_loss"]["value"]


def test_mia_size_scores_texts_spread_evenly_over_each_member_set(tiny):
    """`mia_size` n keeps texts i * len // n of each member set (as the utility subsets do): the capped result is
    the full evaluation of exactly those texts."""
    model, tok = tiny

    class Four(_Target):
        mia_forget = [{"text": f"Someone wrote book number {i} in the year {1990 + i}."} for i in range(4)]

    capped = {r["metric"]: r for r in evaluate_mia(model, tok, Four(), size=2)}
    assert capped["mia_fm_loss"]["n"] == 2 and capped["mia_rm_loss"]["n"] == 1  # 1 text: nothing to cap

    class Kept(_Target):
        mia_forget = [Four.mia_forget[0], Four.mia_forget[2]]

    assert {r["metric"]: r["value"] for r in evaluate_mia(model, tok, Kept())} == \
        {m: r["value"] for m, r in capped.items()}
    full = {r["metric"]: r for r in evaluate_mia(model, tok, Four())}
    assert full["mia_fm_loss"]["n"] == 4 and full["mia_fm_loss"]["value"] != capped["mia_fm_loss"]["value"]
