"""Forget corpora: written zero-shot by the model itself about the target (RWKU's setting), or the
provided files. Generated corpora are cached per (model, target, settings), so they are built once.

Prompt (official generation/pair_generation.py, jinzhuoran/RWKU): system message
"{intro} You know {subject} very well.", user message "Please write a short biography of {subject}.",
sampled with temperature 1.0 and top-p 0.9. The official script also seeds each answer with an opening
phrase from a file it does not publish; rwku_nb varies the samples by seed instead.
"""
from __future__ import annotations

import hashlib
import json

import torch
from tqdm.auto import tqdm

from .errors import RwkuError
from .paths import atomic_write_json, cache_dir

SYSTEM_TEMPLATE = "{intro} You know {subject} very well."
USER_TEMPLATE = "Please write a short biography of {subject}."


def corpus_prompt(tokenizer, target) -> str:
    """The chat prompt that asks the model to write about the target."""
    messages = [
        {"role": "system", "content": SYSTEM_TEMPLATE.format(intro=target.intro, subject=target.name)},
        {"role": "user", "content": USER_TEMPLATE.format(subject=target.name)},
    ]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def _cache_path(model_id: str, target, n: int, max_new_tokens: int, seed: int):
    key = json.dumps([model_id, target.index, target.name, target.intro, n, max_new_tokens, seed,
                      SYSTEM_TEMPLATE, USER_TEMPLATE])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "corpora" / f"{target.index}_{digest}.json"


@torch.no_grad()
def generate_corpus(model, tokenizer, target, model_id: str, n: int = 8, max_new_tokens: int = 128,
                    batch_size: int = 8, seed: int = 0) -> list[str]:
    """`n` texts the model writes about the target (cached on disk; call it on the original model)."""
    path = _cache_path(model_id, target, n, max_new_tokens, seed)
    if path.exists():
        return json.loads(path.read_text())["texts"]
    prompt = corpus_prompt(tokenizer, target)
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    texts: list[str] = []
    for start in tqdm(range(0, n, batch_size), desc=f"corpus {target.name}", leave=False):
        k = min(batch_size, n - start)
        torch.manual_seed(seed * 100_003 + start)  # batch-wise seeds: resumable and reproducible
        out = model.generate(
            input_ids=enc["input_ids"].repeat(k, 1), attention_mask=enc["attention_mask"].repeat(k, 1),
            do_sample=True, temperature=1.0, top_p=0.9, max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
        )
        texts += [t.strip() for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                                             skip_special_tokens=True)]
    texts = [t for t in texts if t]
    if not texts:
        raise RwkuError(f"The model wrote only empty texts about {target.name}; raise corpus_max_new_tokens.")
    atomic_write_json(path, {"model": model_id, "target": target.name, "prompt": prompt, "texts": texts})
    return texts


def provided_corpus(target, kind: str = "positive", n: int | None = None) -> list[str]:
    """Texts of a provided corpus file (`positive.json`: LLaMA-3-8B-Instruct's forget texts)."""
    rows = target.corpus(kind)
    if not rows:
        raise RwkuError(
            f"Target {target.index} ({target.name}) has no provided '{kind}' corpus file. "
            "Use corpus: generated, or a target that ships it (the sample data has it for target 1 only)."
        )
    texts = [r["text"] for r in rows]
    return texts[:n] if n else texts
