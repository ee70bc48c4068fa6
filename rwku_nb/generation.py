"""Batched greedy generation where every sequence stops on its own.

Three stopping modes:
- "newline" (rwku_nb default): a sequence stops at EOS or at the first newline that follows some
  answer text; the prediction is the first non-empty line. This is what the RWKU protocol means by
  "stop at newline / EOS".
- "official": the semantics of the official code (jinzhuoran/RWKU, eval/inference.py
  `generate_completions` + `KeyWordsCriteria`): stop ids are eos, `<|eot_id|>`, and the ids of the
  *tokens* " \\n" and "\\n" as `convert_tokens_to_ids` maps them (for byte-level BPE vocabularies these
  are unknown/None, so in practice only EOS stops), the text after the first stop id is dropped, and
  the prompt is removed by decoding prompt+completion and cutting the decoded prompt's length.
  The official loop stops a batch only when all of its rows stopped, then truncates each row at its
  first stop id; greedy rows do not depend on each other, so per-row stopping gives the same text.

- "eos": a sequence stops at EOS (or an EOS id of the model's generation config) only, and the whole
  completion is kept, decoded as in "official" (utility sets: BBH chain of thought, TriviaQA, fluency).

Speed comes from sorting prompts by length (little padding), a KV cache, and dropping finished rows
from the batch (and from the cache) at every step.
"""
from __future__ import annotations

import torch

from . import distributed
from .errors import RwkuError
from .models import padding_id
from .progress import tqdm
from .scoring import common_prefix_length, expand_cache, grouped_attention, prefix_cache

STOP_MODES = ("newline", "official", "eos")


