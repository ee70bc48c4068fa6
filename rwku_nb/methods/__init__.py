"""The method registry: each unlearning method is one small module registered here.

A method takes a `Context` (the model to change in place, its tokenizer, the target, the forget
corpus, the profile's parameters) and returns how the model must be evaluated afterwards
(`{"icu": True}` for in-context unlearning, `{}` otherwise) plus anything worth recording.
Full vs LoRA is handled by the runner, which wraps the model before calling the method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Context:
    """Everything a method may use."""

    model: object
    tokenizer: object
    target: object
    corpus: list[str]
    params: dict
    variant: str = "full"
    info: dict = field(default_factory=dict)  # filled by the method: losses, settings used

    def hparams(self, method: str) -> dict:
        """lr, epochs, batch_size of `method` for this variant (from the profile)."""
        return self.params["hparams"][method][self.variant]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: name, table label, whether it changes weights, and its entry point."""

    name: str
    label: str
    trains: bool
    run: Callable[[Context], dict]


METHODS: dict[str, MethodSpec] = {}


def register(name: str, label: str, trains: bool):
    """Decorator adding a method's `run` function to the registry."""

    def wrap(fn):
        METHODS[name] = MethodSpec(name, label, trains, fn)
        return fn

    return wrap


from . import before, ga, icu, npo  # noqa: E402,F401  (registration side effects)
