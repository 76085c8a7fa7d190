"""What `import seqstruct` registers with transformers, done when transformers is first imported.

seqstruct adds two things to transformers: `attn_implementation="favor"` (seqstruct.attention.interface)
and the BiLSTM model type "seqstruct-lstm" (seqstruct.models.lstm). Both need torch and transformers,
which take seconds and hundreds of MiB to import; a command such as `seqstruct --help` needs neither.
So `import seqstruct` calls `register_when_imported()`:

- transformers' registries already loaded (a trigger module below is in sys.modules): register now;
- otherwise: put a finder on `sys.meta_path` that watches transformers' and seqstruct's modules being
  imported, and register right after the first trigger module finishes importing, before the statement
  that imported it returns.

The triggers are `transformers.models.auto.configuration_auto` and `transformers.modeling_utils`. No
model or config can be read without one of them: `AutoConfig`, `AutoTokenizer` and the `AutoModel*`
classes import the first, every model class the second (which imports the first). transformers 5 loads
its top-level names lazily (`_LazyModule.__getattr__` imports the submodule through `importlib`), so
`from transformers import AutoModel` imports `configuration_auto` through the finder like any other
import, and the registration is in place before `from_pretrained` runs.

Registration waits until the importing thread has no `transformers` or `seqstruct` module half-run
(`modeling_utils` imports `configuration_auto` part-way through; `import seqstruct.models.lstm` reaches
`modeling_utils` from inside the very module the registration needs): the finder wraps the loaders of
those two packages' modules, counts per thread how many are executing, and registers when a trigger has
finished and the count is back to zero. The finder removes itself then; both registrations are
idempotent. One limit, of threads: two threads making the process's first transformers imports at the
same moment can meet a cycle of import locks, which Python breaks with an ImportError in one of them;
that thread's import still succeeds, and the other thread registers as its own import ends, but the
first may run on before that. transformers' own lazy imports are not safe to race either (an
ImportError now and then without seqstruct): import it in one thread before starting others that use it.
A process started by torchrun or by multiprocessing's spawn imports seqstruct afresh and gets its own
finder; a forked one inherits the registration.

Alternatives, and why not them:
- registering eagerly in `__init__` (the old way) costs every process torch and transformers
  (`seqstruct --help` took 5 s and 515 MiB; docs/benchmarks.md);
- asking users to call `seqstruct.register()` breaks `import seqstruct; AutoModel.from_pretrained(...,
  attn_implementation="favor")`, the promise the package makes;
- wrapping `transformers.__getattr__` misses `import transformers.models.bert.modeling_bert` and
  sentence-transformers' own imports;
- a post-import hook library (wrapt's `register_post_import_hook`, not a dependency) fires when one
  named module finishes, even inside another half-imported one, which is the case above; the finder
  here is the same mechanism with that one rule added.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Sequence
from types import ModuleType

logger = logging.getLogger(__name__)

TRIGGERS = frozenset({"transformers.models.auto.configuration_auto", "transformers.modeling_utils"})
# Modules whose half-run state the registration could meet: it imports only these (and torch).
TRACKED = ("transformers", "seqstruct")

_lock = threading.Lock()  # around the finder and the counts only; never held while importing
_done = False
_triggered = False  # a trigger module has finished importing
_depth = threading.local()  # .executing: tracked modules this thread is running the code of
_running = 0  # tracked modules being run by all threads together


def register() -> None:
    """Register FAVOR+ and the LSTM with transformers now (imports both; idempotent, thread-safe)."""
    global _done
    if _done:
        return
    _remove_finder()  # the imports below must not come back here
    # No lock of ours around these: an import can wait on a module another thread is running, and that
    # thread may be about to call this function (a cycle of module locks alone Python can resolve).
    # Each registration guards itself, so a second thread here repeats nothing and returns only once
    # the registration is complete.
    from seqstruct.attention.interface import register as register_favor
    from seqstruct.models.lstm import register as register_lstm

    register_favor()
    register_lstm()
    _done = True


def registered() -> bool:
    """Whether `register()` has run in this process."""
    return _done


def register_when_imported() -> None:
    """Register now if transformers' registries are loaded, else as soon as one of them is."""
    with _lock:
        if _done or any(isinstance(f, _Finder) for f in sys.meta_path):
            return
        if not TRIGGERS & sys.modules.keys():
            sys.meta_path.insert(0, _Finder())
            return
    register()


def _remove_finder() -> None:
    with _lock:
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _Finder)]


def _count(step: int) -> None:
    global _running
    with _lock:
        _running += step
    _depth.executing = getattr(_depth, "executing", 0) + step


def _register_after_import() -> None:
    """`register()` at the end of a trigger's import, where this thread still holds that module's
    import lock. Another thread importing transformers at the same moment may hold a lock the
    registration's imports need while it waits for ours: Python breaks such a cycle with an ImportError
    in one thread. That one must not fail the import it is finishing; the other thread registers when
    its own import finishes (it runs the same check), so the first leaves the registration to it."""
    try:
        register()
    except ImportError:
        if not _running:  # no other import under way: a real error, e.g. a transformers too new
            raise
        logger.debug("registration left to the thread importing transformers beside this one", exc_info=True)
        with _lock:
            if not any(isinstance(f, _Finder) for f in sys.meta_path):
                sys.meta_path.insert(0, _Finder())


def _tracked(name: str) -> bool:
    return name.partition(".")[0] in TRACKED


class _Finder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hands out the spec the finders after it find, with a counting loader."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not _tracked(name):
            return None
        for finder in sys.meta_path:
            if isinstance(finder, _Finder) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


class _Loader:
    """Runs a module with its own loader, counted; registers after the outermost one if triggered.
    Everything else (`get_code` for `python -m`, `get_source`, resource readers) is the real loader's."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> object:
        return getattr(self.loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global _triggered
        # The module keeps its real loader (inspect, linecache and importlib.resources ask it).
        module.__loader__ = self.loader
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        _count(+1)
        try:
            self.loader.exec_module(module)
        finally:
            _count(-1)
        _triggered = _triggered or module.__name__ in TRIGGERS
        if _triggered and _depth.executing == 0:
            _register_after_import()
