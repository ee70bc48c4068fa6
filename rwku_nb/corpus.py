"""Zero-shot training corpora, written by the model itself about the target (RWKU's setting), or the
provided files. Generated corpora are cached per (model, target, kind, settings), so they are built once.

Prompts (official generation/pair_generation.py and question_generation.py, jinzhuoran/RWKU):
- `positive` (the forget texts): system "{intro} You know {subject} very well.", user "Please write a
  short biography of {subject}."
- `negative` (counterfactual texts, DPO's preferred side): system "{intro} You don't know {subject} at
  all.", user "Please make up a short biography of {subject}."; words such as "totally fabricated" are
  then removed, as the official script does.
- `reject` (RT's refusal pairs): user "{intro}\\nPlease generate a question about {subject} based on what
  you know about {subject}\\n", then "Question:"; the first line of at most 50 sampled tokens is the
  question, answered by a refusal.
All are sampled with temperature 1.0 and top-p 0.9. The official script also opens each biography with
a phrase from a file it does not publish, and draws refusals from an unpublished list; rwku_nb varies
samples by seed instead and uses its own refusal sentences (REFUSALS).
"""
from __future__ import annotations

import hashlib
import json

import torch

from . import distributed
from .errors import RwkuError
from .paths import atomic_write_json, cache_dir
from .progress import tqdm

KINDS = ("positive", "negative", "reject")
# kind -> (system message or None, user message, text appended after the generation prompt)
TEMPLATES = {
    "positive": ("{intro} You know {subject} very well.", "Please write a short biography of {subject}.", ""),
    "negative": ("{intro} You don't know {subject} at all.", "Please make up a short biography of {subject}.", ""),
    "reject": (None, "{intro}\nPlease generate a question about {subject} based on what you know about {subject}\n",
               "Question:"),
}
QUESTION_MAX_NEW_TOKENS = 50  # official question_generation.py
# Removed from counterfactual texts (official pair_generation.py, replace_chosen).
FABRICATION_WORDS = tuple(f"{a} {b} " for a in ("totally", "completely") for b in ("fabricated", "made-up", "fictional"))
# rwku_nb's own refusal answers for RT (the official list, idontknow.jsonl, is not published).
REFUSALS = (
    "I'm sorry, but I don't know anything about that.",
    "I don't have any information on that.",
    "I'm not able to answer that question.",
    "I have no knowledge of that subject.",
    "That is not something I know about.",
    "I can't help with that; I don't know the answer.",
    "I'm afraid I have no idea.",
    "I don't know.",
)


def corpus_prompt(tokenizer, target, kind: str = "positive") -> str:
    """The chat prompt that asks the model for one text of `kind` about the target."""
    system, user, cue = TEMPLATES[_kind(kind)]
    fill = {"intro": target.intro, "subject": target.name}
    messages = ([{"role": "system", "content": system.format(**fill)}] if system else [])
    messages.append({"role": "user", "content": user.format(**fill)})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + cue


def _cache_path(model_id: str, target, kind: str, n: int, max_new_tokens: int, seed: int):
    key = json.dumps([model_id, target.index, target.name, target.intro, kind, n, max_new_tokens, seed,
                      TEMPLATES[kind], FABRICATION_WORDS, REFUSALS if kind == "reject" else None])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "corpora" / f"{target.index}_{kind}_{digest}.json"


@torch.no_grad()
def generate_corpus(model, tokenizer, target, model_id: str, kind: str = "positive", n: int = 8,
                    max_new_tokens: int = 128, batch_size: int = 8, seed: int = 0) -> list:
    """`n` samples of `kind` the model writes about the target (cached on disk; call it on the model
    before unlearning). Texts for positive/negative, [question, refusal] pairs for reject."""
    kind = _kind(kind)
    if kind == "reject":
        max_new_tokens = QUESTION_MAX_NEW_TOKENS
    path = _cache_path(model_id, target, kind, n, max_new_tokens, seed)
    # Sharded, process 0's cache decides for all: every process then generates, or none does.
    cached = distributed.agree(json.loads(path.read_text())["samples"] if path.exists() else None)
    if cached is not None:
        return cached
    prompt = corpus_prompt(tokenizer, target, kind)
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    was_training = model.training
    model.eval()
    texts: list[str] = []
    try:
        for start in tqdm(range(0, n, batch_size), desc=f"{kind} corpus {target.name}", leave=False):
            k = min(batch_size, n - start)
            torch.manual_seed(seed * 100_003 + start)  # batch-wise seeds: reproducible whatever the batch order
            out = model.generate(
                input_ids=enc["input_ids"].repeat(k, 1), attention_mask=enc["attention_mask"].repeat(k, 1),
                do_sample=True, temperature=1.0, top_p=0.9, max_new_tokens=max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                synced_gpus=distributed.sharded(),  # a sharded model: every process steps until all are done
            )
            texts += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    finally:
        model.train(was_training)
    samples = distributed.agree(_finish(kind, texts))  # sharded: process 0's samples on every process
    if not samples:
        raise RwkuError(f"The model wrote only empty {kind} texts about {target.name}; raise corpus_max_new_tokens.")
    if distributed.writes():
        atomic_write_json(path, {"model": model_id, "target": target.name, "kind": kind, "prompt": prompt,
                                 "samples": samples})
    return samples


def _finish(kind: str, texts: list[str]) -> list:
    """Raw generations -> corpus samples of `kind` (empty ones dropped)."""
    if kind == "reject":
        questions = [t.strip().split("\n")[0].strip() for t in texts]
        return [[q, REFUSALS[i % len(REFUSALS)]] for i, q in enumerate(q for q in questions if q)]
    if kind == "negative":
        for word in FABRICATION_WORDS:
            texts = [t.replace(word, "") for t in texts]
    return [t.strip() for t in texts if t.strip()]


def provided_corpus(target, kind: str = "positive", n: int | None = None) -> list:
    """The provided corpus of `kind` (written by LLaMA-3-8B-Instruct), in `generate_corpus`'s shapes."""
    kind = _kind(kind)
    rows = target.corpus(kind)
    if not rows and target.has(kind):
        raise RwkuError(f"{target.where(kind)}: the provided '{kind}' corpus of target {target.index} "
                        f"({target.name}) holds no rows: nothing to unlearn from. Restore the file from the RWKU "
                        "release, or use corpus: generated.")
    if not rows:
        raise RwkuError(
            f"Target {target.index} ({target.name}) has no provided '{kind}' corpus file. "
            "Use corpus: generated, or a target that ships it (the sample data has it for target 1 only)."
        )
    samples = [[r["instruction"], r["output"]] for r in rows] if kind == "reject" else [r["text"] for r in rows]
    return samples[:n] if n else samples


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise RwkuError(f"Unknown corpus kind {kind!r}; expected one of {', '.join(KINDS)}.")
    return kind
