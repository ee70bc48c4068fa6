"""The one batched scoring forward (rwku_nb.scoring): batched, reordered and prefix-shared rows give the
numbers of one sequence per forward pass, and bad input is refused with a clear message."""
import contextlib
import os

import pytest
import torch

from rwku_nb import scoring
from rwku_nb.errors import RwkuError
from rwku_nb.models import padding_id
from rwku_nb.training import Example, collate

TEXTS = ["Stephen King wrote Carrie in 1974.", "Short.", "The quick brown fox jumps over the lazy dog, twice over.",
         "Who wrote The Shining?", "A", "Maine is the home state of many of his novels and of the author himself."]


def _sequences(tok):
    return [tok(t)["input_ids"] for t in TEXTS]


@torch.no_grad()
def _alone(model, seq):
    """Logits [n, V] of one sequence in its own forward pass (no padding, no cache)."""
    return model(input_ids=torch.tensor([seq])).logits[0]


def _collect(model, tok, seqs, **kw):
    """{input index: (batch, row)} over every batch forward_batches yields, and the rows in yield order."""
    got, order = {}, []
    for batch in scoring.forward_batches(model, seqs, padding_id(tok), **kw):
        for r, i in enumerate(batch.rows):
            assert i not in got
            got[i] = (batch, r)
            order.append(i)
    assert sorted(got) == list(range(len(seqs)))
    return got, order


@pytest.mark.parametrize("batch_size", [2, 4])
def test_padded_batches_equal_one_sequence_per_forward(tiny, batch_size):
    model, tok = tiny
    seqs = _sequences(tok)
    got, _ = _collect(model, tok, seqs, batch_size=batch_size)
    padded = 0
    for i, seq in enumerate(seqs):
        batch, r = got[i]
        n = len(seq)
        padded += n < batch.input_ids.shape[1]
        assert batch.input_ids[r, :n].tolist() == seq and batch.attention_mask[r].sum() == n
        assert (batch.input_ids[r, n:] == padding_id(tok)).all() and (batch.attention_mask[r, n:] == 0).all()
        # Padding changes a row's numbers by float rounding only (other matmul shapes), never more.
        torch.testing.assert_close(batch.logits[r, :n], _alone(model, seq), atol=1e-5, rtol=1e-5)
    assert padded >= 2  # some rows really were padded


@pytest.mark.parametrize("key", [len, None, lambda s: -len(s), lambda s: (s[-1], len(s))])
def test_rows_map_back_to_input_order_whatever_the_sort(tiny, key):
    model, tok = tiny
    seqs = _sequences(tok)
    got, order = _collect(model, tok, seqs, batch_size=4, key=key)
    want = list(range(len(seqs))) if key is None else sorted(range(len(seqs)), key=lambda i: key(seqs[i]))
    assert order == want
    for i, seq in enumerate(seqs):
        batch, r = got[i]
        assert batch.input_ids[r, : len(seq)].tolist() == seq
        torch.testing.assert_close(batch.logits[r, len(seq) - 1], _alone(model, seq)[-1], atol=1e-5, rtol=1e-5)


def test_shared_prefix_equals_the_full_forward(tiny):
    model, tok = tiny
    head = tok("The following are questions about Stephen King, the American author of horror novels.")["input_ids"]
    tails = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    seqs = [head + t for t in tails]
    needed = [len(t) + 1 for t in tails]  # the tail's logits and the last head token's
    got, _ = _collect(model, tok, seqs, batch_size=3, shared_prefix=True, min_suffix=needed)
    for i, seq in enumerate(seqs):
        batch, r = got[i]
        p = batch.n_prefix
        assert 0 < p <= len(seq) - needed[i]  # the prefix ran once, and left the read positions alone
        assert batch.attention_mask.shape[1] == p + batch.input_ids.shape[1]
        assert batch.input_ids[r, : len(seq) - p].tolist() == seq[p:]
        torch.testing.assert_close(batch.logits[r, : len(seq) - p], _alone(model, seq)[p:], atol=1e-5, rtol=1e-5)


