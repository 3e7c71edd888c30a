"""The API reference covers every ntklit module, and every public function is documented."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import ntklit

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted(m.name for m in pkgutil.iter_modules(ntklit.__path__)
                 if not m.name.startswith("_"))


def _public(mod):
    names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
    for name in names:
        obj = getattr(mod, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__:
            yield name, obj


def test_every_module_is_in_the_api_reference():
    api = (REPO / "book" / "api.md").read_text()
    listed = set(re.findall(r"automodule:: ntklit\.(\w+)", api))
    assert listed == set(MODULES), f"missing: {set(MODULES) - listed}, extra: {listed - set(MODULES)}"


@pytest.mark.parametrize("modname", MODULES)
def test_public_functions_have_docstrings_with_args(modname):
    mod = importlib.import_module(f"ntklit.{modname}")
    assert mod.__doc__ and mod.__doc__.strip(), f"ntklit.{modname} has no module docstring"
    problems = []
    for name, obj in _public(mod):
        doc = inspect.getdoc(obj) or ""
        if not doc.strip():
            problems.append(f"{name}: no docstring")
            continue
        if inspect.isfunction(obj):
            params = [p for p in inspect.signature(obj).parameters.values()
                      if p.name not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD,)]
            # Functions taking arguments document them (Google style), unless the summary
            # line is all there is to say about a one-argument helper.
            if len(params) > 1 and "Args:" not in doc:
                problems.append(f"{name}: takes {len(params)} arguments but has no Args: section")
    assert not problems, f"ntklit.{modname}: " + "; ".join(problems)
