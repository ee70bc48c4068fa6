"""`make bench`: rwku_nb's evaluation against plain loops that mirror the official implementation,
timed in one run on the same model and target, with the ratio and whether the scores are identical.

Baselines (written from the official semantics, jinzhuoran/RWKU eval/inference.py and eval_mia.py):
- probes: HF `generate`, batch 16 in data order, greedy, 30 new tokens, a stopping criterion that fires
  only when every row of the batch hit a stop id, then each row cut at its first stop id;
- MIA: one text per forward pass;
- MMLU 5-shot: one question per forward pass (official batch size 1), argmax over " A".." D", on every
  question of the first tasks of the set (as a full run scores them).
Each part also prints a *floor* line: the least time any exact implementation on this machine needs, from
throughput measured in the same run: the distinct prompt tokens (those of a trie of all prompts: a shared
prefix is counted once) over the measured forward throughput at the batch size rwku_nb uses, plus, for
generation, the decode steps (every row's new tokens / batch size) times the measured time of one decode step.
BBH (3-shot chain of thought) and fluency (AlpacaEval) generation is timed as rwku_nb runs it, one set at a time,
against both sets in one batch (issue 15: batch generation tasks together where that is faster), with its floor.
Usage: python -m rwku_nb.bench [--model smollm2-135m-instruct] [--target 1] [--mmlu 40] [--generation 8]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from . import models
from .data import RWKU
from .evaluate import evaluate_probes, mia_member_scores, probe_rows
from .generation import greedy_generate, official_stop_ids
from .metrics import mia_scores, official_prediction, rouge_l_recall, token_statistics
from .prompts import probe_prompt
from .scoring import common_prefix_length, expand_cache, prefix_cache
from .utility import MMLU_LETTERS, bbh_prompt, evaluate_bbh, evaluate_fluency, evaluate_mmlu, fluency_prompt, mmlu_prompt, subset


class _AllRowsStopped(StoppingCriteria):
    """Batch-level stop: True only once every row's last token is a stop id (official behaviour)."""

    def __init__(self, stop_ids):
        self.stop_ids = torch.tensor(sorted(stop_ids))

    def __call__(self, input_ids, scores, **kwargs):
        return bool(torch.isin(input_ids[:, -1], self.stop_ids.to(input_ids.device)).all())


@torch.no_grad()
def official_probe_loop(model, tokenizer, target, batch_size: int = 16) -> list[str]:
    """Predictions of the official-style loop, in probe order."""
    rows = probe_rows(target)
    prompts = [probe_prompt(tokenizer, r["_probe"], r["level"]) for r in rows]
    stop_ids = official_stop_ids(tokenizer)
    device = next(model.parameters()).device
    texts = []
    for i in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[i : i + batch_size], padding="longest", return_tensors="pt").to(device)
        out = model.generate(**batch, max_new_tokens=30, do_sample=False, eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=StoppingCriteriaList([_AllRowsStopped(stop_ids)]))
        width = batch["input_ids"].shape[1]
        for r in range(out.shape[0]):
            new = out[r, width:].tolist()
            cut = next((j for j, t in enumerate(new) if t in stop_ids), len(new))
            prompt_ids = [t for t, m in zip(batch["input_ids"][r].tolist(), batch["attention_mask"][r].tolist()) if m]
            full = tokenizer.decode(prompt_ids + new[:cut], skip_special_tokens=True)
            texts.append(full[len(tokenizer.decode(prompt_ids, skip_special_tokens=True)) :])
    return texts


@torch.no_grad()
def official_mia_loop(model, tokenizer, texts: list[str]) -> list[dict]:
    """Per-text MIA scores, one forward pass per text (official eval_mia.py)."""
    device = next(model.parameters()).device
    out = []
    for text in texts:
        ids = torch.tensor([tokenizer(text)["input_ids"]], device=device)
        logits = model(input_ids=ids).logits
        (lp, mu, var), = token_statistics(logits, ids, torch.ones_like(ids))
        out.append(mia_scores(lp, mu, var, text))
    return out


