"""Execute the book's chapters with papermill and build the HTML with jupyter-book.

The runner is the single way chapters execute for the build (DESIGN.md section 3):

* a chapter is a notebook listed in ``_toc.yml`` with exactly one cell tagged ``parameters``
  made of annotated literals (``widths: list[int] = [8, 64]  # hidden widths``);
* its defaults are the **quick** profile; ``book/profiles/<chapter>.yaml`` holds the **full**
  profile (paper scale) and the **shape** profile (the full profile's shapes with its counts,
  listed under ``shape:``, reduced: what depends on size fails in minutes on a CPU); ``auto``
  picks full when JAX sees a GPU, quick otherwise;
* ``-p name=value`` overrides are validated against the parameters cell (name and type) for
  every selected chapter *before* anything runs;
* executed copies go to ``_build/executed``, run records to ``_build/records``, the HTML to
  ``_build/html``; a full or shape run of a profile as it stands (no ``-p``) also writes its
  verification record to ``book/verified/<chapter>.<profile>.json`` (committed: the book's
  paper-scale status); nothing else under version control is modified;
* every run record holds each check's claim, measured values and result (``ntklit.checks``
  reports them through ``NTKLIT_CHECKS_FILE``) and the peak memory of the runner and kernel
  processes (host RSS, sampled, and the kernel's own peak) and of the accelerator;
* a chapter whose notebook, parameters and ``ntklit`` source are unchanged since its last
  successful run is skipped;
* a failing chapter names the chapter, the cell and the error, exits non-zero, keeps its
  previous executed copy and leaves the last good HTML in place.
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import checks as _checks

__all__ = [
    "ALLOWED_TYPES",
    "PROFILES",
    "GENERATED_PAGES",
    "Param",
    "Chapter",
    "RunnerError",
    "ParameterError",
    "ChapterFailed",
    "find_root",
    "chapters",
    "select",
    "read_parameters",
    "parse_overrides",
    "resolve_parameters",
    "load_profile",
    "detect_profile",
    "run_chapters",
    "build_html",
    "RunRecord",
    "BuildPaths",
    "performance_page",
    "reproducibility_page",
    "scorecard_page",
    "package_versions",
    "device_description",
    "cache_key",
    "RECORDED_PROFILES",
    "VERIFIED_SCHEMA",
    "verification_path",
    "load_verification",
    "verification_state",
    "status_table",
    "check_budget",
    "publishable",
]

#: Tag of papermill's injected-parameters cell, and myst-nb's tag that keeps a cell off the page.
_INJECTED, _REMOVE = "injected-parameters", "remove-cell"


#: Annotations allowed in a chapter's parameters cell.
ALLOWED_TYPES = ("int", "float", "bool", "str", "list[int]", "list[float]", "list[str]")
#: Profiles the runner accepts (``auto``: ``full`` when JAX sees a GPU, else ``quick``).
PROFILES = ("quick", "shape", "full", "auto")
#: Profiles whose runs write a committed verification record (``book/verified/``).
RECORDED_PROFILES = ("full", "shape")


class RunnerError(Exception):
    """A problem the user must fix (bad chapter name, bad parameters, missing files)."""


class ParameterError(RunnerError, ValueError):
    """An unknown parameter or a value of the wrong type."""


class ChapterFailed(RunnerError):
    """One or more chapters failed to execute."""


# ------------------------------------------------------------------------------------------
# Chapters and their parameters
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Param:
    """One entry of a chapter's ``parameters`` cell."""

    name: str
    type: str
    default: Any
    doc: str

    def describe(self) -> str:
        return f"{self.name}: {self.type} = {self.default!r}" + (
            f"  # {self.doc}" if self.doc else ""
        )


@dataclasses.dataclass(frozen=True)
class Chapter:
    """A notebook chapter of the book."""

    name: str  # file stem, e.g. "01_ensembles"
    path: Path  # absolute path of the .ipynb
    docname: str  # path relative to the root without suffix, e.g. "book/01_ensembles"

    @property
    def profile_file(self) -> Path:
        return self.path.parent / "profiles" / f"{self.name}.yaml"


@dataclasses.dataclass(frozen=True)
class BuildPaths:
    """Where the runner writes (all under ``<root>/_build`` by default)."""

    root: Path
    build: Path

    @classmethod
    def default(cls, root: Path, build: Path | None = None) -> "BuildPaths":
        return cls(root=root, build=(build or root / "_build").resolve())

    @property
    def executed(self) -> Path:
        return self.build / "executed"

    @property
    def failed(self) -> Path:
        return self.build / "failed"

    @property
    def records(self) -> Path:
        return self.build / "records"

    @property
    def stage(self) -> Path:
        return self.build / "stage"

    @property
    def html(self) -> Path:
        return self.build / "html"

    @property
    def verified(self) -> Path:
        """Committed verification records of full and shape runs (``book/verified``)."""
        return self.root / "book" / "verified"


def find_root(start: Path | None = None) -> Path:
    """The repository root: the nearest directory upwards holding ``_toc.yml`` and ``book/``."""
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file() and (d / "book").is_dir():
            return d
    # Fall back to the package's own checkout (editable install).
    pkg_root = Path(__file__).resolve().parent.parent
    if (pkg_root / "_toc.yml").is_file():
        return pkg_root
    raise RunnerError(f"no _toc.yml with a book/ folder found at or above {here}")


def _toc_files(root: Path) -> list[str]:
    import yaml

    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files: list[str] = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def chapters(root: Path) -> list[Chapter]:
    """The notebook chapters listed in ``_toc.yml``, in book order."""
    out = []
    for doc in _toc_files(root):
        doc = doc.removesuffix(".ipynb").removesuffix(".md")
        nb = root / f"{doc}.ipynb"
        if nb.is_file():
            out.append(Chapter(name=nb.stem, path=nb, docname=doc))
    return out


def select(root: Path, names: Sequence[str]) -> list[Chapter]:
    """Chapters by name: the full stem (``04_convergence``), its number (``04`` or ``4``) or
    a unique prefix. No names selects every chapter.

    Args:
      root: repository root (holds ``_toc.yml``).
      names: chapter names, numbers or prefixes; empty for all chapters in book order.

    Raises:
      RunnerError: a name matches no chapter or several (the message lists the chapters).
    """
    every = chapters(root)
    if not names:
        return every
    chosen: list[Chapter] = []
    for n in names:
        key = Path(n).stem
        hits = [c for c in every if c.name == key]
        if not hits and key.isdigit():
            hits = [c for c in every if c.name.split("_", 1)[0].lstrip("0") == key.lstrip("0")]
        if not hits:
            hits = [c for c in every if c.name.startswith(key)]
        if len(hits) != 1:
            avail = ", ".join(c.name for c in every)
            what = "matches no chapter" if not hits else "is ambiguous"
            raise RunnerError(f"chapter {n!r} {what}; chapters: {avail}")
        if hits[0] not in chosen:
            chosen.append(hits[0])
    return chosen


