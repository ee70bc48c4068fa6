"""GA, gradient ascent: maximise the language-modelling loss on the forget corpus (RWKU baseline)."""
from ..training import sequence_nll, text_examples, token_count
from . import register


def ga_loss(model, batch):
    """Negated mean token NLL over the batch (descending it ascends the forget-corpus NLL)."""
    return -sequence_nll(model, batch).sum() / token_count(batch).sum()


@register("ga", "GA", trains=True, corpora=("positive",))
def run(ctx) -> dict:
    """Gradient ascent on the target's forget corpus."""
    ctx.train(text_examples(ctx.tokenizer, ctx.corpus["positive"], ctx.params["max_length"]), ga_loss, "ga", "GA")
    return {}
