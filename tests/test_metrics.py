"""Tests of rwku_nb.metrics: hand-computed ROUGE-L / MIA / AUC values and parity with pltrdy `rouge`."""
from __future__ import annotations

import json
import math
import os
import random
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rwku_nb.errors import RwkuError
from rwku_nb.metrics import (
    MIA_RATIOS,
    SCORERS,
    mean_rouge_l_recall,
    mia_keys,
    mia_scores,
    nll_x100,
    official_prediction,
    roc_auc,
    rouge_l_recall,
    token_statistics,
)

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------------
# rwku scorer, hand-computed (m = distinct reference words; numerator = |union of LCS word sets|)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prediction, answer, expected",
    [
        # ref words {author}; hyp word "author," != "author" -> LCS {} -> 0/1
        ("author,", "author", 0.0),
        # hyp sentence "He used Richard Bachman" (the empty piece after the final '.' is dropped);
        # LCS {Richard, Bachman} -> 2/2
        ("He used Richard Bachman.", "Richard Bachman", 1.0),
        # case-sensitive: {} -> 0/2
        ("stephen king", "Stephen King", 0.0),
        # repeated words: m = |{New, York, Jersey}| = 3, LCS {New, Jersey} -> 2/3 (counts would give 2/4)
        ("New Jersey", "New York New Jersey", 2 / 3),
        # m = |{the}| = 1, LCS {the} -> 1/1 (counts would give 1/3)
        ("the", "the the the", 1.0),
        # single sentence, LCS length 1 of [Carrie, Misery] vs [Misery, Carrie] -> 1/2
        ("Misery Carrie", "Carrie Misery", 0.5),
        # two ref sentences x two hyp sentences, union {Carrie, Misery} -> 2/2
        ("Misery. Carrie", "Carrie. Misery", 1.0),
        # tie-breaking matters: ref [Stephen, King] vs hyp [King, Stephen]: at (2,2) no match,
        # table[1][2] = 1 is not > table[2][1] = 1 -> go left -> takes "King"; 2nd hyp sentence "King"
        # -> {King}; union {King} -> 1/2 (the other tie-break would give {Stephen, King} -> 1.0)
        ("King Stephen. King", "Stephen King", 0.5),
        # " . " pieces: "Carrie . . Misery".split(".") = ["Carrie ", " ", " ", " Misery"] -> sentences
        # ["Carrie", "", "", "Misery"]; m = |{Carrie, "", Misery}| = 3
        ("Carrie", "Carrie . . Misery", 1 / 3),  # {Carrie}
        ("Carrie . . x", "Carrie . . Misery", 2 / 3),  # {Carrie, ""}: the "" word matches
        (" ", "Carrie . . Misery", 1 / 3),  # whitespace-only prediction = sentence "" -> {""}
        # reference with a trailing ". ": sentences ["Stephen King", ""] -> m = 3 -> 2/3 at best ...
        ("Stephen King", "Stephen King. ", 2 / 3),
        # ... unless the prediction also has the "" sentence
        ("Stephen King. ", "Stephen King. ", 1.0),
        # newline / tab are whitespace for str.split(): "Stephen\nKing" -> "Stephen King" -> 2/2
        ("Stephen\n\tKing", "Stephen King", 1.0),
    ],
)
def test_rwku_scorer_hand_computed(prediction, answer, expected):
    assert rouge_l_recall(prediction, answer) == expected
    assert rouge_l_recall(prediction, answer, scorer="rwku") == expected


def test_rwku_scorer_no_recursion_limit():
    words = [f"w{i}" for i in range(3000)]
    answer = " ".join(words)
    assert rouge_l_recall(answer, answer) == 1.0
    # half the words, in order: LCS = those 1500 distinct words -> 1500/3000
    assert rouge_l_recall(" ".join(words[::2]), answer) == 0.5


def test_empty_inputs_raise():
    for bad in ("", ".", "..."):
        with pytest.raises(RwkuError, match="official_prediction"):
            rouge_l_recall(bad, "Stephen King")
        with pytest.raises(RwkuError, match="answer"):
            rouge_l_recall("Stephen King", bad)
    with pytest.raises(RwkuError, match="rouge-score"):
        rouge_l_recall("a", "a", scorer="rouge")
    with pytest.raises(RwkuError):
        rouge_l_recall(None, "a")
    assert SCORERS == ("rwku", "rouge-score")


