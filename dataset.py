"""SoccerNet's data format as V&D's `dataset.py` reads it: game lists, label files (v1 and v2), class maps and
feature files. The code is `soccer_highlights.dataset`; this module re-exports its public names so that
`import dataset` works from a checkout."""

from soccer_highlights.dataset import *  # noqa: F403
from soccer_highlights.dataset import __all__  # noqa: F401
