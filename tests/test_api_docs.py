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
MODULES = sorted(
    m.name for m in pkgutil.iter_modules(ntklit.__path__) if not m.name.startswith("_")
)


def _public(mod):
    names = getattr(mod, "__all__", None) or [n for n in vars(mod) if not n.startswith("_")]
    for name in names:
        obj = getattr(mod, name)
        if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == mod.__name__:
            yield name, obj


def test_every_module_is_in_the_api_reference():
    api = (REPO / "book" / "api.md").read_text()
    listed = set(re.findall(r"automodule:: ntklit\.(\w+)", api))
    assert listed == set(MODULES), (
        f"missing: {set(MODULES) - listed}, extra: {listed - set(MODULES)}"
    )


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
            params = [
                p
                for p in inspect.signature(obj).parameters.values()
                if p.name not in ("self", "cls") and p.kind not in (p.VAR_KEYWORD,)
            ]
            # Functions taking arguments document them (Google style), unless the summary
            # line is all there is to say about a one-argument helper.
            if len(params) > 1 and "Args:" not in doc:
                problems.append(f"{name}: takes {len(params)} arguments but has no Args: section")
    assert not problems, f"ntklit.{modname}: " + "; ".join(problems)


_PRIVATE_XREF = re.compile(r":(?:func|meth|class|data|attr|obj):`~?(?:[\w.]*\.)?(_\w+)`")


@pytest.mark.parametrize("name", MODULES)
def test_public_docs_link_no_private_names(name):
    """The API page documents public names only, so a role such as :func:`_helper` in a public
    docstring is an unresolved cross-reference (the strict book build fails on it, late and
    slowly): name private helpers as ``literal`` text instead."""
    mod = importlib.import_module(f"ntklit.{name}")
    docs = {name: mod.__doc__ or ""}
    for obj_name, obj in _public(mod):
        docs[f"{name}.{obj_name}"] = inspect.getdoc(obj) or ""
        if inspect.isclass(obj):
            for m_name, m in vars(obj).items():
                if not m_name.startswith("_") and (
                    inspect.isfunction(m) or isinstance(m, property)
                ):
                    docs[f"{name}.{obj_name}.{m_name}"] = inspect.getdoc(m) or ""
    bad = {k: _PRIVATE_XREF.findall(d) for k, d in docs.items() if _PRIVATE_XREF.search(d)}
    assert not bad, bad
