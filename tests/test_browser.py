"""The built book, checked offline and in a real browser (issue 8, items 1-2).

Two kinds of checks, each a function that returns a list of problems (strings; empty = fine):

* offline, with a plain HTML parser: every local ``href``/``src`` in the built HTML resolves
  (file exists, ``#anchor`` exists in the target page), no resource is loaded from another host,
  cross-references / equation references / citations rendered as links (:func:`check_links`,
  :func:`check_references`), launch links name notebooks that exist in the repository
  (:func:`check_launch_links`), the download button offers the ``.ipynb`` (:func:`check_download`);
* in headless Chromium (Debian's ``/usr/bin/chromium`` driven by Playwright, never a downloaded
  browser), serving the HTML from 127.0.0.1: each page loads with no console error, no uncaught
  exception, no failed request and no request to another host; every math element is typeset by
  the local MathJax without errors and no TeX source is left in the text; every image loads with
  a non-zero size (:func:`check_page`); clicking the sidebar lands on the right page
  (:func:`check_sidebar`); the search page finds a page by a word of its title
  (:func:`check_search`).

The same functions run on the real book (assert no problems) and on broken copies of it made in
a temporary directory, one breakage per case (assert the problem is reported), so the tests are
shown to fail when a page, a formula, a figure or a link breaks, without breaking the book.

The book is the one ``tests/test_book.py`` builds into ``_build/test`` (quick profile); it is
rebuilt here only when missing or older than its inputs. Chromium comes from
``scripts/install_browser.sh``; without it these tests fail (they never skip).
"""

from __future__ import annotations

import contextlib
import functools
import html.parser
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml
from conftest import chapter_env

from ntklit import runner

REPO = Path(__file__).resolve().parent.parent
# The build tests/test_book.py makes (override to check another build of this repository).
BUILD = Path(os.environ.get("NTKLIT_TEST_BUILD", REPO / "_build" / "test")).resolve()
TOC_DOCS = runner._toc_files(REPO)
PAGES = [f"{doc}.html" for doc in TOC_DOCS]
#: chapters photographed at both widths by test_page_fits_its_column (for a person to look at)
SCREENSHOT_PAGES = ("book/02_derivation.html", "book/07_fluctuations.html")

CHROMIUM = Path(os.environ.get("NTKLIT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No name resolves except the local server's: a request to another host fails at once,
    # offline or not (and is reported by check_page before it fails).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
TIMEOUT_MS = 30_000
FIXTURES = Path(__file__).resolve().parent / "browser_fixtures"

pytestmark = pytest.mark.slow  # everything here needs the built book

#: Console errors that are not the book's: pydata-sphinx-theme 0.17 logs this at error level on
#: a reader's first visit (no colour mode in localStorage yet) and then picks "auto";
#: sphinx-book-theme 1.3 rejects the ``default_mode`` option that would avoid it. Exact text.
ALLOWED_CONSOLE_ERRORS = ("Got invalid theme mode: . Resetting to auto.",)

EXTERNAL_SCHEMES = ("http:", "https:", "//", "mailto:", "javascript:", "data:", "tel:", "ftp:")
#: Sphinx's generated index pages (they show unlinked group names by design).
INDEX_PAGES = ("genindex.html", "py-modindex.html", "search.html")
#: (tag, attribute) pairs whose URL the browser fetches to render the page.
FETCHED = {
    ("img", "src"),
    ("script", "src"),
    ("iframe", "src"),
    ("source", "src"),
    ("video", "src"),
    ("audio", "src"),
    ("embed", "src"),
    ("object", "data"),
    ("video", "poster"),
}
FETCHED_LINK_RELS = {
    "stylesheet",
    "preload",
    "icon",
    "shortcut",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
}
VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "param",
    "source",
    "track",
    "wbr",
}
#: Text inside these is code, not prose: TeX-like or role-like text there is legitimate.
CODE_TAGS = {"script", "style", "pre", "code", "textarea", "kbd", "samp"}
#: MyST role source left in the rendered text means a role was not parsed.
ROLE_SOURCE = re.compile(
    r"\{(?:eq|cite(?::[a-z]+)?|ref|numref|doc|prf:ref|glue(?::[a-z]+)?|term|download|math|"
    r"py:[a-z]+|mod|func|class|meth|attr)\}`"
)


# --------------------------------------------------------------------------- offline parsing


@dataclass
class Link:
    tag: str
    attr: str
    url: str
    line: int
    fetched: bool  # the browser loads it to render the page (vs. a link a reader may follow)
    in_sidebar: bool = False


@dataclass
class PageInfo:
    """What the offline checks need from one HTML file."""

    ids: set[str] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)
    n_math: int = 0  # elements with class ``math`` (what MathJax typesets)
    unlinked_xrefs: list[str] = field(default_factory=list)  # .xref not inside <a href>
    unlinked_citations: list[str] = field(default_factory=list)
    role_source: list[str] = field(default_factory=list)  # e.g. "{eq}`x`" left in text
    download_source: str | None = None  # href of the download-source button
    refresh: str | None = None  # <meta http-equiv=refresh> target


class _Parser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.info = PageInfo()
        self.stack: list[tuple[str, dict]] = []  # open elements with our flags
        self._cite: list[list] = []  # open bibtex-citation spans: [text, has_link]
        self._xref: list[list] = []  # open .xref elements outside <a href>: [text]

    def _flag(self, name: str) -> bool:
        return any(f.get(name) for _, f in self.stack)

    def handle_starttag(self, tag, attrs):
        a = {k: (v or "") for k, v in attrs}
        classes = a.get("class", "").split()
        for key in ("id", "name") if tag in ("a", "span", "div", "section") else ("id",):
            if a.get(key):
                self.info.ids.add(a[key])
        if "math" in classes:
            self.info.n_math += 1
        if tag == "meta" and a.get("http-equiv", "").lower() == "refresh":
            m = re.search(r"url=(.+)$", a.get("content", ""), re.I)
            self.info.refresh = m.group(1).strip() if m else None
        in_sidebar = self._flag("sidebar")
        for attr in ("href", "src", "data", "poster"):
            if attr not in a or not a[attr]:
                continue
            if tag == "link":
                rels = set(a.get("rel", "").lower().split())
                fetched = bool(rels & FETCHED_LINK_RELS)
            else:
                fetched = (tag, attr) in FETCHED
            self.info.links.append(Link(tag, attr, a[attr], self.getpos()[0], fetched, in_sidebar))
        if tag == "a" and "btn-download-source-button" in classes:
            self.info.download_source = a.get("href")
        if tag == "span" and "bibtex-citation" in classes:
            self._cite.append(["", False])
        if tag == "a" and a.get("href") and self._cite:
            self._cite[-1][1] = True
        if tag in VOID:
            return
        flags = {
            "code": tag in CODE_TAGS,
            "a_href": tag == "a" and bool(a.get("href")),
            "sidebar": tag == "nav" and "bd-docs-nav" in classes,
            "cite": tag == "span" and "bibtex-citation" in classes,
            "xref": "xref" in classes and not self._flag("a_href"),
        }
        if flags["xref"]:
            self._xref.append([""])
        self.stack.append((tag, flags))

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in VOID or not any(t == tag for t, _ in self.stack):
            return
        while self.stack:
            t, flags = self.stack.pop()
            if flags.get("cite") and self._cite:
                text, has_link = self._cite.pop()
                if not has_link:
                    self.info.unlinked_citations.append(text.strip())
            if flags.get("xref") and self._xref:
                self.info.unlinked_xrefs.append(self._xref.pop()[0].strip())
            if t == tag:
                break

    def handle_data(self, data):
        for c in self._cite:
            c[0] += data
        for x in self._xref:
            x[0] += data
        if not self._flag("code"):
            self.info.role_source += ROLE_SOURCE.findall(data)


