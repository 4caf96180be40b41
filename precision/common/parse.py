"""Parsers for the small ``NAME=N`` settings command lines take (``--size gemm=256``)."""

from __future__ import annotations


def parse_name_int(text: str, *, what: str = "NAME", example: str = "n=1") -> tuple[str, int]:
    """Split ``NAME=N`` into the name and the non-negative integer.

    Args:
        text: the setting as typed.
        what: how the message calls the name part (``APP``, ``NAME``).
        example: a valid setting shown in the message.

    Returns:
        ``(name, n)``.

    Raises:
        ValueError: no ``=``, an empty name, or ``N`` not made of digits.
    """
    name, sep, raw = text.partition("=")
    if not sep or not name or not raw.isdigit():
        raise ValueError(f"{text!r}: expected {what}=N, e.g. {example}")
    return name, int(raw)