@torch.no_grad()
def official_mmlu_loop(model, tokenizer, rows: list[dict]) -> list[int]:
    """MMLU predictions one question at a time (official eval_mmlu.py with batch size 1)."""
    device = next(model.parameters()).device
    ids = [tokenizer.encode(" " + c, add_special_tokens=False)[-1] for c in MMLU_LETTERS]
    out = []
    for row in rows:
        batch = tokenizer(mmlu_prompt(tokenizer, row), return_tensors="pt").to(device)
        out.append(int(torch.softmax(model(**batch).logits[0, -1], -1)[ids].argmax()))
    return out


def whole_tasks(rows: list[dict], n: int) -> list[dict]:
    """Every row of the first tasks (in file order) until at least `n` rows: a full MMLU run scores every
    row of every task, and rows of one task share their 5-shot examples, so this keeps the set's structure
    (the file itself is shuffled, and its first rows are mostly of different tasks)."""
    tasks = []
    for row in rows:
        if row["task"] not in tasks and sum(r["task"] in tasks for r in rows) < n:
            tasks.append(row["task"])
    return [r for r in rows if r["task"] in tasks]


def trie_tokens(sequences: list[list[int]]) -> int:
    """Tokens a forward pass must compute for `sequences` when every shared prefix is computed once: the
    number of nodes of their prefix trie (sorted, each sequence adds what it does not share with the one
    before it)."""
    out, prev = 0, []
    for seq in sorted(map(list, sequences)):
        common = next((i for i, (a, b) in enumerate(zip(seq, prev)) if a != b), min(len(seq), len(prev)))
        out += len(seq) - common
        prev = seq
    return out


@torch.no_grad()
def throughput(model, batch: int, length: int, reps: int = 3, every_position: bool = False,
               context: int = 0) -> float:
    """Measured throughput, tokens/s, of one forward pass over a [batch, length] block (best of `reps`): the
    next-token logits of the last position only, or (`every_position`) the MIA's work at every position:
    all logits and the per-token statistics of `metrics.token_statistics`. With `context`, the block follows a
    cached prefix of that many tokens, shared by its rows, which each of its tokens attends to (its cache
    computed once, outside the timing)."""
    ids = torch.randint(100, 1000, (batch, length), generator=torch.Generator().manual_seed(0))
    prefix = prefix_cache(model, context_ids(context), ids.device) if context else None

    def work():
        if not every_position:
            return after_prefix(model, ids, prefix)
        return token_statistics(model(input_ids=ids).logits, ids, torch.ones_like(ids))

    work()  # warm-up
    return batch * length / min(_timed(work)[1] for _ in range(reps))


def context_ids(n: int) -> list[int]:
    return list(range(100, 100 + n))


def after_prefix(model, ids: torch.Tensor, prefix) -> torch.Tensor:
    """Next-token logits after each row of `ids`, the rows following the cached prefix `prefix` (or none)."""
    cache = expand_cache(prefix, ids.shape[0]) if prefix else None
    return model(input_ids=ids, past_key_values=cache, logits_to_keep=1).logits


