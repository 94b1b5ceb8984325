"""Scalable model families: how each builds, loads and maps its members. Importing this package registers them."""
from fastmotive.families import efficientnet, resnet, vit  # noqa: F401  (registration; cifar_resnet registers below)
from fastmotive.families._registry import (SPEC_SYNTAX, Arch, Family, family_of, get_family, list_families,
                                           parse_arch, register_family, tensor_shapes)
from fastmotive.families.cifar_resnet import CifarResNet, cifar_resnet

__all__ = ["SPEC_SYNTAX", "Arch", "CifarResNet", "Family", "cifar_resnet", "family_of", "get_family",
           "list_families", "parse_arch", "register_family", "tensor_shapes"]
