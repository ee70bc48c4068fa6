"""RMU, representation misdirection for unlearning (Li et al., 2024, "The WMDP Benchmark", Sec. 5): push the
hidden states of one decoder layer on forget text towards a fixed random direction, keep them on retain
text where the frozen model put them,

    loss = mean_t || h_l(x_forget)_t - c * u ||^2 + alpha * mean_t || h_l(x_retain)_t - h_l^frozen(x_retain)_t ||^2,

u a random unit vector (uniform [0, 1) entries, normalised; seeded), c the steering coefficient, h_l the
output of decoder layer l, means over real tokens and hidden units (MSE). The official code trains only the
MLP output projections of layers l-2, l-1, l (its `param_ids 6` = `mlp.down_proj`); here that is the
`full` variant, and `lora` trains the profile's LoRA adapters instead. Settings of the official Zephyr-7B
run (WMDP README): layer 7 of 32, c 6.5, alpha 1200, lr 5e-5, batch 4; `rmu_layer: null` takes the same
relative depth (7/32) of any model. Retain text: generic WikiText (the official code also uses WikiText),
the first `corpus_size` texts of the extraction data's valid_wikitext.csv, one paired with each forget
text; its frozen activations are computed once before training and kept on the CPU. Differences from the
official loop: rwku_nb's shared training loop (cosine schedule, warmup, gradient clipping), epochs instead
of `max_num_batches`, padding positions left out of both means.
"""
from __future__ import annotations

import torch

from ..errors import RwkuError
from ..models import padding_id
from ..training import collate, text_examples
from ..variants import decoder_layers
from ..settings import NUMBER, Setting, positive_number
from . import register

# The MLP output projection of a decoder layer, by architecture (LLaMA/Mistral/Phi-3, GPT-Neo, OPT-style).
MLP_OUT = ("mlp.down_proj.weight", "mlp.c_proj.weight", "fc2.weight")


def layer_of(model, params: dict) -> int:
    """The decoder layer RMU steers: `rmu_layer`, or the official 7 of 32 at the model's own depth."""
    n = len(decoder_layers(model))
    layer = params["rmu_layer"] if params["rmu_layer"] is not None else round(7 * n / 32)
    if not 0 <= layer < n:
        raise RwkuError(f"rmu_layer {layer} is outside the model's {n} decoder layers (0..{n - 1}).")
    return layer


def steering_vector(hidden: int, coeff: float, seed: int) -> torch.Tensor:
    """c * u, u uniform [0, 1)^hidden normalised to unit length (the official construction), seeded."""
    u = torch.rand(hidden, generator=torch.Generator().manual_seed(seed))
    return coeff * u / u.norm()


def mlp_out_params(model, layers: list[int]) -> list[torch.nn.Parameter]:
    """The MLP output projection weight of each decoder layer in `layers` (official parameter choice)."""
    blocks = decoder_layers(model)
    found = []
    for i in layers:
        named = dict(blocks[i].named_parameters())
        hit = [named[n] for n in MLP_OUT if n in named]
        if not hit:
            raise RwkuError(f"RMU: decoder layer {i} has none of {MLP_OUT}; its parameters are "
                            f"{sorted(named)[:8]}... Use the lora variant for this architecture.")
        found.append(hit[0])
    return found


def activations(model, batch: dict, layer: int) -> torch.Tensor:
    """Output of decoder layer `layer` for a batch, [B, L, hidden] (the model's later layers still run)."""
    seen = []

    def grab(module, args, output):
        seen.append(output[0] if isinstance(output, tuple) else output)

    handle = decoder_layers(model)[layer].register_forward_hook(grab)
    try:
        model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    finally:
        handle.remove()
    return seen[0]