@functools.lru_cache(maxsize=4096)
def _parse_cached(path: str, mtime_ns: int, size: int) -> PageInfo:
    p = _Parser()
    p.feed(Path(path).read_text(encoding="utf-8", errors="replace"))
    p.close()
    return p.info


def parse_page(path: Path) -> PageInfo:
    """Parse one built HTML page (cached while the file is unchanged)."""
    st = path.stat()
    return _parse_cached(str(path), st.st_mtime_ns, st.st_size)


def _is_external(url: str) -> bool:
    return url.lower().startswith(EXTERNAL_SCHEMES)


def _resolve(root: Path, page: Path, url: str) -> tuple[Path, str]:
    """Local URL in ``page`` -> (target file, fragment); the target may not exist."""
    parts = urllib.parse.urlsplit(url)
    path = urllib.parse.unquote(parts.path)
    if not path:
        target = page
    elif path.startswith("/"):
        target = root / path.lstrip("/")
    else:
        target = page.parent / path
    target = Path(os.path.normpath(target))
    if target.is_dir():
        target = target / "index.html"
    return target, urllib.parse.unquote(parts.fragment)


def html_pages(root: Path) -> list[Path]:
    """Every HTML page of the build (``_static``, ``_sources``, ``_images`` excluded)."""
    pages = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d not in ("_static", "_sources", "_images")]
        pages += [Path(dirpath) / f for f in filenames if f.endswith(".html")]
    return sorted(pages)


def toc_pages(root: Path) -> list[str]:
    """The pages of the table of contents as the built navigation lists them, in order.

    Read from the sidebar of the landing page (``index.html`` or its redirect target), as paths
    relative to ``root`` (e.g. ``book/00_introduction.html``), the landing page first.
    """
    index = root / "index.html"
    start = index
    info = parse_page(index)
    if info.refresh:
        start, _ = _resolve(root, index, info.refresh)
        info = parse_page(start)
    pages = [start.relative_to(root).as_posix()]
    for link in info.links:
        if link.in_sidebar and link.tag == "a" and not _is_external(link.url):
            target, _ = _resolve(root, start, link.url)
            rel = PurePosixPath(os.path.relpath(target, root)).as_posix()
            if rel not in pages:
                pages.append(rel)
    return pages


def check_links(root: Path, pages: list[Path] | None = None) -> list[str]:
    """Every local ``href``/``src`` resolves; nothing is fetched from another host.

    Args:
      root: the built HTML directory.
      pages: the pages to check (default: every HTML page of the build).

    Returns:
      Problems like ``book/x.html:12: <a href="y.html#z">: no id "z" in book/y.html``.
    """
    problems = []
    for page in pages if pages is not None else html_pages(root):
        info = parse_page(page)
        rel = page.relative_to(root).as_posix()
        for link in info.links:
            where = f'{rel}:{link.line}: <{link.tag} {link.attr}="{link.url}">'
            if _is_external(link.url):
                if link.fetched and not link.url.lower().startswith("data:"):
                    problems.append(f"{where}: resource loaded from another host")
                continue
            if link.url == "#" or (link.tag == "a" and link.url.startswith("?")):
                continue  # theme buttons, search queries
            target, frag = _resolve(root, page, link.url)
            try:
                target.relative_to(root)
            except ValueError:
                problems.append(f"{where}: points outside the book")
                continue
            if not target.is_file():
                problems.append(f"{where}: no file {os.path.relpath(target, root)}")
                continue
            if link.fetched and target.stat().st_size == 0:
                problems.append(f"{where}: empty file")
            if frag and target.suffix == ".html" and frag not in parse_page(target).ids:
                problems.append(f'{where}: no id "{frag}" in {os.path.relpath(target, root)}')
    return problems


class _Outputs(html.parser.HTMLParser):
    """The text inside a page's cell outputs (``div.cell_output``), one string per output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.outputs: list[str] = []
        self._depth = 0  # div nesting inside the current output (0: outside)

    def handle_starttag(self, tag, attrs):
        if tag != "div":
            return
        if self._depth:
            self._depth += 1
        elif "cell_output" in (dict(attrs).get("class") or "").split():
            self._depth = 1
            self.outputs.append("")

    def handle_endtag(self, tag):
        if tag == "div" and self._depth:
            self._depth -= 1

    def handle_data(self, data):
        if self._depth:
            self.outputs[-1] += data


#: What a reader must never see in a cell output: progress-bar frames, warnings, tracebacks,
#: and paths of the machine that built the page.
CONSOLE_NOISE = {
    "progress-bar frame": re.compile(r"\d+%\|"),
    "progress-bar rate": re.compile(r"(it/s|s/it)\]"),
    "warning": re.compile(r"\b\w*Warning\b"),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
    "site-packages path": re.compile(r"site-packages"),
    "absolute path of the builder": re.compile(
        "|".join(re.escape(str(p)) for p in (REPO.resolve(), Path.home()) if str(p) != "/")
    ),
}


def check_console_noise(root: Path, pages: list[Path] | None = None) -> list[str]:
    """Cell outputs that show console noise (:data:`CONSOLE_NOISE`)."""
    problems = []
    for page in pages if pages is not None else sorted(root.rglob("*.html")):
        parser = _Outputs()
        parser.feed(page.read_text(errors="replace"))
        for text in parser.outputs:
            for what, pattern in CONSOLE_NOISE.items():
                m = pattern.search(text)
                if m:
                    i = m.start()
                    problems.append(
                        f"{page.relative_to(root)}: {what} in a cell output: "
                        f"{text[max(0, i - 40) : i + 40]!r}"
                    )
    return problems


def check_references(root: Path, pages: list[Path] | None = None) -> list[str]:
    """Cross-references, equation references and citations rendered as links.

    Resolution of the links themselves is :func:`check_links`' job; this finds references that
    Sphinx could not resolve and rendered as plain text (a ``.xref`` outside a link, a citation
    without a link) and MyST role source (``{eq}`...```) left in the text.
    """
    problems = []
    if pages is None:  # Sphinx's index pages show unlinked group names (e.g. a package)
        pages = [p for p in html_pages(root) if p.name not in INDEX_PAGES]
    for page in pages:
        info = parse_page(page)
        rel = page.relative_to(root).as_posix()
        problems += [f"{rel}: unresolved cross-reference {t!r}" for t in info.unlinked_xrefs]
        problems += [f"{rel}: citation without a link {t!r}" for t in info.unlinked_citations]
        problems += [f"{rel}: MyST role source left in the text: {t!r}" for t in info.role_source]
    return problems


def _repository() -> tuple[str, str]:
    cfg = yaml.safe_load((REPO / "_config.yml").read_text())
    repo = cfg.get("repository", {})
    return repo.get("url", "").rstrip("/"), repo.get("branch", "main")


def check_launch_links(
    root: Path, repo_root: Path, repo_url: str, branch: str, pages: list[Path] | None = None
) -> list[str]:
    """Launch (Binder/Colab) and source links name files that exist in the repository."""
    m = re.match(r"https?://github\.com/([^/]+)/([^/]+)$", repo_url)
    if not m:
        return [f"repository url {repo_url!r} is not a GitHub repository"]
    owner, name = m.groups()
    patterns = [
        re.compile(rf"https?://github\.com/{owner}/{name}/(?:blob|edit)/{branch}/([^?#]+)"),
        re.compile(
            rf"https?://colab\.research\.google\.com/github/{owner}/{name}/blob/"
            rf"{branch}/([^?#]+)"
        ),
        re.compile(
            rf"https?://mybinder\.org/v2/gh/{owner}/{name}/{branch}\?.*"
            r"urlpath=(?:tree|lab/tree)/([^&#]+)"
        ),
    ]
    problems = []
    for page in pages if pages is not None else html_pages(root):
        for link in parse_page(page).links:
            for pat in patterns:
                hit = pat.match(link.url)
                if hit:
                    path = urllib.parse.unquote(hit.group(1))
                    if not (repo_root / path).is_file():
                        problems.append(
                            f"{page.relative_to(root).as_posix()}: {link.url} "
                            f"names {path}, which is not in the repository"
                        )
    return problems


def check_download(base_url: str, root: Path, page: str, notebook: bool) -> list[str]:
    """The page's download button offers its source; for a notebook, the ``.ipynb``, served."""
    info = parse_page(root / page)
    if info.download_source is None:
        return [f"{page}: no download-source button"]
    url = urllib.parse.urljoin(base_url + page, info.download_source)
    if notebook and not urllib.parse.urlsplit(url).path.endswith(".ipynb"):
        return [f"{page}: the download button offers {info.download_source}, not the .ipynb"]
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            body = r.read()
    except (urllib.error.URLError, OSError) as e:
        return [f"{page}: download {info.download_source} is not served ({e})"]
    if notebook:
        try:
            nb = json.loads(body)
            assert isinstance(nb["cells"], list) and nb["nbformat"] >= 4
        except (ValueError, KeyError, TypeError, AssertionError):
            return [f"{page}: download {info.download_source} is not a notebook"]
    elif not body:
        return [f"{page}: download {info.download_source} is empty"]
    return []