def test_official_prediction():
    assert official_prediction("") == "NOANSWER"
    assert official_prediction(" \n\t ") == "NOANSWER"
    assert official_prediction("  Stephen King\n") == "Stephen King"
    assert official_prediction("...") == "..."  # survives, and still has no ROUGE sentence
    assert rouge_l_recall(official_prediction(""), "Stephen King") == 0.0


def test_mean_rouge_l_recall():
    from rouge import Rouge

    preds = ["He used Richard Bachman.", "author,", "New Jersey"]
    refs = ["Richard Bachman", "author", "New York New Jersey"]
    # (1 + 0 + 2/3) / 3
    assert mean_rouge_l_recall(preds, refs) == (1.0 + 0.0 + 2 / 3) / 3
    assert mean_rouge_l_recall(preds, refs) == Rouge().get_scores(preds, refs, avg=True)["rouge-l"]["r"]
    # rouge-score: (1 + 1 + 2/4) / 3
    assert mean_rouge_l_recall(preds, refs, scorer="rouge-score") == pytest.approx((1 + 1 + 0.5) / 3)
    with pytest.raises(RwkuError):
        mean_rouge_l_recall(preds, refs[:2])
    with pytest.raises(RwkuError):
        mean_rouge_l_recall([], [])


# --------------------------------------------------------------------------------------------------
# rouge-score scorer (lowercase, [a-z0-9]+ tokens, recall = LCS length / #reference tokens)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "prediction, answer, rwku, google",
    [
        ("author,", "author", 0.0, 1.0),  # "author," -> token "author": 1/1
        ("stephen king", "Stephen King", 0.0, 1.0),  # lowercased: 2/2
        ("New Jersey", "New York New Jersey", 2 / 3, 0.5),  # counts: LCS 2 / 4 tokens
        ("the", "the the the", 1.0, 1 / 3),  # LCS 1 / 3 tokens
        ("Beyonc", "Beyoncé", 0.0, 1.0),  # non-ASCII dropped: "beyoncé" -> token "beyonc"
    ],
)
def test_rouge_score_scorer_differs(prediction, answer, rwku, google):
    assert rouge_l_recall(prediction, answer, scorer="rwku") == rwku
    assert rouge_l_recall(prediction, answer, scorer="rouge-score") == pytest.approx(google)


# --------------------------------------------------------------------------------------------------
# Parity with pltrdy rouge 1.0.1 on every RWKU probe
# --------------------------------------------------------------------------------------------------
PROBE_FILES = ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1", "neighbor_level2")


def _data_root() -> Path | None:
    repo = Path(__file__).resolve().parent.parent
    candidates = []
    if os.environ.get("RWKU_DATA"):
        candidates.append(Path(os.environ["RWKU_DATA"]))
    candidates += [repo / "shared" / "rwku", repo.parent / "shared" / "rwku"]
    for c in candidates:
        if (c / "Target").is_dir():
            return c / "Target"
    return None


def _load_probes() -> list[dict]:
    root = _data_root()
    if root is None:
        pytest.skip("RWKU sample data not found: set RWKU_DATA to a directory holding Target/<N>_<Name>/*.json")
    probes = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for name in PROBE_FILES:
            path = folder / f"{name}.json"
            if path.is_file():
                probes += json.loads(path.read_text(encoding="utf-8"))
    if not probes:
        pytest.skip(f"no probe files ({', '.join(PROBE_FILES)}) under {root}")
    return probes


def _pltrdy_or_error(rouge, hyp, ref):
    try:
        return rouge.get_scores(hyp, ref)[0]["rouge-l"]["r"]
    except ValueError:
        return ValueError


def _assert_parity(rouge, hyp, ref):
    expected = _pltrdy_or_error(rouge, hyp, ref)
    if expected is ValueError:
        with pytest.raises(RwkuError):
            rouge_l_recall(hyp, ref)
    else:
        got = rouge_l_recall(hyp, ref)
        assert got == expected, (hyp, ref, got, expected)