def masked_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of (h - target)^2 over the real tokens (mask 1) and hidden units."""
    m = mask.unsqueeze(-1).to(h.dtype)
    return (((h.float() - target.float()) ** 2) * m).sum() / (m.sum() * h.shape[-1]).clamp(min=1)


def rmu_loss(model, batch, layer: int, control: torch.Tensor, retain: list, frozen: list, alpha: float, pad_id):
    """RMU loss of a batch of forget examples; each carries `pair`, the index of its retain example."""
    forget = masked_mse(activations(model, batch, layer), control.to(batch["input_ids"].device),
                        batch["attention_mask"])
    pairs = batch["pair"].tolist()
    device = batch["input_ids"].device
    kept = collate([retain[i] for i in pairs], pad_id, device)
    width = kept["input_ids"].shape[1]
    target = torch.zeros((len(pairs), width, control.shape[-1]), device=device)
    for r, i in enumerate(pairs):
        target[r, : frozen[i].shape[0]] = frozen[i].to(device, torch.float32)
    return forget + alpha * masked_mse(activations(model, kept, layer), target, kept["attention_mask"])


@torch.no_grad()
def frozen_activations(model, tokenizer, examples, layer: int) -> list[torch.Tensor]:
    """Layer `layer`'s output on each retain example under the model as it is now, [T, hidden] on the CPU."""
    device = next(model.parameters()).device
    model.eval()
    return [activations(model, collate([e], padding_id(tokenizer), device), layer)[0].to("cpu", torch.float32)
            for e in examples]


def _not_negative(key: str):
    return lambda v: None if v is None or v >= 0 else f"key {key!r} has value {v!r}; expected a number >= 0."


# The official WMDP Zephyr-7B run (module docstring): lr 5e-5 and batch 4, one pass over the corpus (its 150
# batches of 4 ~ RWKU's 582 texts); the LoRA rate is rwku_nb's choice (no published LoRA RMU).
@register("rmu", "RMU", trains=True, corpora=("positive", "wikitext"),
          settings={"rmu_layer": Setting(None, (int, type(None)), check=_not_negative("rmu_layer")),  # None: 7/32 deep
                    "rmu_steering": Setting(6.5, NUMBER, check=positive_number("rmu_steering")),  # official c
                    "rmu_alpha": Setting(1200.0, NUMBER, check=_not_negative("rmu_alpha"))},  # official alpha
          hparams={"full": {"lr": 5e-5, "epochs": 1, "batch_size": 4}, "lora": {"lr": 1e-4, "epochs": 1, "batch_size": 4},
                   "batch": {"lr": 5e-5, "epochs": 1, "batch_size": 4}})
def run(ctx) -> dict:
    """RMU on the target's forget corpus, WikiText as retain text."""
    p = ctx.params
    model, layer = ctx.model, layer_of(ctx.model, p)
    forget = text_examples(ctx.tokenizer, ctx.corpus["positive"], p["max_length"])
    retain = text_examples(ctx.tokenizer, ctx.corpus["wikitext"], p["max_length"])
    for i, e in enumerate(forget):
        e.extra["pair"] = i % len(retain)
    frozen = frozen_activations(model, ctx.tokenizer, retain, layer)  # before any weight change
    hidden = frozen[0].shape[-1]
    control = steering_vector(hidden, p["rmu_steering"], p["seed"])
    flags = {n: q.requires_grad for n, q in model.named_parameters()}
    if ctx.variant == "full":  # the official choice: MLP output projections of layers l-2..l only
        chosen = {id(q) for q in mlp_out_params(model, list(range(max(0, layer - 2), layer + 1)))}
        for q in model.parameters():
            q.requires_grad_(id(q) in chosen)
    pad_id = padding_id(ctx.tokenizer)
    try:
        ctx.train(forget, lambda m, b: rmu_loss(m, b, layer, control, retain, frozen, p["rmu_alpha"], pad_id),
                  "rmu", "RMU")
    finally:
        for n, q in model.named_parameters():
            q.requires_grad_(flags[n])
    ctx.info.update(layer=layer, steering=p["rmu_steering"], alpha=p["rmu_alpha"])
    return {}
