"""What a run leaves: typed records, the run-directory store and the per-run report."""
