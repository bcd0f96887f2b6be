"""Shots stored in the .blend (on the scene), the Cost Estimate dialog's rows, and the GENERATE settings.

A shot lives in `Scene.act3_shots`, so it travels with the file. The engine enum takes its items
from the cached rate card; each item's number is a hash of the engine id, so a saved shot keeps its
engine when the card gains or loses engines.
"""

from __future__ import annotations

import zlib
from typing import Any

import bpy
from bpy.props import (
    BoolProperty,
    CollectionProperty,
    EnumProperty,
    IntProperty,
    PointerProperty,
    StringProperty,
)

from .. import session
from ..core import formatting, limits, pricing, shots

TIER_ITEMS = [(t.id, t.name, f"{t.name} quality: x{t.multiplier} the Standard rate") for t in pricing.TIERS]
DEFAULT_TIER_NUMBER = [t.id for t in pricing.TIERS].index(shots.DEFAULT_TIER)
FINAL_TIER = "high"  # Draft first, then the approved shots at High


def engine_number(engine_id: str) -> int:
    return zlib.crc32(engine_id.encode()) & 0x7FFFFFFF


def rate_card() -> pricing.RateCard:
    """The card the add-on caches from `GET /v1/pricing`, or the built-in one until the first sync."""
    return session.state().rate_card or pricing.DEFAULT_RATE_CARD


# Blender keeps only a pointer to the strings of dynamic enum items: hold on to the list.
_engine_items: list[tuple[str, str, str, int]] = []


def engine_items(_self: Any, _context: Any) -> list[tuple[str, str, str, int]]:
    global _engine_items
    card = rate_card()
    items = [
        (e.id, e.name, f"{e.name}: {e.rate_per_second} cr per second at Standard", engine_number(e.id))
        for e in card.engines
    ]
    if items != _engine_items:
        _engine_items = items
    return _engine_items


# The tier menu prices each tier for its shot ("High · 4,160 cr"). Blender keeps only pointers to the
# strings of dynamic items, so every list handed out is kept, keyed by what it depends on.
_tier_lists: dict[tuple[Any, ...], list[tuple[str, str, str, str, int]]] = {}


def plans_for(tier_id: str) -> str:
    """'Enterprise only': the plans that include a tier."""
    names = [p.name for p in pricing.PLANS.values() if tier_id in p.allowed_tiers]
    return f"{' or '.join(names)} only" if names else "not available"


def tier_items(self: Any, _context: Any) -> list[tuple[str, str, str, str, int]]:
    card = rate_card()
    account = shots.Account.from_state(session.state())
    engine, seconds = shots.DEFAULT_ENGINE, 0.0
    if self is not None:
        try:
            engine = self.engine
            seconds = shot_duration(self.id_data, self.frame_start, self.frame_end)
        except (AttributeError, ValueError):
            pass
    key = (id(card), card.version, engine, seconds, account.plan, account.allowed_tiers)
    found = _tier_lists.get(key)
    if found is not None:
        return found
    items = []
    for number, tier in enumerate(pricing.TIERS):
        reason = shots.tier_refusal_text(card, tier.id, account)
        if reason:
            items.append((tier.id, f"{tier.name} · {plans_for(tier.id)}", reason, "LOCKED", number))
            continue
        try:
            label = f"{tier.name} · {formatting.credits(card.price(engine, tier.id, seconds).credits)}"
        except pricing.PricingError:
            label = tier.name
        items.append(
            (tier.id, label, f"{tier.name} quality: ×{float(tier.multiplier):g} the Standard rate", "NONE", number)
        )
    _tier_lists[key] = items
    return items


def _shot_tooltip(self: Any) -> str:
    from . import draw

    card = rate_card()
    line = shots.estimate([to_shot(self.id_data, self)], card, shots.Account.from_state(session.state())).lines[0]
    return draw.shot_tooltip(line, card)


def _camera_poll(_self: Any, obj: bpy.types.Object) -> bool:
    return obj.type == "CAMERA"