@torch.no_grad()
def step_time(model, batch: int, context: int, steps: int = 8) -> float:
    """Measured seconds of one greedy decode step of `batch` rows over a `context`-token key/value cache."""
    ids = torch.randint(100, 1000, (batch, context), generator=torch.Generator().manual_seed(0))
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
    cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    start = time.perf_counter()
    for _ in range(steps):
        out = model(input_ids=token, past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache, token = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return (time.perf_counter() - start) / steps


def floor_line(floor: float, t_ref: float, t: float, what: str) -> str:
    return (f"  floor ({what}): {floor:7.2f} s  rwku_nb at {t / floor:4.2f}x the floor; the official-style loop "
            f"at {t_ref / floor:4.2f}x, so no exact implementation beats it by more than {t_ref / floor:4.2f}x")


def _timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=models.SMOLLM2)
    parser.add_argument("--target", default="1")
    parser.add_argument("--data", default=None, help="RWKU directory or 'hub' (default: $RWKU_DATA)")
    parser.add_argument("--mmlu", type=int, default=40, help="MMLU questions to time (0: skip)")
    parser.add_argument("--generation", type=int, default=8, help="BBH and fluency items each to time (0: skip)")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    model, tokenizer = models.load_model(args.model)
    target = RWKU(args.data).target(args.target)
    print(f"model: {models.describe(model)}  target: {target.index} {target.name}  threads: {torch.get_num_threads()}")

    # Warm-up (first calls allocate); not timed.
    official_probe_loop(model, tokenizer, target, 16)[:1]
    times = {}
    ref_texts, t_ref = _timed(lambda: official_probe_loop(model, tokenizer, target, 16))
    ref_preds = [official_prediction(t) for t in ref_texts]
    answers = [r["answer"] for r in probe_rows(target)]
    ref_scores = [rouge_l_recall(p, a) for p, a in zip(ref_preds, answers)]
    print(f"\nforget+neighbor probes: {len(ref_preds)}")
    print(f"  official-style loop (HF generate, batch 16): {t_ref:7.2f} s")
    for stop in ("official", "newline"):
        recs, t = _timed(lambda: evaluate_probes(model, tokenizer, target, batch_size=64, stop=stop))
        same_pred = sum(r["prediction"] == p for r, p in zip(recs, ref_preds))
        same_score = sum(rouge_l_recall(r["prediction"], r["answer"]) == s for r, s in zip(recs, ref_scores))
        mean_ours, mean_ref = np.mean([r["rwku"] for r in recs]), 100 * np.mean(ref_scores)
        print(f"  rwku_nb stop={stop:8s} (batch 64, per-row stop): {t:7.2f} s  speed-up {t_ref / t:5.2f}x  "
              f"identical predictions {same_pred}/{len(recs)}  identical scores {same_score}/{len(recs)}  "
              f"mean recall {mean_ours:.2f} vs {mean_ref:.2f}")
        times[stop] = t
    # Floor: the prompts' distinct tokens at batch 64, then every row's new tokens (its prediction and the
    # stop token, at most 30) as decode steps of 64 rows.
    encoded = [tokenizer(probe_prompt(tokenizer, r["_probe"], r["level"]))["input_ids"] for r in probe_rows(target)]
    length = int(np.mean([len(e) for e in encoded]))
    new = sum(min(30, len(tokenizer(p, add_special_tokens=False)["input_ids"]) + 1) for p in ref_preds)
    prefill, step = throughput(model, 64, length), step_time(model, 64, length + 15)
    floor = trie_tokens(encoded) / prefill + new / 64 * step
    print(f"  prompts: {sum(map(len, encoded))} tokens, {trie_tokens(encoded)} distinct; {new} new tokens; "
          f"prefill {prefill:.0f} tokens/s at batch 64, decode step {1000 * step:.0f} ms at batch 64")
    print(floor_line(floor, t_ref, times["official"], "stop=official"))

    texts = [r["text"] for r in target.mia_forget + target.mia_retain]
    ref, t_ref = _timed(lambda: official_mia_loop(model, tokenizer, texts))
    ours, t = _timed(lambda: mia_member_scores(model, tokenizer, texts, batch_size=8))
    diff = max(abs(a[k] - b[k]) for a, b in zip(ours, ref) for k in a if not np.isnan(a[k]))
    print(f"\nMIA texts: {len(texts)}")
    print(f"  official-style loop (one text per forward): {t_ref:7.2f} s")
    print(f"  rwku_nb (length-sorted batches of 8):       {t:7.2f} s  speed-up {t_ref / t:5.2f}x  "
          f"max |score difference| {diff:.2e}")
    encoded = [tokenizer(x)["input_ids"] for x in texts]
    rate = throughput(model, 8, int(np.mean([len(e) for e in encoded])), every_position=True)
    print(f"  texts: {sum(map(len, encoded))} tokens, {trie_tokens(encoded)} distinct; forward with every "
          f"position's logits and statistics {rate:.0f} tokens/s at batch 8")
    print(floor_line(trie_tokens(encoded) / rate, t_ref, t, "the distinct tokens at that rate"))

    if args.mmlu:
        rows = whole_tasks(target.utility("mmlu"), args.mmlu)
        ref, t_ref = _timed(lambda: official_mmlu_loop(model, tokenizer, rows))
        (_, recs), t = _timed(lambda: evaluate_mmlu(model, tokenizer, rows, batch_size=8))
        same = sum(r["prediction"] == p for r, p in zip(recs, ref))
        print(f"\nMMLU 5-shot questions: {len(rows)} (every question of {len({r['task'] for r in rows})} tasks)")
        print(f"  official-style loop (one question per forward): {t_ref:7.2f} s")
        print(f"  rwku_nb (batches of 8, one 5-shot prefix per task): {t:7.2f} s  speed-up {t_ref / t:5.2f}x  "
              f"identical predictions {same}/{len(rows)}")
        # Floor: each task's 5-shot prefix once (batch 1), then the distinct tokens after it at batch 8, each of
        # them attending to the prefix (a forward over a cached prefix of the tasks' mean prefix length).
        encoded = [tokenizer(mmlu_prompt(tokenizer, r))["input_ids"] for r in rows]
        distinct = trie_tokens(encoded)
        prefixes = [common_prefix_length([e for e, r in zip(encoded, rows) if r["task"] == task])
                    for task in dict.fromkeys(r["task"] for r in rows)]
        n_prefix, n_rest = sum(prefixes), distinct - sum(prefixes)
        context = round(n_prefix / len(prefixes))
        rate_prefix = throughput(model, 1, context)
        rate = throughput(model, 8, max(1, round(n_rest / len(rows))), context=context)
        print(f"  prompts: {sum(map(len, encoded))} tokens, {distinct} distinct: {n_prefix} in the {len(prefixes)} "
              f"tasks' 5-shot prefixes ({rate_prefix:.0f} tokens/s at batch 1), {n_rest} after them ({rate:.0f} "
              f"tokens/s at batch 8 over a {context}-token prefix)")
        print(floor_line(n_prefix / rate_prefix + n_rest / rate, t_ref, t, "the distinct tokens at those rates"))

    if args.generation:
        generation_part(model, tokenizer, target, args.generation)


