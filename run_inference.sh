#!/usr/bin/env bash
# Highlights for match videos -- or, with no arguments, the demo.
#
#   bash run_inference.sh                                  # demo: synthetic match + demo model -> demo_output/
#   bash run_inference.sh --model M.keras match.mp4        # one video
#   bash run_inference.sh --model M.keras videos/          # every video in a folder (.mp4 .mkv .avi .mov .webm .ts
#                                                          #   .m4v .mpg .mpeg), all in one process
#   bash run_inference.sh --model M.keras list.txt         # one video per line (relative to the list; # comments)
#   bash run_inference.sh --model M.keras --live SOURCE    # a live stream (udp://, srt://, rtmp://, .m3u8, a file
#                                                          #   still being written): clips/, highlights.m3u8 and
#                                                          #   spans.jsonl grow while it plays (default out: live_output)
#
# Settings, as flags or environment variables (flags win):
#   --model M            MODEL           .keras model (for your own videos: one trained on SoccerNet features)
#   --out DIR            OUT             output root, one folder per video (default inference_output; demo: demo_output)
#   --live SOURCE        LIVE            a live stream instead of videos (see python inference.py --help: --live_*)
#   --weights W          WEIGHTS         extraction weights: imagenet (default; needs --pca) | random (smoke tests only)
#   --pca F              PCA             PCA .npz fitted on the training features (see extract_features --help)
#   --fast               FAST=1          stream-copy reel: cuts snap to keyframes
#   --max_total_sec S    MAX_TOTAL_SEC   total reel length budget
#   --decoder_config J   DECODER_CONFIG  decoder figures (JSON)
#   --intro_sec S        INTRO_SEC       seconds of the match start to open the reel with (default 15, as the seed; 0: none)
#   --outro_sec S        OUTRO_SEC       seconds of the match end to close it with (default 15, as the seed; 0: none)
#   -- ARGS...                           passed to inference.py unchanged (see python inference.py --help)
#   VENV (default .venv; created by scripts/setup_env.sh when missing), DEMO_DATA (default demo_data),
#   DEMO_THRESHOLD (default 0.2: the small demo model is less confident than the seed's thresholds of 0.5 assume)
#
# The demo model is trained on synthetic features (scripts/demo_train.sh): it knows synthetic events, not football.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${VENV:-$ROOT/.venv}"
MODEL="${MODEL:-}"
OUT="${OUT:-}"
WEIGHTS="${WEIGHTS:-imagenet}"
PCA="${PCA:-}"
FAST="${FAST:-0}"
MAX_TOTAL_SEC="${MAX_TOTAL_SEC:-}"
DECODER_CONFIG="${DECODER_CONFIG:-}"
LIVE="${LIVE:-}"
INTRO_SEC="${INTRO_SEC:-15}"
OUTRO_SEC="${OUTRO_SEC:-15}"
DEMO_DATA="${DEMO_DATA:-$ROOT/demo_data}"
DEMO_THRESHOLD="${DEMO_THRESHOLD:-0.2}"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "error: $*" >&2; exit 2; }
# the value of option $1, given as $2: one `error:` line and exit 2 when it is missing (or is another option)
value() { if (($# < 2)) || [[ -z "$2" || "$2" == --* ]]; then die "$1 needs a value"; fi; printf '%s' "$2"; }

inputs=()
passthrough=()
while (($#)); do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --model) MODEL="$(value "$@")" || exit 2; shift 2 ;;
    --out) OUT="$(value "$@")" || exit 2; shift 2 ;;
    --live) LIVE="$(value "$@")" || exit 2; shift 2 ;;
    --weights) WEIGHTS="$(value "$@")" || exit 2; shift 2 ;;
    --pca) PCA="$(value "$@")" || exit 2; shift 2 ;;
    --fast) FAST=1; shift ;;
    --max_total_sec) MAX_TOTAL_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --decoder_config) DECODER_CONFIG="$(value "$@")" || exit 2; shift 2 ;;
    --intro_sec) INTRO_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --outro_sec) OUTRO_SEC="$(value "$@")" || exit 2; shift 2 ;;
    --) shift; passthrough=("$@"); break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) inputs+=("$1"); shift ;;
  esac
