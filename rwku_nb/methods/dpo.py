"""DPO, direct preference optimisation (Rafailov et al., 2023) as RWKU uses it: prompt "{intro} Please
write a short biography of {subject}." (official pair.json), chosen = a counterfactual text the model
fabricated, rejected = the forget text sharing its opening (the `pair` corpus: [fabricated, factual]), beta 0.1, sigmoid loss on summed
response log-probabilities against the frozen original model (its log-probs computed once, before training).
"""
import torch

from ..models import padding_id
from ..prompts import chat_prompt
from ..scoring import forward_batches, labels
from ..settings import NUMBER, Setting, positive_number
from ..training import collate, pair_examples, sequence_nll, summed_nll
from . import register

PROMPT = "{intro} Please write a short biography of {subject}."


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float):
    """Mean of -log sigmoid(beta * ((pi_c - ref_c) - (pi_r - ref_r))) over pairs; inputs are summed
    response log-probs, shape [B]."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -torch.nn.functional.logsigmoid(beta * margin).mean()


def preference_pairs(tokenizer, target, pairs: list, max_length: int):
    """[(chosen example, rejected example)] from [[fabricated, factual], ...] (the `pair` corpus, official
    pair.json's `response`): chosen = the counterfactual text, rejected = the forget text."""
    prompt = chat_prompt(tokenizer, PROMPT.format(intro=target.intro, subject=target.name), answer_cue=False)
    chosen = pair_examples(tokenizer, [(prompt, f"{f}{tokenizer.eos_token}") for f, _ in pairs], max_length)
    rejected = pair_examples(tokenizer, [(prompt, f"{t}{tokenizer.eos_token}") for _, t in pairs], max_length)
    return list(zip(chosen, rejected))


def collate_pairs(pairs, pad_id: int, device) -> dict:
    """One batch of 2B rows: the B chosen sequences, then the B rejected ones, plus reference log-probs."""
    batch = collate([c for c, _ in pairs] + [r for _, r in pairs], pad_id, device)
    batch["ref"] = torch.tensor([[c.extra["ref_logp"], r.extra["ref_logp"]] for c, r in pairs], device=device)
    return batch


@torch.no_grad()
def reference_logps(model, tokenizer, pairs) -> list[float]:
    """Store each sequence's summed response log-prob under `model` as it is now (the reference) in its
    `extra["ref_logp"]`; returned in the order chosen, rejected, chosen, ..."""
    model.eval()
    examples = [example for pair in pairs for example in pair]  # chosen, rejected, chosen, ...
    if not examples:
        return []
    # One pair per forward pass (chosen row, then rejected), as DPO always computed its references:
    # another batch composition would change the float rounding of the stored log-probs.
    for batch in forward_batches(model, [e.input_ids for e in examples], padding_id(tokenizer), 2, key=None,
                                 desc="DPO reference"):
        nll = summed_nll(batch.logits, labels(batch, [e.labels_mask for e in examples]))
        for i, value in zip(batch.rows, nll):
            examples[i].extra["ref_logp"] = -float(value)
    return [e.extra["ref_logp"] for e in examples]


# Hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and hyperparameters");
# `batch` is the batch-target setting (full fine-tuning). CPU profiles scale them for a 135M model.
# DPO's official "2x4" (batch 2, 4 accumulation steps) is written as its effective batch of 8.
@register("dpo", "DPO", trains=True, corpora=("pair",),
          settings={"dpo_beta": Setting(0.1, NUMBER, check=positive_number("dpo_beta"))},  # official DPO beta
          hparams={"full": {"lr": 5e-6, "epochs": 3, "batch_size": 8}, "lora": {"lr": 6e-5, "epochs": 3, "batch_size": 8},
                   "batch": {"lr": 2e-6, "epochs": 2, "batch_size": 8}})
def run(ctx) -> dict:
    """DPO towards counterfactual texts and away from the forget texts."""
    beta = ctx.params["dpo_beta"]
    # Batch-target: each target's pairs under its own prompt.
    pairs = [pair for target, c in zip(ctx.targets, ctx.corpora)
             for pair in preference_pairs(ctx.tokenizer, target, c["pair"], ctx.params["max_length"])]
    # The method runs before any weight change (LoRA adapters start at zero), so this is the reference.
    examples = [e for pair in pairs for e in pair]
    refs = ctx.on_original("dpo reference", examples, lambda: reference_logps(ctx.model, ctx.tokenizer, pairs))
    for e, ref in zip(examples, refs):
        e.extra["ref_logp"] = ref

    def loss_fn(model, batch):
        logp = -sequence_nll(model, batch)
        b = batch["ref"].shape[0]
        return dpo_loss(logp[:b], logp[b:], batch["ref"][:, 0], batch["ref"][:, 1], beta)

    ctx.train(pairs, loss_fn, "dpo", "DPO", collate_fn=collate_pairs)
    return {}
