"""The seed-0 paper's methods as RWKU baselines (rwku_nb.selective): GA with per-sequence tracking (GA-seq),
Selective Gradient Ascent (SGA), Task Arithmetic (TA) and Task Arithmetic for Unlearning (TAU), trained on
the target's zero-shot forget corpus. Each epoch measures the MA of every corpus text; training stops
once the mean MA is below `sga_stop` (paper: 0.33) or after the profile's epochs for the method; with
`curve`, each epoch training goes on from is evaluated as a trade-off curve point, like the other methods'."""
from __future__ import annotations

from .. import selective
from ..settings import NUMBER, Setting, adam_betas, declare, share
from . import register


def _make(method: str):
    def run(ctx) -> dict:
        tok, p = ctx.tokenizer, ctx.params
        seqs = [tok(t)["input_ids"][: p["max_length"]] for t in ctx.corpus["positive"]]
        hp = ctx.hparams(method)

        def measure(model):
            return {"ma": selective.memorization_accuracy(model, tok, seqs, hp["batch_size"])}

        history = selective.unlearn(ctx.model, tok, seqs, selective.plan(method, p), measure, p["sga_stop"],
                                    hp["lr"], hp["epochs"], hp["batch_size"], tuple(p["selective_betas"]),
                                    p["seed"], desc=f"{method} {ctx.variant} {ctx.name}", after_epoch=ctx.on_epoch_end,
                                    grad_accum=p["grad_accum"])
        ctx.info["selective"] = [{"epoch": r["epoch"], "phase": r["phase"], "mean_ma": float(r["ma"].mean())}
                                 for r in history]
        return {}

    run.__doc__ = f"{method} on the forget corpus (rwku_nb.selective.unlearn)."
    return run


# Their profile keys, shared by the four methods and notebook 07. Paper defaults (Barbulescu & Triantafillou 2024,
# seed code configs): SGA keeps ascending on sequences with MA >= 0.70 (plus the most memorized one) and stops at
# mean MA < 0.33; TAU switches to task arithmetic at mean MA < 0.5 with c = -1; TA: gamma 0, switch 0.9, c = -3;
# Adam betas (0.9, 0.98).
declare("selective methods", sga_gamma=Setting(0.70, NUMBER, check=share("sga_gamma")),
        sga_stop=Setting(0.33, NUMBER, check=share("sga_stop")),  # RWKU runs stop here; notebook 07 uses selective_stop
        tau_switch=Setting(0.50, NUMBER, check=share("tau_switch")), tau_coef=Setting(-1.0, NUMBER),
        ta_gamma=Setting(0.0, NUMBER, check=share("ta_gamma")), ta_switch=Setting(0.90, NUMBER, check=share("ta_switch")),
        ta_coef=Setting(-3.0, NUMBER), selective_betas=Setting([0.9, 0.98], list, check=adam_betas))
# Their GPT-Neo setting (Adam lr 5e-5, batch 8; seed code experiments/configs/*/config_*.json) with RWKU's 3-epoch
# budget as the epoch cap (they stop earlier once the forget corpus' mean MA is below sga_stop). Not tuned for
# RWKU's models.
HPARAMS = {v: {"lr": 5e-5, "epochs": 3, "batch_size": 8} for v in ("full", "lora", "batch")}
# The keys of each method's plan (selective.plan), then the stopping rule and optimizer shared by all four.
_ARGS = {"ga_seq": (), "ta": ("ta_gamma", "ta_switch", "ta_coef"), "sga": ("sga_gamma",),
         "tau": ("sga_gamma", "tau_switch", "tau_coef")}
for _name, _label in (("ga_seq", "GA-seq"), ("ta", "TA"), ("sga", "SGA"), ("tau", "TAU")):
    # constants: since they pass the sweep's epoch hook on, their curve runs store per-epoch points (results
    # stored before lack them, and are recomputed rather than shown without them)
    register(_name, _label, trains=True, corpora=("positive",), args=_ARGS[_name] + ("sga_stop", "selective_betas"),
             hparams=HPARAMS,
             constants={"curve_points": "every epoch trained on"})(_make(_name))
