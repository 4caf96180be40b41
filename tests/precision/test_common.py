"""precision.common: the registry, atomic writes, Markdown tables and small parsers shared by
both packages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from precision.common.files import atomic_save_figure, atomic_write, atomic_write_text
from precision.common.markdown import markdown_table
from precision.common.parse import parse_name_int
from precision.common.registry import DuplicateNameError, Registry, UnknownNameError
from precision.common.tomlfile import check_unique, load_toml, table_array


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


def test_atomic_write_replaces_whole_file_and_keeps_old_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    atomic_write_text(target, "first\n")
    assert target.read_text(encoding="utf-8") == "first\n"
    assert target.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_text(encoding="utf-8") == "first\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("text", ["gemm", "gemm=", "=5", "gemm=-1", "gemm=2.5"])
def test_parse_name_int_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected APP=N, e.g. gemm=256"):
        parse_name_int(text, what="APP", example="gemm=256")


def test_parse_name_int_accepts() -> None:
    assert parse_name_int("gemm-c=128") == ("gemm-c", 128)


class _FileError(Exception):
    pass


def test_load_toml_errors_name_the_file(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('[[item]]\nname = "a"\n[[item]]\nname = "a"\n', encoding="utf-8")
    data = load_toml(good, what="items file", error=_FileError, allowed=("item",))
    items = table_array(data, "item", good, error=_FileError)
    with pytest.raises(_FileError, match=r"good.toml: item name 'a' appears twice"):
        check_unique((i["name"] for i in items), good, "item", error=_FileError)
    with pytest.raises(_FileError, match=r"key 'other' must be a non-empty array"):
        table_array(data, "other", good, error=_FileError)
    with pytest.raises(_FileError, match=r"good.toml: unknown key 'item' \(allowed: x\)"):
        load_toml(good, what="items file", error=_FileError, allowed=("x",))
    bad = tmp_path / "bad.toml"
    bad.write_text("not toml [", encoding="utf-8")
    with pytest.raises(_FileError, match=r"bad.toml: not valid TOML"):
        load_toml(bad, what="items file", error=_FileError)
    with pytest.raises(_FileError, match=r"missing.toml: cannot read items file"):
        load_toml(tmp_path / "missing.toml", what="items file", error=_FileError)


def test_markdown_table_layout_and_errors() -> None:
    text = markdown_table([("a", "b"), ("1", "x y"), ("22", "")])
    assert text == "| a | b |\n|---|---|\n| 1 | x y |\n| 22 |  |\n"
    assert markdown_table([("only",)]) == "| only |\n|---|\n"
    with pytest.raises(ValueError, match="no rows"):
        markdown_table([])
    with pytest.raises(ValueError, match="row 2 has 1 cells, the header 2"):
        markdown_table([("a", "b"), ("1", "2"), ("3",)])


@pytest.mark.parametrize("pyplot", [False, True], ids=["bare-figure", "pyplot-figure"])
def test_atomic_save_figure_writes_a_png_and_leaves_no_temporary(
    tmp_path: Path, pyplot: bool
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    fig = plt.figure(figsize=(2, 2)) if pyplot else Figure(figsize=(2, 2))
    fig.add_subplot().plot([0, 1], [1, 0])
    path = tmp_path / "sub" / "f.png"
    path.parent.mkdir()
    path.write_bytes(b"old")
    atomic_save_figure(fig, path, dpi=50, tight=False)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (100, 100)  # 2 in x 50 dpi, not cropped
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.png"]
    if pyplot:
        assert plt.fignum_exists(fig.number)  # still pyplot's: the caller closes it
        plt.close(fig)
