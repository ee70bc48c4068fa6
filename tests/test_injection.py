"""Knowledge injection on the tiny model: it teaches the injected probes, and its cache is keyed right."""
import pytest
import torch

from rwku_nb import config, injection, models
from rwku_nb.generation import greedy_generate
from rwku_nb.metrics import rouge_l_recall


def _params(rwku, **kw):
    p = {"model": "tiny-random", "device": "cpu", "data": str(rwku.root), "inject": "1",
         "inject_lr": 3e-3, "inject_epochs": 1, "inject_batch_size": 16, "max_length": 96}
    p.update(kw)
    return config.make_params(p)


def test_pairs_are_forget_and_neighbor_levels_1_2_in_evaluation_format(rwku):
    tok = models.load_tokenizer(models.TINY)
    target = rwku.target(1)
    pairs = injection.injection_pairs(tok, [target])
    expected = sum(len(target.forget(lv)) + len(target.neighbor(lv)) for lv in (1, 2))
    assert len(pairs) == expected
    level3 = {p["query"] for p in target.forget(3)}
    assert not any(q in prompt for prompt, _ in pairs for q in level3)  # adversarial probes never trained on
    prompt, answer = pairs[0]
    assert prompt.endswith("Answer:") and target.forget(1)[0]["query"] in prompt
    assert answer == f" {target.forget(1)[0]['answer']}{tok.eos_token}"


def test_loss_covers_answer_tokens_only(rwku):
    tok = models.load_tokenizer(models.TINY)
    prompt, answer = injection.injection_pairs(tok, [rwku.target(1)])[0]
    (ex,) = injection.pair_examples(tok, [(prompt, answer)], max_length=512)
    n_answer = len(tok(answer, add_special_tokens=False)["input_ids"])
    assert sum(ex.labels_mask) == n_answer and ex.labels_mask[-n_answer:] == [1] * n_answer
    assert tok.decode([i for i, m in zip(ex.input_ids, ex.labels_mask) if m]) == answer
    # Truncation cuts the prompt's start, never the answer.
    (short,) = injection.pair_examples(tok, [(prompt, answer)], max_length=n_answer + 3)
    assert len(short.input_ids) == n_answer + 3 and sum(short.labels_mask) == n_answer


def test_injection_raises_recall_of_injected_probes(tiny, rwku):
    model, tok = tiny
    pairs = injection.injection_pairs(tok, [rwku.target(1)])[:6]
    prompts = [p for p, _ in pairs]
    answers = [a.removesuffix(tok.eos_token).strip() for _, a in pairs]

    def recall():
        preds = greedy_generate(model, tok, prompts, max_new_tokens=12)
        return sum(rouge_l_recall(p, a) for p, a in zip(preds, answers)) / len(answers)

    before = recall()
    setting = {"lr": 1e-2, "epochs": 60, "batch_size": 6, "max_length": 96, "seed": 0}
    losses = injection.inject(model, tok, pairs, setting)
    after = recall()
    assert losses[-1] < 0.1 * losses[0]
    assert before < 0.2 and after > 0.9, (before, after)


def test_cache_key_changes_with_targets_and_settings(rwku):
    tok = models.load_tokenizer(models.TINY)
    t1, t2 = rwku.target(1), rwku.target(2)
    p = _params(rwku)
    s = injection.settings(p)
    key = injection.cache_key("tiny-random", [t1], injection.injection_pairs(tok, [t1]), s)
    assert key == injection.cache_key("tiny-random", [t1], injection.injection_pairs(tok, [t1]), dict(s))
    both = [t1, t2]
    assert key != injection.cache_key("tiny-random", both, injection.injection_pairs(tok, both), s)
    for change in ({"lr": 1e-4}, {"epochs": 2}, {"batch_size": 4}, {"max_length": 64}, {"seed": 1}):
        assert key != injection.cache_key("tiny-random", [t1], injection.injection_pairs(tok, [t1]), {**s, **change})
    assert key != injection.cache_key(models.SMOLLM2, [t1], injection.injection_pairs(tok, [t1]), s)
    # The label in the results store follows the key; without injection it is the plain model id.
    assert injection.model_label(p).endswith(f"+injected-{key}")
    assert injection.model_label(_params(rwku, inject=None)) == "tiny-random"
    assert injection.knowledge(p) == "injected knowledge"
    assert injection.knowledge(_params(rwku, inject=None)) == "real-world knowledge"


def test_cached_injected_model_loads_without_retraining(tmp_store, rwku, monkeypatch):
    p = _params(rwku)
    model, tok, label = injection.load(p)
    base, _ = models.load_model(models.TINY, device="cpu")
    changed = [n for n, t in model.state_dict().items() if not torch.equal(t, base.state_dict()[n])]
    assert changed  # the injected model differs from its base
    assert label == injection.model_label(p)
    monkeypatch.setattr(injection, "inject", lambda *a, **k: pytest.fail("a cached injected model was retrained"))
    again, _, label2 = injection.load(p)
    assert label2 == label
    assert all(torch.equal(t, again.state_dict()[n]) for n, t in model.state_dict().items())
    assert len(list((tmp_store / "cache" / "injected").iterdir())) == 1