def _parameters_cell(nb: dict, path: Path) -> dict:
    cells = [
        c
        for c in nb["cells"]
        if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    if len(cells) != 1:
        raise RunnerError(
            f"{path}: expected exactly one cell tagged 'parameters', found {len(cells)}"
        )
    return cells[0]


def read_parameters(path: Path) -> dict[str, Param]:
    """Parse a chapter's ``parameters`` cell.

    Every statement must be an annotated assignment of a literal, with an annotation in
    :data:`ALLOWED_TYPES`; a trailing ``# comment`` documents it.

    Raises:
      RunnerError: the cell is missing, duplicated or not made of annotated literals.
    """
    nb = json.loads(Path(path).read_text())
    cell = _parameters_cell(nb, Path(path))
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    lines = src.splitlines()
    try:
        tree = ast.parse(src)
    except SyntaxError as e:
        raise RunnerError(f"{path}: parameters cell is not valid Python: {e}") from e
    params: dict[str, Param] = {}
    for node in tree.body:
        if not (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and node.value is not None
        ):
            raise RunnerError(
                f"{path}: parameters cell line {node.lineno}: only annotated "
                "assignments `name: type = literal  # doc` are allowed"
            )
        ann = ast.unparse(node.annotation).replace(" ", "")
        if ann not in ALLOWED_TYPES:
            raise RunnerError(
                f"{path}: parameter {node.target.id!r} has type {ann!r}; "
                f"allowed: {', '.join(ALLOWED_TYPES)}"
            )
        try:
            value = ast.literal_eval(node.value)
        except ValueError as e:
            raise RunnerError(f"{path}: parameter {node.target.id!r} is not a literal") from e
        line = lines[node.lineno - 1]
        doc = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset :] else ""
        param = Param(node.target.id, ann, value, doc)
        _check_type(param, value, source=f"default of {path.name}")
        params[param.name] = param
    return params


def _type_ok(type_: str, value: Any) -> bool:
    scalar = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
    }
    if type_ in scalar:
        return scalar[type_](value)
    inner = type_[len("list[") : -1]
    return isinstance(value, list) and all(scalar[inner](v) for v in value)


def _coerce(type_: str, value: Any) -> Any:
    if type_ == "float" and isinstance(value, int):
        return float(value)
    if type_ == "list[float]":
        return [float(v) for v in value]
    return value


def _check_type(param: Param, value: Any, source: str) -> Any:
    if not _type_ok(param.type, value):
        raise ParameterError(
            f"parameter {param.name!r} ({source}) must be of type "
            f"{param.type}, got {value!r} ({type(value).__name__})"
        )
    return _coerce(param.type, value)


def _describe_params(chapter: Chapter, params: dict[str, Param]) -> str:
    return f"parameters of chapter {chapter.name}:\n" + "\n".join(
        f"  {p.describe()}" for p in params.values()
    )


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parse ``name=value`` strings; values are Python literals (strings may be bare)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ParameterError(f"-p expects name=value, got {item!r}")
        name, raw = item.split("=", 1)
        name = name.strip()
        if not name.isidentifier():
            raise ParameterError(f"-p: {name!r} is not a parameter name")
        try:
            out[name] = ast.literal_eval(raw.strip())
        except (ValueError, SyntaxError):
            out[name] = raw.strip()
    return out


def detect_profile() -> str:
    """``"full"`` when JAX sees a GPU (or TPU), else ``"quick"``."""
    try:
        import jax

        platforms = {d.platform for d in jax.devices()}
    except Exception:  # pragma: no cover - no usable JAX backend
        return "quick"
    return "full" if platforms - {"cpu"} else "quick"


def load_profile(chapter: Chapter, profile: str) -> dict[str, Any]:
    """The parameter values of ``profile`` for ``chapter`` (``{}`` for quick: the defaults).

    The shape profile is the full profile with the values of the profile file's ``shape:``
    section on top: the full profile's counts (seeds, networks, samples, steps), reduced;
    every shape (width, depth, N, m, image size) keeps its full-profile value.

    Args:
      chapter: the chapter; its profiles are in ``book/profiles/<name>.yaml``.
      profile: ``"quick"``, ``"shape"`` or ``"full"``.

    Raises:
      RunnerError: an unknown profile, or ``"shape"`` for a chapter whose profile file has no
        ``shape:`` section.
    """
    if profile not in ("quick", "shape", "full"):
        raise RunnerError(f"profile must be one of quick, shape, full (or auto), got {profile!r}")
    if profile == "quick":
        return {}
    data = _profile_file(chapter)
    values = dict(data.get("full") or {})
    if profile == "shape":
        if not data.get("shape"):
            raise RunnerError(
                f"chapter {chapter.name} has no shape profile: add a 'shape:' "
                f"section (the full profile's counts, reduced) to "
                f"{chapter.profile_file}"
            )
        values.update(data["shape"])
    return values


def _check_shape_counts(
    chapter: Chapter, params: dict[str, "Param"], full: dict[str, Any], shape: dict[str, Any]
) -> None:
    """A shape profile may only reduce counts: every ``shape:`` value is a number at most its
    full-profile value, or a list no longer than it."""
    for name, value in shape.items():
        if name not in params:
            continue  # reported as an unknown parameter by resolve_parameters
        ref = full.get(name, params[name].default)
        ptype = params[name].type
        ok = (ptype in ("int", "float") and _type_ok(ptype, value) and value <= ref) or (
            ptype.startswith("list[") and isinstance(value, list) and len(value) <= len(ref)
        )
        if not ok:
            raise ParameterError(
                f"{chapter.profile_file}: shape value {name}={value!r} is not a reduced count: "
                f"shape entries must be counts (int or float at most the full value, or a "
                f"list no longer than it); full value {ref!r}"
            )


#: Keys of a profile file: the profiles (``full``, ``shape``: reduced counts of the full
#: profile), ``gpu``, a sentence saying that (and why) the full profile needs a GPU, shown
#: on the chapter's page (see :func:`profile_note`), and ``budget`` (``seconds``: the full
#: profile's share of the GPU node's time, ``estimate``: how it was estimated; see
#: ``ntklit.node``).
PROFILE_FILE_KEYS = ("quick", "full", "shape", "gpu", "budget")


def check_budget(where: Path, budget: Any) -> None:
    """A budget share is ``{seconds: positive number, estimate: non-empty sentence}``.

    Args:
      where: the file it comes from (named in the error).
      budget: the mapping read from it.

    Raises:
      RunnerError: naming ``where``, the field and what it must be.
    """
    if not isinstance(budget, dict) or set(budget) - {"seconds", "estimate", "name", "args"}:
        raise RunnerError(
            f"{where}: a budget is a mapping with 'seconds' and 'estimate', got {budget!r}"
        )
    sec, est = budget.get("seconds"), budget.get("estimate")
    if isinstance(sec, bool) or not isinstance(sec, (int, float)) or sec <= 0:
        raise RunnerError(f"{where}: budget 'seconds' must be a positive number, got {sec!r}")
    if not (isinstance(est, str) and est.strip()):
        raise RunnerError(
            f"{where}: budget 'estimate' must say how the share was estimated, got {est!r}"
        )


def _profile_file(chapter: Chapter) -> dict[str, Any]:
    """The chapter's profile file as a dict (``{}`` if it has none), its keys checked."""
    if not chapter.profile_file.is_file():
        return {}
    import yaml

    data = yaml.safe_load(chapter.profile_file.read_text()) or {}
    unknown = set(data) - set(PROFILE_FILE_KEYS)
    if unknown:
        raise RunnerError(
            f"{chapter.profile_file}: unknown key(s) {sorted(unknown)}; "
            f"allowed: {', '.join(PROFILE_FILE_KEYS)}"
        )
    if "gpu" in data and not (isinstance(data["gpu"], str) and data["gpu"].strip()):
        raise RunnerError(
            f"{chapter.profile_file}: 'gpu' must be a non-empty sentence, got {data['gpu']!r}"
        )
    if "budget" in data:
        check_budget(chapter.profile_file, data["budget"])
    return data


