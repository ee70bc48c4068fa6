"""RWKU metrics: ROUGE-L recall (two scorers), per-text MIA scores, ROC-AUC, the paper's NLL x100.

Sources of the semantics (facts only; no code was copied):

* The RWKU forget/neighbor score is ROUGE-L *recall* of `rouge.Rouge().get_scores(hyps, refs, avg=True)`
  from the PyPI package ``rouge`` 1.0.1 (pltrdy), as called by the official
  ``LLaMA-Factory/src/llmtuner/eval/eval_forget.py`` of GitHub jinzhuoran/RWKU. Before scoring, that file
  replaces an empty / whitespace-only prediction by ``NOANSWER`` and ``.strip()``s the prediction.
* pltrdy's summary-level ROUGE-L (``rouge/rouge.py::Rouge._get_scores`` and
  ``rouge/rouge_score.py::rouge_l_summary_level`` / ``_union_lcs`` / ``_recon_lcs``, default
  ``exclusive=True``) is re-implemented here by the scorer ``"rwku"``; see `_rwku_rouge_l_recall`.
* ``"rouge-score"`` is Google's ``rouge_score.rouge_scorer.RougeScorer(["rougeL"])`` (lowercases, keeps only
  ``[a-z0-9]+`` tokens, recall = LCS length / number of reference tokens).
* MIA follows the official ``LLaMA-Factory/src/llmtuner/eval/eval_mia.py`` of jinzhuoran/RWKU: per text,
  ``loss`` = -(HF mean cross-entropy) = mean token log-likelihood, ``zlib`` = loss / len(zlib.compress(utf-8
  text)), ``mink_{r}`` = numpy mean of the ``int(T * r)`` smallest token log-probs, ``mink++_{r}`` the same
  over ``(log p(x_t) - mu_t) / sqrt(var_t)`` with ``mu_t = sum_v p log p`` and
  ``var_t = sum_v p (log p)^2 - mu_t^2`` (Min-K%++, Zhang et al. 2024), r in 0.1..1.0.
* The RWKU paper (arXiv 2406.10890, Table 1) reports the MIA LOSS column as ``-loss * 100``
  (official print ``-2.267`` -> table ``226.7``).
"""
from __future__ import annotations

import functools
import math
import warnings
import zlib
from typing import Iterable, Sequence

import numpy as np
import torch

from .errors import RwkuError

__all__ = [
    "SCORERS",
    "MIA_RATIOS",
    "official_prediction",
    "rouge_l_recall",
    "mean_rouge_l_recall",
    "token_statistics",
    "mia_scores",
    "mia_keys",
    "roc_auc",
    "nll_x100",
]

SCORERS = ("rwku", "rouge-score")

# The literal float ratios of the official eval_mia.py loop. They are written out (not computed as
# 0.1 * k, which gives 0.30000000000000004) so that `int(T * r)` and the f-string keys match it exactly.
MIA_RATIOS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)

# The official eval replaces an empty prediction by this literal (eval_forget.py, eval_neighbor.py).
NOANSWER = "NOANSWER"


# --------------------------------------------------------------------------------------------------
# ROUGE-L recall
# --------------------------------------------------------------------------------------------------
def official_prediction(text: str) -> str:
    """The prediction the official RWKU eval scores: ``text.strip()``, or ``"NOANSWER"`` when that is empty.

    eval_forget.py: ``if len(answer) == 0 or len(answer.strip()) == 0: answer = 'NOANSWER'`` then scores
    ``answer.strip()``. Note that a prediction of only periods (e.g. ``"..."``) survives this and still
    has no ROUGE sentence: pltrdy raises ValueError on it (the official eval would crash), and
    `rouge_l_recall` raises RwkuError.
    """
    if not isinstance(text, str):
        raise RwkuError(f"official_prediction: expected a str prediction, got {type(text).__name__}")
    stripped = text.strip()
    return stripped if stripped else NOANSWER


def _pltrdy_sentences(text: str) -> list[str]:
    """pltrdy Rouge._get_scores: pieces of ``text.split(".")`` with len > 0 (checked BEFORE whitespace
    normalization), each normalized to ``" ".join(piece.split())`` -- so a piece of only whitespace
    becomes the sentence "" (whose word list is [""])."""
    return [" ".join(piece.split()) for piece in text.split(".") if len(piece) > 0]