def official_stop_ids(tokenizer) -> set[int]:
    """The stop token ids of the official RWKU evaluation for this tokenizer."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|eot_id|>", " \n", "\n"):
        tid = tokenizer.convert_tokens_to_ids(token)
        ids.add(tid)
    ids.discard(None)
    # An unknown token maps to unk_token_id; the official code then stops at unk as well.
    return {int(i) for i in ids}


class _NewlineTable:
    """Per-vocabulary flags telling whether a token holds a newline, and text before it."""

    def __init__(self, tokenizer, vocab_size: int):
        pieces = tokenizer.convert_ids_to_tokens(list(range(min(vocab_size, len(tokenizer)))))
        newline = torch.zeros(vocab_size, dtype=torch.bool)
        content = torch.zeros(vocab_size, dtype=torch.bool)
        text_before_newline = torch.zeros(vocab_size, dtype=torch.bool)
        for i, piece in enumerate(pieces):
            if piece is None:
                continue
            text = tokenizer.convert_tokens_to_string([piece])
            newline[i] = "\n" in text
            content[i] = text.strip() != ""
            text_before_newline[i] = text.split("\n", 1)[0].strip() != ""
        self.newline, self.content, self.text_before_newline = newline, content, text_before_newline


_TABLES: dict[tuple, _NewlineTable] = {}


def _newline_table(tokenizer, vocab_size: int) -> _NewlineTable:
    key = (tokenizer.name_or_path, len(tokenizer), vocab_size)
    if key not in _TABLES:
        _TABLES[key] = _NewlineTable(tokenizer, vocab_size)
    return _TABLES[key]


def first_line(text: str) -> str:
    """The first non-empty line of a generated text, stripped (the rwku_nb prediction)."""
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


@torch.no_grad()
def greedy_generate(
    model,
    tokenizer,
    prompts: list[str],
    max_new_tokens: int = 30,
    batch_size: int = 32,
    stop: str = "newline",
    add_special_tokens: bool = True,
    share_prefix: bool = True,
    desc: str | None = None,
    names: list[str] | None = None,
) -> list[str]:
    """Greedy completions of `prompts` (same order), each stopping on its own; see module doc.
    `names` says where each prompt comes from (e.g. a data file and row), for error messages."""
    if stop not in STOP_MODES:
        raise RwkuError(f"Unknown stop mode {stop!r}: expected one of {STOP_MODES}.")
    if not prompts:
        return []
    device = next(model.parameters()).device
    vocab_size = model.get_output_embeddings().weight.shape[0]
    stop_ids = torch.zeros(vocab_size, dtype=torch.bool)
    for i in official_stop_ids(tokenizer):
        if 0 <= i < vocab_size:
            stop_ids[i] = True
    if stop in ("newline", "eos"):
        # rwku_nb stops at EOS-like ids (not at unk, which official mode inherits by accident).
        stop_ids[:] = False
        for i in {tokenizer.eos_token_id, *(_extra_eos(model))}:
            if i is not None and 0 <= i < vocab_size:
                stop_ids[i] = True
    if stop == "newline":
        table = _newline_table(tokenizer, vocab_size)
    stop_ids = stop_ids.to(device)

    encoded = [tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
    max_ctx = getattr(model.config, "max_position_embeddings", None)
    for i, ids in enumerate(encoded):
        if max_ctx and len(ids) + max_new_tokens > max_ctx:
            what = f"{names[i]}: the prompt" if names else f"Prompt {i}"
            raise RwkuError(
                f"{what} has {len(ids)} tokens; with {max_new_tokens} new tokens it exceeds the "
                f"model's context of {max_ctx}. Shorten the prompt or lower max_new_tokens."
            )
    # Every probe prompt starts with the same chat-template tokens, and prompts of one template share
    # more: order by the first tokens after the global prefix, then by length, so that each batch has a
    # long common prefix (run once, its key/value cache reused by every row) and little padding.
    n_global = common_prefix_length(encoded)
    order = sorted(range(len(prompts)), key=lambda i: (encoded[i][n_global : n_global + 8], len(encoded[i]), i))
    pad_id = padding_id(tokenizer)
    outputs: list[list[int]] = [[] for _ in prompts]
    bar = tqdm(total=len(prompts), desc=desc or "generate", leave=False)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        # Keep at least one token per prompt for the batched prefill.
        n_prefix = common_prefix_length([encoded[i] for i in rows]) if share_prefix else 0
        n_prefix = min(n_prefix, min(len(encoded[i]) for i in rows) - 1)
        prefix_kv = prefix_cache(model, encoded[rows[0]][:n_prefix], device) if n_prefix > 0 else None
        suffixes = [encoded[i][n_prefix:] for i in rows]
        width = max(len(x) for x in suffixes)
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), n_prefix + width), dtype=torch.long)
        attention[:, :n_prefix] = 1
        for r, ids in enumerate(suffixes):  # pads sit left of each suffix, as with left padding
            input_ids[r, width - len(ids) :] = torch.tensor(ids)
            attention[r, n_prefix + width - len(ids) :] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        position = (attention.cumsum(-1) - 1).clamp(min=0)[:, n_prefix:]
        cache = expand_cache(prefix_kv, len(rows)) if prefix_kv else None
        # Only the last position's logits are needed to pick the first new token.
        with grouped_attention(device):
            out = model(input_ids=input_ids, attention_mask=attention, position_ids=position,
                        past_key_values=cache, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        logits = out.logits[:, -1, :]
        alive = list(rows)  # original prompt index of each row still generating
        seen_content = torch.zeros(len(rows), dtype=torch.bool)
        next_pos = position[:, -1]
        for step in range(max_new_tokens):
            token = distributed.agree(logits.argmax(-1))  # a sharded model: process 0's tokens everywhere
            token_cpu = token.cpu()
            for r, i in enumerate(alive):
                outputs[i].append(int(token_cpu[r]))
            done = stop_ids[token].cpu()
            if stop == "newline":
                done |= table.newline[token_cpu] & (seen_content | table.text_before_newline[token_cpu])
                seen_content |= table.content[token_cpu]
            if step == max_new_tokens - 1:
                break
            if bool(done.any()):
                keep = (~done).nonzero().flatten()
                if keep.numel() == 0:
                    break
                alive = [alive[k] for k in keep.tolist()]
                seen_content = seen_content[keep]
                keep_dev = keep.to(device)
                cache.batch_select_indices(keep_dev)
                token, attention, next_pos = token[keep_dev], attention[keep_dev], next_pos[keep_dev]
            attention = torch.cat([attention, attention.new_ones((attention.shape[0], 1))], dim=1)
            next_pos = next_pos + 1
            out = model(
                input_ids=token[:, None],
                attention_mask=attention,
                position_ids=next_pos[:, None],
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
            cache, logits = out.past_key_values, out.logits[:, -1, :]
        bar.update(len(rows))
    bar.close()
    return [_decode(tokenizer, encoded[i], outputs[i], stop_ids, stop) for i in range(len(prompts))]


def _extra_eos(model) -> list[int]:
    """EOS ids the model's generation config declares (e.g. LLaMA-3's <|eot_id|>)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


def _decode(tokenizer, prompt_ids, new_ids, stop_ids, stop) -> str:
    """Completion text of one row, cut at its first stop id."""
    cut = len(new_ids)
    for j, t in enumerate(new_ids):
        if bool(stop_ids[t]):
            cut = j
            break
    new_ids = new_ids[:cut]
    if stop in ("official", "eos"):
        # Official: decode prompt+completion, then drop as many characters as the decoded prompt has.
        full = tokenizer.decode(list(prompt_ids) + new_ids, skip_special_tokens=True)
        prompt = tokenizer.decode(list(prompt_ids), skip_special_tokens=True)
        return full[len(prompt) :]
    return first_line(tokenizer.decode(new_ids, skip_special_tokens=True))