def test_parity_with_pltrdy_on_all_probes():
    from rouge import Rouge

    rouge = Rouge()
    probes = _load_probes()
    rng = random.Random(0)
    n_pairs = 0
    for i, probe in enumerate(probes):
        answer, query = probe["answer"], probe["query"]
        words = answer.split()
        shuffled = words[:]
        rng.shuffle(shuffled)
        query_words = query.split()
        mix = shuffled + rng.sample(query_words, min(3, len(query_words)))
        rng.shuffle(mix)
        candidates = [
            answer,
            answer + ".",
            answer + ",",
            answer + "!",
            query,
            probes[(i + 1) % len(probes)]["answer"],
            answer.lower(),
            " ".join(shuffled),
            " ".join(mix),
            f"The answer is {answer}. It is {answer.split()[0] if words else ''} . . really. ",
            f"I think it is {answer}, not {query[:20]}.",
            # reversed words, then the last word alone: the LCS tie-breaking decides the union
            " ".join(reversed(words)) + ". " + (words[-1] if words else ""),
            # one word per sentence, with whitespace-only pieces (the "" word)
            " . ".join(words) + " . . ",
        ]
        for hyp in candidates:
            _assert_parity(rouge, hyp, answer)
            n_pairs += 1
        # a reference with a whitespace-only piece (sentence "") vs predictions with and without one
        for hyp in (answer, answer + " . . x"):
            _assert_parity(rouge, hyp, answer + ". ")
            n_pairs += 1
    assert n_pairs == 15 * len(probes) > 0
    print(f"parity: {len(probes)} probes, {n_pairs} (prediction, answer) pairs")


def test_parity_with_pltrdy_random_token_strings():
    from rouge import Rouge

    rouge = Rouge()
    rng = random.Random(0)
    vocab = ["a", "b", "c", "King", "king", "the", ".", ". ", " . ", ",", " ", "  ", "\n", "", "a.", "b,"]
    for _ in range(2000):
        hyp = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 12)))
        ref = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 6)))
        if rng.random() < 0.3:  # token-shuffle of the reference as a prediction
            toks = ref.split(" ")
            rng.shuffle(toks)
            hyp = " ".join(toks) + rng.choice(["", ".", " extra"])
        _assert_parity(rouge, hyp, ref)


# --------------------------------------------------------------------------------------------------
# MIA
# --------------------------------------------------------------------------------------------------
def _hand_example():
    # vocab 3, text of 3 tokens [0, 2, 1]; positions 0 and 1 predict tokens 2 and 1.
    # pos 0 logits [0, 0, ln2]: p = [1/4, 1/4, 1/2], log p = [-2ln2, -2ln2, -ln2]
    # pos 1 logits [ln2, 0, 0]: p = [1/2, 1/4, 1/4], log p = [-ln2, -2ln2, -2ln2]
    # pos 2 (last) is never used.
    logits = torch.tensor([[[0.0, 0.0, LN2], [LN2, 0.0, 0.0], [5.0, -3.0, 1.0]]])
    input_ids = torch.tensor([[0, 2, 1]])
    return logits, input_ids


