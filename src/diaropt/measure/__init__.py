"""Measurement: timing, memory, sizes and FLOPs, the environment record, DER scoring over a set,
benchmarks of pipeline variants, tuning on the tune split and speaker verification."""
