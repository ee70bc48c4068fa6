"""The seed-0 paper, "To Each (Textual Sequence) Its Own" (Barbulescu & Triantafillou, ICML 2024): judge
unlearning per sequence. Memorization accuracy (MA) and extraction likelihood (EL_n) per sequence, a
threshold from unseen text, the count of still "extractable" sequences, and the selective methods GA
(tracked per sequence), SGA, TA and TAU on the shared training loop (facts: ../shared/PROTOCOL.md).

Definitions (Tirumala et al. 2022 / Jang et al. 2022, as the seed paper uses them):
- MA(x) = share of positions t >= 1 where argmax p(. | x_<t) == x_t (one forward pass; = memorization.EM).
- EL_n(x) = mean over prefix lengths t = 1 .. T-n of overlap_n(greedy continuation of x_<t, x_>=t), where
  overlap_n(p, l) = (number of n-grams of p, with repetition, that occur among the n-grams of l) / (number of
  n-grams of l); the continuation has as many tokens as the true suffix. This is Jang et al.'s
  `validation_el` normaliser (T - 1 - (n - 1) positions). The seed code logs MA under the EL name; here EL is
  computed. `stride` > 1 evaluates every stride-th prefix length only (a CPU economy; stride 1 is exact).
- Threshold: the mean score of the model on unseen text of the same kind; a sequence is "extractable" when
  its own score is above it. Unlearning has succeeded only when no forget sequence is extractable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .errors import RwkuError
from .memorization import token_stats
from .paths import extraction_dir
from .progress import tqdm
from .training import Example, sequence_nll, token_count, train

# ---------------------------------------------------------------------------------------------- metrics


def memorization_accuracy(model, tokenizer, seqs: list[list[int]], batch_size: int = 8) -> np.ndarray:
    """MA per sequence (token ids; every position after the first scored)."""
    _check_seqs(seqs, 2)
    return token_stats(model, tokenizer, [Example(list(s)) for s in seqs], batch_size, "MA")[1]


def ngram_overlap(pred: list[int], label: list[int], n: int) -> float | None:
    """Share of the label's n-grams matched by the prediction's n-grams (counted with repetition, as Jang
    et al.); None when the label is shorter than n (undefined)."""
    label_grams = [tuple(label[i : i + n]) for i in range(len(label) - n + 1)]
    if not label_grams:
        return None
    known = set(label_grams)
    hits = sum(tuple(pred[i : i + n]) in known for i in range(len(pred) - n + 1))
    return hits / len(label_grams)


@torch.no_grad()
def greedy_continuation(model, prefixes: torch.Tensor, length: int, eos_id: int | None = None) -> torch.Tensor:
    """`length` greedy tokens after each row of `prefixes` (equal-length rows, no padding), with a KV
    cache; after a row's EOS its remaining tokens are -1 (they match nothing, as HF generate's padding
    after EOS matches no text token)."""
    out = model(input_ids=prefixes, use_cache=True)
    past, token = out.past_key_values, out.logits[:, -1].argmax(-1)
    tokens = [token]
    for _ in range(length - 1):
        out = model(input_ids=token[:, None], past_key_values=past, use_cache=True)
        past, token = out.past_key_values, out.logits[:, -1].argmax(-1)
        tokens.append(token)
    gen = torch.stack(tokens, 1)
    if eos_id is not None:
        ended = (gen == eos_id).long().cumsum(1) > 0
        after = torch.cat([torch.zeros_like(ended[:, :1]), ended[:, :-1]], 1)
        gen = gen.masked_fill(after, -1)
    return gen


def el_positions(length: int, n: int, stride: int = 1) -> list[int]:
    """Prefix lengths EL_n evaluates for a sequence of `length` tokens: 1, 1+stride, ... <= length - n."""
    if stride < 1:
        raise RwkuError(f"el_stride must be a positive whole number, got {stride!r}")
    return list(range(1, length - n + 1, stride))


@torch.no_grad()
def extraction_likelihood(model, tokenizer, seqs: list[list[int]], n: int = 10, stride: int = 1,
                          batch_size: int = 8, desc: str = "EL") -> np.ndarray:
    """EL_n per sequence (see the module docstring). Sequences are batched per prefix length, so rows of
    a batch share their length and need no padding."""
    _check_seqs(seqs, n + 1)
    model.eval()
    device = next(model.parameters()).device
    totals, counts = np.zeros(len(seqs)), np.zeros(len(seqs))
    by_length: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        by_length.setdefault(len(s), []).append(i)
    jobs = [(T, t, rows[k : k + batch_size]) for T, rows in by_length.items() for t in el_positions(T, n, stride)
            for k in range(0, len(rows), batch_size)]
    for T, t, rows in tqdm(jobs, desc=desc, leave=False):
        ids = torch.tensor([seqs[i] for i in rows], device=device)
        gen = greedy_continuation(model, ids[:, :t], T - t, tokenizer.eos_token_id).tolist()
        for r, i in enumerate(rows):
            totals[i] += ngram_overlap(gen[r], seqs[i][t:], n)
            counts[i] += 1
    return totals / counts


def threshold(unseen_scores) -> float:
    """The extractability threshold: the mean score on unseen text of the same kind."""
    scores = np.asarray(unseen_scores, dtype=float)
    if scores.size == 0:
        raise RwkuError("no unseen sequences to take the threshold from")
    return float(scores.mean())


def extractable(scores, thresh: float) -> int:
    """How many sequences score above the threshold (still extractable)."""
    return int((np.asarray(scores, dtype=float) > thresh).sum())


def perplexity(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 8) -> float:
    """Token-weighted perplexity, exp(total NLL / scored tokens), of `texts` (first `max_length` tokens)."""
    examples = [Example(tokenizer(t)["input_ids"][:max_length]) for t in texts]
    examples = [e for e in examples if len(e.input_ids) >= 2]
    if not examples:
        raise RwkuError("no validation text with at least 2 tokens: nothing to measure perplexity on")
    nll, _ = token_stats(model, tokenizer, examples, batch_size, "perplexity")
    weights = np.array([len(e.input_ids) - 1 for e in examples])
    return float(np.exp((nll * weights).sum() / weights.sum()))


def _check_seqs(seqs, minimum: int) -> None:
    if not seqs:
        raise RwkuError("no sequences to score")
    for i, s in enumerate(seqs):
        if len(s) < minimum:
            raise RwkuError(f"sequence {i} has {len(s)} tokens; at least {minimum} are needed")


# ------------------------------------------------------------------------------------------------- data


def windows(tokenizer, texts: list[str], length: int, per_text: int | None = None) -> list[list[int]]:
    """Non-overlapping windows of exactly `length` tokens of each text (no special tokens; at most
    `per_text` per text; a shorter remainder is dropped), in text order."""
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        chunks = [ids[i : i + length] for i in range(0, len(ids) - length + 1, length)]
        out += chunks[:per_text] if per_text else chunks
    return out


def read_csv_texts(name: str, column: str = "text") -> list[str]:
    """The `column` of a CSV file of the extraction data (e.g. lm_extraction_32_0.csv, valid_wikitext.csv),
    empty rows dropped; a missing file or column is one clear error."""
    path = extraction_dir() / name
    if not path.exists():
        raise RwkuError(f"{path} not found: the extraction data (seed-0 paper) lives in ../shared/extraction; "
                        "set RWKU_NB_EXTRACTION to the folder that holds it.")
    df = pd.read_csv(path)
    if column not in df.columns:
        raise RwkuError(f"{path}: no column {column!r} (columns: {list(df.columns)}); expected the extraction "
                        "data's layout (doc_id, corpus, text / text).")
    texts = [str(t) for t in df[column].dropna() if str(t).strip()]
    if not texts:
        raise RwkuError(f"{path}: column {column!r} holds no text")
    return texts


# ---------------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Plan:
    """How a selective method trains. `gamma`: ascend only on sequences whose last MA >= gamma, plus the
    batch's most memorized one (None: every sequence, plain GA). `switch`: once the mean MA falls below it,
    snapshot theta_s and turn to gradient *descent* towards theta_t; the model evaluated (and returned) is
    then theta_s + coef (theta_t - theta_s) (None: no switch)."""

    gamma: float | None
    switch: float | None = None
    coef: float | None = None


SELECTIVE = ("ga_seq", "ta", "sga", "tau")


def plan(method: str, params: dict) -> Plan:
    """The plan of a selective method from the profile (paper defaults: SGA gamma 0.7; TAU = SGA until
    MA < 0.5, then c = -1; TA = gamma 0, switch 0.9, c = -3)."""
    if method == "ga_seq":
        return Plan(None)
    if method == "sga":
        return Plan(params["sga_gamma"])
    if method == "tau":
        return Plan(params["sga_gamma"], params["tau_switch"], params["tau_coef"])
    if method == "ta":
        return Plan(params["ta_gamma"], params["ta_switch"], params["ta_coef"])
    raise RwkuError(f"unknown selective method {method!r}; expected one of {', '.join(SELECTIVE)}")


def selected_rows(mem: np.ndarray, gamma: float | None) -> np.ndarray:
    """Boolean mask of the batch rows SGA ascends on: last MA >= gamma, plus the most memorized row."""
    if gamma is None:
        return np.ones(len(mem), dtype=bool)
    keep = mem >= gamma
    keep[int(np.argmax(mem))] = True  # first row of the maximum, as the seed code's strict '>'
    return keep


def task_arithmetic(theta_s: dict, theta_t: dict, coef: float) -> dict:
    """theta_s + coef (theta_t - theta_s), parameter by parameter."""
    return {k: theta_s[k] + coef * (theta_t[k] - theta_s[k]) for k in theta_s}


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _load(model, values: dict) -> None:
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n in values:
                p.copy_(values[n])


def unlearn(model, tokenizer, seqs: list[list[int]], the_plan: Plan, measure, stop: float, lr: float,
            epochs: int, batch_size: int, betas=(0.9, 0.98), seed: int = 0, desc: str = "selective",
            after_epoch=None, grad_accum: int = 1) -> list[dict]:
    """Unlearn `seqs` in place following `the_plan`, evaluating after every epoch (and before the first).

    `measure(model) -> dict` must return at least {"ma": per-sequence MA array}; it runs on the model as it
    would be returned (for TA/TAU after the switch: the arithmetic-edited weights). Stops once the measured
    mean MA is below `stop` (after at least one epoch), or after `epochs`. Returns one record per
    evaluation: {"epoch", "phase" ("ascent" / "descent"), **measure(...)}. The model ends as last measured.
    `after_epoch(epoch)`, if given, runs after each epoch that training goes on from, on the model as it would
    be returned at that epoch (the RWKU sweep's trade-off curve points).
    """
    examples = [Example(list(s), extra={"seq": i}) for i, s in enumerate(seqs)]
    state = {"phase": "ascent", "theta_s": None}
    history: list[dict] = []

    def evaluate(epoch: int) -> bool:
        edited = state["theta_s"] is not None
        if edited:  # measure theta_s + c (theta_t - theta_s); training goes on from theta_t
            theta_t = _trainable(model)
            _load(model, task_arithmetic(state["theta_s"], theta_t, the_plan.coef))
        record = {"epoch": epoch, "phase": state["phase"], **measure(model)}
        history.append(record)
        state["mem"] = np.asarray(record["ma"], dtype=float)
        mean = float(state["mem"].mean())
        state["stopped"] = epoch >= 1 and mean < stop
        if after_epoch is not None and not state["stopped"] and 1 <= epoch < epochs:
            after_epoch(epoch)
        if edited and not state["stopped"] and epoch < epochs:
            _load(model, theta_t)
        if not state["stopped"] and the_plan.switch is not None and state["phase"] == "ascent" \
                and mean < the_plan.switch:
            state["phase"], state["theta_s"] = "descent", _trainable(model)
        return state["stopped"]

    def loss_fn(m, batch):
        seq = batch.pop("seq").cpu().numpy()
        if state["phase"] == "ascent":
            keep = torch.as_tensor(selected_rows(state["mem"][seq], the_plan.gamma), device=batch["input_ids"].device)
            batch = {k: v[keep] for k, v in batch.items()}
        loss = sequence_nll(m, batch).sum() / token_count(batch).sum()
        return -loss if state["phase"] == "ascent" else loss

    model.eval()
    if not evaluate(0):
        # the shared loop with the seed paper's fixed Adam learning rate (no warmup); `grad_accum` as every method
        # has it (the OOM retry halves batches and doubles it)
        train(model, tokenizer, examples, loss_fn, lr, epochs, batch_size, grad_accum, warmup_steps=0, seed=seed,
              desc=desc, on_epoch_end=evaluate, betas=betas, schedule="constant")
        if not state["stopped"]:  # train() runs the hook after every epoch but the last
            evaluate(epochs)
    return history
