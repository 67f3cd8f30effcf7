#!/usr/bin/env bash
# Exercise the GPU paths for real: train and predict the CNN with device "cuda" (AMP on) and
# the tree models that can train there, print the devices used and each step's wall time,
# and fail on a silent CPU fallback. A few minutes on one GPU.
#
#   bash benchmarks/gpu_check.sh                  # no CUDA here: environment, then "skipped", exit 0
#   bash benchmarks/gpu_check.sh --require-gpu    # no CUDA (or kelp cannot run here): exit 2
#   bash benchmarks/gpu_check.sh --keep DIR       # keep the dataset, run folder and logs in DIR
#   bash benchmarks/gpu_check.sh --on-cpu         # the same steps on the CPU: tests this script
#                                                 # where there is no GPU, proves nothing about one
#
# Python: $KELP_PYTHON, else .venv/bin/python, else python3; the source tree is put on
# PYTHONPATH, so a bare GPU machine needs no install of kelp, only its dependencies (which are
# too large to carry: what is missing is printed and its step skipped with the reason).
# Steps: `kelp data synth` (24 tiles of 128 px), `data folds`, `build-features`, `train-trees
# --device cuda` (xgboost, catboost, random_forest, lightgbm where its GPU learner works),
# `train-cnn --device cuda` (2 epochs, bf16), `predict-cnn --device cuda`, `stack`, `predict
# --device cuda`. Then the manifests must say cuda: RUN/tabular/manifest.json and each tree's
# model.json (`trained_on`), RUN/cnn/manifest.json (`device`, `precision` bf16 or fp16) and
# the CNN of predictions/manifest.json; XGBoost's "falling back to CPU" warnings fail it too.
# Exit status: 0 passed or skipped (no CUDA), 1 a step failed or fell back to the CPU, 2 with
# --require-gpu and nothing to check on.
set -uo pipefail
export LC_ALL=C HF_HUB_OFFLINE=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIRE_GPU=0
ON_CPU=0
KEEP=""
EPOCHS=2
while (($#)); do
    case $1 in
        --require-gpu) REQUIRE_GPU=1 ;;
        --on-cpu) ON_CPU=1 ;;
        --keep) KEEP=${2:?--keep needs a folder}; shift ;;
        --epochs) EPOCHS=${2:?--epochs needs a number}; shift ;;
        -h | --help) sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

if ((ON_CPU && REQUIRE_GPU)); then echo "--on-cpu and --require-gpu contradict each other" >&2; exit 2; fi

PY=${KELP_PYTHON:-}
if [[ -z $PY ]]; then
    if [[ -x $ROOT/.venv/bin/python ]]; then PY=$ROOT/.venv/bin/python; else PY=$(command -v python3 || command -v python || true); fi
fi
[[ -n $PY ]] || { echo "skipped: no python found (set KELP_PYTHON)"; exit $((REQUIRE_GPU ? 2 : 0)); }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# One helper, three jobs: `env FILE` probes this machine and writes shell variables to FILE;
# `trees|cnn|predict RUN EXPECT LOG` checks what a step's manifests say it ran on.
read -r -d '' HELPER <<'EOF'
import importlib
import importlib.metadata
import importlib.util
import json
import platform
import shlex
import sys
from pathlib import Path


def imported(name):
    try:
        module = importlib.import_module(name)
    except Exception as error:  # a broken install raises more than ImportError
        return None, f"{type(error).__name__}: {error}".splitlines()[0]
    return module, getattr(module, "__version__", "?")


