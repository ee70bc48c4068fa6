"""Every profile key: its default (`DEFAULTS`, the paper's setting where it has one), its type and its allowed
values. rwku_nb.config validates profiles against these."""
from __future__ import annotations

import copy

# Method hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and
# hyperparameters"); `batch` is the batch-target setting (full fine-tuning). DPO's official "2x4" (batch 2,
# 4 accumulation steps) is written as its effective batch of 8. CPU profiles scale them for a 135M model.
DEFAULT_HPARAMS = {
    "ga": {"full": {"lr": 6e-8, "epochs": 3, "batch_size": 8}, "lora": {"lr": 1e-5, "epochs": 3, "batch_size": 8},
           "batch": {"lr": 3e-8, "epochs": 2, "batch_size": 8}},
    "ga_passage": {"full": {"lr": 1e-6, "epochs": 4, "batch_size": 4},
                   "lora": {"lr": 2e-5, "epochs": 6, "batch_size": 4}},
    "npo": {"full": {"lr": 2e-6, "epochs": 3, "batch_size": 16}, "lora": {"lr": 5e-5, "epochs": 3, "batch_size": 16},
            "batch": {"lr": 1e-6, "epochs": 2, "batch_size": 16}},
    "dpo": {"full": {"lr": 5e-6, "epochs": 3, "batch_size": 8}, "lora": {"lr": 6e-5, "epochs": 3, "batch_size": 8},
            "batch": {"lr": 2e-6, "epochs": 2, "batch_size": 8}},
    "rt": {"full": {"lr": 4e-7, "epochs": 3, "batch_size": 8}, "lora": {"lr": 3e-5, "epochs": 3, "batch_size": 8},
           "batch": {"lr": 1e-7, "epochs": 1, "batch_size": 8}},
}
# The seed-0 paper's methods (GA-seq, TA, SGA, TAU) as RWKU baselines: its GPT-Neo setting (Adam lr 5e-5,
# batch 8; seed code experiments/configs/*/config_*.json) with RWKU's 3-epoch budget as the epoch cap (they
# stop earlier once the forget corpus' mean MA is below sga_stop). Not tuned for RWKU's models.
for _m in ("ga_seq", "ta", "sga", "tau"):
    DEFAULT_HPARAMS[_m] = {v: {"lr": 5e-5, "epochs": 3, "batch_size": 8} for v in ("full", "lora", "batch")}
# SimNPO (rwku_nb/methods/simnpo.py): RWKU publishes no setting; NPO's (the same loss family). RMU
# (methods/rmu.py): the official WMDP Zephyr-7B run's lr 5e-5 and batch 4, one pass over the corpus (its 150
# batches of 4 ~ RWKU's 582 texts); its LoRA rate is rwku_nb's choice (no published LoRA RMU).
DEFAULT_HPARAMS["simnpo"] = copy.deepcopy(DEFAULT_HPARAMS["npo"])
DEFAULT_HPARAMS["rmu"] = {"full": {"lr": 5e-5, "epochs": 1, "batch_size": 4},
                          "lora": {"lr": 1e-4, "epochs": 1, "batch_size": 4},
                          "batch": {"lr": 5e-5, "epochs": 1, "batch_size": 4}}
HPARAM_VARIANTS = ("full", "lora", "batch")

