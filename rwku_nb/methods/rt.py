"""RT, rejection tuning: supervised fine-tuning on questions about the target answered with a refusal
(the `reject` corpus), loss on the refusal tokens only (RWKU baseline)."""
from ..prompts import chat_prompt
from ..training import pair_examples, sft_loss
from . import register


def refusal_pairs(tokenizer, reject: list) -> list[tuple[str, str]]:
    """(chat prompt of the question, refusal + EOS) for each [question, refusal] sample."""
    return [(chat_prompt(tokenizer, q, answer_cue=False), f"{a}{tokenizer.eos_token}") for q, a in reject]


# Hyperparameters: the official RWKU scripts' values (../shared/PROTOCOL.md, "RWKU methods and hyperparameters");
# `batch` is the batch-target setting (full fine-tuning). CPU profiles scale them for a 135M model.
@register("rt", "RT", trains=True, corpora=("reject",),
          hparams={"full": {"lr": 4e-7, "epochs": 3, "batch_size": 8}, "lora": {"lr": 3e-5, "epochs": 3, "batch_size": 8},
                   "batch": {"lr": 1e-7, "epochs": 1, "batch_size": 8}})
def run(ctx) -> dict:
    """Fine-tune the model to refuse questions about the target."""
    pairs = refusal_pairs(ctx.tokenizer, ctx.corpus["reject"])
    ctx.train(pair_examples(ctx.tokenizer, pairs, ctx.params["max_length"]), sft_loss, "rt", "RT")
    return {}
