"""Features of a match video: ResNet-152 -> PCA 512 (video) and VGGish -> 512 (audio), 2 per second. The code is
`soccer_highlights.extract_features`; this package re-exports its public names so that `import extract_features`
works from a checkout, and `python -m extract_features` runs the command installed as `soccer-extract`."""

from soccer_highlights.extract_features import *  # noqa: F403
from soccer_highlights.extract_features import __all__  # noqa: F401
