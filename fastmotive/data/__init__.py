"""Data for fastmotive (issue 4): datasets in their standard on-disk layouts, and four loaders behind one
interface that yields ``(images, labels)`` batches on the training device.

    train, val, info = build_loaders("cifar10", data_dir="data", loader="auto", batch_size=512, device="cuda")
    for images, labels in train.epoch_batches(epoch, start_batch=0): ...

Loaders: ``tensor`` (the whole uint8 set on the device, batched tensor ops), ``dali`` (NVIDIA DALI, GPU or
CPU-only pipelines), ``torch`` (torchvision transforms in a DataLoader, the baseline) and ``auto``.
Training augmentation of timm's recipes (RandAugment / AutoAugment, random erasing, Mixup / CutMix) runs on the
device around any of them: ``TrainAugment.from_config(config, num_classes).wrap(train)``. See docs/data.md.
"""
from fastmotive.data.augment.auto_augment import BatchAugment
from fastmotive.data.augment.policy import AugmentPolicy, parse_policy
from fastmotive.data.augment.train_augment import AugmentedLoader, TrainAugment, loader_options
from fastmotive.data.build import DatasetInfo, build_loaders, choose_loader, list_loaders
from fastmotive.data.datasets.readers import DataError, list_datasets, read_dataset
from fastmotive.data.loaders.dali import DaliLoader, dali_available
from fastmotive.data.loaders.dataloader import TorchLoader
from fastmotive.data.loaders.first_batches import FirstBatches
from fastmotive.data.loaders.tensor import TensorLoader

__all__ = ["AugmentPolicy", "AugmentedLoader", "BatchAugment", "DaliLoader", "DataError", "DatasetInfo", "FirstBatches",
           "TensorLoader", "TorchLoader", "TrainAugment", "build_loaders", "choose_loader", "dali_available",
           "list_datasets", "list_loaders", "loader_options", "parse_policy", "read_dataset"]
