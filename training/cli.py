"""``prec-study`` command line: click parses, builds a frozen config, calls one function."""

from __future__ import annotations

import click

from precision.formats import BlockFormat, FixedFormat, FloatFormat
from precision.registry import aliases_of, formats


def _fmt_num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="prec-study")
def main() -> None:
    """How much floating-point precision does training really need? Measure it."""


@main.command("formats")
@click.option(
    "--bits", "show_bits", is_flag=True, help="Also show what --bits N means for N=3..32."
)
def formats_cmd(show_bits: bool) -> None:
    """List the named formats with their range and precision."""
    rows: list[tuple[str, ...]] = [
        ("name", "bits", "e", "m", "max finite", "min normal", "min subnormal", "eps", "aliases")
    ]
    for f in formats():
        if isinstance(f, FloatFormat):
            rows.append(
                (
                    str(f),
                    str(f.total_bits),
                    str(f.exponent_bits),
                    str(f.mantissa_bits),
                    _fmt_num(f.max_finite),
                    _fmt_num(f.smallest_normal),
                    _fmt_num(f.smallest_subnormal),
                    _fmt_num(f.epsilon),
                    ", ".join(aliases_of(str(f))),
                )
            )
        elif isinstance(f, BlockFormat):
            el = f.element
            el_max = el.max_finite if isinstance(el, FloatFormat) else el.max_value
            rows.append(
                (
                    str(f),
                    f"{f.total_bits:g}",
                    "-",
                    "-",
                    f"{_fmt_num(el_max)} x scale",
                    "-",
                    "-",
                    "-",
                    f"block {f.block_size}, element {el}, scale {f.scale}",
                )
            )
        elif isinstance(f, FixedFormat):
            rows.append(
                (
                    str(f),
                    str(f.word_bits),
                    "-",
                    "-",
                    _fmt_num(f.max_value),
                    "-",
                    "-",
                    _fmt_num(f.resolution),
                    "",
                )
            )
    _table(rows)
    if show_bits:
        click.echo("")
        rows = [("--bits", "format", "e", "m", "max finite", "eps")]
        for n in range(3, 33):
            f = FloatFormat.from_bits(n)
            rows.append(
                (
                    str(n),
                    str(f),
                    str(f.exponent_bits),
                    str(f.mantissa_bits),
                    _fmt_num(f.max_finite),
                    _fmt_num(f.epsilon),
                )
            )
        _table(rows)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        if j == 0:
            click.echo("  ".join("-" * w for w in widths))
