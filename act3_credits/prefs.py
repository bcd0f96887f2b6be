"""The add-on preferences: service URL, API key (write-only), low-balance lines, Test connection."""

from __future__ import annotations

import bpy
from bpy.props import FloatProperty, IntProperty, PointerProperty, StringProperty

from . import session
from .core import keystore
from .core.client import DEFAULT_BASE_URL, key_is_sendable
from .credits import draw as credits_draw
from .generate import draw as generate_draw
from .generate import intercept
from .generate.props import ACT3_PG_generate_settings

# What the top bar compares the balance with; kept here so its draw never looks up the preferences.
THRESHOLDS = credits_draw.Thresholds()

_clearing_key = False


def _on_api_key(self, context) -> None:
    """Keep a pasted key in the user folder (0600) and clear the field at once.

    Blender writes add-on preferences into userpref.blend even for SKIP_SAVE properties, so the key
    never stays in the property: only core.keystore holds it. No network here, only a reconfigure.
    """
    global _clearing_key
    if _clearing_key:
        return
    if not self.api_key:
        return  # the field cleared (by us, below)
    key = self.api_key.strip()
    problem = None
    changed = False
    if not key:
        problem = "Not saved: only spaces were pasted."
    elif not key_is_sendable(key):
        # Not saved: it would replace a working key with one no request can carry.
        problem = "Not saved: the pasted key has a space, a line break or a non-ASCII character. Copy it again."
    else:
        changed = True
        try:
            keystore.save_key(session.user_dir(), key)
            session.forget_session_key()
        except Exception as exc:  # e.g. a read-only user folder: the key must still leave the field
            session.use_key_for_this_session(key)
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            problem = (
                f"Could not store the ACT3 API key in this add-on's user folder ({why}): it is used until "
                "Blender closes. Paste it again next time, or set ACT3_API_KEY."
            )
    _clearing_key = True
    try:
        self.api_key = ""
    finally:
        _clearing_key = False
    if changed:
        session.reconfigure()
    if problem is not None:
        state = session.state()
        state.last_message = problem
        state.touch()


def _on_service_url(self, context) -> None:
    session.reconfigure()


def _on_thresholds(self, context) -> None:
    load_thresholds(self)
    from . import redraw

    redraw.everything()


def load_thresholds(prefs=None) -> None:
    global THRESHOLDS
    prefs = prefs or session.preferences()
    if prefs is None:
        return
    THRESHOLDS = credits_draw.Thresholds(
        warn=prefs.warn_percent / 100.0,
        critical=prefs.critical_percent / 100.0,
        custom=int(prefs.custom_threshold),
    )


class ACT3_AddonPreferences(bpy.types.AddonPreferences):
    bl_idname = session.PACKAGE

    service_url: StringProperty(  # type: ignore[valid-type]
        name="Service URL",
        description="The ACT3 API, including /v1 (the ACT3_API_URL environment variable wins over this)",
        default=DEFAULT_BASE_URL,
        update=_on_service_url,
    )
    api_key: StringProperty(  # type: ignore[valid-type]
        name="API Key",
        description=(
            "Paste your organisation's ACT3 API key. It is kept in this add-on's user folder, readable "
            "only by you, never in a .blend or the preferences file (ACT3_API_KEY wins over it)"
        ),
        subtype="PASSWORD",
        options={"SKIP_SAVE"},
        update=_on_api_key,
    )
    warn_percent: FloatProperty(  # type: ignore[valid-type]
        name="Warn below",
        description="Show the balance as low below this share of the monthly allocation",
        default=20.0,
        min=0.0,
        max=100.0,
        subtype="PERCENTAGE",
        precision=0,
        update=_on_thresholds,
    )
    critical_percent: FloatProperty(  # type: ignore[valid-type]
        name="Critical below",
        description="Show the balance in red below this share of the monthly allocation",
        default=5.0,
        min=0.0,
        max=100.0,
        subtype="PERCENTAGE",
        precision=0,
        update=_on_thresholds,
    )
    custom_threshold: IntProperty(  # type: ignore[valid-type]
        name="Also warn below (credits)",
        description="Your own warning line in credits, whatever the allocation (0: off)",
        default=0,
        min=0,
        update=_on_thresholds,
    )

    # The budget guard and the guarded operators: preferences, so they outlive the session.
    generate: PointerProperty(type=ACT3_PG_generate_settings)  # type: ignore[valid-type]

    def draw(self, context):
        source, hint = session.key_source()
        credits_draw.draw_preferences(
            self.layout,
            self,
            session.state(),
            source,
            hint,
            online_access=bool(bpy.app.online_access),
            url_in_use=session.url_in_use(),
        )
        box = self.layout.box()
        box.label(text="Budget Guard and Guarded Operators", icon="LOCKED")
        generate_draw.draw_generate_settings(box, self.generate, intercept.problems(), 600)


class ACT3_OT_forget_key(bpy.types.Operator):
    """Delete the API key kept in this add-on's user folder"""

    bl_idname = "act3.forget_key"
    bl_label = "Forget API Key"
    bl_options = {"INTERNAL"}

    def execute(self, context):
        keystore.clear_key(session.user_dir())
        session.forget_session_key()
        session.reconfigure()
        self.report({"INFO"}, "The ACT3 API key was removed from this computer.")
        return {"FINISHED"}


# The settings group first: the preferences point at it.
classes = (ACT3_PG_generate_settings, ACT3_AddonPreferences, ACT3_OT_forget_key)
