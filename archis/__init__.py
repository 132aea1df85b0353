"""The architectures: NetVLAD-family pooling, the fusion blocks and every network of the README's table, built by
name. The code is `soccer_highlights.archis`; this package re-exports its public names so that `import archis`
works from a checkout (importing it registers every custom layer with Keras)."""

from soccer_highlights.archis import *  # noqa: F403
from soccer_highlights.archis import __all__  # noqa: F401
