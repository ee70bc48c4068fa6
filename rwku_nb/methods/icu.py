"""ICU, in-context unlearning: no weight change; every evaluation prompt carries an instruction to
act as if the target were unknown (official `use_prompt=True`; text in rwku_nb.prompts.ICU_TEMPLATE)."""
from . import register


@register("icu", "ICU", trains=False)
def run(ctx) -> dict:
    """Ask the evaluator to prepend the ICU instruction; weights stay as they are."""
    return {"icu": True}
