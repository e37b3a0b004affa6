"""Registered search spaces: `mobilenet` (ImageNet, paper §4.2) and `pyramid_tree` (CIFAR)."""

from nas_core.spaces import mobilenet, pyramid_tree  # noqa: F401  (registers the spaces)
from nas_core.spaces.base import SPACES, LayerSpec, SearchSpace, create_space

__all__ = ["SPACES", "LayerSpec", "SearchSpace", "create_space"]
