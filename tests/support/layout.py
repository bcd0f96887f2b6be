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


class RecordingLayout:
    def __init__(self, parent: RecordingLayout | None = None, kind: str = "root", sink: list[Item] | None = None):
        self._parent = parent
        self._kind = kind
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
    def _child(self, kind: str) -> RecordingLayout:
        return RecordingLayout(self, kind, self.items)

    def row(self, align: bool = False, heading: str = "", **_: Any) -> RecordingLayout:
        return self._child("row")

    def column(self, align: bool = False, heading: str = "", **_: Any) -> RecordingLayout:
        return self._child("column")

    def box(self) -> RecordingLayout:
        return self._child("box")

    def split(self, factor: float = 0.0, align: bool = False) -> RecordingLayout:
        return self._child("split")

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
            **kw,
        )
        self.items.append(item)
        return item

    def label(self, text: str = "", icon: str = "NONE", **_: Any) -> None:
        self._add("label", text=text, icon=icon)

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