DEFAULTS = {
    "profile": "custom",          # name used in result paths and figure names
    "model": "smollm2-135m-instruct",  # alias, local directory or hub id
    "device": "auto",             # auto | cpu | cuda
    "dtype": "auto",              # auto (cuda: bfloat16, cpu: float32) | float32 | bfloat16 | float16
    "data": None,                 # local RWKU dir or "hub"; None -> env RWKU_DATA
    "targets": "1",               # index, name, range "1-5", list, or "all"
    "methods": ["before", "icu", "repe", "ga_passage", "ga", "dpo", "npo", "rt"],  # Table 1's thirteen rows
    "variants": ["full", "lora"],  # full fine-tuning, LoRA (r 8, alpha 16, q_proj, v_proj), or layers-A-B
    "corpus": "generated",        # generated (zero-shot, by the model itself) | provided (positive.json)
    "corpus_size": 8,             # samples per training corpus and target (positive, negative, reject, passages)
    "corpus_max_new_tokens": 128,  # length of each generated forget text
    "corpus_batch_size": 8,
    "max_length": 512,            # training cutoff in tokens (official cutoff_len 512)
    "grad_accum": 1,
    "warmup_steps": 20,           # official scripts: 20 warmup steps, cosine schedule
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.05,
    "lora_target_modules": ["q_proj", "v_proj"],  # RWKU's LoRA; Phi-3 fuses them into qkv_proj
    "npo_beta": 0.2,              # official NPO beta
    "dpo_beta": 0.1,              # official DPO beta
    "simnpo_beta": 2.5,           # SimNPO (Fan et al. 2024): the paper's TOFU beta and gamma
    "simnpo_gamma": 0.0,
    "rmu_layer": None,            # RMU (Li et al. 2024): steered layer; None -> 7/32 of the depth (official 7 of 32)
    "rmu_steering": 6.5,          # official Zephyr-7B steering coefficient c and retain weight alpha
    "rmu_alpha": 1200.0,
    "repe_alpha": 1.0,            # RepE steering weight of the Table 1 row (paper: 0.5, 1, 1.5)
    "repe_alphas": [0.5, 1.0, 1.5],  # RepE trade-off curve points
    "repe_layer": None,           # decoder layer RepE reads and steers; None -> the middle one
    "curve": False,               # trade-off curves: also evaluate probes after every training epoch
    "hparams": DEFAULT_HPARAMS,   # per method, per variant: lr, epochs, batch_size
    "eval_batch_size": 32,
    "mia_batch_size": 8,
    "max_new_tokens": 30,         # official: 30 new tokens for forget/neighbor probes
    "stop": "newline",            # newline (rwku_nb) | official (parity with the official code)
    "scorer": "rwku",             # rwku (pltrdy `rouge` semantics, official) | rouge-score
    # Utility (Table 1's last five columns), measured after single-target unlearning with the MIA.
    "utility": ["mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"],
    "utility_size": None,         # items per utility set (spread evenly); None -> all 500 (the paper)
    "utility_batch_size": 8,
    "seed": 0,
    "memorization_size": 64,      # texts per kind in notebook 01's EM/NLL comparison (paper Fig. 1)
    # Knowledge injection (rwku_nb.injection): teach the model its targets' forget/neighbor L1-L2 facts first.
    "inject": None,               # None (real-world knowledge, RWKU's setting) or a target spec
    "inject_lr": 3e-5,            # full fine-tuning, AdamW, answer tokens only
    "inject_epochs": 4,
    "inject_batch_size": 8,
    # Batch-target unlearning (notebook 03): the first N of `batch_targets` unlearned at once, N in batch_sizes.
    "batch_targets": "1-50",
    "batch_sizes": [10, 20, 30, 40, 50],
    "batch_methods": ["ga", "dpo", "npo", "rt"],
    "batch_variant": "full",      # full fine-tuning (the paper) | lora (where full does not fit, e.g. a T4)
    # Partial-layer training (notebook 04): full fine-tuning of decoder layers [a, b) only, per window.
    "layer_windows": [[0, 4], [4, 8], [8, 12], [12, 16], [16, 20], [20, 24], [24, 28], [28, 32]],
    "layer_methods": ["ga", "dpo", "npo", "rt"],
    # The seed-0 paper (rwku_nb.selective; notebook 07). Paper defaults (Barbulescu & Triantafillou 2024,
    # seed code configs): SGA keeps ascending on sequences with MA >= 0.70 (plus the most memorized one) and
    # stops at mean MA < 0.33; TAU switches to task arithmetic at mean MA < 0.5 with c = -1; TA: gamma 0,
    # switch 0.9, c = -3. Adam betas (0.9, 0.98), lr 5e-5, batch 8, up to 150 epochs, 200-token sequences.
    "sga_gamma": 0.70,
    "sga_stop": 0.33,             # RWKU runs stop here; notebook 07 uses `selective_stop`
    "tau_switch": 0.50,
    "tau_coef": -1.0,
    "ta_gamma": 0.0,
    "ta_switch": 0.90,
    "ta_coef": -3.0,
    "selective_betas": [0.9, 0.98],
    "selective_methods": ["ga_seq", "ta", "sga", "tau"],
    "selective_variants": ["full"],
    "selective_data": "extraction",  # extraction (Pile subsets, GPT-Neo) | rwku (the model's most memorized texts)
    "selective_file": "lm_extraction_32_0.csv",  # extraction: which subset (N sequences, seed)
    "selective_unseen": "wikitext",  # threshold text: wikitext | lambada (extraction); heldout | counterfactual (rwku)
    "selective_size": None,       # forget sequences (rwku: the top by MA; extraction: the first N); None = all
    "selective_length": 200,      # tokens per sequence (the extraction benchmark's 200)
    "selective_stop": "unseen",   # stop when mean MA < this: "unseen" (the unseen-text threshold) or a number
    "selective_lr": 5e-5,
    "selective_epochs": 150,      # the cap; the stopping rule usually ends runs far earlier
    "selective_batch_size": 8,
    "el_n": 10,                   # EL_10, the seed paper's main n
    "el_stride": 1,               # evaluate EL at every stride-th prefix length (1 = exact; CPU profiles coarser)
    "ppl_size": None,             # validation texts of valid_wikitext / valid_lambada for perplexity; None = all
    "ppl_max_length": 512,
    # Is the knowledge really gone? (rwku_nb.robustness; notebook 08) Each of `robust_methods` x `robust_variants`
    # unlearns every target as in Table 1, then is attacked: relearning (fine-tuning the unlearned model for
    # each of `relearn_steps` full-batch steps on `relearn_size` texts of each source: `forget`, the start of the
    # target's forget corpus, `passage`, of its Wikipedia passages, and `wikitext`, generic text unrelated to the
    # target; constant lr, AdamW) and
    # weight quantization (round-to-nearest, per-group; `quant_bits`). Probes and one utility set after each.
    "robust_methods": ["ga", "npo", "simnpo", "rmu"],
    "robust_variants": ["full"],
    "relearn_steps": [5, 10, 20],
    "relearn_sources": ["forget", "wikitext"],
    "relearn_size": 8,
    "relearn_lr": 1e-5,
    "quant_bits": [8, 4],
    "quant_group_size": 128,
    "robust_utility": "mmlu",
}

