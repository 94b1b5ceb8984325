"""Training augmentation on the device: timm's recipes around any loader (`train_augment`), the ``--aa`` policies
(`policy`), per-image AutoAugment/RandAugment (`auto_augment`, `image_ops`, `levels`) and random erasing."""
