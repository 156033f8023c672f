"""griffe extensions used to build probkit's API reference (build tooling, not part of the package).

``PackageDirMapping`` makes griffe see ``probkit.inference`` and ``probkit.theory``. Their source
sits in the top-level folders ``inference/`` and ``theory/`` and is installed under ``probkit``
by the ``[tool.setuptools.package-dir]`` mapping of ``pyproject.toml``. griffe finds
``probkit`` by its folder and scans that folder for subpackages, so on its own it never sees the
mapped ones, however the package is installed (an editable install maps them with an import
hook that griffe's static finder does not follow). This extension reads the mapping from
``pyproject.toml`` next to ``docs/`` and, once griffe has loaded ``probkit``, loads each mapped
folder statically from source and attaches it under its installed name. Nothing is imported
and no install is needed, so a fresh clone, an editable install and CI give the same result.

``NumpydocMarkup`` renders the reStructuredText that numpydoc docstrings use in Markdown:

* Sphinx roles (``:func:`resample```, ``:class:`~probkit.ProbkitError```...) become code,
  linked to the object's API entry when it is documented (an optional cross-reference: an
  object without an entry, such as a scipy function, stays plain code and raises no warning);
* simple tables (``=====  =====`` borders) become Markdown tables;
* a paragraph ending in ``::`` before a literal block ends in ``:``;
* a type written ``Array, shape (n,)`` is shown as written, not parsed as a Python tuple.

mkdocs does not copy this file into the site (``exclude_docs`` in ``mkdocs.yml``).
"""

from __future__ import annotations

import html
import logging
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import griffe

_logger = logging.getLogger("mkdocs.plugins.probkit_docs")

_PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


# --- package-dir mapping -----------------------------------------------------------------------


def _mapped_subpackages(pyproject: Path, top: str) -> dict[str, Path]:
    """``{"inference": <root>/inference, ...}``: the direct subpackages of ``top`` mapped elsewhere."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    package_dir = config.get("tool", {}).get("setuptools", {}).get("package-dir", {})
    mapped = {}
    for name, folder in package_dir.items():
        parent, _, child = name.rpartition(".")
        if parent == top and child:
            mapped[child] = (pyproject.parent / folder).resolve()
    return mapped


class PackageDirMapping(griffe.Extension):
    """Attach the folders mapped by ``[tool.setuptools.package-dir]`` under their package names."""

    def __init__(self, package: str = "probkit", pyproject: str | None = None) -> None:
        self.package = package
        self.pyproject = Path(pyproject) if pyproject else _PYPROJECT

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Graft each mapped subpackage onto ``pkg`` once ``pkg`` itself has loaded."""
        if pkg.path != self.package:
            return
        for name, folder in _mapped_subpackages(self.pyproject, self.package).items():
            existing = pkg.members.get(name)
            if existing is not None and not existing.is_alias:
                continue  # griffe found it where it looked (e.g. in an installed wheel)
            if not (folder / "__init__.py").is_file():
                _logger.warning(
                    "package-dir maps %s.%s to %s, which has no __init__.py",
                    self.package,
                    name,
                    folder,
                )
                continue
            # Load the folder as a top-level package, then move it under `pkg`: griffe computes
            # an object's path from its parents, so every member becomes probkit.<name>.<...>.
            module = loader.load(folder, try_relative_path=True)
            loader.modules_collection.del_member(module.name)
            pkg.set_member(name, module)


# --- reStructuredText markup in numpydoc docstrings ---------------------------------------------

_ROLE = re.compile(r":(?:py:)?(?P<role>[a-z]+):`(?P<target>[^`]+)`")
_TITLED_TARGET = re.compile(r"^(?P<title>.*?)\s*<(?P<target>[^>]+)>$")
_TABLE_BORDER = re.compile(r"^(?P<indent>\s*)=+(?:\s+=+)+\s*$")
_LITERAL_MARKER = re.compile(r"(\S)::$|\s*::$")
_ENTRY = re.compile(
    r"^\s*(?P<names>[A-Za-z_*][\w*]*(?:\s*,\s*[A-Za-z_*][\w*]*)*)\s+:\s+(?P<type>.+?)\s*$"
)

_ROLE_KINDS = {
    "func": ("function",),
    "meth": ("function",),
    "class": ("class",),
    "exc": ("class",),
    "mod": ("module",),
    "attr": ("attribute", "property"),
    "data": ("attribute",),
    "const": ("attribute",),
}


def _kind_of(obj: griffe.Object | griffe.Alias) -> str:
    try:
        target = obj.final_target if obj.is_alias else obj
    except (griffe.AliasResolutionError, griffe.CyclicAliasError):
        return "unknown"
    if target.is_function and "property" in target.labels:
        return "property"
    return target.kind.value


