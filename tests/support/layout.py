"""A stand-in for Blender's `UILayout` that records what a draw function would show.

Draw functions in `act3_credits.layouts` take a layout; given a `RecordingLayout` they leave a flat
list of `Item`s (labels, operator buttons, properties, progress bars, lists...) with the state each
had when it was made (alert, enabled, active), so a test reads what an artist reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class OperatorProperties:
    """What `layout.operator()` returns: the properties a button would pass to its operator."""

    def __init__(self) -> None:
        object.__setattr__(self, "values", {})

    def __setattr__(self, name: str, value: Any) -> None:
        self.values[name] = value

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


@dataclass
class Item:
    kind: str  # label, operator, prop, progress, template_list, popover, separator
    text: str | None = None
    icon: str = "NONE"
    operator: str | None = None
    data: Any = None
    property: str | None = None
    factor: float | None = None
    alert: bool = False
    enabled: bool = True
    active: bool = True
    args: dict[str, Any] = field(default_factory=dict)
    properties: OperatorProperties | None = None
    container: str = "root"  # the kind of layout it sits in (row, column, box, split)
    node: Any = None  # the RecordingLayout it was added to (for the width model)

    def given_width(self) -> float | None:
        """About how many pixels (UI scale 1) Blender gives this item, when the root's width is known."""
        return None if self.node is None else self.node.width_of(self)


# A box's frame and a button's own margins, in pixels at UI scale 1 (Blender: UI_TEXT_MARGIN_X and
# the box's padding); an icon takes one UI unit (20 px) and a gap before the text. Calibrated against
# screenshots of Blender 4.3's sidebar, on the safe side.
BOX_PADDING = 12
TEXT_MARGIN = 10
ICON_WIDTH = 26


def _icon_only(child: Any) -> bool:
    return isinstance(child, Item) and child.kind in ("prop", "operator") and child.text == ""


