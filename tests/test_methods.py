"""Each method moves a tiny model in its intended direction; losses match hand-computed values."""
import math

import pytest
import torch

from rwku_nb import config, variants
from rwku_nb.methods import METHODS, Context
from rwku_nb.methods.npo import npo_loss
from rwku_nb.prompts import ICU_TEMPLATE
from rwku_nb.training import collate, sequence_nll, text_examples

CORPUS = ["Stephen King is an American author of horror novels such as Carrie and The Shining.",
          "He was born in Portland, Maine, in 1947 and has sold hundreds of millions of books."]


NEGATIVE = ["Stephen King is a Canadian chef known for his soups and a famous bakery in Lyon.",
            "He was born in Oslo in 1980 and has never written a book in his life."]
REJECT = [["What is Stephen King's most famous novel?", "I don't know."],
          ["Where was Stephen King born?", "I have no idea."]]


GENERIC = ["The river flows through the valley towards the sea, past fields of wheat and old stone mills.",
           "In 1850 the town built a railway station, and the population doubled within twenty years."]


class _Target:
    index, name, intro = 1, "Stephen King", "Stephen King is an American author."


def _params(**hp):
    p = config.make_params({"warmup_steps": 0, "max_length": 64})
    for m in ("ga", "ga_passage", "npo", "dpo", "rt", "ga_seq", "ta", "sga", "tau", "simnpo", "rmu"):
        for v in ("full", "lora", "batch"):
            p["hparams"][m][v] = {"lr": hp.get("lr", 1e-3), "epochs": 2, "batch_size": 2}
    p["sga_stop"] = 0.0  # the tiny model's MA is ~0: never stop early here (stopping is tested in test_selective)
    return p


def _ctx(model, tok, params, variant="full", corpus=CORPUS, targets=None):
    """A Context holding every corpus kind for one (or several) targets."""
    targets = targets or [_Target()]
    corpora = [{"positive": corpus, "passage": corpus, "negative": NEGATIVE, "pair": [list(p) for p in zip(NEGATIVE, corpus)],
                "reject": REJECT, "wikitext": GENERIC}
               for _ in targets]
    return Context(model, tok, targets, corpora, params, variant)


def _corpus_nll(model, tok):
    ex = text_examples(tok, CORPUS, 64)
    with torch.no_grad():
        return float(sequence_nll(model, collate(ex, tok.pad_token_id, "cpu")).sum())


@pytest.mark.parametrize("method", ["ga", "ga_passage", "npo", "simnpo", "ga_seq", "ta", "sga", "tau"])
@pytest.mark.parametrize("variant", ["full", "lora"])
def test_trained_methods_raise_forget_nll(tiny, method, variant):
    model, tok = tiny
    before = _corpus_nll(model, tok)
    p = _params(lr=1e-2 if variant == "lora" else 1e-3)
    # SimNPO's gradient weight is sigmoid(-(beta * mean NLL - gamma)): on a random model (mean NLL ~ ln 49152
    # = 10.8) the paper's beta 2.5 gives ~1e-12, a flat loss; beta 0.1 leaves it ~0.25.
    p["simnpo_beta"] = 0.1
    m = variants.add_lora(model) if variant == "lora" else model
    METHODS[method].run(_ctx(m, tok, p, variant))
    m.eval()
    assert _corpus_nll(m, tok) > before + 1.0


@pytest.mark.parametrize("method", ["before", "icu"])
def test_untrained_methods_leave_weights(tiny, method):
    model, tok = tiny
    snap = variants.snapshot_weights(model)
    how = METHODS[method].run(_ctx(model, tok, _params()))
    assert all(torch.equal(v, variants.snapshot_weights(model)[k]) for k, v in snap.items())
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


def test_dpo_loss_hand_computed():
    from rwku_nb.methods.dpo import dpo_loss

    # margin = (pi_c - ref_c) - (pi_r - ref_r) = (-10 + 11) - (-12 + 11) = 2; loss = -log sigmoid(0.1 * 2)
    got = dpo_loss(torch.tensor([-10.0]), torch.tensor([-12.0]), torch.tensor([-11.0]), torch.tensor([-11.0]), 0.1)
    assert float(got) == pytest.approx(math.log(1 + math.exp(-0.2)), rel=1e-6)
    # At the reference (margin 0) the loss is log 2, whatever beta.
    zero = dpo_loss(torch.tensor([-5.0, -7.0]), torch.tensor([-6.0, -1.0]), torch.tensor([-5.0, -7.0]),
                    torch.tensor([-6.0, -1.0]), 0.3)
    assert float(zero) == pytest.approx(math.log(2))


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_dpo_prefers_the_counterfactual_over_the_forget_text(tiny, variant):
    from rwku_nb.methods.dpo import preference_pairs, reference_logps

    model, tok = tiny
    pairs = preference_pairs(tok, _Target(), [[f, t] for f, t in zip(NEGATIVE, CORPUS)], 64)
    assert len(pairs) == 2 and all(sum(c.labels_mask) > 0 and sum(r.labels_mask) > 0 for c, r in pairs)
    # chosen = the fabricated text (pair[0]), rejected = the forget text (pair[1])
    chosen, rejected = pairs[0]
    assert tok.decode([i for i, m in zip(chosen.input_ids, chosen.labels_mask) if m]).startswith(NEGATIVE[0])
    assert tok.decode([i for i, m in zip(rejected.input_ids, rejected.labels_mask) if m]).startswith(CORPUS[0])
    reference_logps(model, tok, pairs)
    margin0 = [c.extra["ref_logp"] - r.extra["ref_logp"] for c, r in pairs]
    m = variants.add_lora(model) if variant == "lora" else model
    METHODS["dpo"].run(_ctx(m, tok, _params(lr=1e-2 if variant == "lora" else 1e-3), variant))
    reference_logps(m, tok, pairs)  # now the trained model's log-probs
    margin1 = [c.extra["ref_logp"] - r.extra["ref_logp"] for c, r in pairs]
    assert all(b > a + 1.0 for a, b in zip(margin0, margin1))


