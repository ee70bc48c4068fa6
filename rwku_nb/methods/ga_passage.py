"""GA*, gradient ascent on the target's Wikipedia passages (`passage`) instead of a generated corpus
(RWKU's GA* rows; official hyperparameters: full lr 1e-6, 4 epochs, batch 4; LoRA lr 2e-5, 6 epochs)."""
from ..training import text_examples
from . import register
from .ga import ga_loss


@register("ga_passage", "GA*", trains=True, corpora=("passage",))
def run(ctx) -> dict:
    """Gradient ascent on the target's passages."""
    examples = text_examples(ctx.tokenizer, ctx.corpus["passage"], ctx.params["max_length"])
    ctx.train(examples, ga_loss, "ga_passage", "GA*")
    return {}
