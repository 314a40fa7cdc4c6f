"""The plugin manager: built-ins are ordinary plugins, third-party ones come from the
`smfa` entry-point group.

SMFA_PLUGINS restricts which third-party plugins load: unset = all installed, "" = none,
"a,b" = only the distributions/entry points named a and b. Tests set it to "" so that
installed plugins never leak in by accident.

A plugin that fails (to import, or in one of its hooks) is isolated: the error is recorded
once under the plugin's name (`broken_plugins()`, listed by `smfa methods` / `smfa judges`),
printed once on stderr, and everything else keeps working.
"""

from __future__ import annotations

import importlib
import os
import sys

import pluggy

from . import hookspecs

DEFAULT_PLUGINS: tuple[str, ...] = ("smfa_methods.builtin",)

_pm: pluggy.PluginManager | None = None
_broken: dict[str, str] = {}  # plugin name -> its first error
_builtins: set[str] = set()  # built-in plugins of higher layers (register_builtin)


def record_broken(plugin: str, error: str) -> None:
    """Remember (and say once on stderr) that `plugin` failed; the rest carries on."""
    if plugin not in _broken:
        _broken[plugin] = error
        sys.stderr.write(f"smfa: plugin {plugin!r} is broken and was skipped: {error}\n")


def broken_plugins() -> dict[str, str]:
    """plugin name -> the error that made it fail (load or registration)."""
    get_plugin_manager()
    return dict(_broken)


def broken_note() -> str:
    """'' or ' (broken plugins: a, b; see `smfa methods`)', for an unknown-name error."""
    return f" (broken plugins: {', '.join(sorted(_broken))}; see `smfa methods`)" if _broken else ""


def is_builtin(plugin: str) -> bool:
    """A plugin of smfa itself (registered first, wins any name clash)."""
    return plugin in DEFAULT_PLUGINS or plugin in _builtins


def describe(exc: BaseException) -> str:
    """An exception as 'Type: message', for the broken-plugin notes."""
    return f"{type(exc).__name__}: {exc}"


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    from importlib.metadata import entry_points

    allowed = os.environ.get("SMFA_PLUGINS")
    names = None if allowed is None else {n.strip() for n in allowed.split(",") if n.strip()}
    for ep in entry_points(group="smfa"):
        dist = ep.dist.name if ep.dist is not None else ""
        if names is not None and ep.name not in names and dist not in names:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # an ImportError, a bad hookimpl: that plugin only
            record_broken(ep.name, f"failed to load: {describe(exc)}")


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use: hookspecs, built-in plugins, entry points."""
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("smfa")
        pm.add_hookspecs(hookspecs)
        for modname in DEFAULT_PLUGINS:
            try:
                mod = importlib.import_module(modname)
            except ModuleNotFoundError as exc:
                if exc.name != modname:
                    raise
                continue
            pm.register(mod, name=modname)
        _load_entry_points(pm)
        _pm = pm
    return _pm


def register_builtin(modname: str) -> pluggy.PluginManager:
    """Register a built-in plugin module that lives in a higher layer (e.g. smfa_eval's
    judges) without this package importing it."""
    pm = get_plugin_manager()
    _builtins.add(modname)
    if pm.get_plugin(modname) is None:
        pm.register(importlib.import_module(modname), name=modname)
    return pm


def reset_plugin_manager() -> None:
    """Forget the cached manager (tests; after installing a plugin at run time)."""
    global _pm
    _pm = None
    _broken.clear()
