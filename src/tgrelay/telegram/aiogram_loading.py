"""Importing aiogram without building every one of its pydantic models up front.

aiogram declares its ~400 Telegram types with pydantic's `defer_build`, then, at the end of
`aiogram.types`, calls `model_rebuild(_types_namespace=…)` on each one, which builds them
all at once: on the project's machine that import took 3.1 s of CPU and 165 MB, for a
process that parses updates, a few answers and little else. Here the import runs with those
calls held back; each held model keeps the namespace aiogram passed as its parent namespace,
so pydantic builds it, with the same names, the first time it is used (aiogram's other
models, its methods and the generic `Response[T]`, are given the same names): 0.9 s and 70 MB,
measured with `bench/idle.py` and `bench/startup.py`.

If aiogram was imported already, that import built its models and nothing changes; if a
future aiogram stops passing its namespace, the models it names none for are rebuilt as it
asked: slower, never wrong. tests/telegram/test_aiogram_loading.py parses every fixture both
ways and compares.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

# Only one import may hold the rebuilds back at a time: the hold is process-wide.
_lock = threading.Lock()


def import_aiogram() -> None:
    """Import aiogram, its types' schemas left to be built on first use.

    Call it before any use of aiogram in a process that may be importing it elsewhere: it
    returns only once the models are ready for use, where a plain import could return
    while another thread is still handing them over.
    """
    with _lock:
        if "aiogram" in sys.modules:
            return
        unnamed: list[type[BaseModel]] = []  # held without a namespace: rebuilt at the end
        shared: dict[str, Any] = {}  # the one namespace every held model is given
        original = BaseModel.__dict__["model_rebuild"]

        def hold(cls: type[BaseModel], /, **options: Any) -> bool | None:
            # Other libraries' models (FastAPI's, ours) rebuild as usual meanwhile.
            if not cls.__module__.startswith("aiogram."):
                return original.__func__(cls, **options)  # type: ignore[no-any-return]
            namespace: Mapping[str, Any] | None = options.get("_types_namespace")
            if namespace is None:
                unnamed.append(cls)
            else:
                # aiogram passes each model the same names: keep one copy, not 400.
                if shared.keys() != namespace.keys():
                    shared.update(namespace)
                cls.__pydantic_parent_namespace__ = shared
            return None

        BaseModel.model_rebuild = classmethod(hold)  # type: ignore[assignment, method-assign]
        try:
            importlib.import_module("aiogram")
        finally:
            BaseModel.model_rebuild = original  # type: ignore[method-assign]
        for cls in unnamed:  # aiogram changed how it rebuilds: do as it asked
            cls.model_rebuild()
        # Its other models (the methods, such as SendMessage, and Response[T], the generic
        # every answer is parsed with) are deferred too, and name the types in strings that
        # their own modules do not import: they need the same names.
        for cls in _models_of_aiogram():
            if cls.__pydantic_parent_namespace__ is None:
                cls.__pydantic_parent_namespace__ = shared


def _models_of_aiogram() -> list[type[BaseModel]]:
    """Every pydantic model class aiogram defines, subclasses of subclasses included."""
    found: list[type[BaseModel]] = []
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            pending.append(sub)
            if sub.__module__.startswith("aiogram."):
                found.append(sub)
    return found