# --------------------------------------------------------------------------- serving + browser


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def send_head(self):
        # Browsers probe /favicon.ico on their own (the page does not ask for it); the book
        # declares no icon, so answer "no content" rather than a 404 console error.
        if self.path == "/favicon.ico" and not Path(self.translate_path(self.path)).is_file():
            self.send_response(204)
            self.end_headers()
            return None
        return super().send_head()


@contextlib.contextmanager
def serve(root: Path):
    """Serve ``root`` on 127.0.0.1 (random free port) in a thread; yields the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _is_local(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname == "127.0.0.1"


# Runs in the page once it has loaded: waits for MathJax and the images, returns what it saw.
_INSPECT_JS = r"""
async () => {
  const out = {mathjax: null, math: [], merror: [], undefinedMacros: [], leftover: [],
               containers: 0, images: []};
  const mathEls = Array.from(document.querySelectorAll('.math'));
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    try {
      await Promise.race([MathJax.startup.promise, new Promise((_, reject) =>
        setTimeout(() => reject('no result within 20 s'), 20000))]);
      out.mathjax = 'ok';
    } catch (e) { out.mathjax = 'startup failed: ' + e; }
  } else if (mathEls.length) {
    out.mathjax = 'not loaded';
  }
  out.containers = document.querySelectorAll('mjx-container').length;
  for (const el of mathEls) {
    const n = el.querySelectorAll('mjx-container').length;
    if (n !== 1) out.math.push([n, el.textContent.trim().slice(0, 120)]);
  }
  for (const el of document.querySelectorAll('mjx-merror, [data-mjx-error]')) {
    out.merror.push((el.getAttribute('data-mjx-error') || el.textContent).slice(0, 160));
  }
  if (out.mathjax === 'ok' && MathJax.startup.document && MathJax.startup.toMML) {
    for (const item of MathJax.startup.document.math) {
      let mml = '';
      try { mml = MathJax.startup.toMML(item.root); } catch (e) { continue; }
      // TeX errors become <merror>; an undefined macro (noundefined package) a red <mtext>.
      const err = mml.match(/<merror[^>]*data-mjx-error="([^"]*)"/);
      if (err) out.merror.push(err[1] + ' in ' + item.math.slice(0, 100));
      const undef = mml.match(/<mtext mathcolor="red">(\\[A-Za-z]+)<\/mtext>/);
      if (undef) out.undefinedMacros.push(undef[1] + ' in ' + item.math.slice(0, 100));
    }
  }
  // TeX source left in the prose (not in code, not inside typeset math).
  const skip = 'script,style,pre,code,textarea,kbd,samp,mjx-container,.highlight,noscript';
  const tex = /\\\(|\\\)|\\\[|\\\]|\$\$|\\begin\{|(^|[^\\$\w])\$[^\s$][^$]{0,200}?[^\s\\$]\$/;
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const parent = node.parentElement;
    if (!parent || parent.closest(skip)) continue;
    if (tex.test(node.textContent)) out.leftover.push(node.textContent.trim().slice(0, 120));
  }
  // Images: load lazy ones now, wait for all (bounded), then read their natural size.
  const imgs = Array.from(document.images);
  for (const img of imgs) img.loading = 'eager';
  await Promise.race([
    Promise.all(imgs.map(img => img.complete ? null :
      new Promise(r => { img.addEventListener('load', r); img.addEventListener('error', r); }))),
    new Promise(r => setTimeout(r, 10000))]);
  for (const img of imgs) {
    out.images.push([img.getAttribute('src'), img.complete, img.naturalWidth, img.naturalHeight]);
  }
  return out;
}
"""


def _watch(page, problems: list[str], label: str) -> set:
    """Record console errors, uncaught exceptions, failed and non-local requests of ``page``.

    Returns the set of requests in flight (kept up to date), to wait for them to settle.
    """
    external: set[str] = set()
    inflight: set = set()

    def on_console(msg):
        if msg.type == "error" and msg.text not in ALLOWED_CONSOLE_ERRORS:
            loc = msg.location or {}
            problems.append(
                f"{label}: console error: {msg.text} "
                f"({loc.get('url', '')}:{loc.get('lineNumber', '')})"
            )

    def on_request(req):
        inflight.add(req)
        if not _is_local(req.url):
            external.add(req.url)
            problems.append(f"{label}: request to another host ({req.resource_type}): {req.url}")

    def on_failed(req):
        inflight.discard(req)
        if req.url not in external:
            problems.append(f"{label}: failed request {req.url}: {req.failure}")

    def on_response(resp):
        if resp.status >= 400:
            problems.append(f"{label}: HTTP {resp.status} for {resp.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda err: problems.append(f"{label}: uncaught exception: {err}"))
    page.on("request", on_request)
    page.on("requestfailed", on_failed)
    page.on("response", on_response)
    page.on("requestfinished", lambda req: inflight.discard(req))
    return inflight


def _settle(page, inflight: set, problems: list[str], label: str, seconds: float = 10) -> None:
    """Let late requests (async scripts, web fonts, images) finish, so their failures count."""
    for _ in range(int(seconds / 0.05)):
        if not inflight:
            page.wait_for_timeout(100)  # a request started by the last one to finish
            if not inflight:
                return
        page.wait_for_timeout(50)
    problems += [f"{label}: request still pending after {seconds} s: {r.url}" for r in inflight]


def check_page(context, base_url: str, page_path: str, n_math: int) -> list[str]:
    """Load one page in the browser and check what a reader sees.

    Args:
      context: a Playwright browser context.
      base_url: the local server's base URL.
      page_path: the page, relative to the book root (``book/00_introduction.html``).
      n_math: the number of math elements in the page's HTML source (class ``math``).

    Returns:
      Problems: console errors, uncaught exceptions, failed requests or HTTP errors, requests
      to other hosts, MathJax not loaded, math elements not typeset exactly once, a typeset count
      different from ``n_math``, TeX errors, undefined macros, TeX source left in the text,
      images that did not load or have zero size.
    """
    problems: list[str] = []
    page = context.new_page()
    try:
        inflight = _watch(page, problems, page_path)
        resp = page.goto(base_url + page_path, wait_until="load", timeout=TIMEOUT_MS)
        if resp is None or not resp.ok:
            problems.append(f"{page_path}: HTTP {resp.status if resp else '?'}")
            return problems
        seen = page.evaluate(_INSPECT_JS)
        _settle(page, inflight, problems, page_path)
    finally:
        page.close()
    if seen["mathjax"] not in (None, "ok"):
        problems.append(f"{page_path}: MathJax {seen['mathjax']}")
    if seen["containers"] != n_math:
        problems.append(
            f"{page_path}: {seen['containers']} typeset formulas for {n_math} "
            "math elements in the source"
        )
    problems += [f"{page_path}: math element typeset {n} times: {t!r}" for n, t in seen["math"]]
    problems += [f"{page_path}: MathJax error: {e}" for e in seen["merror"]]
    problems += [f"{page_path}: undefined TeX macro {e}" for e in seen["undefinedMacros"]]
    problems += [f"{page_path}: TeX source left in the text: {t!r}" for t in seen["leftover"]]
    for src, complete, w, h in seen["images"]:
        if not complete or w == 0 or h == 0:
            problems.append(f"{page_path}: image {src} did not load (natural size {w}x{h})")
    return problems


def check_landing(context, base_url: str, expected: str) -> list[str]:
    """Opening the book's address (``index.html``) lands on the first page of the toc."""
    page = context.new_page()
    problems: list[str] = []
    try:
        _watch(page, problems, "index.html")
        page.goto(base_url, wait_until="load", timeout=TIMEOUT_MS)
        start = (base_url, base_url + "index.html")
        try:  # index.html redirects (meta refresh) unless it is the first page itself
            page.wait_for_url(lambda u: u not in start, wait_until="load", timeout=10_000)
        except Exception:  # noqa: BLE001 - no redirect; compared below
            pass
        landed = page.url.split("#")[0]
        landed = base_url + "index.html" if landed == base_url else landed
        if landed != base_url + expected:
            problems.append(f"opening {base_url} lands on {landed}, not on {expected}")
    finally:
        page.close()
    return problems


