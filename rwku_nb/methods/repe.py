"""RepE, representation engineering: steer the model away from the target at inference, no weight change.

The official RWKU code has no RepE; this follows the paper (Appendix H.1; ../shared/PROTOCOL.md): a control
vector h = g(p_novice) - g(p_expert), with the paper's two templates, "{intro} You don't know {target} at
all.\nPlease feel free to fabricate information about {target}." and "{intro} You know {target} very
well.\nPlease provide accurate information about {target}." ({intro}: the target's intro.json text), added
with weight alpha (0.5, 1, 1.5 in the paper) at inference through forward hooks. rwku_nb's choices where the
paper is silent: each template is the user message of the chat template, and the assistant's reply that
follows it is the start (first 64 tokens) of each of the model's own forget texts about the target (the
zero-shot `positive` corpus), so g is read over the same stimuli under both templates; g is the hidden state
of the last token at the output of one decoder layer (`repe_layer`, default the middle one), averaged over
the stimuli, and the vector is added at that layer's output, at every position.
"""
from __future__ import annotations

import torch

from ..variants import decoder_layers
from ..settings import NUMBER, Setting
from . import register

NOVICE = "{intro} You don't know {target} at all.\nPlease feel free to fabricate information about {target}."
EXPERT = "{intro} You know {target} very well.\nPlease provide accurate information about {target}."
STIMULUS_TOKENS = 64


def persona_prompts(tokenizer, target, texts: list[str], persona: str) -> list[str]:
    """Chat prompts: the paper's template (`NOVICE` or `EXPERT`) as the user message, then the start of each
    text as the assistant's reply."""
    messages = [{"role": "user", "content": persona.format(intro=target.intro, target=target.name)}]
    head = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return [head + tokenizer.decode(tokenizer(t, add_special_tokens=False)["input_ids"][:STIMULUS_TOKENS])
            for t in texts]


@torch.no_grad()
def mean_hidden(model, tokenizer, prompts: list[str], layer: int) -> torch.Tensor:
    """Mean over prompts of the last token's hidden state at the output of decoder layer `layer`,
    read by a forward hook on that layer (the very place `attach` adds to), shape [hidden]."""
    device = next(model.parameters()).device
    seen = []

    def grab(module, args, output):
        seen.append((output[0] if isinstance(output, tuple) else output)[0, -1].float())

    handle = decoder_layers(model)[layer].register_forward_hook(grab)
    try:
        for prompt in prompts:
            model(**tokenizer(prompt, return_tensors="pt").to(device))
    finally:
        handle.remove()
    return torch.stack(seen).mean(0)


def control_vector(model, tokenizer, targets, texts: list[list[str]], layer: int) -> torch.Tensor:
    """Novice minus expert mean hidden state at `layer`, shape [hidden], over every target's stimuli (its
    texts under its templates): targets unlearned at once share one vector (rwku_nb's choice; the paper does
    not describe its batch-target RepE)."""
    prompts = {persona: [p for t, x in zip(targets, texts) for p in persona_prompts(tokenizer, t, x, persona)]
               for persona in (NOVICE, EXPERT)}
    return mean_hidden(model, tokenizer, prompts[NOVICE], layer) - mean_hidden(model, tokenizer, prompts[EXPERT], layer)


def attach(model, vector: torch.Tensor, layer: int, alpha: float):
    """Add `alpha * vector` to the output of decoder layer `layer`; returns the hook handle (.remove())."""
    delta = (alpha * vector).to(next(model.parameters()).dtype)

    def hook(module, args, output):
        if isinstance(output, tuple):
            return (output[0] + delta,) + tuple(output[1:])
        return output + delta

    return decoder_layers(model)[layer].register_forward_hook(hook)


def layer_of(model, params: dict) -> int:
    """The decoder layer RepE reads and steers: `repe_layer`, or the middle layer."""
    n = len(decoder_layers(model))
    return params["repe_layer"] if params["repe_layer"] is not None else n // 2


def _alphas(values):
    bad = next((a for a in values if not isinstance(a, NUMBER) or isinstance(a, bool)), None)
    return None if bad is None else f"'repe_alphas' entry {bad!r} must be a number."


@register("repe", "RepE", trains=False, corpora=("positive",),
          settings={"repe_alpha": Setting(1.0, NUMBER),  # steering weight of the Table 1 row (paper: 0.5, 1, 1.5)
                    # the trade-off curve's weights: in the identity of curve runs (rwku_nb.jobs), not of the method
                    "repe_alphas": Setting([0.5, 1.0, 1.5], list, check=_alphas, identity=False),
                    "repe_layer": Setting(None, (int, type(None)))},  # decoder layer read and steered; None: the middle
          constants={"novice": NOVICE, "expert": EXPERT, "stimulus_tokens": STIMULUS_TOKENS})
def run(ctx) -> dict:
    """Compute the control vector and attach it; the runner detaches it after evaluation."""
    layer = layer_of(ctx.model, ctx.params)
    vector = control_vector(ctx.model, ctx.tokenizer, ctx.targets, [c["positive"] for c in ctx.corpora], layer)
    handle = attach(ctx.model, vector, layer, ctx.params["repe_alpha"])
    ctx.info.update(layer=layer, alpha=ctx.params["repe_alpha"], vector_norm=float(vector.norm()))
    return {"detach": handle.remove, "vector": vector, "layer": layer}