def test_mia_hand_computed():
    logits, input_ids = _hand_example()
    (lp, mu, var), = token_statistics(logits, input_ids, torch.ones_like(input_ids))
    # token log-probs: log p(2 | pos 0) = -ln2, log p(1 | pos 1) = -2ln2
    assert lp.tolist() == pytest.approx([-LN2, -2 * LN2], abs=1e-6)
    # mu = 1/4(-2ln2) + 1/4(-2ln2) + 1/2(-ln2) = -1.5 ln2 (same for both positions)
    assert mu.tolist() == pytest.approx([-1.5 * LN2] * 2, abs=1e-6)
    # E[(log p)^2] = 1/4(4ln2^2) * 2 + 1/2 ln2^2 = 2.5 ln2^2; var = 2.5 ln2^2 - 2.25 ln2^2 = 0.25 ln2^2
    assert var.tolist() == pytest.approx([0.25 * LN2**2] * 2, abs=1e-6)

    text = "ab"
    s = mia_scores(lp, mu, var, text)
    assert list(s) == mia_keys()
    assert s["loss"] == pytest.approx(-1.5 * LN2)  # mean(-ln2, -2ln2)
    assert len(zlib.compress(b"ab")) == 10
    assert s["zlib"] == pytest.approx(-1.5 * LN2 / 10)
    # T = 2: int(2r) = 0 for r in 0.1..0.4 -> nan; 1 for r in 0.5..0.9 -> lowest; 2 for r = 1.0 -> mean
    # mink++: (lp - mu) / sigma, sigma = 0.5 ln2 -> [(-1 + 1.5)/0.5, (-2 + 1.5)/0.5] = [1, -1]
    for r in (0.1, 0.2, 0.3, 0.4):
        assert math.isnan(s[f"mink_{r}"]) and math.isnan(s[f"mink++_{r}"])
    for r in (0.5, 0.6, 0.7, 0.8, 0.9):
        assert s[f"mink_{r}"] == pytest.approx(-2 * LN2)
        assert s[f"mink++_{r}"] == pytest.approx(-1.0, abs=1e-5)
    assert s["mink_1.0"] == pytest.approx(-1.5 * LN2)
    assert s["mink++_1.0"] == pytest.approx(0.0, abs=1e-5)


def test_mia_keys_and_ratios():
    assert MIA_RATIOS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    keys = mia_keys()
    assert keys[:3] == ["loss", "zlib", "mink_0.1"]
    assert "mink++_0.2" in keys and "mink_1.0" in keys and "mink_0.30000000000000004" not in keys
    assert len(keys) == 22


def test_mia_scores_errors():
    with pytest.raises(RwkuError, match="skips"):
        mia_scores(torch.zeros(0), torch.zeros(0), torch.zeros(0), "x")
    with pytest.raises(RwkuError, match="lengths"):
        mia_scores(torch.zeros(2), torch.zeros(3), torch.ones(2), "x")


def test_token_statistics_right_padded_batch_equals_unpadded():
    g = torch.Generator().manual_seed(0)
    B, L, V = 3, 7, 11
    logits = torch.randn(B, L, V, generator=g) * 3
    input_ids = torch.randint(0, V, (B, L), generator=g)
    lengths = [7, 4, 1]
    mask = torch.zeros(B, L, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        input_ids[b, n:] = 0  # pad id
        logits[b, n:] = 1e4  # garbage at padded positions must not leak in
    batched = token_statistics(logits, input_ids, mask)
    chunked = token_statistics(logits, input_ids, mask, chunk_size=2)
    for b, n in enumerate(lengths):
        single = token_statistics(logits[b:b + 1, :n], input_ids[b:b + 1, :n], mask[b:b + 1, :n])[0]
        assert batched[b][0].shape == (max(n - 1, 0),)
        for got, got_chunked, want in zip(batched[b], chunked[b], single):
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(got_chunked, want)
    left_padded = torch.tensor([[0, 1, 1], [1, 1, 1]])
    with pytest.raises(RwkuError, match="right-padded"):
        token_statistics(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), left_padded)