def check_sidebar(context, base_url: str, pages: list[str]) -> list[str]:
    """From the first page, click each other page's sidebar link; land on it, with its title.

    The landed page must have the link's URL, load without an HTTP error, and have the
    sidebar link's text as its first heading (the sidebar shows page titles).
    """
    problems: list[str] = []
    page = context.new_page()
    try:
        resp = page.goto(base_url + pages[0], wait_until="domcontentloaded", timeout=TIMEOUT_MS)
        if resp is None or not resp.ok:
            return [f"{pages[0]}: HTTP {resp.status if resp else '?'}"]
        for target in pages[1:]:
            url = base_url + target
            page.evaluate(
                "() => document.querySelectorAll('nav.bd-docs-nav details')"
                ".forEach(d => d.open = true)"
            )
            link = page.locator("nav.bd-docs-nav a[href]")
            hrefs = page.eval_on_selector_all(
                "nav.bd-docs-nav a[href]",
                "els => els.map(e => [e.href.split('#')[0], e.textContent.trim()])",
            )
            idx = [i for i, (h, _) in enumerate(hrefs) if h == url]
            if not idx:
                problems.append(f"{page.url}: the sidebar has no link to {target}")
                page.goto(url, wait_until="domcontentloaded", timeout=TIMEOUT_MS)
                continue
            text = hrefs[idx[0]][1]
            with page.expect_navigation(wait_until="domcontentloaded", timeout=TIMEOUT_MS) as nav:
                link.nth(idx[0]).click(timeout=TIMEOUT_MS)
            resp = nav.value
            landed = page.url.split("#")[0]
            if landed != url:
                problems.append(f"clicking sidebar link {text!r} to {target} landed on {landed}")
            if resp is not None and not resp.ok:
                problems.append(f"clicking sidebar link {text!r}: HTTP {resp.status} for {landed}")
                continue
            h1 = page.evaluate(
                "() => { const h = document.querySelector('article h1, main h1');"
                " if (!h) return ''; const c = h.cloneNode(true);"
                " c.querySelectorAll('.headerlink').forEach(a => a.remove());"
                " return c.textContent.trim().replace(/\\s+/g, ' '); }"
            )
            if " ".join(h1.split()) != " ".join(text.split()):
                problems.append(f"clicking sidebar link {text!r} landed on a page titled {h1!r}")
    finally:
        page.close()
    return problems


_STOP = {
    "the",
    "and",
    "for",
    "with",
    "from",
    "into",
    "that",
    "this",
    "what",
    "why",
    "how",
    "are",
    "its",
    "two",
    "beyond",
    "page",
}


def search_term(root: Path, page: str) -> str | None:
    """A word of the page's title that Sphinx's search index maps to the page (rarest first)."""
    import snowballstemmer  # Sphinx's own dependency; its English search uses Porter stems

    text = (root / "searchindex.js").read_text()
    index = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    doc = PurePosixPath(page).with_suffix("").as_posix()
    if doc not in index["docnames"]:
        return None
    i = index["docnames"].index(doc)
    stem = snowballstemmer.stemmer("porter").stemWord

    def docs(t):
        hits = index["titleterms"].get(t, index["terms"].get(t, []))
        return [hits] if isinstance(hits, int) else hits

    words = re.findall(r"[A-Za-z][A-Za-z-]{2,}", index["titles"][i])
    good = [w for w in words if w.lower() not in _STOP and i in docs(stem(w.lower()))]
    return min(good, key=lambda w: (len(docs(stem(w.lower()))), -len(w))) if good else None


def check_search(context, base_url: str, term: str, expected: str) -> list[str]:
    """Search the book for ``term``; a result must link to page ``expected``."""
    page = context.new_page()
    problems: list[str] = []
    try:
        _watch(page, problems, "search.html")
        query = urllib.parse.urlencode({"q": term})
        page.goto(f"{base_url}search.html?{query}", wait_until="load", timeout=TIMEOUT_MS)
        try:
            page.wait_for_function(
                "() => { const s = document.querySelector('#search-results .search-summary, "
                "#search-results p'); return s && /found|did not match/i.test(s.textContent); }",
                timeout=TIMEOUT_MS,
            )
        except Exception as e:  # noqa: BLE001 - reported, not raised
            problems.append(f"search for {term!r} did not finish: {type(e).__name__}")
            return problems
        hrefs = page.eval_on_selector_all(
            "#search-results ul.search li a",
            "els => els.map(e => e.href.split('#')[0].split('?')[0])",
        )
    finally:
        page.close()
    if base_url + expected not in hrefs:
        problems.append(
            f"search for {term!r}: no result links to {expected} "
            f"(results: {[h.replace(base_url, '') for h in hrefs][:10]})"
        )
    return problems


