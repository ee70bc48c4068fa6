"""GA, gradient ascent: maximise the language-modelling loss on the forget corpus (RWKU baseline)."""
from ..training import sequence_nll, text_examples, token_count
from . import register


def ga_loss(model, batch):
    """Negated mean token NLL over the batch (descending it ascends the forget-corpus NLL)."""
    return -sequence_nll(model, batch).sum() / token_count(batch).sum()


# Hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and hyperparameters");
# `batch` is the batch-target setting (full fine-tuning). CPU profiles scale them for a 135M model.
@register("ga", "GA", trains=True, corpora=("positive",),
          hparams={"full": {"lr": 6e-8, "epochs": 3, "batch_size": 8}, "lora": {"lr": 1e-5, "epochs": 3, "batch_size": 8},
                   "batch": {"lr": 3e-8, "epochs": 2, "batch_size": 8}})
def run(ctx) -> dict:
    """Gradient ascent on the target's forget corpus."""
    ctx.train(text_examples(ctx.tokenizer, ctx.corpus["positive"], ctx.params["max_length"]), ga_loss, "ga", "GA")
    return {}
