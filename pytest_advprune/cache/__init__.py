"""The on-disk cache of pruned (fine-tuned) models and crafted adversarial examples (see
docs/explanation/cache.md): a content-addressed store (``store.py``) and the code fingerprints in its keys
(``keys.py``)."""

from pytest_advprune.cache.keys import code_fingerprint, module_classes_fingerprint, plugin_fingerprint
from pytest_advprune.cache.store import DiskCache

__all__ = ["DiskCache", "code_fingerprint", "module_classes_fingerprint", "plugin_fingerprint"]
