"""Neural Face backend: datasets, tile hashing, per-bucket training, weight banks, renderers.

Importing this package never needs Blender; the `generate` command imports bpy lazily.
"""

__version__ = "0.1.0"
