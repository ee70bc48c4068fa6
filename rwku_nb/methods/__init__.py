"""The method registry: each unlearning method is one small module registered here.

A method takes a `Context` (the model to change in place, its tokenizer, the target(s), the training
corpora it declared, the profile's parameters) and returns how the model must be evaluated afterwards:
`{"icu": True}` for in-context unlearning, `{"detach": fn}` for inference-time hooks the runner
removes after evaluation, `{}` otherwise. A method registered with `trains=False` changes the model only through
such hooks: without them it is evaluated as the original weights (and shares their utility scores). Full / LoRA /
partial-layer training is set up by the runner, which wraps or freezes the model before calling the method.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable


@dataclass
class Context:
    """Everything a method may use."""

    model: object
    tokenizer: object
    targets: list  # one target (single-target setting) or several unlearned at once (batch-target)
    corpora: list[dict]  # per target, in order: {corpus kind: samples}
    params: dict
    variant: str = "full"
    on_epoch_end: Callable[[int], None] | None = None  # trade-off curve hook, passed to `train`
    info: dict = field(default_factory=dict)  # filled by the method: losses, settings used
    # Values computed on the original weights, shared by every job of a sweep (rwku_nb.lifecycle.shared_memo);
    # None: not shared.
    memo: dict | None = None

    @property
    def target(self):
        """The target (single-target setting)."""
        return self.targets[0]

    @property
    def corpus(self) -> dict:
        """Each corpus kind, the union over targets."""
        return {kind: [s for c in self.corpora for s in c[kind]] for kind in (self.corpora[0] if self.corpora else {})}

    @property
    def name(self) -> str:
        """The target's name, or 'N targets' in the batch-target setting (progress bars)."""
        return self.targets[0].name if len(self.targets) == 1 else f"{len(self.targets)} targets"

    def on_original(self, name: str, examples, compute: Callable[[], object]):
        """`compute()`, a value of the model as it is before any weight change (`name`: e.g. NPO's reference
        NLLs of `examples`), computed once per sweep for the same examples: a full, LoRA (adapters at zero add
        exact zeros) and partial-layer run of a target give the same value, so the jobs after the first reuse it."""
        if self.memo is None:
            return compute()
        key = (name, tuple((tuple(e.input_ids), e.labels_mask and tuple(e.labels_mask)) for e in examples))
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def hparams(self, method: str) -> dict:
        """lr, epochs, batch_size of `method` for this variant and number of targets (config.hparams_for)."""
        from ..config import hparams_for

        return hparams_for(self.params, method, self.variant, len(self.targets))

    def train(self, examples, loss_fn, method: str, label: str, **kw) -> None:
        """Run the one training loop with this method's hyperparameters; losses go to `info`."""
        from ..training import train

        hp, p = self.hparams(method), self.params
        self.info["losses"] = train(self.model, self.tokenizer, examples, loss_fn, hp["lr"], hp["epochs"],
                                    hp["batch_size"], p["grad_accum"], p["warmup_steps"], p["seed"],
                                    desc=f"{label} {self.variant} {self.name}", on_epoch_end=self.on_epoch_end, **kw)


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: name, table label, whether it changes weights, the corpora it trains on
    (positive, negative, pair, reject, passage, wikitext), its entry point, the profile keys it reads (its identity),
    its default hyperparameters per variant and the fixed choices in its code that shape its numbers."""

    name: str
    label: str
    trains: bool
    run: Callable[[Context], dict]
    corpora: tuple[str, ...] = ()
    args: tuple[str, ...] = ()  # the profile keys the method reads: part of its results' identity (rwku_nb.jobs)
    constants: dict = field(default_factory=dict)  # fixed choices in its code (prompt templates): identity too
    hparams: dict = field(default_factory=dict)  # {variant: {lr, epochs, batch_size}}; profiles' hparams override


METHODS: dict[str, MethodSpec] = {}


def register(name: str, label: str, trains: bool, corpora: tuple[str, ...] = (), args: tuple[str, ...] = (),
             constants: dict | None = None, settings: dict | None = None, hparams: dict | None = None):
    """Decorator adding a method's `run` function to the registry.

    `settings`: the profile keys the method owns, {name: settings.Setting} (declared here, beside its code: their
    defaults, types and checks); `args`: keys it reads that others declared (e.g. shared by several methods).
    Both become part of its results' identity (a changed value gives a new result, never an old one), except a
    setting declared with identity=False. `constants`: fixed choices in its code that shape its numbers (e.g.
    prompt templates), keyed the same way. `hparams`: its default lr, epochs and batch_size per variant
    ("full", "lora", "batch": the batch-target setting), cited where they come from."""
    from ..errors import RwkuError
    from ..settings import SETTINGS, declare

    own = declare(name, **(settings or {}))
    undeclared = [k for k in args if k not in SETTINGS]
    if undeclared:
        raise RwkuError(f"method {name!r} reads profile key(s) {undeclared} that no module declares; declare them "
                        "with register(..., settings={...}) or settings.declare.")
    keys = tuple(k for k in own if SETTINGS[k].identity) + tuple(args)

    def wrap(fn):
        METHODS[name] = MethodSpec(name, label, trains, fn, corpora, keys, dict(constants or {}), dict(hparams or {}))
        return fn

    return wrap


from . import before, dpo, ga, ga_passage, icu, npo, repe, rmu, rt, selective, simnpo  # noqa: E402,F401  (registration side effects)