class ACT3_PG_shot(bpy.types.PropertyGroup):
    """One shot of the scene: what to render, on which engine, at which quality."""

    # `name` comes with PropertyGroup.
    frame_start: IntProperty(name="Start", description="First frame of the shot", default=1)  # type: ignore[valid-type]
    frame_end: IntProperty(name="End", description="Last frame of the shot (inclusive)", default=192)  # type: ignore[valid-type]
    camera: PointerProperty(name="Camera", type=bpy.types.Object, poll=_camera_poll)  # type: ignore[valid-type]
    engine: EnumProperty(  # type: ignore[valid-type]
        name="Engine",
        description="The ACT3 engine that renders this shot",
        items=engine_items,
        default=engine_number(shots.DEFAULT_ENGINE),
    )
    tier: EnumProperty(  # type: ignore[valid-type]
        name="Quality",
        description="Quality tier: each costs twice the one before; the menu prices them for this shot",
        items=tier_items,
        default=DEFAULT_TIER_NUMBER,
    )
    tags: StringProperty(name="Tags", description="Free text tags, comma separated (hero, seq010)")  # type: ignore[valid-type]
    locked: BoolProperty(name="Locked", description="A locked shot is never sent to render")  # type: ignore[valid-type]
    select: BoolProperty(name="Select", description="Selected for tagging")  # type: ignore[valid-type]
    last_job_id: IntProperty(name="Last job", description="The ACT3 job that last rendered this shot", default=0)  # type: ignore[valid-type]
    last_cost: IntProperty(name="Last cost", description="Credits charged for this shot's last render", default=0)  # type: ignore[valid-type]
    last_tier: StringProperty(name="Last tier", description="The quality tier of this shot's last render")  # type: ignore[valid-type]
    approved: BoolProperty(  # type: ignore[valid-type]
        name="Approved",
        description="Approved from its Draft: Upgrade Approved renders it again at its final tier",
    )
    final_tier: EnumProperty(  # type: ignore[valid-type]
        name="Final Tier",
        description="The quality tier Upgrade Approved renders this shot at",
        items=TIER_ITEMS,
        default=FINAL_TIER,
    )
    tooltip: StringProperty(name="Details", get=_shot_tooltip)  # type: ignore[valid-type]


class ACT3_PG_estimate_row(bpy.types.PropertyGroup):
    """A row of the Cost Estimate dialog: its checkbox leaves a shot out of the batch."""

    include: BoolProperty(name="Include", description="Render this shot in the batch", default=True)  # type: ignore[valid-type]


class ACT3_PG_generate_settings(bpy.types.PropertyGroup):
    """The budget guard and the operators to intercept; the add-on preferences hold them (prefs.py registers this class)."""

    guard_enabled: BoolProperty(  # type: ignore[valid-type]
        name="Budget Guard",
        description="Pause a running batch when the balance falls below the minimum, "
        "or when a job has been charged more than its estimate",
        default=True,
    )
    guard_min_balance: IntProperty(  # type: ignore[valid-type]
        name="Minimum Balance",
        description="Pause running batches when the organisation's balance falls below this (0: off)",
        default=0,
        min=0,
    )
    guard_pause_over_estimate: BoolProperty(  # type: ignore[valid-type]
        name="Pause Over Estimate",
        description="Pause a job that has been charged more than its estimate",
        default=True,
    )
    intercept_ops: StringProperty(  # type: ignore[valid-type]
        name="Guarded Operators",
        description="Operator ids of other add-ons (comma separated, e.g. act3ai.generate): "
        "the Cost Estimate dialog opens before they run",
        default="",
    )
    tag_filter: StringProperty(name="Tag", description="Show and render only shots with these tags")  # type: ignore[valid-type]


classes = (ACT3_PG_shot, ACT3_PG_estimate_row)


def register_properties() -> None:
    """After the classes are registered: the shots on the scene."""
    bpy.types.Scene.act3_shots = CollectionProperty(type=ACT3_PG_shot, name="ACT3 Shots")  # type: ignore[attr-defined]
    bpy.types.Scene.act3_shots_index = IntProperty(name="Active Shot", default=0)  # type: ignore[attr-defined]
    bpy.types.Scene.act3_project = StringProperty(  # type: ignore[attr-defined]
        name="Project",
        description="The ACT3 project every job of this scene is sent for (its budget applies); "
        "empty: the .blend's file name",
        maxlen=limits.PROJECT_MAX_CHARS,
    )