def _lcs_word_set(ref: list[str], hyp: list[str]) -> set[str]:
    """Words of the ONE LCS of (ref, hyp) that pltrdy's ``_recon_lcs`` reconstructs, as a set of strings.

    Table: standard LCS DP (``rouge_score._lcs``). Walk back from (len(ref), len(hyp)): equal words ->
    take the word, go diagonal; else go up (i-1) if table[i-1][j] > table[i][j-1], otherwise left (j-1).
    Iterative (the package recurses and would hit Python's recursion limit on ~1000-word inputs).
    """
    n, m = len(ref), len(hyp)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        word = ref[i - 1]
        prev, row = table[i - 1], table[i]
        for j in range(1, m + 1):
            if word == hyp[j - 1]:
                row[j] = prev[j - 1] + 1
            else:
                up, left = prev[j], row[j - 1]
                row[j] = up if up >= left else left
    out: set[str] = set()
    i, j = n, m
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            out.add(ref[i - 1])
            i -= 1
            j -= 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return out


def _rwku_rouge_l_recall(hyp_sents: list[str], ref_sents: list[str]) -> float:
    """pltrdy ``rouge_l_summary_level(...)["r"]`` with exclusive=True (sets of word strings, not positions).

    m = number of DISTINCT words over all reference sentences (``Ngrams(_split_into_words(refs))``, a set);
    the numerator is the size of the union, over every (reference sentence, hypothesis sentence) pair, of
    the set of words of the reconstructed LCS (``_union_lcs`` threads one union through all references, so
    the sum of per-reference "new" counts equals the final union size). Words come from ``split(" ")``.
    """
    ref_words = [s.split(" ") for s in ref_sents]
    hyp_words = [s.split(" ") for s in hyp_sents]
    m = len({w for words in ref_words for w in words})  # >= 1: split(" ") never returns []
    union: set[str] = set()
    for r in ref_words:
        for h in hyp_words:
            union |= _lcs_word_set(r, h)
    return len(union) / m


@functools.lru_cache(maxsize=1)
def _rouge_score_scorer():
    try:
        from rouge_score import rouge_scorer
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RwkuError(
            "scorer 'rouge-score' needs the PyPI package rouge-score (pip install rouge-score==0.1.2), "
            "or use scorer='rwku'"
        ) from exc
    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def _check_text(text, role: str) -> list[str]:
    if not isinstance(text, str):
        raise RwkuError(f"rouge_l_recall: {role} must be a str, got {type(text).__name__}: {text!r}")
    sents = _pltrdy_sentences(text)
    if not sents:
        if role == "prediction":
            fix = ("map it with rwku_nb.metrics.official_prediction() first (the official RWKU eval scores an "
                   "empty prediction as 'NOANSWER'); a prediction of only '.' characters has no sentence "
                   "even then -- score it 0.0 or drop it explicitly")
        else:
            fix = "the reference answer must contain text other than '.'; check the probe file's 'answer' field"
        raise RwkuError(
            f"rouge_l_recall: the {role} {text!r} has no ROUGE sentence (nothing left after splitting on '.'); "
            f"pltrdy rouge raises ValueError here. Fix: {fix}"
        )
    return sents


def rouge_l_recall(prediction: str, answer: str, scorer: str = "rwku") -> float:
    """ROUGE-L recall in [0, 1] of `prediction` against the reference `answer`.

    scorer="rwku" (default): exactly ``rouge.Rouge().get_scores(prediction, answer)[0]["rouge-l"]["r"]`` of
    pltrdy rouge 1.0.1 (what the official RWKU eval uses), re-implemented without importing it: whitespace
    words (``author,`` != ``author``), sentences split on ``.``, case-sensitive, set semantics.
    scorer="rouge-score": Google's rouge-score rougeL recall (lowercased, alphanumeric tokens, counts).

    No silent empty handling: an empty prediction / answer (no non-empty piece after ``split(".")``)
    raises RwkuError for both scorers; apply `official_prediction` to raw generations first.
    """
    if scorer not in SCORERS:
        raise RwkuError(f"rouge_l_recall: unknown scorer {scorer!r}; valid scorers: {', '.join(SCORERS)}")
    hyp_sents = _check_text(prediction, "prediction")
    ref_sents = _check_text(answer, "answer")
    if scorer == "rwku":
        return _rwku_rouge_l_recall(hyp_sents, ref_sents)
    return float(_rouge_score_scorer().score(target=answer, prediction=prediction)["rougeL"].recall)


def mean_rouge_l_recall(predictions: Sequence[str], answers: Sequence[str], scorer: str = "rwku") -> float:
    """Plain mean of `rouge_l_recall` over aligned pairs, as ``get_scores(hyps, refs, avg=True)``.

    The sum is accumulated left to right from 0 like pltrdy's ``_get_avg_scores`` (not ``sum()``, which
    uses compensated summation from Python 3.12 on), then divided by the count.
    """
    predictions, answers = list(predictions), list(answers)
    if len(predictions) != len(answers):
        raise RwkuError(
            f"mean_rouge_l_recall: {len(predictions)} predictions but {len(answers)} answers; pass aligned lists"
        )
    if not predictions:
        raise RwkuError("mean_rouge_l_recall: no predictions to average (pltrdy would divide by zero)")
    total = 0.0
    for pred, ans in zip(predictions, answers):
        total = total + rouge_l_recall(pred, ans, scorer=scorer)
    return total / len(predictions)