def test_shared_prefix_and_no_prefix_agree_batch_for_batch(tiny):
    model, tok = tiny
    head = tok("Question: who wrote Carrie? Answer:")["input_ids"]
    seqs = [head + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    plain, _ = _collect(model, tok, seqs, batch_size=6)
    shared, _ = _collect(model, tok, seqs, batch_size=6, shared_prefix=True)
    for i, seq in enumerate(seqs):
        (a, ra), (b, rb) = plain[i], shared[i]
        assert a.n_prefix == 0 and b.n_prefix == len(head)
        torch.testing.assert_close(b.logits[rb, : len(seq) - b.n_prefix], a.logits[ra, b.n_prefix : len(seq)],
                                   atol=1e-5, rtol=1e-5)


def test_the_prefix_keeps_min_suffix_tokens(tiny):
    model, tok = tiny
    seqs = [[5, 6, 7, 8, 9], [5, 6, 7, 8, 10], [5, 6, 7]]
    got, _ = _collect(model, tok, seqs, batch_size=3, shared_prefix=True)
    assert got[0][0].n_prefix == 2  # the shortest sequence keeps its last token
    got, _ = _collect(model, tok, seqs[:2], batch_size=2, shared_prefix=True, min_suffix=[3, 1])
    assert got[0][0].n_prefix == 2  # row 0 keeps its last 3 tokens


def test_labels_equal_collates(tiny):
    model, tok = tiny
    seqs = _sequences(tok)
    examples = [Example(s, None if i % 2 else [0] * (len(s) // 2) + [1] * (len(s) - len(s) // 2))
                for i, s in enumerate(seqs)]
    for batch in scoring.forward_batches(model, seqs, padding_id(tok), batch_size=3):
        want = collate([examples[i] for i in batch.rows], padding_id(tok), "cpu")["labels"]
        assert torch.equal(scoring.labels(batch, [e.labels_mask for e in examples]), want)


@pytest.mark.parametrize("seqs, kw, message", [
    ([], {}, "no sequences to score"),
    ([[1, 2], []], {}, "sequence 1 has 0 tokens"),
    ([[1, 2, 3], [4, 5]], {"min_suffix": 3}, "sequence 1 has 2 tokens, fewer than the 3"),
    ([[1, 2, 3]], {"min_suffix": [1, 1]}, "2 min_suffix values for 1 sequences"),
    ([[1, 2, 3]], {"batch_size": 0}, "batch_size must be >= 1"),
])
def test_bad_input_is_refused(tiny, seqs, kw, message):
    model, tok = tiny
    kw = {"batch_size": 2, **kw}
    with pytest.raises(RwkuError, match=message):
        next(scoring.forward_batches(model, seqs, padding_id(tok), **kw))


def test_common_prefix_length():
    assert scoring.common_prefix_length([[1, 2, 3], [1, 2, 4], [1, 2]]) == 2
    assert scoring.common_prefix_length([[1, 2, 3]]) == 3
    assert scoring.common_prefix_length([[1], [2]]) == 0


def test_a_group_runs_its_prefix_once_for_all_its_batches(tiny, monkeypatch):
    """Two few-shot contexts (groups) of 5 rows each in batches of 2: no batch mixes the groups, each group's
    prefix runs once (not once per batch), and every row's logits equal its own full forward pass."""
    model, tok = tiny
    heads = [tok(h)["input_ids"] for h in ("Questions about Stephen King, the American author of horror novels.",
                                           "Questions about Confucius, the Chinese philosopher of the Spring period.")]
    tails = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS[:5]]
    seqs = [h + t for h in heads for t in tails]
    calls = []
    real = scoring.prefix_cache
    monkeypatch.setattr(scoring, "prefix_cache", lambda m, ids, d: calls.append(len(ids)) or real(m, ids, d))
    got, _ = _collect(model, tok, seqs, batch_size=2, shared_prefix=True, min_suffix=[len(t) + 1 for t in tails] * 2,
                      key=lambda s: (s[:8], len(s)), group=lambda s: s[:8])
    assert len(calls) == 2  # one prefix per group; per batch it would be 6
    for i, seq in enumerate(seqs):
        batch, r = got[i]
        assert {j // 5 for j in batch.rows} == {i // 5}  # a batch holds one group's rows
        p = batch.n_prefix
        assert p >= len(heads[i // 5]) - 1
        torch.testing.assert_close(batch.logits[r, : len(seq) - p], _alone(model, seq)[p:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shared_prefix", [False, True])
def test_keep_computes_the_logits_of_the_asked_positions_only(tiny, shared_prefix):
    """`keep`: the output layer runs at the batch's union of the positions asked for (Batch.kept, after the
    prefix), and there its logits are those of the full forward pass."""
    model, tok = tiny
    head = tok("The following are questions about Stephen King, the American author of horror novels.")["input_ids"]
    seqs = [head + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    keep = [[len(s) - 1] if i % 2 else [len(s) - 3, len(s) - 2] for i, s in enumerate(seqs)]
    got, _ = _collect(model, tok, seqs, batch_size=3, shared_prefix=shared_prefix, min_suffix=3, keep=keep)
    for i, seq in enumerate(seqs):
        batch, r = got[i]
        p = batch.n_prefix
        assert batch.kept == sorted({q - p for j in batch.rows for q in keep[j]})
        assert batch.logits.shape[1] == len(batch.kept) < batch.input_ids.shape[1]
        for q in keep[i]:
            torch.testing.assert_close(batch.logits[r, batch.kept.index(q - p)], _alone(model, seq)[q],
                                       atol=1e-5, rtol=1e-5)


def test_expand_cache_copies_nothing_and_grouped_attention_changes_no_bit(tiny, monkeypatch):
    """The prefix reaches each batch as broadcast views (no copy), and on CPU grouped-query attention runs inside
    SDPA's kernel instead of after transformers' copy of the key/value heads (repeat_kv): a padded, prefix-sharing
    batch gives bitwise the logits of the repeat_kv path, and the switch is set only during the call."""
    from transformers.integrations import sdpa_attention

    model, tok = tiny
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # the tiny model has GQA
    head = tok("The following are questions about Stephen King, the American author of horror novels.")["input_ids"]
    seqs = [head + tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    prefix_kv = scoring.prefix_cache(model, head, "cpu")
    cache = scoring.expand_cache(prefix_kv, 3)
    assert all(layer.keys.stride(0) == 0 and layer.keys.data_ptr() == k.data_ptr()
               for layer, (k, _) in zip(cache.layers, prefix_kv))

    copies = []
    real = sdpa_attention.repeat_kv
    monkeypatch.setattr(sdpa_attention, "repeat_kv", lambda x, n: copies.append(n) or real(x, n))
    monkeypatch.delenv(scoring.GQA_SWITCH, raising=False)
    kernel, _ = _collect(model, tok, seqs, batch_size=4, shared_prefix=True)
    assert copies == [] and scoring.GQA_SWITCH not in os.environ
    monkeypatch.setattr(scoring, "grouped_attention", lambda device: contextlib.nullcontext())
    copied, _ = _collect(model, tok, seqs, batch_size=4, shared_prefix=True)
    assert len(copies) > 0  # the other path really copies
    assert any(int(a.attention_mask[r].sum()) < a.attention_mask.shape[1] for a, r in kernel.values())  # padded
    for i in range(len(seqs)):
        (a, ra), (b, rb) = kernel[i], copied[i]
        assert torch.equal(a.logits[ra], b.logits[rb])