#: Viewport widths at which nothing may be wider than its column: the desktop reference and a
#: phone. At ``WIDE`` code must not even wrap (ruff's 99 columns fit, see book/_ext/fit_page.py)
#: and display math must fit unscaled (long equations are split); at a phone width code wraps
#: and an equation may be scaled down by the page's script, to no less than ``MIN_MATH_SCALE``.
WIDE, PHONE = 1400, 390
MIN_MATH_SCALE = 0.5

# Runs in a loaded page: waits for the math-fitting script, returns what is too wide.
_FIT_JS = r"""
async () => {
  const root = document.documentElement;
  for (let i = 0; i < 600 && root.getAttribute('data-ntklit-math-fit') !== 'done'; i++)
    await new Promise(r => setTimeout(r, 50));
  const text = e => (e.textContent || '').trim().replace(/\s+/g, ' ').slice(0, 80);
  const over = e => e.scrollWidth > e.clientWidth + 1;
  const out = {fitted: root.getAttribute('data-ntklit-math-fit'), page: null, code: [],
               wrapped: [], math: [], scaled: [], tables: []};
  if (root.scrollWidth > root.clientWidth + 1) {
    const wide = [...document.querySelectorAll('body *')].filter(
      e => e.getBoundingClientRect().right > root.clientWidth + 1 &&
        !e.closest('.bd-sidebar-primary, .bd-sidebar-secondary, mjx-container'));
    out.page = [root.scrollWidth, root.clientWidth, wide.slice(0, 3).map(
      e => e.tagName.toLowerCase() + '.' + [...e.classList].join('.') + ': ' + text(e))];
  }
  for (const e of document.querySelectorAll('article pre')) {
    if (over(e)) out.code.push([e.scrollWidth, e.clientWidth, text(e)]);
    if (e.closest('div.cell_input') ||
        (e.closest('div[class*="highlight-python"], div[class*="highlight-ipython"]') &&
         !e.closest('div.cell_output'))) {
      const ws = e.style.whiteSpace;
      e.style.whiteSpace = 'pre';
      if (over(e)) {
        const longest = e.textContent.split('\n').reduce((a, l) => Math.max(a, l.length), 0);
        out.wrapped.push([longest, text(e)]);
      }
      e.style.whiteSpace = ws;
    }
  }
  for (const e of document.querySelectorAll('article mjx-container[display="true"]')) {
    const m = e.querySelector('mjx-math');
    const w = m ? m.getBoundingClientRect().width : 0;
    const item = window.MathJax && MathJax.startup && MathJax.startup.document ?
      MathJax.startup.document.getMathItemsWithin(e)[0] : null;
    const src = item ? item.math.trim().replace(/\s+/g, ' ').slice(0, 80) : text(e);
    if (w > e.clientWidth + 1) out.math.push([Math.round(w), e.clientWidth, src]);
    const s = e.getAttribute('data-ntklit-scale');
    if (s !== null) out.scaled.push([+s, src]);
  }
  for (const t of document.querySelectorAll('article table')) {
    const box = t.closest('.pst-scrollable-table-container') || t.parentElement;
    const scrolls = ['auto', 'scroll'].includes(getComputedStyle(box).overflowX);
    if (t.getBoundingClientRect().width > box.clientWidth + 1)
      out.tables.push([Math.round(t.getBoundingClientRect().width), box.clientWidth, scrolls,
                       text(t)]);
  }
  return out;
}
"""


def check_fit(
    browser, base_url: str, page_path: str, width: int, screenshot: Path | None = None
) -> list[str]:
    """Load a page at viewport ``width``; report anything wider than its column.

    Everything: the page itself (no horizontal scrolling of the page), every ``pre`` (code
    cells, outputs, literal blocks), every display equation (after the page's script scaled
    it) and every table (at a phone width a table may instead scroll inside its own box). At
    ``WIDE`` also: a code-cell line that wraps (the formatter's line
    length must fit) and an equation that needed scaling (it must be split); at narrower
    widths an equation scaled below ``MIN_MATH_SCALE``. ``screenshot``: a full-page PNG.
    """
    label = f"{page_path} at {width} px"
    ctx = browser.new_context(viewport={"width": width, "height": 900}, service_workers="block")
    problems: list[str] = []
    try:
        page = ctx.new_page()
        resp = page.goto(base_url + page_path, wait_until="load", timeout=TIMEOUT_MS)
        if resp is None or not resp.ok:
            return [f"{label}: HTTP {resp.status if resp else '?'}"]
        seen = page.evaluate(_FIT_JS)
        if screenshot is not None:
            page.screenshot(path=str(screenshot), full_page=True)
    finally:
        ctx.close()
    if seen["fitted"] != "done":
        problems.append(f"{label}: the math-fitting script did not run (ntklit-fit.js)")
    if seen["page"]:
        problems.append(
            f"{label}: the page is {seen['page'][0]} px wide for a "
            f"{seen['page'][1]} px window: {seen['page'][2]}"
        )
    problems += [
        f"{label}: code block {w} px wide in a {c} px box: {t!r}" for w, c, t in seen["code"]
    ]
    problems += [
        f"{label}: display math {w} px wide in a {c} px column: {t!r}" for w, c, t in seen["math"]
    ]
    # A table of numbers cannot reflow into a phone's column: there it may be wider than the
    # column inside its own horizontal scroller (the page itself never scrolls); at WIDE every
    # table fits.
    problems += [
        f"{label}: table {w} px wide in a {c} px column"
        f"{'' if scrolls else ' that does not scroll'}: {t!r}"
        for w, c, scrolls, t in seen["tables"]
        if width >= WIDE or not scrolls
    ]
    if width >= WIDE:
        problems += [
            f"{label}: a code line of {n} columns wraps: {t!r}" for n, t in seen["wrapped"]
        ]
        problems += [
            f"{label}: display math needs scaling to {s:.2f} (split it): {t!r}"
            for s, t in seen["scaled"]
        ]
    else:
        problems += [
            f"{label}: display math scaled to {s:.2f} (< {MIN_MATH_SCALE}): {t!r}"
            for s, t in seen["scaled"]
            if s < MIN_MATH_SCALE - 1e-3
        ]
    return problems


# --------------------------------------------------------------------------- fixtures


def _inputs_mtime() -> float:
    files = [REPO / "_toc.yml", REPO / "_config.yml"]
    for pattern in ("book/**/*", "ntklit/**/*.py", "benchmarks/results/*.json"):
        files += [p for p in REPO.glob(pattern) if p.is_file()]
    return max(p.stat().st_mtime for p in files if p.exists())


@pytest.fixture(scope="module")
def built_html() -> Path:
    """The quick-profile book in ``_build/test/html``, built by the runner if stale.

    ``tests/test_book.py`` builds the same directory with the same command earlier in a run,
    so this usually only checks it is newer than every input.
    """
    index = BUILD / "html" / "index.html"
    if not index.is_file() or index.stat().st_mtime < _inputs_mtime():
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "ntklit",
                "--root",
                str(REPO),
                "--build-dir",
                str(BUILD),
                "all",
                "--profile",
                "quick",
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            timeout=3600,
            env=chapter_env(),
        )
        assert proc.returncode == 0, f"runner failed:\n{proc.stderr[-8000:]}"
    assert index.is_file()
    return BUILD / "html"


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium driven by Playwright (fails, never skips, when missing)."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} not found: run `bash scripts/install_browser.sh` (installs "
            "Debian's chromium with apt) before the browser tests",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True, timeout=60_000
        )
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser):
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture(scope="module")
def book_url(built_html):
    with serve(built_html) as url:
        yield url


