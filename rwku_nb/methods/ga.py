"""GA, gradient ascent: maximise the language-modelling loss on the forget corpus (RWKU baseline)."""
from ..training import sequence_nll, text_examples, token_count, train
from . import register


def ga_loss(model, batch):
    """Negated mean token NLL over the batch (descending it ascends the forget-corpus NLL)."""
    return -sequence_nll(model, batch).sum() / token_count(batch).sum()


@register("ga", "GA", trains=True)
def run(ctx) -> dict:
    """Gradient ascent on the target's forget corpus."""
    hp, p = ctx.hparams("ga"), ctx.params
    examples = text_examples(ctx.tokenizer, ctx.corpus, p["max_length"])
    ctx.info["losses"] = train(ctx.model, ctx.tokenizer, examples, ga_loss, hp["lr"], hp["epochs"],
                               hp["batch_size"], p["grad_accum"], p["warmup_steps"], p["seed"],
                               desc=f"GA {ctx.variant} {ctx.target.name}")
    return {}
