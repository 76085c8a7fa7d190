"""Every change seqstruct makes to transformers' own classes, in one place, behind a contract check.

A registered attention function cannot hold state, and transformers decides which checkpoint keys are
expected from class attributes; so four `PreTrainedModel` methods are wrapped here, once, when seqstruct
is imported. Each wrapper calls the original and then the hooks registered with it:

- `post_init`: after a model is built (FAVOR+ attaches its projection buffers, so `from_pretrained`
  loads saved ones instead of dropping them as unexpected);
- `_check_and_adjust_attn_implementation`: choose an attention implementation when none is asked for
  (a saved Performer reloads as one);
- `_initialize_weights`: after a module's missing weights are drawn (a projection missing from a
  checkpoint is drawn like any other missing weight);
- `_adjust_missing_and_unexpected_keys`: the keys a load may miss or leave unused, widened for the
  current context only by `ignoring_keys` (a context variable: no class attribute changes, so
  concurrent loads in other threads are unaffected).

`check_contract()` names what transformers renamed or re-signed when a new version breaks these
(tests/models/test_hooks.py runs it), instead of failing deep inside a load.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import transformers
from transformers import PreTrainedModel, modeling_utils

# The transformers major versions these hooks were written and tested against.
SUPPORTED_MAJOR = (5,)
# Hooked method -> the leading parameters it must take (after self) for the wrapper to be right.
CONTRACT: dict[str, tuple[str, ...]] = {
    "post_init": (),
    "_check_and_adjust_attn_implementation": ("attn_implementation",),
    "_initialize_weights": ("module",),
    "_adjust_missing_and_unexpected_keys": ("loading_info",),
}
# Attributes of the `loading_info` the last hook edits.
LOADING_INFO_FIELDS = ("missing_keys", "unexpected_keys")

_post_init: list[Callable[[PreTrainedModel], None]] = []
_default_attention: list[Callable[[PreTrainedModel], str | None]] = []
_initialize: list[Callable[[PreTrainedModel, Any], None]] = []
# (unexpected-key patterns, missing-key patterns) ignored by loads in the current context.
_IGNORED: contextvars.ContextVar[tuple[tuple[str, ...], tuple[str, ...]]] = contextvars.ContextVar(
    "seqstruct_ignored_keys", default=((), ())
)
_installed = False


def contract_problems(version: str | None = None) -> list[str]:
    """What in the installed transformers (of `version`, by default the installed one) no longer matches
    CONTRACT; empty when all is well."""
    problems = []
    version = version or transformers.__version__
    if int(version.split(".")[0]) not in SUPPORTED_MAJOR:
        problems.append(f"transformers {version}: hooks written for major version {SUPPORTED_MAJOR}")
    for name, leading in CONTRACT.items():
        method = getattr(PreTrainedModel, name, None)
        if method is None:
            problems.append(f"PreTrainedModel.{name} no longer exists")
            continue
        method = getattr(method, "__wrapped__", method)
        parameters = list(inspect.signature(method).parameters)[1 : 1 + len(leading)]
        if tuple(parameters) != leading:
            problems.append(f"PreTrainedModel.{name} takes {parameters}, expected {list(leading)} first")
    info = getattr(modeling_utils, "LoadStateDictInfo", None)
    fields = {f.name for f in dataclasses.fields(info)} if dataclasses.is_dataclass(info) else set()
    if not set(LOADING_INFO_FIELDS) <= fields:
        problems.append(
            f"transformers' LoadStateDictInfo no longer has {sorted(set(LOADING_INFO_FIELDS) - fields)}"
        )
    return problems


def trainer_contract_problems() -> list[str]:
    """What training.token_budget.MaskedLMTrainer overrides (not patches) of the Trainer, checked apart:
    importing the Trainer imports `datasets`, which `import seqstruct` does not need."""
    problems = []
    sampler = getattr(transformers.Trainer, "_get_train_sampler", None)
    if sampler is None:
        problems.append("Trainer._get_train_sampler no longer exists")
    elif list(inspect.signature(sampler).parameters)[1:2] != ["train_dataset"]:
        problems.append("Trainer._get_train_sampler no longer takes train_dataset first")
    loss = getattr(transformers.Trainer, "compute_loss", None)
    expected = ["self", "model", "inputs", "return_outputs", "num_items_in_batch"]
    if loss is None or list(inspect.signature(loss).parameters) != expected:
        problems.append(f"Trainer.compute_loss no longer takes ({', '.join(expected[1:])})")
    # MaskedLMTrainer sets this attribute so that the Trainer neither skips dividing the loss by the
    # accumulation steps nor multiplies it by the world size: a Trainer that stops reading it would
    # silently scale the loss.
    if "model_accepts_loss_kwargs" not in inspect.getsource(transformers.Trainer.training_step):
        problems.append("Trainer.training_step no longer reads model_accepts_loss_kwargs")
    return problems


def check_contract() -> None:
    problems = contract_problems()
    if problems:
        raise RuntimeError("seqstruct's transformers hooks do not fit this version: " + "; ".join(problems))


def _wrap(name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> None:
    original = getattr(PreTrainedModel, name)
    wrapper = make(original)
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(PreTrainedModel, name, wrapper)


def _without(keys: Iterable[str], patterns: tuple[str, ...]) -> set[str]:
    pattern = re.compile("|".join(f"({p})" for p in patterns))
    return {key for key in keys if pattern.search(key) is None}


def install() -> None:
    """Wrap the CONTRACT methods once (idempotent); the hooks added later are called by the wrappers."""
    global _installed
    if _installed:
        return
    check_contract()

    def post_init(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: PreTrainedModel) -> None:
            for hook in _post_init:
                hook(self)
            original(self)

        return wrapper

    def check_and_adjust(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: PreTrainedModel, attn_implementation: str | None, *args: Any, **kwargs: Any) -> str:
            for hook in _default_attention:
                if attn_implementation is None:
                    attn_implementation = hook(self)
            return original(self, attn_implementation, *args, **kwargs)

        return wrapper

    def initialize_weights(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: PreTrainedModel, module: Any, *args: Any, **kwargs: Any) -> None:
            original(self, module, *args, **kwargs)
            for hook in _initialize:
                hook(self, module)

        return wrapper

    def adjust_keys(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: PreTrainedModel, loading_info: Any, *args: Any, **kwargs: Any) -> None:
            original(self, loading_info, *args, **kwargs)
            unexpected, missing = _IGNORED.get()
            if unexpected:
                loading_info.unexpected_keys = _without(loading_info.unexpected_keys, unexpected)
            if missing:
                loading_info.missing_keys = _without(loading_info.missing_keys, missing)

        return wrapper

    _wrap("post_init", post_init)
    _wrap("_check_and_adjust_attn_implementation", check_and_adjust)
    _wrap("_initialize_weights", initialize_weights)
    _wrap("_adjust_missing_and_unexpected_keys", adjust_keys)
    _installed = True


def on_post_init(hook: Callable[[PreTrainedModel], None]) -> None:
    """Call `hook(model)` at the start of every model's `post_init`."""
    install()
    _post_init.append(hook)


def on_default_attention(hook: Callable[[PreTrainedModel], str | None]) -> None:
    """Ask `hook(model)` for an attention implementation when a load names none."""
    install()
    _default_attention.append(hook)


def on_initialize_weights(hook: Callable[[PreTrainedModel, Any], None]) -> None:
    """Call `hook(model, module)` after transformers initialises a module's missing weights."""
    install()
    _initialize.append(hook)


@contextlib.contextmanager
def ignoring_keys(unexpected: Iterable[str] = (), missing: Iterable[str] = ()) -> Iterator[None]:
    """Within the block, loads in this context neither report checkpoint keys matching `unexpected`
    (regexes) as unused nor model keys matching `missing` as missing."""
    install()
    token = _IGNORED.set((tuple(unexpected), tuple(missing)))
    try:
        yield
    finally:
        _IGNORED.reset(token)
