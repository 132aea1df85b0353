"""Numbers and names that several modules must agree on (see docs/DESIGN.md, "Tokens and time")."""

TOKENS_PER_SECOND = 2.0  # feature rows per second of match, video and audio alike
FEATURE_DIM = 512  # width of both feature streams (ResNet-152 -> PCA 512, VGGish -> 512)
SAMPLE_RATE = 16000  # Hz of the audio VGGish hears (decoded mono, log-mel frontend)
VIDEO_FEATURES = "ResNET_TF2_PCA512"  # <half>_<name>.npy
AUDIO_FEATURES = "VGGish"
FEATURE_NAMES = {"video": VIDEO_FEATURES, "audio": AUDIO_FEATURES}
LABEL_FILES = ("Labels-v2.json", "Labels.json")  # SoccerNet v2 first, then v1
BACKGROUND = "background"  # class 0 of every class map
CLASS_MAP_FILE = "class_map.json"  # written by spotting beside its results_spotting.json tree, read by evaluate.py