# --------------------------------------------------------------------------------------------------
# MIA
# --------------------------------------------------------------------------------------------------
def mia_keys() -> list[str]:
    """The keys of `mia_scores`, in order: loss, zlib, mink_0.1..mink_1.0, mink++_0.1..mink++_1.0."""
    return (["loss", "zlib"] + [f"mink_{round(r, 1)}" for r in MIA_RATIOS]
            + [f"mink++_{round(r, 1)}" for r in MIA_RATIOS])


def _right_padded_lengths(attention_mask: torch.Tensor) -> list[int]:
    mask = attention_mask.to(torch.bool)
    lengths = mask.sum(dim=1)
    positions = torch.arange(mask.shape[1], device=mask.device).unsqueeze(0)
    expected = positions < lengths.unsqueeze(1)
    if not torch.equal(mask, expected):
        bad = (mask != expected).any(dim=1).nonzero().flatten().tolist()
        raise RwkuError(
            f"token_statistics: attention_mask rows {bad} are not right-padded (ones then zeros); "
            "tokenize with tokenizer.padding_side = 'right' (as the official eval_mia.py does)"
        )
    return lengths.tolist()


@torch.no_grad()
def token_statistics(
    logits: torch.Tensor,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    chunk_size: int = 256,
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per row of a RIGHT-padded batch: ``(token_logprobs[T], mu[T], var[T])`` over its real tokens.

    logits [B, L, V], input_ids [B, L], attention_mask [B, L]. For a row with n real tokens, T = n - 1:
    position t (0 <= t < n - 1) predicts token t + 1. Computed in float32 with log_softmax, one row and at
    most `chunk_size` positions at a time (never a float32 copy of the whole [B, L, V]).
    ``token_logprobs[t] = log p(x_{t+1})``, ``mu[t] = sum_v p log p``, ``var[t] = sum_v p (log p)^2 - mu^2`` (summed as sum_v p (log p - mu)^2).
    Terms with p == 0 (logit -inf) count as 0 (the official code would give nan there).
    Returned tensors are float32 on the logits' device.
    """
    if logits.dim() != 3 or input_ids.dim() != 2 or attention_mask.dim() != 2:
        raise RwkuError(
            f"token_statistics: expected logits [B,L,V], input_ids [B,L], attention_mask [B,L]; got shapes "
            f"{tuple(logits.shape)}, {tuple(input_ids.shape)}, {tuple(attention_mask.shape)}"
        )
    if logits.shape[:2] != input_ids.shape or input_ids.shape != attention_mask.shape:
        raise RwkuError(
            f"token_statistics: batch/length mismatch: logits {tuple(logits.shape)}, input_ids "
            f"{tuple(input_ids.shape)}, attention_mask {tuple(attention_mask.shape)}"
        )
    if chunk_size < 1:
        raise RwkuError(f"token_statistics: chunk_size must be >= 1, got {chunk_size}")
    lengths = _right_padded_lengths(attention_mask)
    out = []
    for b, n in enumerate(lengths):
        steps = max(n - 1, 0)
        lp_parts, mu_parts, var_parts = [], [], []
        for start in range(0, steps, chunk_size):
            stop = min(start + chunk_size, steps)
            logp = torch.log_softmax(logits[b, start:stop].float(), dim=-1)  # [c, V]
            targets = input_ids[b, start + 1:stop + 1].to(device=logp.device, dtype=torch.long)
            lp_parts.append(logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1))
            p = logp.exp()
            # The terms below are computed in place in two [c, V] buffers: a fresh tensor per step costs more
            # (page faults of ~50 MB allocations) than the arithmetic. Element for element they are the
            # products and differences written out in the comments, so the sums are the same bits.
            zero = p == 0
            masked = bool(zero.any())
            term = torch.mul(p, logp)  # p log p
            if masked:
                term.masked_fill_(zero, 0.0)
            mu = term.sum(-1)
            # var = sum_v p (log p - mu)^2: the official sum_v p (log p)^2 - mu^2, summed without its
            # cancellation (in float32 that difference of two near-equal sums loses ~0.4% of a flat
            # distribution's variance, e.g. a small or random model's, and Min-K%++ divides by its root).
            dev = logp.sub_(mu.unsqueeze(-1))  # log p - mu (logp is not needed any more)
            if masked:
                dev.masked_fill_(zero, 0.0)
            torch.mul(p, dev, out=term).mul_(dev)  # (p * dev) * dev
            mu_parts.append(mu)
            var_parts.append(term.sum(-1))
            del logp, p, term, dev, zero
        if steps:
            out.append((torch.cat(lp_parts), torch.cat(mu_parts), torch.cat(var_parts)))
        else:
            empty = torch.zeros(0, dtype=torch.float32, device=logits.device)
            out.append((empty, empty.clone(), empty.clone()))
    return out


def _lowest_k_mean(values: np.ndarray, ratio: float) -> float:
    # Official: k = int(len * ratio); np.mean(np.sort(x)[:k]). k == 0 -> numpy mean of an empty array = nan
    # (official behavior, kept; numpy's "Mean of empty slice" warning is silenced).
    k = int(len(values) * ratio)
    if k == 0:
        return float("nan")
    return float(np.mean(np.sort(values)[:k]))


def mia_scores(token_logprobs, mu, var, text: str) -> dict[str, float]:
    """Official per-text MIA scores from one forward pass (see module docstring), keys as `mia_keys()`.

    token_logprobs, mu, var: 1-D (tensor or array) of equal length T >= 1 (tokens 1..T of the text, e.g.
    from `token_statistics`); text: the exact string that was scored (zlib uses its UTF-8 bytes).
    ``mink_{r}`` / ``mink++_{r}`` are nan when int(T * r) == 0, as in the official numpy code. Means are
    taken in float64 (official: float32 numpy), so values agree to float32 precision.
    """
    def as_np(x, name):
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float64).numpy()
        arr = np.asarray(x, dtype=np.float64)
        if arr.ndim != 1:
            raise RwkuError(f"mia_scores: {name} must be 1-D, got shape {arr.shape}")
        return arr

    lp, mu_, var_ = as_np(token_logprobs, "token_logprobs"), as_np(mu, "mu"), as_np(var, "var")
    if not (len(lp) == len(mu_) == len(var_)):
        raise RwkuError(f"mia_scores: lengths differ: token_logprobs {len(lp)}, mu {len(mu_)}, var {len(var_)}")
    if len(lp) == 0:
        raise RwkuError(
            "mia_scores: the text has no predicted token (it needs >= 2 tokens incl. BOS); the official "
            "eval_mia.py skips texts whose loss is NaN -- drop this text"
        )
    if not isinstance(text, str):
        raise RwkuError(f"mia_scores: text must be the str that was scored, got {type(text).__name__}")
    loss = float(np.mean(lp))
    scores = {"loss": loss, "zlib": loss / len(zlib.compress(text.encode("utf-8")))}
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        plus = (lp - mu_) / np.sqrt(var_)
        for r in MIA_RATIOS:
            scores[f"mink_{round(r, 1)}"] = _lowest_k_mean(lp, r)
        for r in MIA_RATIOS:
            scores[f"mink++_{round(r, 1)}"] = _lowest_k_mean(plus, r)
    return scores


def roc_auc(positive_scores: Iterable[float], negative_scores: Iterable[float]) -> float:
    """P(score(random positive) > score(random negative)), ties counting 1/2 (Mann-Whitney U / (n_pos n_neg)).

    Larger score = "more member-like"; for RWKU MIA, pass forget-member scores as positives and
    retain-member scores as negatives (or their negation, depending on the score's direction).
    """
    pos = np.asarray(list(positive_scores), dtype=np.float64)
    neg = np.asarray(list(negative_scores), dtype=np.float64)
    if pos.ndim != 1 or neg.ndim != 1 or pos.size == 0 or neg.size == 0:
        raise RwkuError(
            f"roc_auc: need non-empty 1-D positive and negative scores, got {pos.size} and {neg.size}"
        )
    if np.isnan(pos).any() or np.isnan(neg).any():
        raise RwkuError("roc_auc: scores contain nan (e.g. mink at a ratio with int(T*r) == 0); drop or fix them")
    neg_sorted = np.sort(neg)
    below = np.searchsorted(neg_sorted, pos, side="left")       # negatives strictly below each positive
    not_above = np.searchsorted(neg_sorted, pos, side="right")  # negatives <= each positive
    wins = below.sum() + 0.5 * (not_above - below).sum()
    return float(wins / (pos.size * neg.size))


def nll_x100(loss_mean: float) -> float:
    """RWKU Table 1 convention for the MIA LOSS column: -(mean token log-likelihood) * 100.

    ``loss_mean`` is the mean of `mia_scores(...)["loss"]` (a log-likelihood, <= 0), e.g. -2.267 -> 226.7.
    """
    value = float(loss_mean)
    if math.isnan(value):
        raise RwkuError("nll_x100: loss_mean is nan; check the per-text losses")
    return -value * 100.0
