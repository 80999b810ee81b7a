"""The mesh between sources and translators: `MeshStore` (versioned objects, change
notification), `LastGood` (traffic policy that passed its cross-object checks),
and the `Pipeline` (debounce -> translate what changed -> publish snapshots).

Imports model, translators, cache and metrics (see legation/__init__.py)."""