_TYPES = {
    "profile": str, "model": str, "device": str, "dtype": str, "data": (str, type(None)),
    "targets": (str, int, list), "methods": list, "variants": list, "corpus": str,
    "corpus_size": int, "corpus_max_new_tokens": int, "corpus_batch_size": int, "max_length": int,
    "grad_accum": int, "warmup_steps": int, "lora_r": int, "lora_alpha": int,
    "lora_dropout": (int, float), "lora_target_modules": list, "npo_beta": (int, float), "hparams": dict,
    "eval_batch_size": int, "mia_batch_size": int, "max_new_tokens": int, "stop": str,
    "scorer": str, "seed": int, "utility": list, "utility_size": (int, type(None)), "utility_batch_size": int,
    "memorization_size": int, "inject": (str, int, list, type(None)), "inject_lr": (int, float, str),
    "inject_epochs": int, "inject_batch_size": int, "dpo_beta": (int, float), "repe_alpha": (int, float),
    "simnpo_beta": (int, float), "simnpo_gamma": (int, float), "rmu_layer": (int, type(None)),
    "rmu_steering": (int, float), "rmu_alpha": (int, float),
    "repe_alphas": list, "repe_layer": (int, type(None)), "curve": bool, "batch_targets": (str, int, list),
    "batch_sizes": list, "batch_methods": list, "batch_variant": str, "layer_windows": list, "layer_methods": list,
    "sga_gamma": (int, float), "sga_stop": (int, float), "tau_switch": (int, float), "tau_coef": (int, float),
    "ta_gamma": (int, float), "ta_switch": (int, float), "ta_coef": (int, float), "selective_betas": list,
    "selective_methods": list, "selective_variants": list, "selective_data": str, "selective_file": str,
    "selective_unseen": str, "selective_size": (int, type(None)), "selective_length": int,
    "selective_stop": (str, int, float), "selective_lr": (int, float, str), "selective_epochs": int,
    "selective_batch_size": int, "el_n": int, "el_stride": int, "ppl_size": (int, type(None)),
    "ppl_max_length": int, "robust_methods": list, "robust_variants": list, "relearn_steps": list,
    "relearn_sources": list, "relearn_size": int, "relearn_lr": (int, float, str), "quant_bits": list,
    "quant_group_size": int, "robust_utility": str,
}
_CHOICES = {
    "corpus": ("generated", "provided"),
    "stop": ("newline", "official"),
    "scorer": ("rwku", "rouge-score"),
    "utility": ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"),
    "selective_methods": ("ga_seq", "ta", "sga", "tau"),
    "selective_variants": ("full", "lora"),
    "batch_variant": ("full", "lora"),
    "selective_data": ("extraction", "rwku"),
    "robust_variants": ("full", "lora"),
    "relearn_sources": ("forget", "passage", "wikitext"),
    "robust_utility": ("mmlu", "bbh", "truthfulqa", "triviaqa", "fluency"),
}
_UNSEEN = {"extraction": ("wikitext", "lambada"), "rwku": ("heldout", "counterfactual")}
# Sizes and counts that must be at least 1 (0 would e.g. make an empty forget corpus or an empty batch).
_POSITIVE = ("corpus_size", "corpus_max_new_tokens", "corpus_batch_size", "max_length", "grad_accum", "lora_r",
             "lora_alpha", "eval_batch_size", "mia_batch_size", "max_new_tokens", "utility_batch_size",
             "memorization_size", "relearn_size", "quant_group_size")