def test_token_statistics_variance_of_a_flat_distribution_keeps_float64_precision():
    # A near-uniform next-token distribution over a large vocabulary (what a small or random model gives):
    # sum p (log p)^2 and mu^2 are both ~117 while their difference is ~0.03, so the official formula
    # evaluated in float32 keeps only ~2-3 digits of it.
    g = torch.Generator().manual_seed(0)
    V = 49152
    logits = torch.randn(1, 6, V, generator=g) * 0.16
    ids = torch.randint(0, V, (1, 6), generator=g)
    _, mu, var = token_statistics(logits, ids, torch.ones_like(ids))[0]
    logp = torch.log_softmax(logits[0, :-1].double(), dim=-1)
    want_mu = (logp.exp() * logp).sum(-1)
    want_var = (logp.exp() * (logp - want_mu[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(var.double(), want_var, rtol=1e-5, atol=0)
    torch.testing.assert_close(mu.double(), want_mu, rtol=1e-6, atol=0)
    cancelling = ((logp.float().exp() * logp.float() ** 2).sum(-1) - mu ** 2).double()  # the official form
    assert ((cancelling - want_var).abs() / want_var).max() > 1e-4  # what this test guards against


def _official_transcription(logits_row: torch.Tensor, ids_row: torch.Tensor, text: str) -> dict:
    """Straight transcription of the per-text formulas of the official eval_mia.py (for one text)."""
    loss = F.cross_entropy(logits_row[:-1], ids_row[1:])  # what HF computes with labels=input_ids
    ll = -loss.item()
    out = {"loss": ll, "zlib": ll / len(zlib.compress(bytes(text, "utf-8")))}
    ids = ids_row[1:].unsqueeze(-1)
    probs = F.softmax(logits_row[:-1], dim=-1)
    log_probs = F.log_softmax(logits_row[:-1], dim=-1)
    tlp = log_probs.gather(dim=-1, index=ids).squeeze(-1)
    mu = (probs * log_probs).sum(-1)
    sigma = (probs * torch.square(log_probs)).sum(-1) - torch.square(mu)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.mean of an empty slice -> nan, as official
        for ratio in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
            k = int(len(tlp) * ratio)
            out[f"mink_{ratio}"] = np.mean(np.sort(tlp.numpy())[:k]).item()
        plus = (tlp - mu) / sigma.sqrt()
        for ratio in [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
            k = int(len(plus) * ratio)
            out[f"mink++_{ratio}"] = np.mean(np.sort(plus.numpy())[:k]).item()
    return out


@pytest.mark.parametrize("L", [4, 13, 40])
def test_mia_matches_official_transcription(L):
    g = torch.Generator().manual_seed(L)
    V = 50
    logits = torch.randn(1, L, V, generator=g) * 2.5
    ids = torch.randint(0, V, (1, L), generator=g)
    text = "Stephen King wrote Carrie, Misery and The Shining. " * (L // 4)
    (lp, mu, var), = token_statistics(logits, ids, torch.ones_like(ids))
    ours = mia_scores(lp, mu, var, text)
    ref = _official_transcription(logits[0], ids[0], text)
    assert set(ours) == set(ref)
    for key, want in ref.items():
        if math.isnan(want):
            assert math.isnan(ours[key]), key
        else:
            assert ours[key] == pytest.approx(want, rel=1e-5, abs=1e-6), key


# --------------------------------------------------------------------------------------------------
# ROC-AUC and the paper's NLL x100
# --------------------------------------------------------------------------------------------------
def test_roc_auc_hand_cases():
    assert roc_auc([3, 4], [1, 2]) == 1.0  # every positive above every negative
    assert roc_auc([1, 2], [3, 4]) == 0.0
    assert roc_auc([5, 5], [5, 5, 5]) == 0.5  # all ties -> 1/2 each
    # pos [2, 4] vs neg [1, 2]: 2>1 (1), 2=2 (1/2), 4>1 (1), 4>2 (1) -> 3.5 / 4
    assert roc_auc([2, 4], [1, 2]) == 0.875
    # pos [1, 3] vs neg [2, 2]: 1<2, 1<2, 3>2, 3>2 -> 2 / 4
    assert roc_auc([1, 3], [2, 2]) == 0.5
    with pytest.raises(RwkuError):
        roc_auc([], [1])
    with pytest.raises(RwkuError, match="nan"):
        roc_auc([float("nan")], [1])


def test_roc_auc_matches_pairwise_definition():
    rng = random.Random(0)
    pos = [rng.choice(range(10)) for _ in range(37)]
    neg = [rng.choice(range(10)) for _ in range(23)]
    pairwise = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))
    assert roc_auc(pos, neg) == pytest.approx(pairwise, abs=1e-12)


def test_nll_x100():
    assert nll_x100(-2.267) == pytest.approx(226.7)  # official print -2.267 -> Table 1 226.7
    assert nll_x100(-1.5 * LN2) == pytest.approx(150 * LN2)
    with pytest.raises(RwkuError):
        nll_x100(float("nan"))