def profile_note(chapter: Chapter, record: "RunRecord | None") -> str:
    """MyST admonition placed under a chapter's title in the built book.

    It says how the page was computed (profile, device, run time, a link to the
    reproducibility page) and how to run the full profile; when the chapter's profile file has
    a ``gpu`` entry, it is a GPU admonition quoting that entry.

    Args:
      chapter: the chapter.
      record: the run record of the executed notebook on the page (``None``: unknown).
    """
    gpu = _profile_file(chapter).get("gpu")
    how = (
        "This page was computed with the **{p}** profile on {d} in {t:.0f} s".format(
            p=record.profile, d=record.device, t=record.seconds
        )
        if record is not None
        else "This page's run record is missing"
    )
    if record is not None:
        changed = {k: v for k, v in record.overrides.items() if k != "profile"}
        how += (
            ", parameters: defaults"
            if not changed
            else ", parameters that differ from "
            "the defaults: " + ", ".join(f"`{k} = {_fmt_value(v)}`" for k, v in changed.items())
        )
    full = _verifications(find_root(chapter.path.parent), chapter).get("full")
    state = verification_state(chapter, full) if full is not None else None
    if state == "verified":
        status = (
            f"Verified at paper scale: the full profile passed all "
            f"{full['checks_total']} checks on {full['device']} on "
            f"{full['finished'][:10]} in {full['seconds']:.0f} s (peak memory "
            f"{_fmt_mb(full['peak_rss_mb'])}"
            + (
                f", device {_fmt_mb(full['device_peak_mb'])}"
                if full["device_peak_mb"] is not None
                else ""
            )
            + ")."
        )
    elif state == "stale":
        status = (
            f"Not yet run at paper scale with the current parameters (the last full "
            f"run, {full['finished'][:10]}, used a profile that has changed since)."
        )
    elif state == "failed":
        status = (
            f"Not reproduced at paper scale: the last full run ({full['finished'][:10]}, "
            f"{full['device']}) failed."
        )
    else:
        status = "Not yet run at paper scale."
    cmd = f"`python -m ntklit run {chapter.name} --profile full`"
    if gpu and state != "verified":
        tail = f"The full profile runs with {cmd} and needs a GPU: {' '.join(gpu.split())}"
    else:
        tail = f"The full profile runs with {cmd}."
    lines = [
        f":::{{admonition}} {'GPU' if gpu else 'Profile'}",
        f":class: {'warning' if gpu else 'note'}",
        f"{how} (parameters and versions: {{doc}}`reproducibility`). {status} {tail}",
        ":::",
    ]
    return "\n".join(lines)


def resolve_parameters(
    chapter: Chapter, profile: str, overrides: dict[str, Any]
) -> dict[str, Any]:
    """Defaults, then the profile's values, then ``overrides``; every name and type checked.

    Args:
      chapter: the chapter.
      profile: ``"quick"``, ``"shape"`` or ``"full"``.
      overrides: ``-p`` values by name.

    Returns:
      The parameters to inject (only those that differ from the defaults, plus ``profile``).

    Raises:
      ParameterError: an unknown name or a wrong type, with the chapter's parameter list.
    """
    params = read_parameters(chapter.path)
    if profile == "shape":
        data = _profile_file(chapter)
        _check_shape_counts(
            chapter, params, dict(data.get("full") or {}), dict(data.get("shape") or {})
        )
    resolved: dict[str, Any] = {}
    for source, values in (
        ("profile " + profile, load_profile(chapter, profile)),
        ("-p", overrides),
    ):
        for name, value in values.items():
            if name not in params:
                raise ParameterError(
                    f"unknown parameter {name!r} ({source}) for chapter "
                    f"{chapter.name}.\n" + _describe_params(chapter, params)
                )
            try:
                resolved[name] = _check_type(params[name], value, source)
            except ParameterError as e:
                raise ParameterError(f"{e}\n" + _describe_params(chapter, params)) from None
    if "profile" in params:
        resolved["profile"] = profile
    return resolved


# ------------------------------------------------------------------------------------------
# Records, caching, environment
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass
class RunRecord:
    """What the reproducibility page shows for one chapter run."""

    chapter: str
    title: str
    status: str  # "ok" | "failed"
    profile: str
    parameters: dict[str, Any]  # every parameter's value in this run
    overrides: dict[str, Any]  # what differed from the notebook defaults
    device: str
    versions: dict[str, str]
    started: str
    finished: str
    seconds: float
    cache_key: str
    error: dict[str, Any] | None = None
    #: peak RSS of the runner and kernel processes together (sampled), in MB
    peak_rss_mb: float | None = None
    #: the kernel's own peak RSS (``getrusage``, reported by ``checks.summary``), in MB
    kernel_peak_rss_mb: float | None = None
    #: the accelerator's peak memory in use (``None`` on a CPU), in MB
    device_peak_mb: float | None = None
    #: every check of the run: ``{"claim", "passed", "detail"}``
    checks: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def save(self, path: Path) -> None:
        _write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        data = json.loads(path.read_text())
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @property
    def peak_mb(self) -> float | None:
        """The largest host memory measured for the run (sampled tree or kernel's own)."""
        vals = [v for v in (self.peak_rss_mb, self.kernel_peak_rss_mb) if v is not None]
        return max(vals) if vals else None


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file moved into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)


