"""`core.values.value`: a class that writes its own `__init__` gets a frozen dataclass's meaning
(fields, replace, asdict, equality, hash, repr, immutability) without `@dataclass`."""

from __future__ import annotations

import dataclasses
from dataclasses import field
from typing import ClassVar

import pytest

from act3_credits.core.values import value


@value
class Point:
    LIMIT: ClassVar[int] = 10  # not a field
    x: int
    y: int = 0
    _norm: int = field(init=False, repr=False, compare=False)

    def __init__(self, x: int, y: int = 0) -> None:
        self.__dict__.update(x=x, y=y, _norm=abs(x) + abs(y))


@value
class Labelled(Point):
    label: str = "p"

    def __init__(self, x: int, y: int = 0, label: str = "p") -> None:
        super().__init__(x, y)
        self.__dict__["label"] = label


def test_fields_are_the_annotations_in_order_less_class_variables() -> None:
    assert [f.name for f in dataclasses.fields(Point)] == ["x", "y", "_norm"]
    assert [f.name for f in dataclasses.fields(Labelled)] == ["x", "y", "_norm", "label"]
    assert Point.LIMIT == 10 and dataclasses.is_dataclass(Labelled(1))
    assert Point.y == 0  # a plain default stays the class attribute, as a dataclass leaves it
    assert "_norm" not in Point.__dict__  # a field(...) without a default is no class attribute


def test_a_value_means_what_a_frozen_dataclass_means() -> None:
    p = Point(3, -4)
    assert p == Point(3, -4) and hash(p) == hash(Point(3, -4)) and p != Point(3, 4)
    assert p != Labelled(3, -4)  # another class is never equal
    assert repr(p) == "Point(x=3, y=-4)"  # repr=False fields are not shown
    assert repr(Labelled(1, label="q")) == "Labelled(x=1, y=0, label='q')"
    assert dataclasses.replace(p, y=4) == Point(3, 4) and dataclasses.replace(p, y=4)._norm == 7
    assert dataclasses.asdict(p) == {"x": 3, "y": -4, "_norm": 7}
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.y  # type: ignore[misc]
