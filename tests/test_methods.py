"""Each method moves a tiny model in its intended direction; losses match hand-computed values."""
import math

import pytest
import torch

from rwku_nb import config, models
from rwku_nb.methods import METHODS, Context
from rwku_nb.methods.npo import npo_loss
from rwku_nb.prompts import ICU_TEMPLATE
from rwku_nb.training import collate, sequence_nll, text_examples

CORPUS = ["Stephen King is an American author of horror novels such as Carrie and The Shining.",
          "He was born in Portland, Maine, in 1947 and has sold hundreds of millions of books."]


class _Target:
    index, name, intro = 1, "Stephen King", "Stephen King is an American author."


def _params(**hp):
    p = config.make_params({"warmup_steps": 0, "max_length": 64})
    for m in ("ga", "npo"):
        for v in ("full", "lora"):
            p["hparams"][m][v] = {"lr": hp.get("lr", 1e-3), "epochs": 2, "batch_size": 2}
    return p


def _corpus_nll(model, tok):
    ex = text_examples(tok, CORPUS, 64)
    with torch.no_grad():
        return float(sequence_nll(model, collate(ex, tok.pad_token_id, "cpu")).sum())


@pytest.mark.parametrize("method", ["ga", "npo"])
@pytest.mark.parametrize("variant", ["full", "lora"])
def test_trained_methods_raise_forget_nll(tiny, method, variant):
    model, tok = tiny
    before = _corpus_nll(model, tok)
    p = _params(lr=1e-2 if variant == "lora" else 1e-3)
    m = models.add_lora(model) if variant == "lora" else model
    METHODS[method].run(Context(m, tok, _Target(), CORPUS, p, variant))
    m.eval()
    assert _corpus_nll(m, tok) > before + 1.0


@pytest.mark.parametrize("method", ["before", "icu"])
def test_untrained_methods_leave_weights(tiny, method):
    model, tok = tiny
    snap = models.snapshot_weights(model)
    how = METHODS[method].run(Context(model, tok, _Target(), [], _params()))
    assert all(torch.equal(v, models.snapshot_weights(model)[k]) for k, v in snap.items())
    assert how == ({"icu": True} if method == "icu" else {})


def test_icu_changes_prompts_only(tiny, rwku, monkeypatch):
    import rwku_nb.evaluate as ev

    model, tok = tiny
    seen = {}

    def capture(model, tokenizer, prompts, **kw):
        seen.setdefault("prompts", []).append(prompts)
        return ["x"] * len(prompts)

    monkeypatch.setattr(ev, "greedy_generate", capture)
    target = rwku.target(2)
    ev.evaluate_probes(model, tok, target)
    ev.evaluate_probes(model, tok, target, icu=True)
    plain, icu = seen["prompts"]
    assert len(plain) == len(icu) > 0
    for a, b in zip(plain, icu):
        assert "supposed to unlearn about Confucius" in b and "unlearn" not in a
        assert b.replace(ICU_TEMPLATE.format(subject="Confucius"), "") == a


def test_npo_loss_hand_computed(monkeypatch):
    import rwku_nb.methods.npo as npo_mod

    beta = 0.2
    nll, ref = torch.tensor([3.0, 5.0]), torch.tensor([4.0, 5.0])
    monkeypatch.setattr(npo_mod, "sequence_nll", lambda model, batch: nll)
    # -(2/beta) * mean(log sigmoid(beta * (nll - ref))): the terms are log sigmoid(-0.2) and log sigmoid(0).
    expected = -(2 / beta) * (math.log(1 / (1 + math.exp(0.2))) + math.log(0.5)) / 2
    assert float(npo_loss(None, {"ref_nll": ref}, beta)) == pytest.approx(expected, rel=1e-6)


def test_sequence_nll_hand_computed():
    class _Uniform(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("O", (), {"logits": torch.zeros(*input_ids.shape, 4)})()

    batch = {"input_ids": torch.tensor([[1, 2, 3], [1, 2, 0]]), "attention_mask": torch.tensor([[1, 1, 1], [1, 1, 0]]),
             "labels": torch.tensor([[1, 2, 3], [1, 2, -100]])}
    # Uniform over 4 tokens: each scored next token costs ln 4; rows score 2 and 1 tokens.
    got = sequence_nll(_Uniform(), batch)
    assert torch.allclose(got, torch.tensor([2 * math.log(4), math.log(4)]))
