"""Zero-shot training corpora, written by the model itself about the target (RWKU's setting), or the
provided files. Generated corpora are cached per (model, target, kind, settings, input files), so they are
built once.

The official procedure (jinzhuoran/RWKU, generation/pair_generation.py and generation/question_generation.py;
../shared/PROTOCOL.md, "Exact official procedure"), followed exactly. It reads two files the repository
publishes in generation/: `all_truncated_outputs.json` (582 short response openings, the first "") and
`idontknow.jsonl` (refusal sentences, one a line). rwku_nb finds them in `<RWKU data>/generation/` (the folder
beside `Target/`) or in the folder the profile key `generation_dir` names (needed with hub data).
- `positive` (the forget texts): system "{intro} You know {subject} very well.", user "Please write a
  short biography of {subject}."; text i is opening i appended after the generation prompt, then the
  sampled continuation (text = opening + continuation).
- `negative` (counterfactual texts, DPO's preferred side): system "{intro} You don't know {subject} at
  all.", user "Please make up a short biography of {subject}.", opening i likewise; words such as
  "totally fabricated" are then removed (official `replace_chosen`).
- `pair`: [negative i, positive i] for each opening i (official pair.json's `response`: chosen = the
  fabricated text, rejected = the factual one, sharing their opening).
Both biographies are sampled with temperature 1.0 and top-p 0.9; `corpus_size` N uses the first N openings.
- `reject` (RT's refusal pairs): user "{intro}\\nPlease generate a question about {subject} based on what
  you know about {subject}\\n", then "Question:"; at most 50 tokens sampled with the model's own generation
  defaults (the official script passes no temperature or top-p), the first line is the question; question i
  (in generation order) is answered with refusal i mod the number of refusals. `reject_size` questions.
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

import torch

from . import distributed
from .errors import RwkuError
from .paths import REPO_ROOT, atomic_write_json, cache_dir
from .progress import tqdm

KINDS = ("positive", "negative", "pair", "reject")
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
# The official generation inputs (jinzhuoran/RWKU, folder generation/).
OPENINGS_FILE = "all_truncated_outputs.json"
REFUSALS_FILE = "idontknow.jsonl"
_SOURCE = (f"Both files come from the RWKU GitHub repository (jinzhuoran/RWKU, folder generation/: {OPENINGS_FILE} "
           f"and {REFUSALS_FILE}); put them in one folder and set the profile key generation_dir to it.")


def corpus_prompt(tokenizer, target, kind: str = "positive") -> str:
    """The chat prompt that asks the model for one text of `kind` about the target (without the opening)."""
    if _kind(kind) not in TEMPLATES:
        raise RwkuError(f"Corpus kind {kind!r} has no prompt of its own; expected one of {', '.join(TEMPLATES)}.")
    system, user, cue = TEMPLATES[kind]
    fill = {"intro": target.intro, "subject": target.name}
    messages = ([{"role": "system", "content": system.format(**fill)}] if system else [])
    messages.append({"role": "user", "content": user.format(**fill)})
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) + cue


# --- the official generation inputs ----------------------------------------------------------------------------


def generation_dir(source, override: str | Path | None = None) -> Path:
    """The folder holding the two generation files: `override` (the profile key generation_dir; a relative
    path is tried against the working directory, then the repository root), else `<RWKU data>/generation`.
    `source`: an RWKU object or one of its targets."""
    if override:
        path = Path(override).expanduser()
        if path.is_absolute():
            return path
        return next((c for c in (Path.cwd() / path, REPO_ROOT / path) if c.is_dir()), Path.cwd() / path)
    data = source._source() if hasattr(source, "_source") else source
    root = getattr(data, "root", None)
    if root is None:
        raise RwkuError(f"The zero-shot corpora need {OPENINGS_FILE} and {REFUSALS_FILE}, but hub data (RWKU('hub')) "
                        f"has no local folder to find them in (<RWKU data>/generation/ is missing). {_SOURCE}")
    root = Path(root)
    return root.parent / "generation" if root.name == "Target" else root / "generation"


@functools.lru_cache(maxsize=16)
def _read(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, ...], str]:
    """(entries, sha256 of the bytes) of one generation file; cached per path and modification."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RwkuError(f"{path}: not UTF-8 text (byte {e.start}). {_SOURCE}") from None
    if Path(path).name == OPENINGS_FILE:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise RwkuError(f"{path}: malformed JSON at line {e.lineno}, column {e.colno}: {e.msg}. {_SOURCE}") from None
        if not isinstance(rows, list):
            raise RwkuError(f"{path}: expected a JSON list of response openings (strings), got "
                            f"{type(rows).__name__}. {_SOURCE}")
        bad = next((i for i, r in enumerate(rows) if not isinstance(r, str)), None)
        if bad is not None:
            raise RwkuError(f"{path}: row {bad} is {rows[bad]!r}; expected a string (a response opening). {_SOURCE}")
        if not rows:
            raise RwkuError(f"{path}: holds no response openings. {_SOURCE}")
        return tuple(rows), digest
    rows = []
    for line_no, line in enumerate(text.splitlines(), 1):  # the official script: one refusal a line, stripped
        line = line.strip()
        if line.startswith('"'):  # a JSON string per line (a .jsonl of strings) reads the same
            try:
                line = json.loads(line)
            except json.JSONDecodeError:
                pass
            if not isinstance(line, str):
                raise RwkuError(f"{path}: line {line_no} is not a refusal sentence. {_SOURCE}")
            line = line.strip()
        if not line:
            raise RwkuError(f"{path}: line {line_no} is blank; expected one refusal sentence a line. {_SOURCE}")
        rows.append(line)
    if not rows:
        raise RwkuError(f"{path}: holds no refusal sentences. {_SOURCE}")
    return tuple(rows), digest


