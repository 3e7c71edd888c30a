"""Let myst-nb's ``{glue:text}`key:.3f``` format numpy scalars.

With numpy 2, ``repr(np.float64(1.5))`` is ``'np.float64(1.5)'``, which is what ``glue`` stores
as ``text/plain``; myst-nb 1.4's ``format_plain_text`` then fails to convert it to a number
("could not convert string to float"). This unwraps numpy scalar reprs (``np.float64(x)``,
``np.int64(x)``, ``np.True_``) before formatting, for the glue roles and cross-references.
"""

import re

_SCALAR = re.compile(r"^np\.(?:float|int|uint|complex)\w*\((.*)\)$", re.S)
_BOOL = {"np.True_": "True", "np.False_": "False"}


def _unwrap(text: str) -> str:
    text = text.strip()
    if text in _BOOL:
        return _BOOL[text]
    m = _SCALAR.match(text)
    return m.group(1) if m else text


def setup(app):
    from myst_nb.core import variables
    from myst_nb.ext.glue import crossref, roles

    original = variables.format_plain_text

    def format_plain_text(text: str, fmt_spec: str) -> str:
        return original(_unwrap(text), fmt_spec)

    for module in (roles, crossref):
        module.format_plain_text = format_plain_text
    return {"parallel_read_safe": True, "parallel_write_safe": True}
