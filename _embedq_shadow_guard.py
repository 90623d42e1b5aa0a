"""Fail clearly when a stray module shadows one of embedq's top-level packages.

embedq's top-level package names are generic (worker, storage, schemas, native,
gateway, embedq, bench), so a user's ``schemas.py`` or ``worker.py`` in the current
directory (which Python puts first on sys.path) wins over ours, and the failure
surfaces deep inside our code (``cannot import name 'InvalidJob' from
'schemas'``) or as an obscure Celery error.

This module is installed next to our packages in site-packages together with
``_embedq_shadow_guard.pth`` (CMakeLists.txt installs both), so the site module
imports it at every interpreter start, before any user code runs. It puts a
finder at the front of sys.meta_path which, for those six names only, asks the
other finders where the name resolves, and raises one ImportError naming both
paths when that is not where embedq installed the package. For our own location
(and for every other name) it returns None: the normal machinery then imports
the module as it always did, so the guard changes nothing but the error.

Where embedq installed its packages:
  * a regular install: next to this file, ``<site-packages>/<name>``;
  * an editable install (``pip install -e``): ``<source root>/<name>``, the
    source root read from the PEP 610 ``direct_url.json`` of the
    ``embedq-*.dist-info`` next to this file (read once, on the first import of
    one of the six names, and only then).
If neither holds a package ``<name>/__init__.py`` (say, embedq was half
uninstalled), the guard stays out of the way.

Set EMBEDQ_SHADOW_GUARD=0 to disable it. Keep this module import-light: it runs
at every interpreter start of the environment, so it imports only os and sys.
"""
from __future__ import annotations

import os
import sys

NAMES = frozenset({"worker", "storage", "schemas", "native", "gateway", "embedq", "bench"})
DIST = "embedq"
HERE = os.path.dirname(os.path.abspath(__file__))

_roots: list[str] | None = None  # directories holding our packages, computed lazily
_busy: set[str] = set()          # names being resolved (no re-entry while we ask the others)


def _norm(path: str) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


def _editable_roots() -> list[str]:
    """Source roots of an editable install of embedq, from its dist-info's direct_url.json."""
    roots = []
    try:
        entries = os.listdir(HERE)
    except OSError:
        return roots
    prefix = DIST + "-"
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(".dist-info")):
            continue
        try:
            import json
            from urllib.parse import unquote, urlparse

            with open(os.path.join(HERE, entry, "direct_url.json"), encoding="utf-8") as f:
                info = json.load(f)
            if not (info.get("dir_info") or {}).get("editable"):
                continue
            url = urlparse(info["url"])
            if url.scheme == "file":
                roots.append(unquote(url.path))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue
    return roots


def _our_roots() -> list[str]:
    global _roots
    if _roots is None:
        _roots = [HERE, *_editable_roots()]
    return _roots


def _our_packages(name: str) -> list[str]:
    """The package directories embedq installed for `name` (those that exist)."""
    return [os.path.join(root, name) for root in _our_roots()
            if os.path.isfile(os.path.join(root, name, "__init__.py"))]


def _location(spec) -> str | None:
    """The file or directory a spec resolves to: a package's directory, else its origin."""
    origin = spec.origin if spec.has_location else None
    if origin:
        base = os.path.basename(origin)
        if base.startswith("__init__."):
            return os.path.dirname(origin)
        return origin
    locations = list(spec.submodule_search_locations or ())
    return locations[0] if locations else None


def _is_namespace(spec) -> bool:
    return spec.origin in (None, "namespace") and spec.submodule_search_locations is not None


def shadow_message(name: str, found: str, ours: str) -> str:
    return (f"embedq: {name!r} resolves to {found}, which shadows embedq's package {ours}; "
            f"rename or move {found} (or run from another directory); "
            f"EMBEDQ_SHADOW_GUARD=0 turns this check off")


class ShadowGuard:
    """Meta-path finder: refuses one of our top-level names when another module of that name wins."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname not in NAMES or path is not None or fullname in _busy:
            return None
        _busy.add(fullname)
        try:
            spec = cls._others_find_spec(fullname, target)
        finally:
            _busy.discard(fullname)
        # None: nothing else has the name (the normal ModuleNotFoundError follows).
        # A namespace package: only when no regular package of the name exists anywhere on
        # sys.path, so ours is not installed there either.
        if spec is None or _is_namespace(spec):
            return None
        found = _location(spec)
        if found is None:
            return None
        ours = _our_packages(fullname)
        if not ours:
            return None
        found_n = _norm(found)
        if any(found_n == _norm(p) for p in ours):
            return None
        real = os.path.realpath(found)
        if any(real == os.path.realpath(p) for p in ours):
            return None
        raise ImportError(shadow_message(fullname, found, ours[0]), name=fullname, path=found)

    @classmethod
    def _others_find_spec(cls, fullname, target):
        """What the import system would find for `fullname` without this finder."""
        for finder in list(sys.meta_path):
            if finder is cls or isinstance(finder, type) and issubclass(finder, ShadowGuard):
                continue
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, None, target)
            if spec is not None:
                return spec
        return None

    @classmethod
    def invalidate_caches(cls):
        global _roots
        _roots = None


def install() -> None:
    """Put the guard first on sys.meta_path (once per process)."""
    if os.environ.get("EMBEDQ_SHADOW_GUARD", "1") == "0":
        return
    for finder in sys.meta_path:
        if getattr(finder, "__name__", None) == "ShadowGuard" and getattr(finder, "__module__", None) == __name__:
            return
    sys.meta_path.insert(0, ShadowGuard)


install()
