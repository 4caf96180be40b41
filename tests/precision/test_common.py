"""precision.common: the registry, atomic writes and small parsers shared by both packages."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from precision.common.registry import DuplicateNameError, Registry, UnknownNameError


@dataclass(frozen=True)
class _Info:
    name: str
    value: int = 0


class _MyError(UnknownNameError):
    pass


def test_registry_is_an_ordered_mapping_with_explaining_errors() -> None:
    reg: Registry[_Info] = Registry("thing", [_Info("b", 1), _Info("a", 2)], error=_MyError)
    assert list(reg) == ["b", "a"] == list(reg.names())
    assert [i.value for i in reg.infos()] == [1, 2] == [i.value for i in reg.values()]
    assert "a" in reg and "c" not in reg and len(reg) == 2
    assert reg.get("a") is reg["a"]
    with pytest.raises(_MyError, match=r"unknown thing 'c'; choose from b, a") as info:
        reg.get("c")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ValueError)
    assert str(info.value) == "unknown thing 'c'; choose from b, a"
    with pytest.raises(DuplicateNameError, match="thing 'a' is already registered"):
        reg.register(_Info("a"))
    merged = reg.merged([_Info("c", 3)])
    assert merged.names() == ("b", "a", "c") and reg.names() == ("b", "a")
    with pytest.raises(DuplicateNameError):
        reg.merged([_Info("b")])


def test_registry_lower_case_and_key() -> None:
    with pytest.raises(ValueError, match="lower case"):
        Registry("thing", [_Info("Bad")], lower_case=True)
    reg: Registry[_Info] = Registry("thing", [_Info("x", 7)], key=lambda i: f"n{i.value}")
    assert reg["n7"].name == "x"
