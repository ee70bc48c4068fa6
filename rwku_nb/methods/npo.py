"""NPO, negative preference optimisation (Zhang et al., 2024), as in the official RWKU trainer:
loss = -(2/beta) * mean log sigmoid(beta * (NLL_theta - NLL_ref)), NLL summed per sequence, beta 0.2,
reference = the frozen original model (its NLLs are computed once, before training)."""
import torch

from ..models import padding_id
from ..scoring import forward_batches, labels
from ..settings import NUMBER, Setting, positive_number
from ..training import sequence_nll, summed_nll, text_examples
from . import register


def npo_loss(model, batch, beta: float):
    """NPO loss of a batch whose examples carry `ref_nll` (summed NLL under the reference model)."""
    nll = sequence_nll(model, batch)
    return -(2.0 / beta) * torch.nn.functional.logsigmoid(beta * (nll - batch["ref_nll"])).mean()


@torch.no_grad()
def reference_nll(model, tokenizer, examples) -> list[float]:
    """Summed NLL of each example under `model` as it is now (the reference)."""
    model.eval()
    out = [0.0] * len(examples)
    if not examples:
        return out
    # One example per forward pass, as NPO always computed its references: padding would change the
    # float rounding of the stored NLLs, and with them every NPO result.
    for batch in forward_batches(model, [e.input_ids for e in examples], padding_id(tokenizer), 1, key=None,
                                 desc="NPO reference"):
        nll = summed_nll(batch.logits, labels(batch, [e.labels_mask for e in examples]))
        out[batch.rows[0]] = float(nll[0])
    return out


# Hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and hyperparameters");
# `batch` is the batch-target setting (full fine-tuning). CPU profiles scale them for a 135M model.
HPARAMS = {"full": {"lr": 2e-6, "epochs": 3, "batch_size": 16}, "lora": {"lr": 5e-5, "epochs": 3, "batch_size": 16},
           "batch": {"lr": 1e-6, "epochs": 2, "batch_size": 16}}


@register("npo", "NPO", trains=True, corpora=("positive",), hparams=HPARAMS,
          settings={"npo_beta": Setting(0.2, NUMBER, check=positive_number("npo_beta"))})  # official NPO beta
def run(ctx) -> dict:
    """NPO on the target's forget corpus against the untouched model as reference."""
    beta = ctx.params["npo_beta"]
    examples = text_examples(ctx.tokenizer, ctx.corpus["positive"], ctx.params["max_length"])
    # The method runs before any weight change (LoRA adapters start at zero), so this is the reference.
    refs = ctx.on_original("npo reference", examples, lambda: reference_nll(ctx.model, ctx.tokenizer, examples))
    for e, ref in zip(examples, refs):
        e.extra["ref_nll"] = ref
    ctx.train(examples, lambda m, b: npo_loss(m, b, beta), "npo", "NPO")
    return {}
