"""Frozen value classes that cost nothing to define, for the modules Blender imports at add-on enable.

`@dataclass(frozen=True)` compiles six methods (`__init__`, `__repr__`, `__eq__`, `__hash__`,
`__setattr__`, `__delattr__`) for every class each time its module is imported: about 1 ms a
class on a busy 2-core machine, a third of the add-on's enable time with twenty of them. A class
here is declared `@value` over `@dataclass(init=False, repr=False, eq=False)`, which compiles
nothing and keeps `dataclasses.fields`, `replace` and `asdict` working; it writes its own
`__init__` (fields set through `self.__dict__`, as a frozen dataclass sets them through
`object.__setattr__`), and `value` adds the rest from closures, with a frozen dataclass's meaning:
equal when of the same class with equal fields, hashed on the fields, `Name(field=...)` as repr,
and a field can never be assigned again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any, TypeVar

C = TypeVar("C", bound=type)


def value(cls: C) -> C:
    """Equality, hash, repr and immutability for a dataclass declared with init, repr and eq off."""
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
