"""GA*, gradient ascent on the target's Wikipedia passages (`passage`) instead of a generated corpus
(RWKU's GA* rows; official hyperparameters: full lr 1e-6, 4 epochs, batch 4; LoRA lr 2e-5, 6 epochs)."""
from ..training import text_examples
from . import register
from .ga import ga_loss


# Hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and hyperparameters");
# CPU profiles scale them for a 135M model.
@register("ga_passage", "GA*", trains=True, corpora=("passage",),
          hparams={"full": {"lr": 1e-6, "epochs": 4, "batch_size": 4}, "lora": {"lr": 2e-5, "epochs": 6, "batch_size": 4}})
def run(ctx) -> dict:
    """Gradient ascent on the target's passages."""
    examples = text_examples(ctx.tokenizer, ctx.corpus["passage"], ctx.params["max_length"])
    ctx.train(examples, ga_loss, "ga_passage", "GA*")
    return {}
