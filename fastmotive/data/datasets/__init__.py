"""Dataset readers: what a reader returns (`base`), the registry and array formats (`readers`), CIFAR pickles
(`cifar`) and image folders (`image_folder`)."""
