#!/usr/bin/env bash
# Training demo, end to end on generated data: creates the environment if missing, generates a small
# synthetic SoccerNet dataset in demo_data/ (once), trains a small concat model (NetVLAD k=64, 20 s
# windows, a few epochs; about 1-2 minutes on 2 cores) into demo_data/model/, prints its summary.
# The last line of stdout is the path of the trained model.
# Env: VENV (default .venv), DEMO_DATA (default demo_data), DEMO_EPOCHS (default 10).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
VENV="$VENV" scripts/setup_env.sh >&2
PY="$VENV/bin/python"
DATA="${DEMO_DATA:-demo_data}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"

if ! compgen -G "$DATA/listgame_Train_*.npy" >/dev/null; then
  echo "generating synthetic SoccerNet games in $DATA/ ..." >&2
  "$PY" -m soccer_highlights.synthetic.games --out "$DATA" --games 30 --half_minutes 6 --seed 0 >&2
fi
list() { compgen -G "$DATA/listgame_$1_*.npy" | head -n1; }

"$PY" ClassificationMinuteBased.py --architecture concat \
  --training "$(list Train)" --validation "$(list Valid)" --testing "$(list Test)" \
  --featuresVideo ResNET --featuresAudio VGGish --PCA --network VLAD --VLAD_k 64 --WindowSize 20 \
  --class_map highlight --batch_windows 64 --LR 0.001 --max_epoch "${DEMO_EPOCHS:-10}" --seed 0 \
  --tflog "$DATA/model" --cache_dir "$DATA/cache" --outputPrefix demo --formatdataset 1 --overwrite >&2

"$PY" - "$DATA/model/demo_summary.json" <<'PYEOF'
import json, sys
s = json.load(open(sys.argv[1]))
fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
print(f"classes: {', '.join(s['classes'])}")
print(f"best epoch {s['best_epoch']} of {s['epochs']}: valid mAP {fmt(s['valid']['mAP'])}, test mAP {fmt(s['test']['mAP'])}")
print("test AP: " + ", ".join(f"{k} {fmt(v)}" for k, v in s["test"]["AP"].items()))
print(f"TensorBoard logs: {sys.argv[1].rsplit('/', 1)[0]}")
print(s["model"])
PYEOF
