"""Soccer highlights from what is seen and heard: multimodal action spotting (V&D's networks and the seed's
decoder, ported to TensorFlow 2 / Keras 3) and highlight reels.

    from soccer_highlights import Match, Pipeline, write_outputs

    pipeline = Pipeline("model.keras")               # the model loads once and serves many matches
    result = pipeline(Match.video("match.mp4"))       # spots, spans, score curves, timings: nothing written
    write_outputs(result, "out")                      # spans.json, results_spotting.json, report.html, reel

The names below are loaded on first use, so that `import soccer_highlights.<module>` stays light (no TensorFlow,
no feature pipeline) for the commands that need none of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soccer_highlights.common.lazy import lazy_attributes

if TYPE_CHECKING:
    from soccer_highlights.core.match import Match, Result, Scoring
    from soccer_highlights.core.pipeline import Pipeline
    from soccer_highlights.extract_features import ExtractConfig
    from soccer_highlights.writers.outputs import Output, Written, summary, write_outputs

__version__ = "0.1.0"

_EXPORTS = {
    "Match": "soccer_highlights.core.match",
    "Result": "soccer_highlights.core.match",
    "Scoring": "soccer_highlights.core.match",
    "Pipeline": "soccer_highlights.core.pipeline",
    "ExtractConfig": "soccer_highlights.extract_features",
    "Output": "soccer_highlights.writers.outputs",
    "Written": "soccer_highlights.writers.outputs",
    "summary": "soccer_highlights.writers.outputs",
    "write_outputs": "soccer_highlights.writers.outputs",
}
__all__ = ["ExtractConfig", "Match", "Output", "Pipeline", "Result", "Scoring", "Written", "summary", "write_outputs"]


__getattr__ = lazy_attributes(__name__, _EXPORTS)