# --------------------------------------------------------------------------- the real book

#: Defects of the real book that are known, explained and waiting for a fix outside this file:
#: a problem matching one of these patterns makes its test XFAIL (shown by ``-ra``) instead of
#: fail, as long as nothing else is wrong. Delete an entry once its fix lands.
KNOWN_DEFECTS: dict[str, str] = {}


def assert_no_problems(problems: list[str]) -> None:
    """Fail on any problem; XFAIL when every problem is a known defect (with its reason)."""
    known = {pat: [p for p in problems if re.search(pat, p)] for pat in KNOWN_DEFECTS}
    other = [p for p in problems if not any(p in hits for hits in known.values())]
    assert not other, "\n".join(other)
    reasons = [
        f"{KNOWN_DEFECTS[pat]} [{len(hits)}x: {hits[0]}]" for pat, hits in known.items() if hits
    ]
    if reasons:
        pytest.xfail("known defect: " + " | ".join(reasons))


def test_navigation_lists_the_table_of_contents(built_html):
    assert toc_pages(built_html) == PAGES


def test_internal_links_resolve(built_html):
    problems = check_links(built_html)
    assert_no_problems(problems)


def test_references_and_citations_are_links(built_html):
    problems = check_references(built_html)
    assert_no_problems(problems)


def test_pages_show_no_console_noise(built_html):
    assert_no_problems(check_console_noise(built_html))


def test_launch_links_name_repository_notebooks(built_html):
    url, branch = _repository()
    problems = check_launch_links(built_html, REPO, url, branch)
    assert_no_problems(problems)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_in_browser(built_html, context, book_url, page):
    n_math = parse_page(built_html / page).n_math
    problems = check_page(context, book_url, page, n_math)
    assert_no_problems(problems)


def test_sidebar_navigation(built_html, context, book_url):
    problems = check_landing(context, book_url, PAGES[0])
    problems += check_sidebar(context, book_url, PAGES)
    assert_no_problems(problems)


@pytest.mark.parametrize("page", PAGES)
def test_search_finds_page(built_html, context, book_url, page):
    term = search_term(built_html, page)
    assert term, f"no word of {page}'s title is in the search index"
    problems = check_search(context, book_url, term, page)
    assert_no_problems(problems)


@pytest.mark.parametrize("doc", TOC_DOCS)
def test_download_button(built_html, book_url, doc):
    notebook = (REPO / f"{doc}.ipynb").is_file()
    problems = check_download(book_url, built_html, f"{doc}.html", notebook)
    assert_no_problems(problems)


def test_scorecard_has_a_full_row_per_paper_check(built_html, context, book_url):
    """The scorecard lists every check of this build made with ``paper=...`` (counted in the
    run records), each row with no empty cell and a link to its chapter section."""
    want = []
    for ch in runner.chapters(REPO):
        rec = runner.RunRecord.load(BUILD / "records" / f"{ch.name}.json")
        want += [(runner._title(ch.path), c["paper"]) for c in rec.checks if c.get("paper")]
    page = context.new_page()
    try:
        page.goto(book_url + "book/scorecard.html", wait_until="load")
        rows = page.evaluate("""() => [...document.querySelectorAll('main table tbody tr')].map(
            r => [...r.querySelectorAll('td')].map(c => [c.innerText.trim(),
                  [...c.querySelectorAll('a')].map(a => a.getAttribute('href'))]))""")
    finally:
        page.close()
    assert len(want) >= 10 and len(rows) == len(want), (len(rows), len(want))
    for (title, paper), row in zip(want, rows):
        assert len(row) == 5 and all(text for text, _ in row), row
        # Sphinx's smartquotes print ' and " typographically
        shown = row[1][0].translate(str.maketrans("\u2018\u2019\u201c\u201d", "''\"\""))
        assert row[0][0].startswith(title) and shown == " ".join(paper.split()), row
        assert any("#" in href for href in row[0][1]), row
        assert row[4][0].startswith("pass"), row


def test_performance_page_shows_a_loaded_plot_per_benchmark_figure(built_html, context, book_url):
    """Every figure ``ntklit.plotting`` draws from ``benchmarks/results/*.json`` is on the
    performance page, loaded and drawn at a readable size, with the results tables collapsed."""
    from ntklit import plotting

    want = sum(
        len(plotting.benchmark_figures(f.stem, json.loads(f.read_text())))
        for f in sorted((REPO / "benchmarks" / "results").glob("*.json"))
    )
    page = context.new_page()
    try:
        page.goto(book_url + "book/performance.html", wait_until="load")
        page.wait_for_function(
            "() => [...document.images].every(i => i.complete)", timeout=TIMEOUT_MS
        )
        imgs = page.evaluate("""() => [...document.querySelectorAll('figure img')].map(
            i => [i.getAttribute('src'), i.naturalWidth, i.getBoundingClientRect().width])""")
        closed = page.evaluate("""() => [...document.querySelectorAll('details')].filter(
            d => !d.open && d.innerText.includes('Results table')).length""")
    finally:
        page.close()
    assert len(imgs) == want > 0, imgs
    for src, natural, shown in imgs:
        assert natural > 300 and shown > 300, (src, natural, shown)
    assert closed == len(list((REPO / "benchmarks" / "results").glob("*.json")))


def test_reproducibility_page_shows_paper_scale_status(built_html, context, book_url):
    """The status table: one row per chapter, its full-profile cell saying what the committed
    verification record says (passed with its check count, stale, failed) or that the chapter
    never ran at paper scale."""
    page = context.new_page()
    try:
        page.goto(book_url + "book/reproducibility.html", wait_until="load")
        rows = page.evaluate("""() => {
            const h = [...document.querySelectorAll('h2')].find(
                e => e.textContent.startsWith('Status'));
            let t = h && h.parentElement.querySelector('table');
            return t ? [...t.querySelectorAll('tbody tr')].map(
                r => [...r.querySelectorAll('td')].map(c => c.innerText.trim())) : null;
        }""")
    finally:
        page.close()
    assert rows is not None, "no status table under the 'Status' heading"
    chapters = runner.chapters(REPO)
    assert len(rows) == len(chapters)
    for ch, row in zip(chapters, rows):
        assert row[0] == runner._title(ch.path)
        path = runner.verification_path(REPO, ch, "full")
        if not path.is_file():
            assert row[2] == "never run at paper scale", (ch.name, row)
            continue
        rec = runner.load_verification(path)
        state = runner.verification_state(ch, rec)
        want = {"verified": "passed: ", "stale": "stale", "failed": "FAILED"}[state]
        assert row[2].startswith(want), (ch.name, row)
        assert f"{rec['checks_passed']}/{rec['checks_total']} checks" in row[2]


@pytest.mark.parametrize("width", [WIDE, PHONE])
@pytest.mark.parametrize("page", PAGES)
def test_page_fits_its_column(built_html, browser, book_url, page, width):
    """Nothing on the page is wider than its column, at the desktop width and on a phone;
    two chapters are also photographed at both widths (``_build/test/screenshots``)."""
    shot = None
    if page in SCREENSHOT_PAGES:
        (BUILD / "screenshots").mkdir(exist_ok=True)
        shot = BUILD / "screenshots" / f"{PurePosixPath(page).stem}-{width}.png"
    assert_no_problems(check_fit(browser, book_url, page, width, shot))
    if shot is not None:
        assert shot.is_file() and shot.stat().st_size > 10_000, shot


