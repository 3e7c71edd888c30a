"""Remove duplicate <script> entries from each page.

Sphinx 7.4 writes inline scripts registered after builder initialization twice
(sphinx-doc/sphinx#13402, fixed in Sphinx 8.2, which jupyter-book 1.x cannot use). sphinx-thebe's
inline ``const THEBE_JS_URL = ...`` then throws "Identifier has already been declared" on
every page. This keeps the first of identical script entries.
"""


def _dedup(app, pagename, templatename, context, doctree):
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (
            getattr(js, "filename", None) or "",
            getattr(js, "priority", 0),
            tuple(sorted(getattr(js, "attributes", {}).items())),
        )
        if key not in seen:
            seen.add(key)
            unique.append(js)
    context["script_files"] = unique


def setup(app):
    app.connect("html-page-context", _dedup, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
