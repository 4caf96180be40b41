"""hpcprof: how much FP64 and FP32 arithmetic do HPC proxy apps and training kernels execute?

Run built-in proxy apps (NumPy/torch and small C programs) and external apps from a suite
file under a counter backend (LIKWID, perf, callgrind or a plain timer) and record, per app
and precision, the executed FP64/FP32 operations, time, bytes and a self-check error.
"""

from hpcprof.results.records import SCHEMA_VERSION, Measurement, Metric, Precision, Sample

__all__ = ["SCHEMA_VERSION", "Measurement", "Metric", "Precision", "Sample"]