def generation_part(model, tokenizer, target, n: int) -> None:
    """BBH and fluency as rwku_nb runs them (each set in batches of 8) against one batch of both sets."""
    sets = {"bbh": subset(target.utility("bbh"), n), "fluency": subset(target.utility("fluency"), n)}
    (_, bbh), t_bbh = _timed(lambda: evaluate_bbh(model, tokenizer, sets["bbh"], batch_size=8))
    (_, flu), t_flu = _timed(lambda: evaluate_fluency(model, tokenizer, sets["fluency"], batch_size=8))
    prompts = [bbh_prompt(tokenizer, r) for r in sets["bbh"]] + [fluency_prompt(tokenizer, r) for r in sets["fluency"]]
    together, t_one = _timed(lambda: greedy_generate(model, tokenizer, prompts, max_new_tokens=256,
                                                      batch_size=2 * n, stop="eos"))
    same = sum(a == b["output"] for a, b in zip(together, bbh + flu))
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    new = sum(min(256, len(tokenizer(r["output"], add_special_tokens=False)["input_ids"]) + 1) for r in bbh + flu)
    length = int(np.mean([len(e) for e in encoded]))
    rate, step = throughput(model, 8, length), step_time(model, 8, length)
    floor = trie_tokens(encoded) / rate + new / 8 * step
    print(f"\nBBH and fluency generation: {n} items each (256 new tokens at most, stop at EOS)")
    print(f"  rwku_nb, one set at a time (batches of 8): {t_bbh + t_flu:7.2f} s (BBH {t_bbh:.2f}, fluency {t_flu:.2f})")
    print(f"  both sets in one batch of {2 * n}:          {t_one:7.2f} s  ratio {t_one / (t_bbh + t_flu):4.2f}  "
          f"identical outputs {same}/{len(prompts)}")
    print(f"  prompts: {sum(map(len, encoded))} tokens, {trie_tokens(encoded)} distinct; ~{new} new tokens; forward "
          f"{rate:.0f} tokens/s, decode step {1000 * step:.0f} ms at batch 8")
    print(f"  floor (distinct tokens at that rate, new tokens as steps of 8 rows): {floor:7.2f} s  rwku_nb at "
          f"{(t_bbh + t_flu) / floor:4.2f}x the floor")


if __name__ == "__main__":
    main()