class RecordingLayout:
    def __init__(
        self,
        parent: RecordingLayout | None = None,
        kind: str = "root",
        sink: list[Item] | None = None,
        width: float | None = None,
        factor: float = 0.0,
    ):
        self._parent = parent
        self._kind = kind
        self._factor = factor
        self._width = width  # the root's width; children work theirs out from it
        self._children: list[Any] = []  # sub-layouts and items, in order (for the width model)
        self.items: list[Item] = sink if sink is not None else []
        self.alert = False
        self.enabled = True
        self.active = True
        self.use_property_split = False
        self.use_property_decorate = False
        self.scale_x = 1.0
        self.scale_y = 1.0
        self.alignment = "EXPAND"
        self.operator_context = "INVOKE_DEFAULT"
        self.emboss = "NORMAL"

    # ---------------------------------------------------------------- containers
    def _child(self, kind: str, factor: float = 0.0) -> RecordingLayout:
        child = RecordingLayout(self, kind, self.items, factor=factor)
        self._children.append(child)
        return child

    # ---------------------------------------------------------------- widths
    @property
    def width(self) -> float | None:
        if self._parent is None:
            return self._width
        return self._parent.width_of(self)

    def width_of(self, child: Any) -> float | None:
        """The share of this layout's width one of its children gets, as Blender lays them out:
        a split gives its first column `factor` and the others the rest in equal parts; a row shares
        its width equally; a column passes it on; a box less its frame."""
        own = self.width
        if own is None:
            return None
        if self._kind == "box":
            own -= BOX_PADDING
        n = len(self._children)
        if self._kind == "split":
            index = next(i for i, c in enumerate(self._children) if c is child)
            if index == 0:
                return own * self._factor
            return own * (1 - self._factor) / max(1, n - 1)
        if self._kind == "row" and n > 1:
            # A button with only an icon (or a bare checkbox) keeps one unit; the rest share what is left.
            fixed = [c for c in self._children if _icon_only(c)]
            if child in fixed:
                return ICON_WIDTH
            return (own - ICON_WIDTH * len(fixed)) / max(1, n - len(fixed))
        return own

    def row(self, align: bool = False, heading: str = "", **_: Any) -> RecordingLayout:
        return self._child("row")

    def column(self, align: bool = False, heading: str = "", **_: Any) -> RecordingLayout:
        return self._child("column")

    def box(self) -> RecordingLayout:
        return self._child("box")

    def split(self, factor: float = 0.0, align: bool = False) -> RecordingLayout:
        return self._child("split", factor=factor)

    def grid_flow(self, **_: Any) -> RecordingLayout:
        return self._child("grid")

    def column_flow(self, **_: Any) -> RecordingLayout:
        return self._child("column")

    # ---------------------------------------------------------------- items
    def _effective(self, attr: str) -> bool:
        node: RecordingLayout | None = self
        while node is not None:
            value = getattr(node, attr)
            if attr == "alert" and value:
                return True
            if attr != "alert" and not value:
                return False
            node = node._parent
        return attr != "alert"

    def _add(self, kind: str, **kw: Any) -> Item:
        item = Item(
            kind=kind,
            alert=self._effective("alert"),
            enabled=self._effective("enabled"),
            active=self._effective("active"),
            container=self._kind,
            node=self,
            **kw,
        )
        self.items.append(item)
        self._children.append(item)
        return item

    def label(self, text: str = "", icon: str = "NONE", icon_value: int = 0, **_: Any) -> None:
        self._add("label", text=text, icon="CUSTOM" if icon_value else icon, args={"icon_value": icon_value})

    def template_icon(self, icon_value: int = 0, scale: float = 1.0) -> None:
        self._add("template_icon", args={"icon_value": icon_value, "scale": scale})

    def operator(self, operator: str, text: str | None = None, icon: str = "NONE", **kw: Any) -> OperatorProperties:
        props = OperatorProperties()
        self._add("operator", text=text, icon=icon, operator=operator, args=kw, properties=props)
        return props

    def prop(self, data: Any, property: str, text: str | None = None, icon: str = "NONE", **kw: Any) -> None:
        self._add("prop", text=text, icon=icon, data=data, property=property, args=kw)

    def prop_enum(self, data: Any, property: str, value: str, text: str | None = None, icon: str = "NONE") -> None:
        self._add("prop", text=text, icon=icon, data=data, property=property, args={"value": value})

    def progress(self, factor: float = 0.0, type: str = "BAR", text: str = "", **_: Any) -> None:
        self._add("progress", text=text, factor=factor, args={"type": type})

    def template_list(self, listtype_name: str, list_id: str, dataptr: Any, propname: str, *rest: Any, **kw: Any):
        self._add("template_list", data=dataptr, property=propname, args={"type": listtype_name, "rest": rest, **kw})

    def popover(self, panel: str, text: str = "", icon: str = "NONE", **_: Any) -> None:
        self._add("popover", text=text, icon=icon, args={"panel": panel})

    def separator(self, factor: float = 1.0, **_: Any) -> None:
        self._add("separator")

    def separator_spacer(self) -> None:
        self._add("separator")

    # ---------------------------------------------------------------- reading
    def texts(self) -> list[str]:
        """Every visible text, in drawing order."""
        return [i.text for i in self.items if i.text]

    def text(self) -> str:
        """Everything it reads, as one string (wrapped lines joined by spaces)."""
        return " ".join(self.texts())

    def find(self, contains: str, kind: str | None = None) -> Item:
        for item in self.items:
            if item.text and contains in item.text and (kind is None or item.kind == kind):
                return item
        raise AssertionError(f"nothing reads {contains!r}; the layout shows {self.texts()}")

    def operators(self) -> list[Item]:
        return [i for i in self.items if i.kind == "operator"]

    def operator_button(self, idname: str, text: str | None = None) -> Item:
        for item in self.operators():
            if item.operator == idname and (text is None or item.text == text):
                return item
        raise AssertionError(f"no {idname} button; buttons: {[(i.operator, i.text) for i in self.operators()]}")

    def of_kind(self, kind: str) -> list[Item]:
        return [i for i in self.items if i.kind == kind]

    def cut(self, measure: Any, wanted: Any = None) -> list[tuple[str, float, float]]:
        """Texts Blender would cut at this layout's width: (text, needed, given) for every label or
        button whose text `wanted(text)` selects (default: every text with a digit in it, i.e. figures).
        `measure(text)` is the text's width in pixels at UI scale 1 (blf in Blender's default font)."""
        wanted = wanted or (lambda text: any(ch.isdigit() for ch in text))
        out = []
        for item in self.items:
            if item.kind not in ("label", "operator") or not item.text or not wanted(item.text):
                continue
            given = item.given_width()
            if given is None:
                continue
            needed = measure(item.text) + TEXT_MARGIN + (ICON_WIDTH if item.icon not in ("NONE", "") else 0)
            if needed > given:
                out.append((item.text, round(needed), round(given)))
        return out