def installed(name, dist):
    """Found without importing it (a step that needs it fails loudly if it is broken)."""
    if importlib.util.find_spec(name) is None:
        return None
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def probe(out, on_cpu):
    facts = {"SKIPS": []}
    print(f"python {platform.python_version()} at {sys.executable}")
    core = {"numpy": "numpy", "scipy": "scipy", "rasterio": "rasterio", "pyarrow": "pyarrow",
            "polars": "polars", "sklearn": "scikit-learn", "pydantic": "pydantic",
            "typer": "typer"}
    missing = [name for name, dist in core.items() if installed(name, dist) is None]
    facts["KELP_OK"] = int(not missing)
    facts["KELP_WHY"] = "missing " + ", ".join(missing) if missing else ""
    print(f"kelp's core dependencies: {'all installed' if not missing else facts['KELP_WHY']}")
    torch, detail = imported("torch")
    cuda, name = False, ""
    if torch is None:
        print(f"torch: not importable ({detail})")
    else:
        cuda = torch.cuda.is_available()
        name = torch.cuda.get_device_name(0) if cuda else ""
        bf16 = torch.cuda.is_bf16_supported() if cuda else False
        print(f"torch {torch.__version__} (built for CUDA {torch.version.cuda}): "
              f"torch.cuda.is_available() = {cuda}, device {name or '-'}, bf16 {bf16}")
    smp = installed("segmentation_models_pytorch", "segmentation-models-pytorch")
    print(f"segmentation_models_pytorch: {smp or 'not installed'}")
    from kelp.devices import visible_gpus

    gpus = visible_gpus()
    print(f"NVIDIA GPUs visible to this process (nvidia-smi, CUDA_VISIBLE_DEVICES): {gpus}")
    facts["CUDA"] = int(cuda or gpus > 0)
    facts["GPU_NAME"] = name
    if torch is None or smp is None:
        facts["CNN_WHY"] = f"torch: {detail}" if torch is None else "no segmentation_models_pytorch"
    elif not cuda and not on_cpu:
        facts["CNN_WHY"] = "torch sees no CUDA device"
    else:
        facts["CNN_WHY"] = ""
    trees = []
    for model, library in (("xgboost", "xgboost"), ("catboost", "catboost"),
                           ("random_forest", "xgboost"), ("lightgbm", "lightgbm")):
        module, detail = imported(library)
        if model == "xgboost" and module is not None:
            detail += f" (CUDA build: {bool(module.build_info().get('USE_CUDA'))})"
        if model != "random_forest":
            print(f"{library}: {detail if module is not None else f'not importable ({detail})'}")
        if module is None:
            facts["SKIPS"].append(f"{model}: {library} not importable ({detail})")
            continue
        if on_cpu or not facts["KELP_OK"] or not facts["CUDA"]:
            trees.append(model)
            continue
        from kelp.tabular.devices import gpu_usable

        usable, why = gpu_usable(model)
        print(f"{model} on GPU: {'yes, ' + why if usable else 'no: ' + why}")
        if usable:
            trees.append(model)
        else:
            facts["SKIPS"].append(f"{model}: {why}")
    facts["TREES"] = ",".join(trees)
    facts["SKIPS"] = "; ".join(facts["SKIPS"])
    Path(out).write_text("".join(f"{k}={shlex.quote(str(v))}\n" for k, v in facts.items()))


def read(path):
    if not path.is_file():
        sys.exit(f"FAIL: {path} is missing")
    return json.loads(path.read_text())


def check_trees(run, expect, log):
    devices = read(run / "tabular" / "manifest.json")["devices"]
    bad = []
    for model, device in devices.items():
        trained = [read(p)["trained_on"] for p in sorted((run / "tabular" / model).rglob("model.json"))]
        print(f"  {model}: {device} (stage manifest), fold models trained on {', '.join(trained)}")
        if device != expect or not trained or any(t != expect for t in trained):
            bad.append(model)
    text = Path(log).read_text()
    for line in text.splitlines():
        if ": training on " in line:
            print(f"  kelp said: {line.strip()}")
    text = text.lower()
    fallback = [p for p in ("falling back to cpu", "setting device to cpu", "no visible gpu")
                if p in text]
    if bad:
        sys.exit(f"FAIL: silent CPU fallback: {', '.join(bad)} did not train on {expect}")
    if expect == "cuda" and fallback:
        sys.exit(f"FAIL: silent CPU fallback: the log says {' and '.join(map(repr, fallback))}")


def check_cnn(run, expect, log):
    manifest = read(run / "cnn" / "manifest.json")
    device, precision = manifest["device"], manifest["precision"]
    epochs = {k: f["epochs_run"] for k, f in manifest["folds"].items()}
    print(f"  cnn: {device}, {precision} (stage manifest); epochs run per fold {epochs}")
    amp_ok = precision in ("bf16", "fp16") if expect == "cuda" else precision == "fp32"
    if device != expect or not amp_ok:
        sys.exit(f"FAIL: the CNN trained on {device} in {precision}, expected {expect} with AMP")
    saved = [read(p)["training"]["config"] for p in sorted(run.glob("cnn/fold=*/best/config.json"))]
    print(f"  cnn checkpoints: {len(saved)} best/config.json, device "
          f"{sorted({c['device'] for c in saved})}, amp {sorted({c['amp'] for c in saved})}")
    if len(saved) != len(epochs) or any(c["device"] != expect or c["amp"] == "off" for c in saved):
        sys.exit(f"FAIL: the fold checkpoints do not all record device {expect} with AMP on")


def check_predict(run, expect, log):
    manifest = read(run / "predictions" / "manifest.json")
    cnn = manifest["ensemble"].get("cnn") or {}
    precision = cnn.get("precision")
    print(f"  predict: {manifest['n_tiles']} masks, models {manifest['models']}, "
          f"CNN precision {precision} (trees predict dense maps on the CPU)")
    if expect == "cuda" and precision not in ("bf16", "fp16"):
        sys.exit(f"FAIL: the CNN predicted in {precision}: not on the GPU with AMP")


job, *args = sys.argv[1:]
if job == "env":
    probe(args[0], args[1] == "1")
else:
    {"trees": check_trees, "cnn": check_cnn, "predict": check_predict}[job](
        Path(args[0]), args[1], args[2]
    )
EOF

