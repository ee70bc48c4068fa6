"""SimNPO, simple negative preference optimisation (Fan et al., 2024, arXiv 2410.07163, Eq. 4): NPO without
the reference model and with a length-normalised reward,

    loss = -(2/beta) * mean log sigmoid(beta * NLL_theta(y) / |y| - gamma),

NLL summed over the |y| scored tokens of a forget text (-(beta/|y|) log pi(y) = beta * NLL / |y|). beta 2.5 and
gamma 0 are the paper's TOFU setting (gamma = 0 its recommended default); RWKU publishes no SimNPO setting,
so the learning rates of the GPU profiles are NPO's (the same loss family), not tuned for SimNPO."""
import torch

from ..training import sequence_nll, text_examples, token_count
from ..settings import NUMBER, Setting, positive_number
from . import npo, register


def simnpo_loss(model, batch, beta: float, gamma: float):
    """SimNPO loss of a batch of forget texts."""
    mean_nll = sequence_nll(model, batch) / token_count(batch)
    return -(2.0 / beta) * torch.nn.functional.logsigmoid(beta * mean_nll - gamma).mean()


@register("simnpo", "SimNPO", trains=True, corpora=("positive",), hparams=npo.HPARAMS,  # NPO's (module docstring)
          settings={"simnpo_beta": Setting(2.5, NUMBER, check=positive_number("simnpo_beta")),
                    "simnpo_gamma": Setting(0.0, NUMBER)})
def run(ctx) -> dict:
    """SimNPO on the target's forget corpus (no reference model)."""
    beta, gamma = ctx.params["simnpo_beta"], ctx.params["simnpo_gamma"]
    examples = text_examples(ctx.tokenizer, ctx.corpus["positive"], ctx.params["max_length"])
    ctx.train(examples, lambda m, b: simnpo_loss(m, b, beta, gamma), "simnpo", "SimNPO")
    return {}
