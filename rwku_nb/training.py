"""The one training loop every method shares: seeded shuffling, gradient accumulation, AdamW,
cosine schedule with linear warmup (official RWKU scripts: cosine, 20 warmup steps, cutoff 512).

A method supplies examples (token id lists, optionally with a loss mask and per-example extras) and
a loss function `loss_fn(model, batch) -> scalar`; the loop does the rest.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch
from transformers import get_constant_schedule, get_cosine_schedule_with_warmup

from . import distributed
from .errors import RwkuError
from .models import padding_id
from .progress import tqdm


class Diverged(RwkuError):
    """The training loss became NaN or infinite (GA diverging is common); the runner records the run."""

    def __init__(self, desc: str, step: int, loss: float):
        super().__init__(f"{desc}: the loss became {loss} at step {step} (diverged); lower the learning rate.")
        self.step, self.loss = step, loss


@dataclass
class Example:
    """One training sequence: token ids, which positions count in the loss, and method extras."""

    input_ids: list[int]
    labels_mask: list[int] | None = None  # 1 where the token is scored (e.g. answer tokens only)
    extra: dict = field(default_factory=dict)


def text_examples(tokenizer, texts: list[str], max_length: int) -> list[Example]:
    """Plain-text examples (every token scored), truncated at `max_length` tokens."""
    if not texts:
        raise RwkuError("The training corpus is empty: nothing to unlearn from. Check the corpus setting.")
    return [Example(tokenizer(t)["input_ids"][:max_length]) for t in texts]


def pair_examples(tokenizer, pairs: list[tuple[str, str]], max_length: int) -> list[Example]:
    """(prompt, answer) pairs as examples whose loss covers the answer tokens only; a pair longer than
    `max_length` loses the start of its prompt, never its answer."""
    out = []
    for prompt, answer in pairs:
        p = tokenizer(prompt)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        out.append(Example((p + a)[-max_length:], ([0] * len(p) + [1] * len(a))[-max_length:]))
    return out


def collate(examples: list[Example], pad_id: int, device) -> dict:
    """Right-padded batch: input_ids, attention_mask, labels (-100 on padding and unscored tokens)."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for r, e in enumerate(examples):
        n = len(e.input_ids)
        ids[r, :n] = torch.tensor(e.input_ids)
        mask[r, :n] = 1
        scored = torch.tensor(e.input_ids)
        if e.labels_mask is not None:
            scored = scored.masked_fill(torch.tensor(e.labels_mask) == 0, -100)
        labels[r, :n] = scored
    batch = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "labels": labels.to(device)}
    for key in examples[0].extra:
        batch[key] = torch.tensor([e.extra[key] for e in examples], device=device)
    return batch


def sequence_nll(model, batch: dict) -> torch.Tensor:
    """Summed next-token NLL per sequence over scored tokens, shape [B]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return summed_nll(logits, batch["labels"])


def summed_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token NLL per row of logits [B, L, V] over targets labels [B, L] (-100: not scored), shape [B]."""
    logits, labels = logits[:, :-1].float(), labels[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1).clamp(min=0), reduction="none"
    ).view(labels.shape)
    return (nll * (labels != -100)).sum(-1)


def token_count(batch: dict) -> torch.Tensor:
    """Number of scored next-token positions per sequence, shape [B]."""
    return (batch["labels"][:, 1:] != -100).sum(-1).clamp(min=1)


def sft_loss(model, batch):
    """Supervised fine-tuning loss: mean NLL per scored token over the batch."""
    return sequence_nll(model, batch).sum() / token_count(batch).sum()


def train(model, tokenizer, examples: list, loss_fn, lr: float, epochs: int,
          batch_size: int, grad_accum: int = 1, warmup_steps: int = 20, seed: int = 0,
          desc: str = "train", collate_fn=collate, on_epoch_end=None, betas=(0.9, 0.999),
          schedule: str = "cosine") -> list[float]:
    """Optimise `loss_fn` over `examples`; returns the loss of every optimizer step.

    `examples` are `Example`s, or any items `collate_fn(items, pad_id, device)` turns into a batch
    (DPO passes chosen/rejected pairs). `on_epoch_end(epoch)` (1-based) runs after every epoch but
    the last, with the model in eval mode (trade-off curves evaluate there); if it returns True,
    training stops there (stopping rules of the selective methods). `schedule`: "cosine" (RWKU's,
    with linear warmup) or "constant" (the seed-0 paper's fixed Adam learning rate).
    """
    if not examples:
        raise RwkuError("No training examples: the corpus for this method is empty.")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise RwkuError("The model has no trainable parameters (all frozen).")
    device = next(model.parameters()).device
    pad_id = padding_id(tokenizer)
    steps_per_epoch = math.ceil(len(examples) / (batch_size * grad_accum))
    total = steps_per_epoch * epochs
    if schedule not in ("cosine", "constant"):
        raise RwkuError(f"unknown learning-rate schedule {schedule!r}; expected 'cosine' or 'constant'")
    optimizer = torch.optim.AdamW(params, lr=lr, betas=tuple(betas), weight_decay=0.0)  # = Adam
    # Warmup never longer than the run itself (the official 20 steps assume hundreds of steps).
    schedule = (get_cosine_schedule_with_warmup(optimizer, min(warmup_steps, total // 2), total)
                if schedule == "cosine" else get_constant_schedule(optimizer))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    was_training = model.training
    model.train()
    losses: list[float] = []
    bar = tqdm(total=total, desc=desc, leave=False)
    try:
        for epoch in range(1, epochs + 1):
            model.train()
            order = list(range(len(examples)))
            rng.shuffle(order)
            batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
            for s in range(0, len(batches), grad_accum):
                group = batches[s : s + grad_accum]
                step_loss = 0.0
                for idx in group:
                    loss = loss_fn(model, collate_fn([examples[i] for i in idx], pad_id, device)) / len(group)
                    if not distributed.agree(bool(torch.isfinite(loss))):  # process 0's verdict if sharded
                        raise Diverged(desc, len(losses) + 1, loss.item())
                    loss.backward()
                    step_loss += loss.item()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(step_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.3f}")
            if on_epoch_end is not None and epoch < epochs:
                model.eval()
                if on_epoch_end(epoch) is True:
                    break
    finally:
        bar.close()
        model.train(was_training)
        model.eval()
    return losses
