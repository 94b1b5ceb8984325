"""Data for fastmotive (issue 4): datasets in their standard on-disk layouts, and four loaders behind one
interface that yields ``(images, labels)`` batches on the training device.

    train, val, info = build_loaders("cifar10", data_dir="data", loader="auto", batch_size=512, device="cuda")
    for images, labels in train.epoch_batches(epoch, start_batch=0): ...

Loaders: ``tensor`` (the whole uint8 set on the device, batched tensor ops), ``dali`` (NVIDIA DALI, GPU or
CPU-only pipelines), ``torch`` (torchvision transforms in a DataLoader, the baseline) and ``auto``.
See docs/data.md.
"""
from ._build import DatasetInfo, build_loaders, choose_loader, list_loaders
from .budget import FirstBatches
from .dali_loader import DaliLoader, dali_available
from .datasets import DataError, list_datasets, read_dataset
from .tensor_loader import TensorLoader
from .torch_loader import TorchLoader

__all__ = ["DaliLoader", "DataError", "DatasetInfo", "FirstBatches", "TensorLoader", "TorchLoader", "build_loaders", "choose_loader",
           "dali_available", "list_datasets", "list_loaders", "read_dataset"]
