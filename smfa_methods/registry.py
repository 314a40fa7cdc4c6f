"""Methods (and judges) collected from every plugin through `register(...)` callbacks that
check what they get."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .errors import MethodError
from .method import Method
from .plugins import broken_note, describe, get_plugin_manager, is_builtin, record_broken


@dataclass(frozen=True)
class Registered:
    method: Method
    plugin: str


def validate_method(obj: object) -> Method:
    """A method must be an instance (not a class) with a name, a one-line description, a
    dict of options and a callable compute_loss or run."""
    if isinstance(obj, type):
        raise TypeError(f"register() takes a method instance, got the class {obj.__name__}; call it first")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name or not name.replace("-", "_").isidentifier():
        raise TypeError(f"register() got {obj!r}: a method needs a non-empty identifier-like `name` str")
    if not isinstance(getattr(obj, "description", None), str):
        raise TypeError(f"method {name!r}: `description` must be a str")
    if not isinstance(getattr(obj, "options", None), dict):
        raise TypeError(f"method {name!r}: `options` must be a dict of defaults")
    if not (callable(getattr(obj, "run", None)) or callable(getattr(obj, "compute_loss", None))):
        raise TypeError(f"method {name!r}: needs a callable `run(job)` or `compute_loss(model, inputs, trainer)`")
    return obj  # type: ignore[return-value]


def collect(hook_name: str, validate: Callable[[object], object]) -> dict[str, tuple[object, str]]:
    """name -> (object, plugin) from every plugin's `hook_name(register)`. A plugin whose
    registration fails (a bad object, a name taken, its hook raising) is recorded as broken
    under its name and loses that registration; built-ins register first and keep theirs."""
    pm = get_plugin_manager()
    found: dict[str, tuple[object, str]] = {}
    # Call each implementation ourselves (not pm.hook...) to know which plugin registered what.
    impls = getattr(pm.hook, hook_name).get_hookimpls()
    for impl in sorted(impls, key=lambda i: not is_builtin(i.plugin_name)):  # built-ins first, then in order
        plugin = impl.plugin_name

        def register(obj, _plugin=plugin):
            try:
                obj = validate(obj)
                if obj.name in found:
                    raise TypeError(f"name {obj.name!r} already registered by {found[obj.name][1]}")
            except (TypeError, ValueError) as exc:
                record_broken(_plugin, f"{hook_name}: {exc}")
                return
            found[obj.name] = (obj, _plugin)

        try:
            impl.function(register=register)
        except Exception as exc:
            record_broken(plugin, f"{hook_name} raised {describe(exc)}")
    return found


def get_methods() -> dict[str, Registered]:
    """name → (method, plugin that registered it), from every loaded plugin."""
    return {n: Registered(m, p) for n, (m, p) in sorted(collect("register_methods", validate_method).items())}


def get_method(name: str) -> Method:
    """The registered method `name`; MethodError naming the available ones (and broken plugins) otherwise."""
    methods = get_methods()
    if name not in methods:
        raise MethodError(f"unknown method {name!r}; available: {', '.join(methods) or '(none)'}{broken_note()}")
    return methods[name].method
