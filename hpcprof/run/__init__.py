"""How a run is made: its frozen config, tasks, launchers, builds, the measuring runner, host metadata and Slurm submission."""
