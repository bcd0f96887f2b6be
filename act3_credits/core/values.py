"""Frozen value classes that cost nothing to define, for the modules Blender imports at add-on enable.

`@dataclass(frozen=True)` compiles six methods (`__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__`, `__delattr__`) for every class each time its module is imported, and even
`@dataclass(init=False, repr=False, eq=False)` inspects every annotation (is it a `ClassVar`, an
`InitVar`?): together about a quarter of the add-on's enable time with forty-odd classes. A class
here is declared with `@value` alone: it writes its own `__init__` (fields set through
`self.__dict__`, as a frozen dataclass sets them through `object.__setattr__`), `value` records
its annotated attributes as the dataclass fields `dataclasses.fields`, `replace` and `asdict`
read (a `field(...)` default is honoured as the dataclass would: its options kept, the class
attribute its default or gone), and adds the rest from closures, with a frozen dataclass's
meaning: equal when of the same class with equal fields, hashed on the fields, `Name(field=...)`
as repr, and a field can never be assigned again. Annotations are strings here (`from __future__
import annotations`); one naming `ClassVar` is not a field.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar, dataclass_transform

C = TypeVar("C", bound=type)


def _declare_fields(cls: type) -> None:
    """`cls.__dataclass_fields__` from its own annotations and its bases' fields."""
    declared: dict[str, dataclasses.Field[Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        declared.update(getattr(base, "__dataclass_fields__", {}))
    for name, annotation in cls.__annotations__.items():  # this class's own (Python 3.10 and later)
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        default = cls.__dict__.get(name, dataclasses.MISSING)
        if isinstance(default, dataclasses.Field):
            f = default
            if f.default is dataclasses.MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, f.default)
        else:
            f = dataclasses.field(default=default)
        f.name, f.type, f.kw_only = name, annotation, False  # type: ignore[assignment]
        f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
        declared[name] = f
    cls.__dataclass_fields__ = declared  # type: ignore[attr-defined]


@dataclass_transform(frozen_default=True)
def value(cls: C) -> C:
    """A frozen dataclass's fields, equality, hash, repr and immutability for a class that writes
    its own `__init__`."""
    if "__dataclass_fields__" not in cls.__dict__:
        _declare_fields(cls)
    all_fields = dataclasses.fields(cls)
    compared = tuple(f.name for f in all_fields if f.compare)
    shown = tuple(f.name for f in all_fields if f.repr)
    key: Callable[[Any], Any]
    if len(compared) == 1:
        one = attrgetter(compared[0])
        key = lambda obj: (one(obj),)  # noqa: E731
    elif compared:
        key = attrgetter(*compared)
    else:
        key = lambda obj: ()  # noqa: E731

    def __eq__(self: Any, other: Any) -> Any:
        if other.__class__ is self.__class__:
            return key(self) == key(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(key(self))

    def __repr__(self: Any) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{self.__class__.__qualname__}({inner})"

    def __setattr__(self: Any, name: str, _value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self: Any, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")

    for name, fn in (
        ("__eq__", __eq__),
        ("__hash__", __hash__),
        ("__repr__", __repr__),
        ("__setattr__", __setattr__),
        ("__delattr__", __delattr__),
    ):
        if name not in cls.__dict__ or (name == "__hash__" and cls.__dict__[name] is None):
            fn.__qualname__ = f"{cls.__qualname__}.{name}"
            setattr(cls, name, fn)
    return cls
