"""Machine models as data: the record type, the built-in machines and the measured host."""
