"""The ``hpcprof`` command line: click parses, the library runs, errors become one-line messages."""