def _load(folder: Path, name: str) -> tuple[tuple[str, ...], str]:
    path = folder / name
    try:
        stat = path.stat()
        if not path.is_file():
            raise FileNotFoundError
    except OSError:
        raise RwkuError(f"{path}: not found. The zero-shot corpora follow the official RWKU generation procedure, "
                        f"which reads {OPENINGS_FILE} and {REFUSALS_FILE}. {_SOURCE}") from None
    return _read(str(path), stat.st_mtime_ns, stat.st_size)


def openings(source, generation_dir_: str | Path | None = None) -> list[str]:
    """The official response openings (all_truncated_outputs.json), in order."""
    return list(_load(generation_dir(source, generation_dir_), OPENINGS_FILE)[0])


def refusals(source, generation_dir_: str | Path | None = None) -> list[str]:
    """The official refusal sentences (idontknow.jsonl), in order."""
    return list(_load(generation_dir(source, generation_dir_), REFUSALS_FILE)[0])


def _files(kinds) -> list[str]:
    kinds = [_kind(k) for k in kinds]
    return ([OPENINGS_FILE] if any(k in ("positive", "negative", "pair") for k in kinds) else []) + \
           ([REFUSALS_FILE] if "reject" in kinds else [])


def generation_digest(kinds, source, generation_dir_: str | Path | None = None) -> str | None:
    """sha256 over the generation files the corpus `kinds` are built from (openings for positive, negative and
    pair; refusals for reject), or None where none is (other kinds are ignored). For results' identities."""
    names = _files([k for k in kinds if k in KINDS])
    if not names:
        return None
    folder = generation_dir(source, generation_dir_)
    return hashlib.sha256(json.dumps([[n, _load(folder, n)[1]] for n in names]).encode()).hexdigest()


# --- generation -------------------------------------------------------------------------------------------------


def _cache_path(model_id: str, target, kind: str, n: int, max_new_tokens: int, batch_size: int, seed: int,
                inputs: str):
    """`inputs`: the sha256 of the generation file the kind reads (openings, or refusals for reject)."""
    key = json.dumps([model_id, target.index, target.name, target.intro, kind, n, max_new_tokens, batch_size, seed,
                      TEMPLATES[kind], FABRICATION_WORDS if kind == "negative" else None, inputs])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / "corpora" / f"{target.index}_{kind}_{digest}.json"


def _nonempty(kind: str, sample) -> bool:
    return bool(sample[0]) if kind == "reject" else bool(sample.strip())


def generate_corpus(model, tokenizer, target, model_id: str, kind: str = "positive", n: int = 8,
                    max_new_tokens: int = 128, batch_size: int = 8, seed: int = 0,
                    generation_dir: str | Path | None = None) -> list:
    """The corpus of `kind` the model writes about the target, from the first `n` openings (positive, negative,
    pair) or `n` questions (reject); cached on disk, call it on the model before unlearning. Texts for
    positive/negative, [fabricated, factual] pairs for pair, [question, refusal] pairs for reject; empty samples
    are dropped (a pair needs both texts)."""
    kind = _kind(kind)
    args = (model, tokenizer, target, model_id, n, max_new_tokens, batch_size, seed, generation_dir)
    if kind == "pair":  # both sides of pair i share opening i (official pair.json)
        fabricated, factual = _aligned(*args, kind="negative"), _aligned(*args, kind="positive")
        samples = [[f, t] for f, t in zip(fabricated, factual) if f.strip() and t.strip()]
    else:
        samples = [s for s in _aligned(*args, kind=kind) if _nonempty(kind, s)]
    if not samples:
        raise RwkuError(f"The model wrote only empty {kind} texts about {target.name}; raise corpus_max_new_tokens.")
    return samples


