"""Data for fastmotive (issue 4): datasets in their standard on-disk layouts, and four loaders behind one
interface that yields ``(images, labels)`` batches on the training device.

    train, val, info = build_loaders("cifar10", data_dir="data", loader="auto", batch_size=512, device="cuda")
    for images, labels in train.epoch_batches(epoch, start_batch=0): ...

Loaders: ``tensor`` (the whole uint8 set on the device, batched tensor ops), ``dali`` (NVIDIA DALI, GPU or
CPU-only pipelines), ``torch`` (torchvision transforms in a DataLoader, the baseline) and ``auto``.
Training augmentation of timm's recipes (RandAugment / AutoAugment, random erasing, Mixup / CutMix) runs on the
device around any of them: ``TrainAugment.from_config(config, num_classes).wrap(train)``. See docs/data.md.
"""
from ._build import DatasetInfo, build_loaders, choose_loader, list_loaders
from .augment import AugmentedLoader, TrainAugment, loader_options
from .augment_policy import AugmentPolicy, parse_policy
from .batch_augment import BatchAugment
from .budget import FirstBatches
from .dali_loader import DaliLoader, dali_available
from .datasets import DataError, list_datasets, read_dataset
from .tensor_loader import TensorLoader
from .torch_loader import TorchLoader

__all__ = ["AugmentPolicy", "AugmentedLoader", "BatchAugment", "DaliLoader", "DataError", "DatasetInfo", "FirstBatches",
           "TensorLoader", "TorchLoader", "TrainAugment", "build_loaders", "choose_loader", "dali_available",
           "list_datasets", "list_loaders", "loader_options", "parse_policy", "read_dataset"]
