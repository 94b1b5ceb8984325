"""The loaders: `tensor` (the whole set on the device), `dali` (NVIDIA DALI), `dataloader` (torch's DataLoader,
the baseline); the epoch plan they share and `FirstBatches`, the CPU budget."""