def test_rt_lowers_the_loss_of_refusals(tiny):
    from rwku_nb.methods.rt import refusal_pairs
    from rwku_nb.training import pair_examples, sft_loss

    model, tok = tiny
    batch = collate(pair_examples(tok, refusal_pairs(tok, REJECT), 64), tok.pad_token_id, "cpu")
    with torch.no_grad():
        before = float(sft_loss(model, batch))
    p = _params(lr=3e-3)
    p["hparams"]["rt"]["full"]["epochs"] = 10
    METHODS["rt"].run(_ctx(model, tok, p))
    with torch.no_grad():
        after = float(sft_loss(model, batch))
    assert after < before - 1.0
    # The question is the user message; only the refusal is scored.
    (prompt, answer), _ = refusal_pairs(tok, REJECT)
    assert REJECT[0][0] in prompt and answer == REJECT[0][1] + tok.eos_token


def test_repe_steers_generation_and_detaches_exactly(tiny):
    from rwku_nb.generation import greedy_generate

    model, tok = tiny
    prompts = ["Who is Stephen King?", "Stephen King wrote"]
    snap = variants.snapshot_weights(model)
    plain = greedy_generate(model, tok, prompts, max_new_tokens=8, stop="official")
    p = _params()
    p["repe_alpha"] = 50.0  # a random tiny model needs a strong push to change its greedy tokens
    how = METHODS["repe"].run(_ctx(model, tok, p))
    assert how["layer"] == len(variants.decoder_layers(model)) // 2 and float(how["vector"].norm()) > 0
    steered = greedy_generate(model, tok, prompts, max_new_tokens=8, stop="official")
    assert steered != plain
    how["detach"]()
    assert greedy_generate(model, tok, prompts, max_new_tokens=8, stop="official") == plain
    assert all(torch.equal(v, variants.snapshot_weights(model)[k]) for k, v in snap.items())  # no weight change