done

if [[ ! -x "$VENV/bin/python" ]]; then
  VENV="$VENV" "$ROOT/scripts/setup_env.sh"
fi
PY="$VENV/bin/python"

# inference.py runs in the background so that a SIGTERM or Ctrl-C sent to this script reaches it (as SIGTERM):
# it removes its temporary files and leaves the output folder as it was; then the script stops (143 / 130).
child=0
stop() {
  if ((child)); then kill -TERM "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi
  exit "$1"
}
trap 'stop 143' TERM
trap 'stop 130' INT
infer() {
  "$PY" "$ROOT/inference.py" "$@" &
  child=$!
  local code=0
  wait "$child" || code=$?
  child=0
  return "$code"
}

# Settings shared by every inference.py call.
settings=(--intro_sec "$INTRO_SEC" --outro_sec "$OUTRO_SEC")
[[ "$FAST" == 1 ]] && settings+=(--fast)
[[ -n "$MAX_TOTAL_SEC" ]] && settings+=(--max_total_sec "$MAX_TOTAL_SEC")
[[ -n "$DECODER_CONFIG" ]] && settings+=(--decoder_config "$DECODER_CONFIG")
settings+=("${passthrough[@]}")

# Videos, folders and lists all go to one inference.py process (the networks are built once).
run_videos() {
  [[ -n "$MODEL" ]] || die "give a model: --model M.keras or MODEL=... (run with no arguments for the demo)"
  local extract=(--weights "$WEIGHTS")
  [[ -n "$PCA" ]] && extract+=(--pca "$PCA")
  local code=0
  infer --model "$MODEL" --out "${OUT:-inference_output}" "${extract[@]}" "${settings[@]}" -- "${inputs[@]}" || code=$?
  exit "$code"
}

# A live stream: one inference.py --live process; SIGTERM or Ctrl-C finishes its outputs like an offline run.
run_live() {
  [[ -n "$MODEL" ]] || die "give a model: --model M.keras or MODEL=..."
  ((${#inputs[@]} == 0)) || die "--live takes no video inputs (the stream is the input): ${inputs[0]}"
  local extract=(--weights "$WEIGHTS")
  [[ -n "$PCA" ]] && extract+=(--pca "$PCA")
  local code=0
  infer --model "$MODEL" --out "${OUT:-live_output}" --live "$LIVE" "${extract[@]}" "${settings[@]}" || code=$?
  exit "$code"
}

demo() {
  local out="${OUT:-$ROOT/demo_output}" game="$DEMO_DATA/game" model="$MODEL"
  if [[ ! -f "$DEMO_DATA/match.mp4" || ! -f "$game/Labels-v2.json" ]]; then
    echo "== making the demo match in $DEMO_DATA" >&2
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m soccer_highlights.synthetic.video --demo --out "$DEMO_DATA" >&2
  fi
  if [[ -z "$model" && -f "$DEMO_DATA/model/demo_best.keras" ]]; then
    model="$DEMO_DATA/model/demo_best.keras"
  elif [[ -z "$model" ]]; then
    echo "== training the demo model (scripts/demo_train.sh, once)" >&2
    model="$(DEMO_DATA="$DEMO_DATA" VENV="$VENV" bash "$ROOT/scripts/demo_train.sh" | tail -n 1)"
    [[ "$model" == /* ]] || model="$ROOT/$model"  # the script prints it relative to the repository
    [[ -f "$model" ]] || die "scripts/demo_train.sh did not print a model path (got '$model')"
  fi
  echo "== inference on $DEMO_DATA/match.mp4 (its synthetic game's features reused; the demo model knows" \
    "synthetic events, not football)" >&2
  infer --model "$model" --video "$DEMO_DATA/match.mp4" \
    --features_video "$game/1_ResNET_TF2_PCA512.npy" --features_audio "$game/1_VGGish.npy" \
    --ground_truth "$game" --half 1 --threshold "$DEMO_THRESHOLD" --out "$out" "${settings[@]}"
}

if [[ -n "$LIVE" ]]; then
  run_live
elif ((${#inputs[@]} == 0)); then
  demo
else
  run_videos
fi
