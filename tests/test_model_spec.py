"""The model spec: a typed record written into every .keras file, read back by the model and by the light
reader, including files whose spec was the earlier dict (old key names, fields they did not have yet)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from soccer_highlights import archis
from soccer_highlights.common.errors import UserError
from soccer_highlights.common.modelfile import read_spec
from soccer_highlights.common.modelspec import ModelSpec

# The spec dict as files were written before ModelSpec: the token rate under its old key, window_frames
# stored, and neither context_gating, class_map nor feature_recipe.
OLD_SPEC = {
    "architecture": "concat",
    "pooling": "NetVLAD",
    "vlad_k": 4,
    "window_seconds": 4.0,
    "frames_per_second": 2.0,
    "window_frames": 8,
    "feature_dim": 512,
    "class_names": ["background", "kick", "subs", "card", "goal"],
    "feature_names": {"video": "ResNET_TF2_PCA512", "audio": "VGGish"},
    "compute_dtype": "float32",
    "dropout": 0.4,
}


def _with_spec(src, dst, spec: dict) -> None:
    """A copy of the model file `src` whose config.json carries `spec`."""
    with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst, "w") as b:
        for item in a.infolist():
            data = a.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["spec"] = spec
                data = json.dumps(config).encode()
            b.writestr(item, data)


def test_a_file_with_the_old_spec_dict_reads_and_runs_as_before(tmp_path):
    model = archis.build_model("concat", vlad_k=4, window_seconds=4, seed=0, bn_eval="moving")  # files then: moving
    model.save(tmp_path / "new.keras")
    _with_spec(tmp_path / "new.keras", tmp_path / "old.keras", OLD_SPEC)
    spec = read_spec(tmp_path / "old.keras")
    assert spec == archis.model_info(model).replace(batch_norm="keras")  # files then: Keras' constants
    assert spec.tokens_per_second == 2.0 and spec.window_frames == 8 and spec.context_gating is True
    assert spec.class_map is None and spec.feature_recipe is None
    old = archis.load_model(tmp_path / "old.keras")
    x = {m: np.ones((1, 8, 512), "float32") for m in ("video", "audio")}
    np.testing.assert_array_equal(np.asarray(old(x)), np.asarray(model(x)))


def test_the_spec_round_trips_through_its_json_and_the_file():
    spec = archis.make_spec("AudioVideoArchi5", vlad_k=4, window_seconds=3, class_map=None, compute_dtype="bfloat16")
    assert ModelSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert spec.architecture == "concat" and spec.dropout == 0.4 and spec.compute_dtype == "bfloat16"
    assert "frames_per_second" not in spec.to_json() and spec.to_json()["tokens_per_second"] == 2.0


def test_build_model_takes_a_spec_or_its_fields():
    spec = archis.make_spec("video", vlad_k=4, window_seconds=2, feature_dim=16)
    assert archis.model_info(archis.build_model(spec)) == spec
    assert archis.model_info(archis.build_model("video", vlad_k=4, window_seconds=2, feature_dim=16)) == spec
    assert archis.model_info(archis.build_model(spec, dropout=0.1)).dropout == 0.1


def test_a_spec_with_fields_this_version_lacks_is_refused(tmp_path):
    with pytest.raises(UserError, match="unknown spec fields batch_norm_momentum"):
        ModelSpec.from_json({**OLD_SPEC, "batch_norm_momentum": 0.99}, "m.keras")
    with pytest.raises(UserError, match="not a model spec"):
        ModelSpec.from_json({"pooling": "NetVLAD"}, "m.keras")


def test_the_token_rate_of_extraction_records_is_read_under_its_new_and_old_key():
    from soccer_highlights.common.features import frame_rate_problem

    for key in ("tokens_per_second", "frames_per_second"):
        assert frame_rate_problem({key: 5}, 2.0) == "features are 5 tokens/s but the model expects 2"
        assert frame_rate_problem({key: 2}, 2.0) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"window_seconds": 1e9}, r"window_seconds must be in \[0, 3600\], got 1e\+09"),
        ({"window_seconds": float("nan")}, r"window_seconds must be in \[0, 3600\], got nan"),
        ({"frames_per_second": 1e6}, r"tokens_per_second must be in \[0, 100\], got 1e\+06"),
        ({"vlad_k": 100_000}, r"vlad_k must be in \[1, 8192\], got 100000"),
        ({"feature_dim": -1}, r"feature_dim must be in \[1, 16384\], got -1"),
        ({"class_names": []}, r"classes must be in \[1, 1000\], got 0"),
        ({"class_names": [str(i) for i in range(1001)]}, r"classes must be in \[1, 1000\], got 1001"),
        (
            {"window_seconds": 3000.0, "frames_per_second": 50.0},
            "a window of 3000 s at 50 tokens/s has 150000 tokens, more than 20000",
        ),
    ],
)
def test_every_size_of_a_spec_has_a_range_and_the_message_names_the_file(change, message):
    """A model file is untrusted: a window of 1e9 s once asked the scorer for 1.86 TiB (issue 30, item 5)."""
    with pytest.raises(UserError, match=r"^m\.keras: " + message):
        ModelSpec.from_json({**OLD_SPEC, **change}, "m.keras")


@pytest.mark.slow
def test_scoring_memory_is_checked_before_anything_is_allocated(monkeypatch):
    from soccer_highlights.spotting import spots

    scorer = spots.Scorer(archis.build_model("concat", vlad_k=4, window_seconds=4, feature_dim=16), batch_size=8)
    x = np.zeros((40, 16), np.float32)
    assert scorer.score_half(x, x, progress=False).shape == (40, 5)
    monkeypatch.setattr(spots, "available_memory", lambda: 4096)
    with pytest.raises(UserError, match=r"^half 1: scoring windows of 8 tokens of 16 features needs about"):
        scorer.score_half(x, x, progress=False, what="half 1")
