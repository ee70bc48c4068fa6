"""Before: the original model, evaluated as it is (the reference row of Table 1)."""
from . import register


@register("before", "Before", trains=False)
def run(ctx) -> dict:
    """Leave the model untouched."""
    return {}
