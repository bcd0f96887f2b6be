"""Put the Cost Estimate dialog in front of another add-on's Generate or render operator.

For each guarded operator id (e.g. `act3ai.generate`) the operator's Python class gets an `invoke`
that opens `act3.generate` with `then_call` set, and returns CANCELLED; Confirm then runs the original
operator (its own invoke, if it had one, or its execute) with the properties it was called with.
Blender binds `invoke` when a class is registered, so the class is registered again with the new
`invoke`, and again with its own on unregister. Running the operator from Python with EXEC_DEFAULT
(a script, `blender -b`) does not go through `invoke` and is never intercepted.
Only operators written in Python can be guarded (not Blender's own, such as `render.render`).
"""

from __future__ import annotations

import uuid
from typing import Any

import bpy

from ..core.logs import log

_MISSING = object()


class _Guarded:
    def __init__(self, idname: str, cls: type, original: Any) -> None:
        self.idname = idname
        self.cls = cls
        self.original = original  # the class's own `invoke` attribute, or _MISSING


_guarded: dict[str, _Guarded] = {}
_problems: list[str] = []  # why entries of the last sync are not guarded, one readable line each
_passthrough: set[str] = set()  # ids whose original is being run after Confirm
_pending: dict[str, tuple[str, dict[str, Any]]] = {}  # token -> (idname, the call's properties)


def _tokens(text: str) -> list[tuple[str, str | None]]:
    """Each comma separated entry, and its id in Python form (`module.name`, lower case) or None."""
    out: list[tuple[str, str | None]] = []
    for part in (text or "").replace(";", ",").split(","):
        token = part.strip()
        if not token:
            continue
        idname = token
        if "_OT_" in idname:  # ACT3AI_OT_generate -> act3ai.generate
            mod, _, name = idname.partition("_OT_")
            idname = f"{mod.lower()}.{name}"
        idname = idname.lower()
        out.append((token, idname if idname.count(".") == 1 and all(idname.split(".")) else None))
    return out


def parse_ids(text: str) -> list[str]:
    """'act3ai.generate, other.render' -> ids in Python form (`module.name`), lower case, once each."""
    ids: list[str] = []
    for _token, idname in _tokens(text):
        if idname is not None and idname not in ids:
            ids.append(idname)
    return ids


def class_name(idname: str) -> str:
    mod, _, name = idname.partition(".")
    return f"{mod.upper()}_OT_{name}"


def find_class(idname: str) -> type | None:
    """The registered Python class of an operator id, or None (not registered, or written in C)."""
    cname = class_name(idname)
    cls = bpy.types.Operator.bl_rna_get_subclass_py(cname)
    if cls is None:
        cls = getattr(bpy.types, cname, None)
        if cls is not None and not isinstance(cls, type):
            cls = None
    if cls is None or getattr(cls, "bl_idname", "").lower() != idname:
        return None
    return cls


def guarded_ids() -> list[str]:
    return sorted(_guarded)


def is_guarded(idname: str) -> bool:
    g = _guarded.get(idname)
    return (
        g is not None and getattr(g.cls, "invoke", None) is not None and g.cls.__dict__.get("invoke") is not g.original
    )


def problems() -> list[str]:
    """What the last `sync` could not guard, in words for the settings panel (an operator that only
    shows up later, when its add-on is enabled, is guarded then and drops off this list)."""
    return list(_problems)


def sync(ids: list[str] | str) -> list[str]:
    """Guard exactly these operator ids; returns the ids that could not be found (yet).

    Cheap enough to run every few seconds: it also guards again an operator whose add-on was
    reloaded (a new class under the same id), which would otherwise run without the estimate.
    """
    text = ids if isinstance(ids, str) else ",".join(ids)
    wanted = parse_ids(text)
    for idname in list(_guarded):
        if idname not in wanted or find_class(idname) is not _guarded[idname].cls:
            release(idname)
    missing = []
    for idname in wanted:
        if idname in _guarded:
            continue
        if idname.startswith("act3."):
            continue  # never our own operators
        cls = find_class(idname)
        if cls is None:
            missing.append(idname)
            continue
        _wrap(idname, cls)
    _problems[:] = [
        f"Not guarded: {token!r} is not an operator id (module.name)" for token, i in _tokens(text) if i is None
    ]
    _problems.extend(f"Not guarded: no add-on operator {idname} (yet)" for idname in missing)
    return missing