def _member_path(
    obj: griffe.Object | griffe.Alias, rest: str
) -> griffe.Object | griffe.Alias | None:
    try:
        return obj.get_member(rest) if rest else obj
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _scopes(obj: griffe.Object) -> Iterator[griffe.Object]:
    scope: griffe.Object | None = obj
    while scope is not None:
        yield scope
        scope = scope.parent


def _resolve(obj: griffe.Object, role: str, target: str) -> str | None:
    """The path of the documented object ``target`` names from ``obj``'s scope, or None."""
    wanted = _ROLE_KINDS.get(role)
    collection = obj.modules_collection
    candidates = []
    found = _member_path(collection, target)
    if found is not None:
        candidates.append((target, found))
    head, _, rest = target.partition(".")
    for scope in _scopes(obj):
        if head in scope.members:
            found = _member_path(scope.members[head], rest)
            if found is not None:
                # An imported name links to where it is defined (and documented).
                path = found.target_path if found.is_alias else found.path
                candidates.append((path, found))
    for path, found in candidates:
        if wanted is None or _kind_of(found) in wanted:
            return path
    return candidates[0][0] if candidates else None


def _roles_to_markdown(obj: griffe.Object, text: str) -> str:
    def replace(match: re.Match) -> str:
        role, target = match["role"], match["target"].strip()
        titled = _TITLED_TARGET.match(target)
        if titled:
            title, target = titled["title"], titled["target"]
        elif target.startswith("~"):
            target = target[1:]
            title = target.rsplit(".", 1)[-1]
        else:
            title = target
        path = _resolve(obj, role, target)
        code = f"<code>{html.escape(title)}</code>"
        if path is None:
            return code
        return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'

    return _ROLE.sub(replace, text)


def _table_to_markdown(lines: list[str], start: int) -> tuple[list[str], int] | None:
    """Convert the simple table whose top border is ``lines[start]``; None if it is not one."""
    border = lines[start]
    indent = len(border) - len(border.lstrip())
    spans = [(m.start(), m.end()) for m in re.finditer(r"=+", border)]
    borders = [start]
    index = start + 1
    while index < len(lines) and len(borders) < 3:
        if _TABLE_BORDER.match(lines[index]):
            borders.append(index)
        elif not lines[index].strip():
            return None
        index += 1
    if len(borders) != 3:
        return None

    def cells(line: str) -> list[str]:
        row = []
        for number, (begin, _) in enumerate(spans):
            end = spans[number + 1][0] if number + 1 < len(spans) else len(line)
            row.append(line[begin:end].strip().replace("|", r"\|"))
        return row

    header = [cells(line) for line in lines[borders[0] + 1 : borders[1]]]
    body = [cells(line) for line in lines[borders[1] + 1 : borders[2]]]
    if len(header) != 1 or any(not row[0] for row in body):
        return None  # multi-line rows: leave the table as it is
    pad = " " * indent
    out = [pad + "| " + " | ".join(header[0]) + " |", pad + "|" + "---|" * len(spans)]
    out += [pad + "| " + " | ".join(row) + " |" for row in body]
    return out, borders[2] + 1


def _rst_to_markdown(obj: griffe.Object, text: str) -> str:
    lines = text.splitlines()
    out: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _TABLE_BORDER.match(line):
            converted = _table_to_markdown(lines, index)
            if converted is not None:
                table, index = converted
                out += table
                continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if line.rstrip().endswith("::") and not following.strip():
            line = _LITERAL_MARKER.sub(lambda m: f"{m[1]}:" if m[1] else "", line.rstrip())
        out.append(line)
        index += 1
    return _roles_to_markdown(obj, "\n".join(out))


def _written_types(text: str) -> dict[str, str]:
    """``{"log_weights": "Array, shape (n,)", ...}`` from the ``name : type`` lines of a docstring."""
    return {m["names"]: m["type"] for line in text.splitlines() if (m := _ENTRY.match(line))}


def _keep_written_types(docstring: griffe.Docstring, written: dict[str, str]) -> None:
    for section in docstring.parsed:
        items = section.value if isinstance(section.value, list) else []
        for item in items:
            annotation = getattr(item, "annotation", None)
            if isinstance(annotation, griffe.ExprTuple) and item.name in written:
                item.annotation = written[item.name]


class NumpydocMarkup(griffe.Extension):
    """Render the reStructuredText of numpydoc docstrings (roles, simple tables, ``::``) as Markdown."""

    def __init__(self, package: str = "probkit") -> None:
        self.package = package

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        """Rewrite every docstring of ``pkg`` (run after ``PackageDirMapping``)."""
        if pkg.path == self.package:
            self._rewrite(pkg)

    def _rewrite(self, obj: griffe.Object) -> None:
        if obj.docstring is not None:
            written = _written_types(obj.docstring.value)
            obj.docstring.value = _rst_to_markdown(obj, obj.docstring.value)
            _keep_written_types(obj.docstring, written)
        for member in obj.members.values():
            if not member.is_alias:
                self._rewrite(member)