@torch.no_grad()
def _aligned(model, tokenizer, target, model_id, n, max_new_tokens, batch_size, seed, folder, kind) -> list:
    """All `n` samples of `kind`, sample i from opening i (or question i), empty ones kept: the cached list."""
    folder = generation_dir(target, folder)
    if kind == "reject":
        refusal, inputs = _load(folder, REFUSALS_FILE)
        max_new_tokens = QUESTION_MAX_NEW_TOKENS
    else:
        opening, inputs = _load(folder, OPENINGS_FILE)
        if n > len(opening):
            raise RwkuError(f"corpus_size {n} asks for more {kind} texts than there are response openings: "
                            f"{folder / OPENINGS_FILE} holds {len(opening)}, so at most {len(opening)} (one text "
                            "per opening, as the official pair_generation.py writes).")
    path = _cache_path(model_id, target, kind, n, max_new_tokens, batch_size, seed, inputs)
    # Sharded, process 0's cache decides for all: every process then generates, or none does.
    cached = distributed.agree(json.loads(path.read_text())["samples"] if path.exists() else None)
    if cached is not None:
        return cached
    prompt = corpus_prompt(tokenizer, target, kind)
    prompts = [prompt] * n if kind == "reject" else [prompt + o for o in opening[:n]]
    texts = _sample(model, tokenizer, prompts, kind, max_new_tokens, batch_size, seed, target.name)
    samples = distributed.agree(_finish(kind, texts, refusal if kind == "reject" else opening[:n]))
    if distributed.writes():
        atomic_write_json(path, {"model": model_id, "target": target.name, "kind": kind, "prompt": prompt,
                                 "samples": samples})
    return samples


def _sample(model, tokenizer, prompts: list[str], kind: str, max_new_tokens: int, batch_size: int, seed: int,
            name: str) -> list[str]:
    """One sampled continuation per prompt, in batches of `batch_size` (left-padded: prompts differ in length)."""
    device = next(model.parameters()).device
    # Biographies: official sampling settings. Questions: the model's own generation defaults (the official
    # question_generation.py passes none).
    sampling = {} if kind == "reject" else {"temperature": 1.0, "top_p": 0.9}
    was_training, side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    texts: list[str] = []
    try:
        for start in tqdm(range(0, len(prompts), batch_size), desc=f"{kind} corpus {name}", leave=False):
            batch = prompts[start:start + batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            torch.manual_seed(seed * 100_003 + start)  # batch-wise seeds: reproducible whatever the batch order
            out = model.generate(
                input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], do_sample=True,
                max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling,
                synced_gpus=distributed.sharded(),  # a sharded model: every process steps until all are done
            )
            new = tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
            if kind == "reject":  # official: the new tokens decoded
                texts += new
                continue
            # Official (generation/inference.py): decode prompt and whole sequence, cut the prompt's text off, so
            # that a continuation keeps the space a tokenizer drops at the start of a decoded piece.
            full = tokenizer.batch_decode(out, skip_special_tokens=True)
            head = tokenizer.batch_decode(enc["input_ids"], skip_special_tokens=True)
            texts += [f[len(h):] if f.startswith(h) else x for f, h, x in zip(full, head, new)]
    finally:
        model.train(was_training)
        tokenizer.padding_side = side
    return texts


def _finish(kind: str, texts: list[str], inputs) -> list:
    """Raw generations -> samples aligned with them: for positive/negative `inputs` are the openings (text i =
    opening i + continuation i, kept as written), for reject the refusals ([question i, refusal i mod len]; an
    empty question stays, to be dropped by the caller, so refusals follow generation order)."""
    if kind == "reject":
        questions = [t.split("\n")[0].strip() for t in texts]  # official: first line, stripped
        return [[q, inputs[i % len(inputs)]] for i, q in enumerate(questions)]
    texts = [o + t for o, t in zip(inputs, texts, strict=True)]
    if kind == "negative":
        for word in FABRICATION_WORDS:
            texts = [t.replace(word, "") for t in texts]
    return texts


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
    if kind == "reject":
        samples = [[r["instruction"], r["output"]] for r in rows]
    elif kind == "pair":  # response = [fabricated (chosen), factual (rejected)]
        samples = [list(r["response"]) for r in rows]
    else:
        samples = [r["text"] for r in rows]
    return samples[:n] if n else samples


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise RwkuError(f"Unknown corpus kind {kind!r}; expected one of {', '.join(KINDS)}.")
    return kind
