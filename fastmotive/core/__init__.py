"""The core: one flat arena holding both models (`arena`, `segment`), the weights map (`weights_map`) compiled into a
copy plan (`copy_plan`), the switch that executes it (`switch`, launching `fastmotive.kernels` on CUDA) and the
pair that owns them all (`pair`)."""
