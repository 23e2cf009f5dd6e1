"""Lazy package exports (PEP 562): `vaar --help` should not pay for scipy, pandas, matplotlib
and rpy2 before a command needs them."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, exports: dict[str, str]):
    """A module `__getattr__` that imports each exported name from its submodule on first use;
    `exports` maps name -> submodule (relative to `package`)."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)

    return __getattr__
