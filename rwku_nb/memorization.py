"""How much a model knows a text: exact memorization (EM) and NLL, per text (paper Fig. 1), and a ranking
of targets by how well the model completes their forget probes.

EM(x) = the share of next tokens of x the model predicts correctly by argmax given the true prefix
(RWKU Sec. 3, Fig. 1; it is the "memorization accuracy" MA of Tirumala et al. / Jang et al. too);
NLL(x) = the mean next-token negative log-likelihood over the same positions. The first token of a
text, which has no prefix, is not scored.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from . import scoring
from .corpus import provided_corpus
from .errors import RwkuError
from .models import padding_id
from .paths import extraction_dir
from .progress import tqdm
from .prompts import probe_prompt
from .training import Example, pair_examples

# Text kinds of Fig. 1, from most to least connected to the target.
KINDS = ("passage", "forget member", "retain member", "counterfactual", "generic")


@torch.no_grad()
def token_stats(model, tokenizer, examples: list[Example], batch_size: int = 8, desc: str = "memorization"):
    """Per example: (mean NLL, EM) over its scored next tokens (labels_mask, or every token after the
    first). Returns two float arrays."""
    model.eval()
    nll, em = np.zeros(len(examples)), np.zeros(len(examples))
    if not examples:
        return nll, em
    sequences = [e.input_ids for e in examples]
    for batch in scoring.forward_batches(model, sequences, padding_id(tokenizer), batch_size, key=len, desc=desc):
        logits = batch.logits.float()
        labels = scoring.labels(batch, [e.labels_mask for e in examples])[:, 1:]
        logprobs = torch.log_softmax(logits[:, :-1], dim=-1)
        scored = labels != -100
        safe = labels.clamp(min=0)
        token_nll = -logprobs.gather(-1, safe[..., None])[..., 0]
        correct = logits[:, :-1].argmax(-1) == safe
        n = scored.sum(-1).clamp(min=1)
        for r, i in enumerate(batch.rows):
            nll[i] = float((token_nll[r] * scored[r]).sum() / n[r])
            em[i] = float((correct[r] & scored[r]).sum() / n[r])
    return nll, em


def text_examples(tokenizer, texts: list[str], max_length: int) -> list[Example]:
    """Texts as examples scored on every token (the first `max_length` tokens of each)."""
    out = []
    for text in texts:
        ids = tokenizer(text)["input_ids"][:max_length]
        if len(ids) < 2:
            raise RwkuError(f"text {text[:40]!r} has fewer than 2 tokens: nothing to score")
        out.append(Example(ids, None))
    return out


def wikitext(n: int | None = None) -> list[str]:
    """The first `n` non-empty WikiText validation texts of the extraction data."""
    path = extraction_dir() / "valid_wikitext.csv"
    if not path.exists():
        raise RwkuError(f"{path} not found: generic texts come from the extraction data's valid_wikitext.csv "
                        "(set RWKU_NB_EXTRACTION to the folder that holds it).")
    texts = pd.read_csv(path)["text"].dropna().astype(str).str.strip()
    texts = [t for t in texts if t]
    return texts[:n] if n else texts


def kind_texts(target, kind: str, n: int) -> list[str]:
    """Up to `n` texts of one kind for a target ([] where the sample lacks the file)."""
    stems = {"passage": "passage", "forget member": "forget_mia", "retain member": "retain_mia",
             "counterfactual": "negative"}
    if kind == "generic":
        return wikitext(n)
    if kind not in stems:
        raise RwkuError(f"unknown text kind {kind!r}; expected one of {', '.join(KINDS)}")
    if not target.has(stems[kind]):
        return []
    texts = provided_corpus(target, "negative") if kind == "counterfactual" else [r["text"] for r in target.rows(stems[kind])]
    return texts[:n]


def memorization_rows(model, tokenizer, targets, n: int, max_length: int, batch_size: int = 8,
                      model_name: str = "") -> pd.DataFrame:
    """One row per (target, kind, text): EM x100 and NLL (nats per token) of the model. Generic texts are
    the same for every target: scored once, listed under each."""
    def score(texts, kind):
        return token_stats(model, tokenizer, text_examples(tokenizer, texts, max_length), batch_size, kind)

    generic = score(kind_texts(None, "generic", n), "generic")
    rows = []
    for target in targets:
        for kind in KINDS:
            if kind == "generic":
                nll, em = generic
            else:
                texts = kind_texts(target, kind, n)
                if not texts:
                    continue
                nll, em = score(texts, kind)
            rows += [{"model": model_name, "target_index": target.index, "target": target.name, "kind": kind,
                      "text": i, "em": 100 * e, "nll": l} for i, (l, e) in enumerate(zip(nll, em))]
    return pd.DataFrame(rows)


def memorization_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean EM and NLL per model and text kind (kinds in KINDS order), with the number of texts."""
    out = rows.groupby(["model", "kind"], sort=False).agg(EM=("em", "mean"), NLL=("nll", "mean"), texts=("em", "size"))
    order = {k: i for i, k in enumerate(KINDS)}
    return out.sort_index(key=lambda idx: idx.map(order) if idx.name == "kind" else idx, kind="stable")


def knowledge_ranking(model, tokenizer, targets, max_length: int = 512, batch_size: int = 16) -> pd.DataFrame:
    """Targets ranked by how well the model completes their forget FB and QA probes: per target, the
    answer tokens' mean NLL and EM given the official probe prompt (teacher-forced, no generation).
    Lower NLL first. `complete` marks targets with every file a full run needs (probes of all levels,
    passages, forget and retain MIA sets)."""
    rows = []
    for target in tqdm(targets, desc="ranking", leave=False):
        pairs = [(probe_prompt(tokenizer, p, level), " " + p["answer"])
                 for level in (1, 2) if target.has(f"forget_level{level}") for p in target.forget(level)]
        if not pairs:
            continue
        nll, em = token_stats(model, tokenizer, pair_examples(tokenizer, pairs, max_length), batch_size, target.name)
        complete = all(target.has(k) for k in ("forget_level1", "forget_level2", "forget_level3", "neighbor_level1",
                                                 "neighbor_level2", "passage", "forget_mia", "retain_mia"))
        rows.append({"target_index": target.index, "target": target.name, "probes": len(pairs),
                     "answer NLL": float(nll.mean()), "answer EM": 100 * float(em.mean()), "complete": complete})
    df = pd.DataFrame(rows).sort_values(["answer NLL", "target_index"]).reset_index(drop=True)
    df.index = pd.RangeIndex(1, len(df) + 1, name="rank")
    return df


def top_targets(ranking: pd.DataFrame, k: int, complete: bool = True) -> list[int]:
    """The k best-known targets of a ranking (only complete ones, by default)."""
    pool = ranking[ranking["complete"]] if complete else ranking
    return [int(i) for i in pool["target_index"].head(k)]