# ----------------------------------------------------------------------- the checks catch breakage
#
# A copy of the built book in a temporary directory, with one thing broken per case: either a
# new page "_case_<name>.html" (a copy of the landing page with a snippet injected at the top
# of its article), or a whole-site breakage in its own copy. Every check must report exactly
# the breakage: a case's problems are compared with those of the unmodified page, and the
# control case (a valid image, formula and links injected) must add none.


def copy_site(src: Path, dst: Path) -> Path:
    """A cheap writable copy of a built book: big read-only folders are symlinked."""
    dst.mkdir(parents=True)
    for item in src.iterdir():
        if item.name in ("_static", "_sources"):
            (dst / item.name).symlink_to(item.resolve(), target_is_directory=True)
        elif item.is_dir():
            shutil.copytree(item, dst / item.name, symlinks=True)
        else:
            shutil.copy2(item, dst / item.name)
    return dst


def inject(page_html: str, snippet: str) -> str:
    """Insert ``snippet`` after the article's first heading (inside the page's section)."""
    start = page_html.index("<article")
    at = page_html.index("</h1>", start) + len("</h1>")
    return page_html[:at] + "\n" + snippet + "\n" + page_html[at:]


def _up(page: str) -> str:
    """Relative path from ``page``'s folder to the book root ('..' for book/x.html)."""
    return os.path.relpath(".", os.path.dirname(page) or ".")


# name -> snippet (``{up}`` = path to the book root, ``{other}`` = another toc page, relative).
CASE_SNIPPETS = {
    "control": (
        '<p>Fine: <span class="math notranslate nohighlight">\\(\\sum_{{i=1}}^n x_i^2\\)</span>,'
        ' <img alt="ok" src="{up}/_images/_case_ok.png"/>, '
        '<a class="reference internal" href="{other}">a page</a>, '
        '<a class="reference internal" href="#case-anchor">an anchor</a>.</p>'
        '<div class="math notranslate nohighlight" id="case-anchor">'
        "\\[\\Theta(x, x') = \\langle \\nabla f(x), \\nabla f(x') \\rangle\\]</div>"
    ),
    "missing_image": '<img alt="missing" src="{up}/_images/_case_missing.png"/>',
    "empty_image": '<img alt="empty" src="{up}/_images/_case_empty.png"/>',
    "undefined_macro": '<p><span class="math notranslate nohighlight">\\(\\notamacro{{x}}\\)'
    "</span></p>",
    "tex_error": '<p><span class="math notranslate nohighlight">\\(\\begin{{matrix}} a '
    "\\end{{pmatrix}}\\)</span></p>",
    "unbalanced_math": '<p><span class="math notranslate nohighlight">\\(x^{{2\\)</span></p>',
    "tex_source_in_text": "<p>The kernel \\(K(x, x')\\) converges to $\\Theta$.</p>",
    "console_error": '<script>console.error("case: a widget broke")</script>',
    "script_exception": "<script>notDefinedAnywhere()</script>",
    "external_script": '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-chtml.js">'
    "</script>",
    "missing_stylesheet": '<link rel="stylesheet" href="{up}/_static/_case_missing.css"/>',
    "dangling_link": '<p><a class="reference internal" href="_case_nowhere.html">gone</a></p>',
    "dangling_anchor": '<p><a class="reference internal" href="{other}#no-such-anchor">x</a></p>',
    "role_source": "<p>As in {{eq}}`eq-not-parsed`.</p>",
    "launch_link": '<a href="{repo}/blob/{branch}/book/99_no_such_chapter.ipynb">launch</a>',
    "broken_references": "{fixture}",
    # (old, new): a replacement in the page instead of an injection.
    "mathjax_missing": ("mathjax/tex-chtml.js", "mathjax/_case_missing.js"),
}

# name -> {check: substrings that must appear in the problems that check adds for the case}
EXPECTED = {
    "control": {},
    "missing_image": {
        "page": ["image {up}/_images/_case_missing.png did not load", "HTTP 404"],
        "links": ["no file _images/_case_missing.png"],
    },
    "empty_image": {
        "page": ["image {up}/_images/_case_empty.png did not load"],
        "links": ["empty file"],
    },
    "undefined_macro": {"page": ["undefined TeX macro \\notamacro"]},
    "tex_error": {"page": ["MathJax error: \\begin{matrix} ended with \\end{pmatrix}"]},
    "unbalanced_math": {
        "page": [
            "math element typeset 0 times",
            "typeset formulas for",
            "TeX source left in the text",
        ]
    },
    "tex_source_in_text": {"page": ['TeX source left in the text: "The kernel \\\\(K(x']},
    "console_error": {"page": ["console error: case: a widget broke"]},
    "script_exception": {"page": ["uncaught exception", "notDefinedAnywhere"]},
    "external_script": {
        "page": ["request to another host (script): https://cdn.jsdelivr"],
        "links": ["resource loaded from another host"],
    },
    "missing_stylesheet": {
        "page": ["HTTP 404", "_case_missing.css"],
        "links": ["no file _static/_case_missing.css"],
    },
    "dangling_link": {"links": ["no file", "_case_nowhere.html"]},
    "dangling_anchor": {"links": ['no id "no-such-anchor"']},
    "role_source": {"refs": ["MyST role source left in the text: '{eq}`'"]},
    "launch_link": {"launch": ["book/99_no_such_chapter.ipynb, which is not in the repository"]},
    "broken_references": {
        "refs": [
            "unresolved cross-reference 'eq-missing'",
            "unresolved cross-reference 'sec-missing'",
            "'fig-missing'",
            "'nodoc'",
            "'thm-missing'",
            "citation without a link '[]'",
        ],
        "links": ['no id "nowhere.md"', 'no id "nosuch"'],
        "page": [
            "undefined TeX macro \\notamacro",
            "math element typeset 0 times",
            "ended with \\end{pmatrix}",
        ],
    },
    "mathjax_missing": {
        "page": ["MathJax not loaded", "HTTP 404", "math element typeset 0 times"],
        "links": ["no file _static/mathjax/_case_missing.js"],
    },
}


@dataclass
class CaseSite:
    root: Path
    base: str  # the landing page the cases are copies of
    pages: list[str]  # toc pages of the copy
    url: str  # served at


@pytest.fixture(scope="module")
def case_site(built_html, tmp_path_factory):
    root = copy_site(built_html, tmp_path_factory.mktemp("cases") / "html")
    pages = toc_pages(root)
    assert len(pages) >= 2, "the book needs two pages for the navigation cases"
    base = pages[0]
    up = _up(base)
    other = os.path.relpath(pages[1], os.path.dirname(base) or ".")
    repo, branch = _repository()
    (root / "_images").mkdir(exist_ok=True)
    shutil.copy2(root / "_static" / "images" / "logo_colab.png", root / "_images" / "_case_ok.png")
    (root / "_images" / "_case_empty.png").write_bytes(b"")
    fixture = "\n".join(
        line
        for line in (FIXTURES / "broken_references.html").read_text().splitlines()
        if not line.startswith(("<!--", "     "))
    )
    text = (root / base).read_text()
    for name, snippet in CASE_SNIPPETS.items():
        case = (root / base).with_name(f"_case_{name}.html")
        if isinstance(snippet, tuple):
            assert snippet[0] in text, f"{name}: {snippet[0]!r} is not in {base}"
            case.write_text(text.replace(*snippet))
        else:
            snippet = snippet.format(up=up, other=other, repo=repo, branch=branch, fixture=fixture)
            case.write_text(inject(text, snippet))
    with serve(root) as url:
        yield CaseSite(root, base, pages, url)