def _wrap(idname: str, cls: type) -> None:
    original = cls.__dict__.get("invoke", _MISSING)
    inherited = getattr(cls, "invoke", None) if original is _MISSING else None

    def invoke(self: Any, context: Any, event: Any) -> set[str]:
        own = original if original is not _MISSING else inherited
        if idname in _passthrough:
            return own(self, context, event) if own is not None else self.execute(context)
        token = uuid.uuid4().hex
        _pending[token] = (idname, capture_properties(self))
        try:
            bpy.ops.act3.generate("INVOKE_DEFAULT", then_call=idname, then_token=token)  # type: ignore[attr-defined]
        except Exception as exc:  # e.g. the estimate refused it: the report says why
            log.warning("ACT3: the cost estimate for %s did not open: %s", idname, exc)
            _pending.pop(token, None)
        return {"CANCELLED"}

    invoke.__doc__ = f"ACT3 Credits: show the cost estimate before {idname} runs"
    invoke._act3_guard = True  # type: ignore[attr-defined]
    _reregister(cls, invoke)
    _guarded[idname] = _Guarded(idname, cls, original)


def release(idname: str) -> None:
    g = _guarded.pop(idname, None)
    if g is None:
        return
    if g.original is _MISSING:
        _reregister(g.cls, None)
    else:
        _reregister(g.cls, g.original)


def release_all() -> None:
    for idname in list(_guarded):
        release(idname)
    _pending.clear()
    _problems.clear()


def _reregister(cls: type, invoke: Any) -> None:
    """Blender reads `invoke` when a class registers: swap it while the class is out."""
    registered = bool(getattr(cls, "is_registered", False))
    if registered:
        bpy.utils.unregister_class(cls)
    if invoke is None:
        if "invoke" in cls.__dict__:
            delattr(cls, "invoke")
    else:
        cls.invoke = invoke  # type: ignore[attr-defined]
    if registered:
        bpy.utils.register_class(cls)


def capture_properties(op: Any) -> dict[str, Any]:
    """The simple properties the operator was called with (set ones), to call it again after Confirm."""
    out: dict[str, Any] = {}
    properties = getattr(op, "properties", None)
    if properties is None:
        return out
    for prop in properties.bl_rna.properties:
        pid = prop.identifier
        if pid == "rna_type" or prop.type in ("POINTER", "COLLECTION"):
            continue
        try:
            if not properties.is_property_set(pid):
                continue
            value = getattr(properties, pid)
        except (AttributeError, TypeError):
            continue
        if hasattr(value, "__len__") and not isinstance(value, str):
            value = set(value) if prop.type == "ENUM" else tuple(value)
        out[pid] = value
    return out


def run_original(idname: str, token: str) -> tuple[bool, str]:
    """Confirm: run the guarded operator as the artist called it. (ok, one report line).

    Only what a guarded operator's estimate asked for: its token, issued once by `_wrap`, names
    the operator; any other id or token (a script setting `then_call` itself) runs nothing."""
    pending = _pending.pop(token, None)
    if pending is None or pending[0] != idname or idname not in _guarded:
        return False, f"Nothing to confirm: {idname or 'no operator'} is not waiting for this estimate."
    props = pending[1]
    mod, _, name = idname.partition(".")
    try:
        op = getattr(getattr(bpy.ops, mod), name)
    except AttributeError:
        return False, f"{idname} is not available any more."
    _passthrough.add(idname)
    try:
        result = op("INVOKE_DEFAULT", **props)
    except Exception as exc:
        return False, f"{idname} failed: {' '.join(str(exc).split())}"
    finally:
        _passthrough.discard(idname)
    if "CANCELLED" in result:
        return False, f"{idname} was canceled."
    return True, f"Confirmed: {idname} is running."


def pending_count() -> int:
    return len(_pending)
