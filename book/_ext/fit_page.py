"""Code and display math that fit the text column (no horizontal scrolling).

* Code: ``ruff`` formats notebooks and ``ntklit`` at 99 columns (``pyproject.toml``); the
  stylesheet sets the code font so that 99 columns fit the text column at the 1400 px reference
  width, and wraps (never scrolls) code and outputs on narrower screens.
* Display math: equations are split (``aligned``, ``split``) so that each fits the column at
  1400 px; MathJax 3 cannot break lines, so on narrower screens the script scales an equation
  that is wider than its column down to fit (never below ``MIN_SCALE`` of its size).

``tests/test_browser.py`` checks both at 1400 px and at a 390 px phone width.
"""

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"


def _add_static(app, config):
    config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("config-inited", _add_static)
    app.add_css_file("ntklit-fit.css")
    app.add_js_file("ntklit-fit.js", defer="defer")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
