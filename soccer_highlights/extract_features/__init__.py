"""Features from a raw match video: ResNet-152 -> PCA 512 (video) and VGGish -> 512 (audio), 2 per second.

`extract_file(video_path, ...) -> ExtractedFeatures(video [T, 512], audio [T, 512], info)`; CLI
`python -m extract_features --help`; `read_recipe(folder)` -> {"video": ..., "audio": ...}, the feature
recipe a folder holds. TensorFlow is imported only when networks are built, so argument and input errors
stay fast.
"""

from soccer_highlights.extract_features.pipeline import (
    LEGACY_RECIPE,
    SOCCERNET_RECIPE,
    ExtractConfig,
    ExtractedFeatures,
    extract_file,
    read_recipe,
    recipe_of,
)

__all__ = [
    "LEGACY_RECIPE",
    "SOCCERNET_RECIPE",
    "ExtractConfig",
    "ExtractedFeatures",
    "extract_file",
    "read_recipe",
    "recipe_of",
]