def unregister_properties() -> None:
    for owner, name in (
        (bpy.types.Scene, "act3_project"),
        (bpy.types.Scene, "act3_shots_index"),
        (bpy.types.Scene, "act3_shots"),
    ):
        if hasattr(owner, name):
            delattr(owner, name)


# ---------------------------------------------------------------------------------------- reading shots


def settings(context: Any) -> Any:
    """The GENERATE settings (budget guard, guarded operators, tag filter): in the add-on preferences."""
    prefs = _addon_prefs(context)
    if prefs is None:
        raise RuntimeError("the ACT3 Credits add-on is not enabled")
    return prefs.generate


def _addon_prefs(context: Any) -> Any:
    package = __package__.rpartition(".")[0] if __package__ else ""
    addon = context.preferences.addons.get(package) if context and context.preferences else None
    return addon.preferences if addon is not None else None


def scene_rate(scene: Any) -> tuple[float, float]:
    return float(scene.render.fps), float(scene.render.fps_base)


def shot_duration(scene: Any, frame_start: int, frame_end: int) -> float:
    fps, base = scene_rate(scene)
    return shots.duration_s(frame_start, frame_end, fps, base)


def to_shot(scene: Any, item: ACT3_PG_shot) -> shots.Shot:
    return shots.Shot(
        name=item.name,
        engine=item.engine,
        tier=item.tier,
        duration_s=shot_duration(scene, item.frame_start, item.frame_end),
        locked=item.locked,
        tags=item.tags,
    )


def implicit_shot(scene: Any) -> shots.Shot:
    """A scene with no shots has one: its frame range, named after the scene."""
    r = shots.implicit_shot_range(scene.name, scene.frame_start, scene.frame_end)
    return shots.Shot(r.name, duration_s=shot_duration(scene, r.frame_start, r.frame_end))


def find_shot(scene: Any, name: str) -> ACT3_PG_shot | None:
    for item in scene.act3_shots:
        if item.name == name:
            return item
    return None


def active_shot(scene: Any, name: str = "") -> shots.Shot | None:
    """The shot named `name`, else the active one in the list, else the scene's implicit shot."""
    items = scene.act3_shots
    if name:
        item = find_shot(scene, name)
        if item is not None:
            return to_shot(scene, item)
        if name == scene.name and len(items) == 0:
            return implicit_shot(scene)
        return None
    if len(items) == 0:
        return implicit_shot(scene)
    index = min(max(scene.act3_shots_index, 0), len(items) - 1)
    return to_shot(scene, items[index])


def tagged_shots(scene: Any, tag: str) -> list[shots.Shot]:
    """The shots that carry every tag of `tag`, in list (priority) order; no shots: the implicit one."""
    if len(scene.act3_shots) == 0:
        return [implicit_shot(scene)] if not shots.parse_tags(tag) else []
    return [to_shot(scene, it) for it in scene.act3_shots if shots.matches_tag(it.tags, tag)]


def project_for(scene: Any) -> str:
    """The scene's project, computed when it is sent: its field, else the .blend's name."""
    return limits.project_name(getattr(scene, "act3_project", ""), bpy.data.filepath)


def drafted_shots(scene: Any) -> list[limits.Drafted]:
    """The shots whose last render was Draft, with what it cost and their final tier."""
    out = []
    for item in scene.act3_shots:
        if item.last_job_id and item.last_tier == shots.DRAFT_TIER:
            seconds = shot_duration(scene, item.frame_start, item.frame_end)
            out.append(limits.Drafted(item.name, item.engine, seconds, item.last_cost, item.final_tier, item.approved))
    return out


def approved_shots(scene: Any) -> list[shots.Shot]:
    """The approved shots at their final tier, in list order (what Upgrade Approved sends)."""
    return [
        shots.Shot(
            name=it.name,
            engine=it.engine,
            tier=it.final_tier,
            duration_s=shot_duration(scene, it.frame_start, it.frame_end),
            locked=it.locked,
            tags=it.tags,
        )
        for it in scene.act3_shots
        if it.approved
    ]
