"""Drop-in replacements for other emulation libraries' APIs, built on :mod:`precision`.

:mod:`precision.compat.qtorch` mirrors qtorch 0.3 (``from precision.compat import qtorch``);
see its docstring and ``README.md`` here for where results differ and why.
"""