echo "== environment"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi || echo "nvidia-smi failed (status $?)"
else
    echo "nvidia-smi: absent (no NVIDIA driver on this machine)"
fi
WORK=${KEEP:-$(mktemp -d)}
[[ -n $KEEP ]] || trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/logs"
"$PY" -c "$HELPER" env "$WORK/env.sh" "$ON_CPU" || { echo "FAIL: the environment probe failed"; exit 1; }
# shellcheck source=/dev/null
source "$WORK/env.sh"

if ((ON_CPU)); then
    DEVICE=cpu
    echo "rehearsal on the CPU (--on-cpu): every step runs with --device cpu"
elif ((!CUDA)); then
    echo "no CUDA device: torch sees none and nvidia-smi lists none (or CUDA_VISIBLE_DEVICES hides them)"
    echo "summary: skipped: no CUDA device"
    exit $((REQUIRE_GPU ? 2 : 0))
else
    DEVICE=cuda
fi
if ((!KELP_OK)); then
    echo "summary: skipped: kelp cannot run here: $KELP_WHY"
    exit $((REQUIRE_GPU ? 2 : 0))
fi

KELP=("$PY" -m kelp -q)
DATA=$WORK/data
RUN=$WORK/run
WORKERS=$(($(nproc) < 4 ? $(nproc) : 4))
cat >"$WORK/gpu_check.toml" <<EOF
[features.sampling]
n_random = 300

[tabular]
max_rounds = 50
early_stopping_rounds = 10

[cnn]
encoder = "resnet18"
encoder_depth = 4
decoder_channels = [64, 32, 16, 16]
warmup_epochs = 0.5
batch_size = 8
amp = "bf16"
tta = false
patience = 0

[stacking]
meta = "logistic"
compare = ["average", "logistic"]
EOF
CONFIG=$WORK/gpu_check.toml
TIMES=()

# step NAME COMMAND...: run it with its output in logs/NAME.log, print its wall time; on
# failure print the log's tail and stop with status 1.
step() {
    local name=$1 start=${EPOCHREALTIME/./} ms
    shift
    if "$@" >"$WORK/logs/$name.log" 2>&1; then
        ms=$(((${EPOCHREALTIME/./} - start) / 1000))
        TIMES+=("$(printf '%-14s %5d.%01d s' "$name" $((ms / 1000)) $((ms % 1000 / 100)))")
        echo "${TIMES[-1]}"
    else
        echo "FAIL: $name (status $?): $*"
        tail -n 25 "$WORK/logs/$name.log"
        exit 1
    fi
}
check() {
    "$PY" -c "$HELPER" "$1" "$RUN" "$DEVICE" "$WORK/logs/$2.log" || exit 1
}

echo "== steps on $DEVICE${GPU_NAME:+ ($GPU_NAME)}; work folder $WORK"
step synth "${KELP[@]}" data synth --out "$DATA" --tiles 24 --size 128 --seed 0
step folds "${KELP[@]}" data folds "$DATA" --out "$RUN/folds.csv" -k 3
step features "${KELP[@]}" build-features "$DATA" --folds "$RUN/folds.csv" --out "$RUN/features" \
    --config "$CONFIG" --workers "$WORKERS"
if [[ -n $TREES ]]; then
    step train-trees "${KELP[@]}" train-trees "$DATA" --run "$RUN" --models "$TREES" --device "$DEVICE" \
        --config "$CONFIG"
    check trees train-trees
fi
if [[ -z $CNN_WHY ]]; then
    step train-cnn "${KELP[@]}" train-cnn "$DATA" --run "$RUN" --device "$DEVICE" --epochs "$EPOCHS" \
        --config "$CONFIG"
    check cnn train-cnn
    step predict-cnn "${KELP[@]}" predict-cnn "$DATA" --run "$RUN" --device "$DEVICE"
else
    SKIPS="${SKIPS:+$SKIPS; }cnn: $CNN_WHY"
fi
if [[ -n $TREES || -z $CNN_WHY ]]; then
    step stack "${KELP[@]}" stack "$DATA" --run "$RUN" --config "$CONFIG"
    step predict "${KELP[@]}" predict --data "$DATA" --run "$RUN" --device "$DEVICE"
    check predict predict
fi

echo "== summary"
printf '%s\n' "${TIMES[@]}"
echo "devices: trees ${TREES:-none} on $DEVICE; cnn $([[ -z $CNN_WHY ]] && echo "on $DEVICE" || echo skipped)"
[[ -z $SKIPS ]] || echo "skipped: $SKIPS"
if [[ -n $CNN_WHY ]] && ((REQUIRE_GPU)); then
    echo "summary: the CNN could not run on the GPU ($CNN_WHY) and --require-gpu asked for it"
    exit 2
fi
if ((ON_CPU)); then
    echo "summary: the rehearsal on the CPU passed (it says nothing about a GPU)"
else
    echo "summary: passed on cuda: no step fell back to the CPU"
fi
