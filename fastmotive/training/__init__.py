"""Training: the Algorithm 1 loop (`trainer`), one step (`step`), where a run stands (`state`), learning-rate
schedules, progress and log sinks, evaluation, BatchNorm calibration, and Ctrl-C handling (`interrupt`)."""
