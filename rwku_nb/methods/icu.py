"""ICU, in-context unlearning: no weight change; every evaluation prompt carries an instruction to
act as if the target were unknown (official `use_prompt=True`; text in rwku_nb.prompts.ICU_TEMPLATE). Targets
unlearned at once (batch-target, paper Fig. 5) are named together in one instruction (rwku_nb's choice)."""
from ..prompts import names_together
from . import register


@register("icu", "ICU", trains=False)
def run(ctx) -> dict:
    """Ask the evaluator to prepend the ICU instruction; weights stay as they are."""
    return {"icu": True if len(ctx.targets) == 1 else names_together([t.name for t in ctx.targets])}