def _case_problems(site: CaseSite, context, page: str, check: str) -> list[str]:
    root = site.root
    if check == "page":
        return check_page(context, site.url, page, parse_page(root / page).n_math)
    if check == "links":
        return check_links(root, [root / page])
    if check == "refs":
        return check_references(root, [root / page])
    if check == "launch":
        repo, branch = _repository()
        return check_launch_links(root, REPO, repo, branch, [root / page])
    raise ValueError(check)


@pytest.fixture(scope="module")
def baseline(case_site, context):
    """Problems of the unmodified landing page, per check (empty for a healthy book)."""
    return {
        check: _case_problems(case_site, context, case_site.base, check)
        for check in ("page", "links", "refs", "launch")
    }


@pytest.mark.parametrize("name", list(CASE_SNIPPETS))
def test_checks_report_a_broken_page(case_site, context, baseline, name):
    base = case_site.base
    page = str(PurePosixPath(base).with_name(f"_case_{name}.html"))
    up = _up(base)
    # The offline checks run for every case; the browser (slower) where it has something to
    # find, and on the control page.
    checks = ["links", "refs", "launch"]
    if name == "control" or "page" in EXPECTED[name]:
        checks.insert(0, "page")
    for check in checks:
        found = [p.replace(page, base) for p in _case_problems(case_site, context, page, check)]
        added = [p for p in found if p not in baseline[check]]
        wanted = [w.format(up=up) if "{up}" in w else w for w in EXPECTED[name].get(check, [])]
        if not wanted:
            assert not added, (
                f"{name}: {check} check reports problems it should not:\n" + "\n".join(added)
            )
        for w in wanted:
            assert any(w in p for p in added), (
                f"{name}: {check} check did not report {w!r}; it added:\n" + "\n".join(added)
            )


@pytest.fixture
def site_copy(built_html, tmp_path):
    root = copy_site(built_html, tmp_path / "html")
    return root, toc_pages(root)


def test_checks_report_a_missing_page(site_copy, context):
    root, pages = site_copy
    gone = pages[-1]
    (root / gone).unlink()
    problems = check_links(root)
    assert any(f"no file {gone}" in p for p in problems), problems
    with serve(root) as url:
        nav = check_sidebar(context, url, pages)
        assert any("HTTP 404" in p and gone in p for p in nav), nav
        page = check_page(context, url, gone, 0)
        assert any("HTTP 404" in p for p in page), page


def test_checks_report_a_sidebar_link_to_the_wrong_page(site_copy, context):
    root, pages = site_copy
    shutil.copy2(root / pages[0], root / pages[-1])  # the link's target now shows another page
    with serve(root) as url:
        problems = check_sidebar(context, url, pages)
    assert any("landed on a page titled" in p for p in problems), problems


def test_checks_report_a_broken_landing_redirect(site_copy, context):
    root, pages = site_copy
    (root / "index.html").write_text(
        '<meta http-equiv="Refresh" content="0; url=book/_case_nowhere.html" />'
    )
    with serve(root) as url:
        problems = check_landing(context, url, pages[0])
    assert any("lands on" in p and "_case_nowhere.html" in p for p in problems), problems
    assert any("HTTP 404" in p for p in problems), problems


def test_checks_report_a_broken_search_index(site_copy, context, built_html):
    root, pages = site_copy
    term = search_term(built_html, pages[-1])
    index = root / "searchindex.js"
    text = index.read_text()
    data = json.loads(text[text.index("(") + 1 : text.rindex(")")])
    # An index that lost the page's words (as if the page had not been indexed).
    data["terms"], data["titleterms"], data["alltitles"] = {}, {}, {}
    index.write_text("Search.setIndex(" + json.dumps(data) + ")")
    with serve(root) as url:
        problems = check_search(context, url, term, pages[-1])
    assert any("no result links to" in p for p in problems), problems


def test_checks_report_a_missing_notebook_download(site_copy):
    root, pages = site_copy
    page = pages[0]
    info = parse_page(root / page)
    assert info.download_source, "the landing page has a download button"
    with serve(root) as url:
        # A Markdown page offers its .md: asking for a notebook is reported ...
        if not info.download_source.endswith(".ipynb"):
            problems = check_download(url, root, page, notebook=True)
            assert any("not the .ipynb" in p for p in problems), problems
        # ... and a download link to an .ipynb that is not served is reported.
        text = (
            (root / page)
            .read_text()
            .replace(
                f'href="{info.download_source}"',
                f'href="{_up(page)}/_sources/book/_case_missing.ipynb"',
            )
        )
        (root / page).write_text(text)
        problems = check_download(url, root, page, notebook=True)
    assert any("is not served" in p for p in problems), problems


def test_checks_report_console_noise(site_copy):
    root, pages = site_copy
    div = re.compile(r"<div[^>]*class=\"[^\"]*\bcell_output\b[^>]*>")
    chapter = next(p for p in pages if div.search((root / p).read_text()))
    path = root / chapter
    assert check_console_noise(root, [path]) == []
    text = path.read_text()
    j = div.search(text).end()
    noise = (
        f"<pre>Haar:  25%|##5  | 1/4 [00:00&lt;00:01,  1.52it/s]\n"
        f"{Path.home()}/x/site-packages/tqdm/auto.py:21: TqdmWarning: IProgress not found"
        "</pre>"
    )
    path.write_text(text[:j] + noise + text[j:])
    found = {p.split(": ")[1].split(" in a cell")[0] for p in check_console_noise(root, [path])}
    assert found == {
        "progress-bar frame",
        "progress-bar rate",
        "warning",
        "site-packages path",
        "absolute path of the builder",
    }, found


def test_checks_report_what_does_not_fit(site_copy, browser):
    """A code line longer than the formatter's, an element wider than the window and an
    equation too long for any scaling are reported at the desktop width and on a phone."""
    root, pages = site_copy
    page = next(p for p in pages if "cell_input" in (root / p).read_text())
    long_line = "x = [" + ", ".join(str(i) for i in range(40)) + "]"
    wide_math = " + ".join(f"a_{{{i}}} b_{{{i}}}" for i in range(60))
    snippet = (
        '<div class="cell docutils container"><div class="cell_input docutils container">'
        f'<div class="highlight-ipython3 notranslate"><div class="highlight"><pre>{long_line}'
        "</pre></div></div></div></div>"
        f'<div class="math notranslate nohighlight">\\[{wide_math}\\]</div>'
        '<div style="width: 3000px; height: 1px"></div>'
    )
    (root / page).write_text(inject((root / page).read_text(), snippet))
    with serve(root) as url:
        wide = check_fit(browser, url, page, WIDE)
        phone = check_fit(browser, url, page, PHONE)
    assert any(f"a code line of {len(long_line)} columns wraps" in p for p in wide), wide
    assert any("needs scaling" in p and "a_{0} b_{0}" in p for p in wide), wide
    assert any("display math" in p and "wide in a" in p for p in phone), phone
    assert any("the page is" in p and "px wide for a" in p for p in wide + phone), wide