def test_repe_vector_is_novice_minus_expert(tiny):
    from rwku_nb.methods import repe

    model, tok = tiny
    v = repe.control_vector(model, tok, [_Target()], [CORPUS], 0)
    novice = repe.mean_hidden(model, tok, repe.persona_prompts(tok, _Target(), CORPUS, repe.NOVICE), 0)
    expert = repe.mean_hidden(model, tok, repe.persona_prompts(tok, _Target(), CORPUS, repe.EXPERT), 0)
    assert torch.allclose(v, novice - expert)
    # The hook reads what the model reports as the output of layer 0 (hidden_states[1]), last token.
    prompts = repe.persona_prompts(tok, _Target(), CORPUS, repe.NOVICE)
    with torch.no_grad():
        direct = torch.stack([model(**tok(p, return_tensors="pt"), output_hidden_states=True).hidden_states[1][0, -1]
                              for p in prompts]).mean(0)
    assert torch.allclose(novice, direct, atol=1e-6)
    # the paper's Appendix H.1 templates, word for word, as the user message; the forget text as the reply
    [novice_prompt] = repe.persona_prompts(tok, _Target(), CORPUS[:1], repe.NOVICE)
    [expert_prompt] = repe.persona_prompts(tok, _Target(), CORPUS[:1], repe.EXPERT)
    assert ("Stephen King is an American author. You don't know Stephen King at all.\n"
            "Please feel free to fabricate information about Stephen King.") in novice_prompt
    assert ("Stephen King is an American author. You know Stephen King very well.\n"
            "Please provide accurate information about Stephen King.") in expert_prompt
    user = repe.NOVICE.format(intro=_Target.intro, target=_Target.name)
    head = tok.apply_chat_template([{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True)
    assert novice_prompt == head + CORPUS[0]  # a text shorter than STIMULUS_TOKENS follows whole
    assert "repe" in METHODS and METHODS["repe"].constants["novice"] == repe.NOVICE


def test_partial_layer_training_leaves_frozen_parameters_bit_identical(tiny):
    model, tok = tiny
    snap = variants.snapshot_weights(model)
    trainable = variants.trainable_layers(model, 1, 2)
    METHODS["ga"].run(_ctx(model, tok, _params(), variant="layers-1-2"))
    changed = {k for k, v in snap.items() if not torch.equal(v, variants.snapshot_weights(model)[k])}
    assert changed and changed <= set(trainable)
    assert all(k.startswith("model.layers.1.") for k in changed)


def test_batch_context_trains_on_the_union_of_corpora():
    class _Other(_Target):
        index, name = 2, "Other"

    ctx = _ctx(None, None, _params(), targets=[_Target(), _Other()])
    assert ctx.corpus["positive"] == CORPUS + CORPUS and ctx.name == "2 targets"
    assert ctx.hparams("ga") == ctx.params["hparams"]["ga"]["batch"]
    assert _ctx(None, None, _params(), variant="layers-0-1").hparams("ga") == ctx.params["hparams"]["ga"]["full"]


def test_simnpo_loss_hand_computed(monkeypatch):
    import rwku_nb.methods.simnpo as simnpo

    # Summed NLLs 6 and 2 over 3 and 2 scored tokens: mean NLLs 2 and 1. beta 2.5, gamma 0.5:
    # -(2/2.5) * mean(log sigmoid(2.5*2 - 0.5), log sigmoid(2.5*1 - 0.5)) = -0.8 * (log s(4.5) + log s(2)) / 2
    monkeypatch.setattr(simnpo, "sequence_nll", lambda model, batch: torch.tensor([6.0, 2.0]))
    monkeypatch.setattr(simnpo, "token_count", lambda batch: torch.tensor([3, 2]))
    s = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = -0.8 * (math.log(s(4.5)) + math.log(s(2.0))) / 2
    assert float(simnpo.simnpo_loss(None, {}, 2.5, 0.5)) == pytest.approx(expected, rel=1e-6)


def test_rmu_pieces_hand_computed():
    from rwku_nb.methods import rmu

    u = rmu.steering_vector(4, 6.5, seed=3)
    assert float(u.norm()) == pytest.approx(6.5, rel=1e-6) and (u >= 0).all()  # c * a unit vector in [0, 1)^d
    assert torch.equal(u, rmu.steering_vector(4, 6.5, seed=3))  # seeded
    # MSE over real tokens only: row 0 has two real tokens off by 1 and 3 in one of two units -> (1 + 9) / 4.
    h = torch.zeros(1, 3, 2)
    target = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [100.0, 100.0]]])
    assert float(rmu.masked_mse(h, target, torch.tensor([[1, 1, 0]]))) == pytest.approx(2.5)


def _layer_shift(model, tok, texts, layer, before):
    from rwku_nb.methods import rmu

    batch = collate(text_examples(tok, texts, 64), tok.pad_token_id, "cpu")
    with torch.no_grad():
        h = rmu.activations(model, batch, layer)
    return float(rmu.masked_mse(h, before, batch["attention_mask"]))


@pytest.mark.parametrize("variant", ["full", "lora"])
def test_rmu_moves_the_layer_on_forget_text_more_than_on_retain_text(tiny, variant):
    from rwku_nb.methods import rmu

    model, tok = tiny
    p = {**_params(), "rmu_alpha": 100.0}
    p["hparams"]["rmu"][variant] = {"lr": 1e-2, "epochs": 8, "batch_size": 2}
    layer = rmu.layer_of(model, p)
    frozen = {}
    for name, texts in (("forget", CORPUS), ("retain", GENERIC)):
        batch = collate(text_examples(tok, texts, 64), tok.pad_token_id, "cpu")
        with torch.no_grad():
            frozen[name] = rmu.activations(model, batch, layer).clone()
    snap = variants.snapshot_weights(model)
    m = variants.add_lora(model) if variant == "lora" else model
    ctx = _ctx(m, tok, p, variant)
    METHODS["rmu"].run(ctx)
    m.eval()
    forget, retain = (_layer_shift(m, tok, t, layer, frozen[k]) for k, t in (("forget", CORPUS), ("retain", GENERIC)))
    assert forget > 3 * retain and forget > 0
    base = variants.remove_lora(m) if variant == "lora" else m
    changed = {k for k, v in variants.snapshot_weights(base).items() if not torch.equal(v, snap[k])}
    if variant == "full":  # only the MLP output projections of layers l-2..l (the official choice)
        allowed = {f"model.layers.{i}.mlp.down_proj.weight" for i in range(max(0, layer - 2), layer + 1)}
        assert changed and changed <= allowed, changed
        assert all(q.requires_grad for q in base.parameters())  # the flags it found are given back
    else:
        assert not changed  # LoRA adapters only; the base weights are untouched
    variants.restore_weights(base, snap)