class _PeakRSS:
    """Samples the summed RSS of this process and all its descendants (the kernel) in a
    background thread; ``peak`` is the largest sum seen, in bytes."""

    def __init__(self, interval: float = 0.2):
        import threading

        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak = max(self.peak, total)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> "_PeakRSS":
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _read_checks_file(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The checks and the last memory report written by ``ntklit.checks`` in a kernel."""
    checks: list[dict[str, Any]] = []
    memory: dict[str, Any] = {}
    if not path.is_file():
        return checks, memory
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = entry.pop("kind", None)
        if kind == "check":
            checks.append(entry)
        elif kind == "memory":
            memory = entry
    return checks, memory


def _mb(nbytes: int | None) -> float | None:
    return None if nbytes is None else round(nbytes / 2**20, 1)


# ------------------------------------------------------------------------------------------
# Verification records (book/verified): the book's paper-scale status
# ------------------------------------------------------------------------------------------

#: Schema version of the verification records.
VERIFIED_SCHEMA = 1
_VERIFIED_FIELDS = {
    "schema": int,
    "chapter": str,
    "title": str,
    "profile": str,
    "status": str,
    "parameters": dict,
    "device": str,
    "versions": dict,
    "started": str,
    "finished": str,
    "seconds": (int, float),
    "peak_rss_mb": (int, float),
    "device_peak_mb": (int, float, type(None)),
    "checks": list,
    "checks_passed": int,
    "checks_total": int,
    "error": (dict, type(None)),
    "notebook_sha256": str,
}


def verification_path(root: Path, chapter: Chapter, profile: str) -> Path:
    """``book/verified/<chapter>.<profile>.json`` for ``profile`` in :data:`RECORDED_PROFILES`.

    Args:
      root: repository root.
      chapter: the chapter.
      profile: ``"full"`` or ``"shape"``.
    """
    if profile not in RECORDED_PROFILES:
        raise RunnerError(
            f"profile must be one of {', '.join(RECORDED_PROFILES)} for a "
            f"verification record, got {profile!r}"
        )
    return BuildPaths.default(root).verified / f"{chapter.name}.{profile}.json"


def _verification_record(ch: Chapter, rec: RunRecord) -> dict[str, Any]:
    passed = sum(bool(c.get("passed")) for c in rec.checks)
    return {
        "schema": VERIFIED_SCHEMA,
        "chapter": ch.name,
        "title": rec.title,
        "profile": rec.profile,
        "status": rec.status,
        "parameters": rec.parameters,
        "device": rec.device,
        "versions": rec.versions,
        "started": rec.started,
        "finished": rec.finished,
        "seconds": rec.seconds,
        "peak_rss_mb": rec.peak_mb if rec.peak_mb is not None else 0.0,
        "device_peak_mb": rec.device_peak_mb,
        "checks": rec.checks,
        "checks_passed": passed,
        "checks_total": len(rec.checks),
        "error": (
            {
                k: rec.error.get(k)
                for k in ("type", "ename", "evalue", "cell")
                if rec.error.get(k) is not None
            }
            if rec.error
            else None
        ),
        "notebook_sha256": _nb_hash(ch.path),
    }


def load_verification(path: Path) -> dict[str, Any]:
    """Read and check a verification record.

    Raises:
      RunnerError: the file is not JSON or does not follow the schema (the message names the
        field and the type it must have).
    """
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RunnerError(f"{path}: not a readable JSON verification record ({e})") from e
    if not isinstance(data, dict):
        raise RunnerError(f"{path}: a verification record is a JSON object")
    for name, types in _VERIFIED_FIELDS.items():
        if name not in data:
            raise RunnerError(f"{path}: verification record lacks the field {name!r}")
        if not isinstance(data[name], types) or (types is int and isinstance(data[name], bool)):
            raise RunnerError(
                f"{path}: field {name!r} must be of type "
                f"{getattr(types, '__name__', types)}, got {data[name]!r}"
            )
    if data["schema"] != VERIFIED_SCHEMA:
        raise RunnerError(f"{path}: schema {data['schema']} (this runner reads {VERIFIED_SCHEMA})")
    if data["profile"] not in RECORDED_PROFILES or data["status"] not in ("ok", "failed"):
        raise RunnerError(
            f"{path}: profile must be one of {', '.join(RECORDED_PROFILES)} and "
            f"status ok or failed, got {data['profile']!r}, {data['status']!r}"
        )
    for c in data["checks"]:
        if not (
            isinstance(c, dict)
            and isinstance(c.get("claim"), str)
            and isinstance(c.get("passed"), bool)
            and isinstance(c.get("detail"), str)
        ):
            raise RunnerError(
                f"{path}: every check is {{claim: str, passed: bool, detail: str}}, got {c!r}"
            )
    if data["checks_total"] != len(data["checks"]) or data["checks_passed"] != sum(
        c["passed"] for c in data["checks"]
    ):
        raise RunnerError(f"{path}: checks_passed/checks_total do not match the checks")
    return data


def verification_state(chapter: Chapter, record: dict[str, Any]) -> str:
    """``"verified"`` (passed, parameters equal the profile file's current values),
    ``"stale"`` (the profile or the defaults changed since) or ``"failed"``.

    Args:
      chapter: the chapter the record belongs to.
      record: a record read by :func:`load_verification`.
    """
    if record["status"] != "ok" or record["checks_passed"] != record["checks_total"]:
        return "failed"
    current = {n: p.default for n, p in read_parameters(chapter.path).items()}
    current.update(resolve_parameters(chapter, record["profile"], {}))
    return "verified" if current == record["parameters"] else "stale"


def _verifications(root: Path, chapter: Chapter) -> dict[str, dict[str, Any]]:
    out = {}
    for prof in RECORDED_PROFILES:
        path = verification_path(root, chapter, prof)
        if path.is_file():
            out[prof] = load_verification(path)
    return out


def _fmt_mb(mb: float | None) -> str:
    if mb is None:
        return "?"
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def _describe_verification(chapter: Chapter, rec: dict[str, Any] | None) -> str:
    """One table cell: the state of a chapter's full or shape verification."""
    if rec is None:
        return "never run"
    state = verification_state(chapter, rec)
    mem = _fmt_mb(rec["peak_rss_mb"]) + (
        f", device {_fmt_mb(rec['device_peak_mb'])}" if rec["device_peak_mb"] is not None else ""
    )
    what = (
        f"{rec['checks_passed']}/{rec['checks_total']} checks; {rec['device']}, "
        f"{rec['finished'][:10]}, {rec['seconds']:.0f} s, peak {mem}"
    )
    if state == "verified":
        return f"passed: {what}"
    if state == "stale":
        return f"stale (parameters changed since): {what}"
    err = rec.get("error") or {}
    why = (
        f" ({err.get('ename', err.get('type', ''))} in code cell {err['cell']})"
        if err.get("cell")
        else ""
    )
    return f"FAILED{why}: {what}"


def status_table(root: Path, paths: "BuildPaths") -> list[str]:
    """Markdown lines of the paper-scale status table (QuantEcon's status page as a model):
    per chapter, the run of this build and the last full-profile and shape verifications.

    Args:
      root: repository root (``book/verified`` holds the records).
      paths: output locations; this build's run records are read from ``paths.records``.
    """
    lines = [
        "| chapter | this build | full profile (paper scale) | shape run (full shapes, "
        "reduced counts) |",
        "|---|---|---|---|",
    ]
    for ch in chapters(root):
        p = paths.records / f"{ch.name}.json"
        r = RunRecord.load(p) if p.is_file() else None
        build = (
            f"{r.status}: {r.profile}, {r.seconds:.0f} s, peak {_fmt_mb(r.peak_mb)}"
            if r is not None
            else "not run"
        )
        ver = _verifications(root, ch)
        full = ver.get("full")
        full_cell = (
            _describe_verification(ch, full) if full is not None else "never run at paper scale"
        )
        shape = ver.get("shape")
        shape_cell = _describe_verification(ch, shape) if shape is not None else "never run"
        lines.append(
            f"| [{_title(ch.path)}]({ch.name}.ipynb) | {build} | {full_cell} | {shape_cell} |"
        )
    return lines


def _ntklit_source_hash() -> str:
    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parent
    for f in sorted(pkg.rglob("*.py")):
        h.update(str(f.relative_to(pkg)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()


def _nb_hash(path: Path) -> str:
    """Hash of a notebook's cells' sources and types (outputs and metadata noise ignored)."""
    nb = json.loads(path.read_text())
    h = hashlib.sha256()
    for c in nb["cells"]:
        h.update(c["cell_type"].encode())
        src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
        h.update(src.encode())
        h.update(json.dumps(c.get("metadata", {}).get("tags", [])).encode())
    return h.hexdigest()


def cache_key(chapter: Chapter, params: dict[str, Any], src_hash: str) -> str:
    """SHA-256 of the notebook's cells, the injected parameters and the ``ntklit`` source:
    a chapter whose key equals that of its last successful run is skipped.

    Args:
      chapter: the chapter.
      params: the parameters injected by the runner.
      src_hash: hash of the ``ntklit`` package source.
    """
    payload = json.dumps(
        {"nb": _nb_hash(chapter.path), "params": params, "ntklit": src_hash},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a chapter's result depends on."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in (
        "jax",
        "jaxlib",
        "neural-tangents",
        "numpy",
        "scipy",
        "sympy",
        "matplotlib",
        "papermill",
        "jupyter-book",
        "ntklit",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def device_description() -> str:
    """The accelerator JAX uses, e.g. ``"cpu: x86_64 (2 cores)"`` or ``"gpu: NVIDIA H100"``."""
    try:
        import jax

        d = jax.devices()[0]
        if d.platform == "cpu":
            return f"cpu: {platform.machine()} ({os.cpu_count()} cores)"
        return f"{d.platform}: {d.device_kind} (x{len(jax.devices())})"
    except Exception as e:  # pragma: no cover
        return f"unknown ({e})"


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _title(path: Path) -> str:
    nb = json.loads(path.read_text())
    for c in nb["cells"]:
        if c["cell_type"] == "markdown":
            src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
            for line in src.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return path.stem


# ------------------------------------------------------------------------------------------
# Running chapters
# ------------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _error_info(exc: BaseException, failed_nb: Path) -> dict[str, Any]:
    """Chapter-level error details from a papermill exception."""
    info: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc).strip()[:4000]}
    ename = getattr(exc, "ename", None)
    if ename is not None:
        info.update(
            ename=ename,
            evalue=getattr(exc, "evalue", ""),
            traceback="\n".join(getattr(exc, "traceback", []) or []),
        )
        # papermill records the failing cell's execution_count; find it in the output copy.
        try:
            nb = json.loads(failed_nb.read_text())
            # Number code cells as in the source notebook (skip papermill's injected cell).
            code_cells = [
                c
                for c in nb["cells"]
                if c["cell_type"] == "code"
                and _INJECTED not in c.get("metadata", {}).get("tags", [])
            ]
            for i, c in enumerate(code_cells):
                if any(o.get("output_type") == "error" for o in c.get("outputs", [])):
                    src = c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                    info.update(cell=i + 1, cell_source=src[:2000])
                    break
        except Exception:
            pass
    return info


# AF_UNIX socket paths are limited to 108 bytes (104 on macOS); leave room for "-NNNNN".
_IPC_PATH_MAX = 96


def _ipc_dir() -> str | None:
    """A private, empty directory for one kernel's IPC sockets, or None where the OS has no
    Unix sockets or the temporary directory's path is too long for one (then TCP is used)."""
    import tempfile

    if os.name == "nt":
        return None
    d = tempfile.mkdtemp(prefix="ntklit-ipc-")
    if len(os.path.join(d, "kernel-00000").encode()) > _IPC_PATH_MAX:
        os.rmdir(d)
        return None
    return d


def _kernel_manager_class(log: Path, ipc_dir: str | None = None) -> type:
    """The kernel manager papermill starts a chapter's kernel with.

    * IPC transport (Unix sockets) instead of TCP when ``ipc_dir`` is given: over TCP every
      kernel logs ipykernel's "Kernel is running over TCP without encryption" warning; a local
      kernel needs no network port. The sockets are created in ``ipc_dir`` (absolute; one
      private directory per kernel, see :func:`_ipc_dir`), never in the working directory:
      jupyter_client's default, ``kernel-ipc-N`` relative to the kernel's working directory,
      would put them into ``book/`` (where the book build would try to copy them, and where
      two kernels started at once would race for the same names).
    * The kernel process's own stdout/stderr (the Jupyter stack's log lines, e.g. the
      "KeyboardInterrupt caught in kernel" that jupyter_client's shutdown interrupt may cause,
      and native libraries' messages) go to ``log`` instead of the runner's console; the
      notebook's outputs are not affected (they travel over the kernel's channels).

    Args:
      log: file that receives the kernel process's output (appended to).
      ipc_dir: directory for the kernel's IPC sockets; None: TCP on localhost.
    """
    from jupyter_client import AsyncKernelManager
    from traitlets import default

    class ChapterKernelManager(AsyncKernelManager):
        if ipc_dir is not None:

            @default("transport")
            def _default_transport(self):
                return "ipc"

            def _ip_default(self) -> str:  # jupyter_client's dynamic default for ``ip``
                if self.transport == "ipc":
                    return os.path.join(ipc_dir, "kernel")
                return super()._ip_default()

        async def _async_launch_kernel(self, kernel_cmd, **kw):
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as f:  # the child keeps its own copy of the descriptor
                kw.setdefault("stdout", f)
                kw.setdefault("stderr", f)
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return ChapterKernelManager


def _strip_ansi(s: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", s)


def run_chapters(
    root: Path,
    names: Sequence[str] = (),
    *,
    profile: str = "auto",
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    paths: BuildPaths | None = None,
    fail_fast: bool = False,
    log_output: bool = False,
    progress: bool = True,
) -> list[RunRecord]:
    """Execute chapters with papermill.

    Args:
      root: repository root.
      names: chapters to run (see :func:`select`); empty for all.
      profile: ``"quick"``, ``"shape"``, ``"full"`` or ``"auto"`` (full when JAX sees a GPU).
      overrides: parameter values applied to every selected chapter.
      force: re-run chapters even when their inputs are unchanged.
      paths: output locations (default ``root/_build``).
      fail_fast: stop at the first failing chapter.
      log_output: stream the notebooks' stdout/stderr (their progress bars) to stderr.
      progress: show papermill's per-cell progress bar.

    Returns:
      One :class:`RunRecord` per chapter (cached ones included).

    All chapters and parameters are validated before the first one runs. A chapter whose
    cache key (notebook, resolved parameters, ``ntklit`` source) matches its last successful
    run is skipped. A full or shape run without ``overrides`` writes the chapter's
    verification record (``book/verified/<chapter>.<profile>.json``), passed or failed. The
    kernel process's own output (the Jupyter stack's log lines, native libraries' messages)
    goes to ``records/<chapter>.kernel.log``, not to the console.

    Raises:
      RunnerError / ParameterError: invalid selection or parameters (nothing ran).
      ChapterFailed: after running, if any chapter failed (the message names each one).
    """
    import papermill as pm

    overrides = dict(overrides or {})
    paths = paths or BuildPaths.default(root)
    if profile not in PROFILES:
        raise RunnerError(f"profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    prof = detect_profile() if profile == "auto" else profile
    selected = select(root, names)
    if not selected:
        _log("no notebook chapters are listed in _toc.yml; nothing to run")
        return []
    # Validate everything first.
    plans = [(ch, resolve_parameters(ch, prof, overrides)) for ch in selected]

    src_hash = _ntklit_source_hash()
    device = device_description()
    versions = package_versions()
    for d in (paths.executed, paths.failed, paths.records):
        d.mkdir(parents=True, exist_ok=True)

    records: list[RunRecord] = []
    failures: list[str] = []
    total = len(plans)
    for i, (ch, inject) in enumerate(plans, 1):
        key = cache_key(ch, inject, src_hash)
        rec_path = paths.records / f"{ch.name}.json"
        out_nb = paths.executed / f"{ch.name}.ipynb"
        if not force and rec_path.is_file() and out_nb.is_file():
            old = RunRecord.load(rec_path)
            if old.status == "ok" and old.cache_key == key:
                _log(
                    f"[{i}/{total}] {ch.name}: unchanged since {old.finished}, skipped "
                    f"(took {old.seconds:.1f} s; --force re-runs it)"
                )
                records.append(old)
                continue
        defaults = {n: p.default for n, p in read_parameters(ch.path).items()}
        all_params = {**defaults, **inject}
        _log(
            f"[{i}/{total}] {ch.name} ({prof} profile"
            + (
                f"; {', '.join(f'{k}={v!r}' for k, v in inject.items() if k != 'profile')}"
                if len(inject) > 1
                else ""
            )
            + ") ..."
        )
        tmp_nb = paths.failed / f"{ch.name}.running.ipynb"
        kernel_log = paths.records / f"{ch.name}.kernel.log"
        kernel_log.unlink(missing_ok=True)
        checks_file = paths.failed / f"{ch.name}.checks.jsonl"
        checks_file.unlink(missing_ok=True)
        started, t0 = _now(), time.perf_counter()
        status, error = "ok", None
        env_before = os.environ.get(_checks.CHECKS_FILE_ENV)
        os.environ[_checks.CHECKS_FILE_ENV] = str(checks_file)  # inherited by the kernel
        ipc_dir = _ipc_dir()
        try:
            with _PeakRSS() as rss:
                pm.execute_notebook(
                    str(ch.path),
                    str(tmp_nb),
                    parameters=inject,
                    kernel_name="python3",
                    progress_bar=progress,
                    log_output=log_output,
                    cwd=str(ch.path.parent),
                    report_mode=False,
                    kernel_manager_class=_kernel_manager_class(kernel_log, ipc_dir),
                )
        except Exception as exc:  # papermill raises PapermillExecutionError and others
            status = "failed"
            error = _error_info(exc, tmp_nb)
        finally:
            if ipc_dir is not None:  # sockets a killed kernel left behind
                shutil.rmtree(ipc_dir, ignore_errors=True)
            if env_before is None:
                os.environ.pop(_checks.CHECKS_FILE_ENV, None)
            else:
                os.environ[_checks.CHECKS_FILE_ENV] = env_before
        seconds = time.perf_counter() - t0
        found, memory = _read_checks_file(checks_file)
        checks_file.unlink(missing_ok=True)
        rec = RunRecord(
            chapter=ch.name,
            title=_title(ch.path),
            status=status,
            profile=prof,
            parameters=all_params,
            overrides=inject,
            device=device,
            versions=versions,
            started=started,
            finished=_now(),
            seconds=round(seconds, 2),
            cache_key=key,
            error=error,
            peak_rss_mb=_mb(rss.peak),
            kernel_peak_rss_mb=_mb(memory.get("rss_bytes")),
            device_peak_mb=_mb(memory.get("device_bytes")),
            checks=found,
        )
        if prof in RECORDED_PROFILES and not overrides:
            vpath = verification_path(root, ch, prof)
            _write_json(vpath, _verification_record(ch, rec))
            _log(f"[{i}/{total}] {ch.name}: verification record {vpath.relative_to(root)}")
        if status == "ok":
            tmp_nb.replace(out_nb)
            rec.save(rec_path)
            _log(
                f"[{i}/{total}] {ch.name}: ok in {seconds:.1f} s, "
                f"{sum(c['passed'] for c in found)}/{len(found)} checks passed, "
                f"peak memory {_fmt_mb(rec.peak_mb)}"
            )
        else:
            failed_nb = paths.failed / f"{ch.name}.ipynb"
            if tmp_nb.exists():
                tmp_nb.replace(failed_nb)
            rec.save(paths.failed / f"{ch.name}.json")
            cell = f"code cell {error['cell']}" if error and "cell" in error else "an unknown cell"
            msg = (
                f"chapter {ch.name} failed in {cell}: "
                f"{error.get('ename', error['type'])}: "
                f"{error.get('evalue', error['message'])}"
            )
            failures.append(msg)
            _log(f"[{i}/{total}] {ch.name}: FAILED after {seconds:.1f} s\n  {msg}")
            if error.get("traceback"):
                _log(_strip_ansi(error["traceback"]))
            _log(f"  executed notebook with the error: {failed_nb}")
            if kernel_log.is_file() and kernel_log.stat().st_size:
                _log(f"  the kernel process's own output (Jupyter and native logs): {kernel_log}")
            if fail_fast:
                records.append(rec)
                break
        records.append(rec)
    if failures:
        raise ChapterFailed("\n".join(failures))
    return records


# ------------------------------------------------------------------------------------------
# Building the HTML
# ------------------------------------------------------------------------------------------


def _fmt_value(v: Any) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) <= 60 else s[:57] + "..."


def reproducibility_page(root: Path, paths: BuildPaths) -> str:
    """Markdown of the reproducibility page, from the run records of the toc's chapters.

    Args:
      root: repository root.
      paths: output locations; records are read from ``paths.records``.
    """
    lines = [
        "# Reproducibility",
        "",
        "Generated by the runner from the run records of this build and the committed "
        "verification records in `book/verified/`: for every chapter, whether it has been "
        "run at paper scale, and the profile, parameters, device, package versions, run "
        "time, memory and status of the run that produced the page.",
        "",
        "## Status",
        "",
        "A claim of the book counts as reproduced only where its chapter's **full** "
        "profile (paper scale) has run to the end with every check passing. The **shape** "
        "run executes the full profile's shapes (widths, depths, N, m, image sizes) with "
        "reduced counts (seeds, networks, samples, steps) and check tolerances derived "
        "from those counts, so what depends on size (precision, overflow, memory, compile "
        "time) is tested on a CPU in minutes. A record whose parameters differ from the "
        "chapter's current profile is shown as stale. Peak memory is the host RSS of the "
        "runner and kernel processes (and the accelerator's peak, where there is one).",
        "",
        *status_table(root, paths),
        "",
    ]
    recs = []
    for ch in chapters(root):
        p = paths.records / f"{ch.name}.json"
        recs.append((ch, RunRecord.load(p) if p.is_file() else None))
    lines += [
        "## Chapters of this build",
        "",
        "| chapter | status | profile | device | run time | peak memory | checks | finished |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for ch, r in recs:
        if r is None:
            lines.append(f"| {ch.name} | not run | | | | | | |")
        else:
            passed = sum(bool(c.get("passed")) for c in r.checks)
            lines.append(
                f"| [{r.title}]({ch.name}.ipynb) | {r.status} | {r.profile} | "
                f"{r.device} | {r.seconds:.1f} s | {_fmt_mb(r.peak_mb)} | "
                f"{passed}/{len(r.checks)} | {r.finished} |"
            )
    total = sum(r.seconds for _, r in recs if r is not None)
    lines += ["", f"Total execution time: {total:.1f} s.", ""]
    for ch, r in recs:
        if r is None:
            continue
        lines += [
            f"### {r.title}",
            "",
            f"Profile `{r.profile}`, {r.device}, {r.seconds:.1f} s, "
            f"started {r.started}, status **{r.status}**.",
            "",
            "| parameter | value | set by |",
            "|---|---|---|",
        ]
        for name, value in r.parameters.items():
            src = (
                "runner"
                if name == "profile"
                else "profile / -p"
                if name in r.overrides
                else "default"
            )
            lines.append(f"| `{name}` | `{_fmt_value(value)}` | {src} |")
        lines.append("")
    versions = next((r.versions for _, r in recs if r is not None), package_versions())
    lines += [
        "## Environment",
        "",
        f"Operating system: {platform.platform()}; processor: {platform.machine()}, "
        f"{os.cpu_count()} cores.",
        "",
        "| package | version |",
        "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in versions.items()]
    lines += [
        "",
        "Re-run any chapter with the same parameters with "
        "`python -m ntklit run CHAPTER -p name=value` (see the introduction).",
        "",
    ]
    return "\n".join(lines)


def _json_cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    s = v if isinstance(v, str) else json.dumps(v, default=str)
    return s.replace("|", "\\|").replace("\n", " ")


def _table(rows: list[dict[str, Any]]) -> list[str]:
    """A Markdown table of flat dicts (columns: the union of keys, in first-seen order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(_json_cell(r.get(c, "")) for c in cols) + " |" for r in rows]
    return out


def performance_page(root: Path, paths: BuildPaths) -> str:
    """Markdown of the performance page, from ``benchmarks/results/*.json``.

    Args:
      root: repository root.
      paths: output locations (unused; the signature every generated page shares).

    Each results file is a JSON object; the page shows its ``title`` (or file name), ``date``,
    ``device``, ``command``, ``config`` (a table of settings), the figures
    :func:`ntklit.plotting.benchmark_figures` draws from it (written as PNG files next to the
    staged page, ``paths.stage / "book" / PERFORMANCE_FIGURES``), ``summary`` (claims/targets
    with the measured values) and ``results`` (a list of flat records, as a table collapsed
    under the figures). Other keys are shown verbatim.
    """
    lines = [
        "# Performance",
        "",
        "Generated from the benchmark results files in `benchmarks/results/`. Each was "
        "written by one run of the benchmark script named with it, on the device and date "
        "shown; ratios within one file were measured in the same run. Re-run a benchmark "
        "with the command shown to measure your own machine.",
        "",
    ]
    files = sorted((root / "benchmarks" / "results").glob("*.json"))
    if not files:
        lines += ["No benchmark results have been recorded yet.", ""]
    known = {"title", "date", "device", "command", "config", "summary", "results", "versions"}
    for f in files:
        try:
            data = json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise RunnerError(f"{f}: not valid JSON ({e})") from e
        lines += [
            f"## {data.get('title', f.stem)}",
            "",
            f"File `benchmarks/results/{f.name}`; device: {data.get('device', '?')}; "
            f"date: {data.get('date', '?')}.",
        ]
        if data.get("command"):
            lines += ["", f"Command: `{data['command']}`"]
        if data.get("versions"):
            lines += [
                "",
                "Versions: " + ", ".join(f"{k} {v}" for k, v in data["versions"].items()) + ".",
            ]
        lines.append("")
        if isinstance(data.get("config"), dict):
            lines += ["**Configuration**", ""] + _table([data["config"]]) + [""]
        lines += _performance_figures(f.stem, data, paths)
        for key in ("summary", "results"):
            val = data.get(key)
            if isinstance(val, dict):
                val = [
                    {"name": k, **(v if isinstance(v, dict) else {"value": v})}
                    for k, v in val.items()
                ]
            if isinstance(val, list) and val and all(isinstance(r, dict) for r in val):
                if key == "results":  # the figures show them; the numbers one click away
                    lines += [f":::{{dropdown}} Results table ({len(val)} rows)", ""]
                    lines += _table(val) + ["", ":::", ""]
                else:
                    lines += [f"**{key.capitalize()}**", ""] + _table(val) + [""]
        rest = {k: v for k, v in data.items() if k not in known}
        if rest:
            lines += ["```json", json.dumps(rest, indent=2, default=str)[:6000], "```", ""]
    return "\n".join(lines)


def _heading_id(title: str) -> str:
    """The HTML id Sphinx gives a section with this Markdown title (docutils' ``make_id`` of
    its text: link targets and the ``$``, backtick and ``*`` markers removed; math keeps its
    TeX source, as its node's text does)."""
    import re

    from docutils.nodes import make_id

    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", title)  # [text](target) -> text
    text = re.sub(r"[`$*]", "", text)
    return make_id(text)


def _sections(nb: dict) -> dict[str, tuple[str, str]]:
    """Digest of each code cell's source (:func:`ntklit.checks.cell_digest`) -> (title, id)
    of the section it is in."""
    out: dict[str, tuple[str, str]] = {}
    current = ("", "")
    seen: dict[str, int] = {}
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        if cell.get("cell_type") == "markdown":
            for line in src.splitlines():
                if line.startswith("#"):
                    title = line.lstrip("#").strip()
                    hid = _heading_id(title)
                    n = seen.get(hid, 0)
                    seen[hid] = n + 1
                    current = (title, hid if n == 0 else f"id{n}")
        elif cell.get("cell_type") == "code":
            out.setdefault(_checks.cell_digest(src), current)
    return out


def _md_cell(text: str) -> str:
    """Text as one Markdown table cell, shown literally (CommonMark backslash escapes)."""
    import re

    return re.sub(r"([\\`*_{}\[\]<>$|#~])", r"\\\1", " ".join(str(text).split())) or "-"


def scorecard_page(root: Path, paths: BuildPaths) -> str:
    """Markdown of the scorecard: every check that reproduces a paper's claim, in one table.

    For each chapter of this build, every check made with ``paper=...``
    (:func:`ntklit.checks.check`): the chapter and section (a link), the paper's claim, the
    value this build measured, the committed full-profile verification's value of the same
    check (or that the chapter has not run at paper scale, or that the record is stale or
    failed), and the result. Generated from the run records and ``book/verified``; nothing in
    it is typed by hand.

    Args:
      root: repository root.
      paths: output locations (run records and executed notebooks are read from there).
    """
    lines = [
        "# Scorecard",
        "",
        "Every check of this book that reproduces a claim of a paper, generated by the "
        "runner from this build's run records and the committed paper-scale "
        "verification records (`book/verified/`). A claim counts as reproduced where its "
        "**full profile** passed; the build's own value comes from the profile it ran "
        "(the quick profile on a laptop CPU). The other checks of each chapter (controls, "
        "closed forms, numerical hygiene) are listed at the end of the chapter and on "
        "[the reproducibility page](reproducibility.md).",
        "",
        "| chapter, section | the paper's claim | this build | full profile (paper scale) "
        "| result |",
        "|---|---|---|---|---|",
    ]
    rows = 0
    for ch in chapters(root):
        rp = paths.records / f"{ch.name}.json"
        rec = RunRecord.load(rp) if rp.is_file() else None
        if rec is None:
            continue
        ex = paths.executed / f"{ch.name}.ipynb"
        sections = _sections(json.loads(ex.read_text())) if ex.is_file() else {}
        full = _verifications(root, ch).get("full")
        state = verification_state(ch, full) if full is not None else None
        fchecks = full["checks"] if full is not None else []
        for i, c in enumerate(rec.checks):
            if not c.get("paper"):
                continue
            title, hid = sections.get(c.get("cell"), ("", ""))
            where = f"[{_md_cell(rec.title)}]({ch.name}.ipynb)"
            if title:
                where += f', <a href="{ch.name}.html#{hid}">{_md_cell(title)}</a>'
            if full is None:
                fcell = "not yet run at paper scale"
            else:
                same = (
                    fchecks[i]
                    if len(fchecks) == len(rec.checks)
                    else next((f for f in fchecks if f.get("claim") == c["claim"]), None)
                )
                if same is None:
                    fcell = f"{state}; no check with this claim in the record"
                else:
                    fcell = (
                        ("passed" if same["passed"] else "FAILED")
                        + ": "
                        + _md_cell(same["detail"])
                    )
                    if state != "verified":
                        fcell = f"{state} record; {fcell}"
            build = ("pass" if c["passed"] else "FAIL") + f" ({rec.profile})"
            lines.append(
                f"| {where} | {_md_cell(c['paper'])} | {_md_cell(c['claim'])}: "
                f"{_md_cell(c['detail'])} | {fcell} | {build} |"
            )
            rows += 1
    if not rows:
        lines += [
            "",
            "No check of this build reproduces a paper's claim (run the chapters "
            "with the runner first).",
        ]
    return "\n".join(lines + [""])


#: Folder (next to the staged performance page) of the performance page's figures.
PERFORMANCE_FIGURES = "performance_figures"


def _performance_figures(name: str, data: dict[str, Any], paths: BuildPaths) -> list[str]:
    """Draw one results file's figures into the staged book; the Markdown that shows them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    folder = paths.stage / "book" / PERFORMANCE_FIGURES
    lines: list[str] = []
    for i, (caption, fig) in enumerate(plotting.benchmark_figures(name, data)):
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / f"{name}_{i}.png")
        plt.close(fig)
        alt = caption.split(":")[0].replace("`", "")
        lines += [
            f"```{{figure}} {PERFORMANCE_FIGURES}/{name}_{i}.png",
            f":name: perf-{name}-{i}",
            f":alt: {alt}",
            "",
            caption,
            "```",
            "",
        ]
    return lines


#: Pages written into the staged book at build time (a tracked placeholder with the same name
#: explains the page to plain ``jupyter-book build .`` users).
GENERATED_PAGES = {
    "book/scorecard": scorecard_page,
    "book/reproducibility": reproducibility_page,
    "book/performance": performance_page,
}


def publishable(nb: dict, root: Path) -> dict:
    """An executed notebook as its page shows it (the executed copy itself is not changed).

    * papermill's injected-parameters cell is tagged ``remove-cell`` (the page's profile
      admonition lists the values that differ from the defaults instead);
    * ``stderr`` streams are dropped: progress-bar frames and warnings belong to the console
      (the runner's ``--log-output``), not to the page; a chapter states in prose or in a check
      what a reader must know;
    * absolute paths of the machine that ran it (the repository root, the home folder) in the
      remaining text outputs are written relative to the repository (``~`` for the home).

    Args:
      nb: the executed notebook (nbformat 4 JSON), not modified.
      root: the repository root the chapter ran in.

    Returns:
      A new notebook dict.
    """
    nb = json.loads(json.dumps(nb))
    subs = [
        (str(Path(root).resolve()) + os.sep, ""),
        (str(Path(root).resolve()), "."),
        (str(Path.home()) + os.sep, "~" + os.sep),
    ]

    def scrub(text):
        if isinstance(text, list):
            text = "".join(text)
        for a, b in subs:
            text = text.replace(a, b)
        return text

    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if _INJECTED in tags and _REMOVE not in tags:
            tags.append(_REMOVE)
        outputs = []
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                if out.get("name") == "stderr":
                    continue
                out["text"] = scrub(out.get("text", ""))
            elif out.get("output_type") in ("execute_result", "display_data"):
                data = out.get("data", {})
                for mime in ("text/plain", "text/markdown", "text/html"):
                    if mime in data:
                        data[mime] = scrub(data[mime])
            outputs.append(out)
        cell["outputs"] = outputs
    return nb


def _stage_ignore(directory: str, names: list[str]) -> set[str]:
    """What staging leaves out of ``book/``: build folders, caches, and anything that is not a
    regular file, directory or link (sockets, FIFOs: a killed process's leftovers cannot be
    copied and are no part of the book)."""
    import stat

    skip = {"_build", ".ipynb_checkpoints", "__pycache__"}
    for n in names:
        try:
            mode = os.lstat(os.path.join(directory, n)).st_mode
        except OSError:
            skip.add(n)
            continue
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
            skip.add(n)
    return skip


def _stage(root: Path, paths: BuildPaths) -> Path:
    """Copy the book sources to ``_build/stage`` with the executed notebooks in place."""
    import yaml

    stage = paths.stage
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    shutil.copytree(root / "book", stage / "book", ignore=_stage_ignore)
    shutil.copy2(root / "_toc.yml", stage / "_toc.yml")
    cfg = yaml.safe_load((root / "_config.yml").read_text())
    cfg.setdefault("execute", {})["execute_notebooks"] = "off"
    (stage / "_config.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    # The API reference imports ntklit from the installed package; nothing else to copy.
    missing = []
    for ch in chapters(root):
        ex = paths.executed / f"{ch.name}.ipynb"
        if not ex.is_file():
            missing.append(ch.name)
            continue
        nb = publishable(json.loads(ex.read_text()), root)
        rec_path = paths.records / f"{ch.name}.json"
        note = profile_note(ch, RunRecord.load(rec_path) if rec_path.is_file() else None)
        at = 1 if nb["cells"] and nb["cells"][0]["cell_type"] == "markdown" else 0
        nb["cells"].insert(
            at,
            {
                "cell_type": "markdown",
                "id": "ntklit-profile-note",
                "metadata": {},
                "source": note.splitlines(keepends=True),
            },
        )
        (stage / f"{ch.docname}.ipynb").write_text(json.dumps(nb, indent=1))
    if missing:
        raise RunnerError(
            "these chapters have no executed copy; run them first "
            f"(python -m ntklit run {' '.join(missing)}): {', '.join(missing)}"
        )
    for doc, make_page in GENERATED_PAGES.items():
        (stage / f"{doc}.md").write_text(make_page(root, paths))
    return stage


def build_html(root: Path, *, paths: BuildPaths | None = None, strict: bool = True) -> Path:
    """Build the HTML from the executed chapters; returns the path of ``index.html``.

    Args:
      root: repository root.
      paths: output locations (default ``root/_build``).
      strict: turn Sphinx warnings into errors (``-W --keep-going``).

    The new HTML replaces ``_build/html`` only if the build succeeds, so a failed build
    leaves the last good book in place.

    Raises:
      RunnerError: a chapter has no executed copy, or jupyter-book failed (output shown).
    """
    paths = paths or BuildPaths.default(root)
    stage = _stage(root, paths)
    out = paths.build / "stage-out"
    if out.exists():
        shutil.rmtree(out)
    cmd = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(stage),
        "--path-output",
        str(out),
        "--builder",
        "html",
    ]
    if strict:
        cmd += ["-W", "--keep-going"]
    _log("building HTML: jupyter-book " + " ".join(cmd[3:]))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    (paths.build / "build.log").write_text(log)
    new_html = out / "_build" / "html"
    if proc.returncode != 0 or not (new_html / "index.html").is_file():
        problems = [
            _strip_ansi(line)
            for line in log.splitlines()
            if "WARNING" in line or "ERROR" in line or "Error" in line
        ]
        raise RunnerError(
            f"jupyter-book build failed (exit {proc.returncode}); the last "
            f"good HTML in {paths.html} is unchanged. Full log: "
            f"{paths.build / 'build.log'}\n" + "\n".join(problems[-60:])
        )
    old = paths.build / "html.old"
    if old.exists():
        shutil.rmtree(old)
    if paths.html.exists():
        paths.html.rename(old)
    new_html.rename(paths.html)
    if old.exists():
        shutil.rmtree(old)
    shutil.rmtree(out, ignore_errors=True)
    return paths.html / "index.html"
