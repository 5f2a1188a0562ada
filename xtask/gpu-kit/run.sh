#!/usr/bin/env bash
# The GPU kit's script: `cargo xtask gpu-kit` writes it beside kit.tar.xz
# (a stripped release binary of the kernel, encoder and epoch benchmarks,
# Debian's Vulkan loader packages, the Python wheels the references lack on
# the GPU machines, AV-MNIST, MiniLM's configuration and tokenizer, and the
# commit it was built from). On a machine with no Rust, no network and
# minutes of time, from a copy of the repository's root:
#
#   bash target/gpu-kit/run.sh [--adapter wgpu:N] [--reps N] [--rounds N]
#                              [--steps kernels,encoders,epoch,cpu-epoch]
#
# It unpacks the kit, brings the Vulkan loader when the system has none,
# points the loader at NVIDIA's driver when it finds no other, runs the
# benchmarks on the first hardware adapter (or the one given, a software
# one too, to check the kit) with PyTorch's equivalents on the same GPU,
# and writes the figures to one file, $OUT/gpu-figures.md (or
# target/gpu-kit/out/ without $OUT), beside each report and the log.
# A failing step does not stop the others; the exit status says whether
# all ran.
set -uo pipefail

kit=$(cd "$(dirname "$0")" && pwd)
repo=$(pwd)
adapter="" reps=10 rounds=3 steps="kernels,encoders,epoch,cpu-epoch"
while [ $# -gt 0 ]; do
    case "$1" in
        --adapter) adapter=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --rounds) rounds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        *) echo "run.sh: unknown option $1 (see the comment at its top)" >&2; exit 2 ;;
    esac
done
if [ ! -f "$repo/benches/python/timing.py" ]; then
    echo "run.sh: run it from the repository's root (benches/python/ is not here)" >&2
    exit 2
fi
out=${OUT:-$kit/out}
mkdir -p "$out"
log=$out/gpu-run.log
exec > >(tee "$log") 2>&1

say() { printf '\n==> %s\n' "$*"; }
work=$(mktemp -d /tmp/polymodal-kit.XXXXXX)
say "unpacking the kit into $work"
tar -xJf "$kit/kit.tar.xz" -C "$work" || { echo "the kit is damaged"; exit 1; }
bin=$work/bin
shared=$work/shared

say "Vulkan loader"
if ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    echo "the system has one"
elif [ "$(id -u)" = 0 ]; then
    # As the device README prescribes: these packages unpack cleanly over /.
    for f in "$work"/debs/*.deb; do dpkg -x "$f" /; done
    ldconfig
    echo "unpacked: $(cd "$work/debs" && echo *.deb)"
else
    mkdir -p "$work/root"
    for f in "$work"/debs/*.deb; do dpkg -x "$f" "$work/root"; done
    export LD_LIBRARY_PATH="$work/root/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "unpacked under $work/root (not root: LD_LIBRARY_PATH)"
fi

say "Vulkan driver"
icds=$(ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json 2>/dev/null | tr '\n' ' ')
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -z "$icds" ] && [ -f "$nvidia_icd" ]; then
    # NVIDIA's driver is mounted where the loader does not look.
    export VK_DRIVER_FILES=$nvidia_icd
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
echo "system drivers: ${icds:-none}; VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
echo "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -3)"

python=${POLYMODAL_PYTHON:-python3}
say "Python references ($python)"
if ! "$python" -c 'import librosa, soundfile' 2>/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$work/site" "$work"/wheels/*.whl \
        && export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
"$python" -c 'import torch; print("torch", torch.__version__, "CUDA:", torch.cuda.is_available())' \
    || echo "no torch: the reference columns will say skipped"
minilm=$shared/models/all-MiniLM-L6-v2
if [ ! -f "$minilm/model.safetensors" ]; then
    # 87 MiB of weights do not fit the kit: the same architecture with
    # seeded random weights times the same (both sides load this folder).
    "$python" benches/python/random_weights.py "$minilm" || echo "MiniLM weights could not be made"
fi

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d /tmp/polymodal-xdg.XXXXXX)}
export CARGO_MANIFEST_DIR=$repo/benches          # where the reports and scripts are
export POLYMODAL_KIT_COMMIT=$(cat "$work/commit.txt")
export POLYMODAL_KIT_RUSTC=$(cat "$work/rustc.txt" 2>/dev/null || echo "rustc: unknown")
export POLYMODAL_BENCH_COMMAND="bash target/gpu-kit/run.sh --reps $reps --rounds $rounds${adapter:+ --adapter $adapter}"

say "devices"
listing=$("$bin/devices")
echo "$listing"
if [ -z "$adapter" ]; then
    adapter=$(echo "$listing" | grep '^wgpu:' | grep -viE 'llvmpipe|lavapipe|swiftshader' | head -1 | cut -f1)
fi
figures=$out/gpu-figures.md
if [ -z "$adapter" ]; then
    echo "no hardware wgpu adapter (only software rasterisers or none): nothing was run on a GPU"
    { echo "# GPU kit: no hardware adapter"; echo; echo '```'; cat "$log"; echo '```'; } > "$figures"
    exit 1
fi
precisions=f32
if echo "$listing" | grep "^$adapter	" | grep -q 'f16$'; then precisions="f32 f16"; fi
say "using $adapter (precisions: $precisions)"
# The CPU epoch below is timed on this machine's processor: its report is
# named for this machine (epoch-cpu-<gpu>-machine.md), not epoch-cpu.md.
export POLYMODAL_REPORT_MACHINE="$(echo "$listing" | grep "^$adapter	" | cut -f2) machine"

stamp=$work/stamp
touch "$stamp"
sleep 1
failed=""
step() {
    local what=$1; shift
    say "$what"
    "$@" || failed="$failed $what;"
}
wants() { case ",$steps," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
common=(--python "$python" --rounds "$rounds")
wants kernels && step kernels "$bin/kernels" --device "$adapter" --reps "$reps" "${common[@]}"
for precision in $precisions; do
    wants encoders && step "encoders $precision" "$bin/encoders" --shared "$shared" \
        --device "$adapter" --precision "$precision" --reps "$reps" "${common[@]}"
done
wants epoch && step "epoch on $adapter" "$bin/epoch" --shared "$shared" --device "$adapter" "${common[@]}"
wants cpu-epoch && step "epoch on the CPU" "$bin/epoch" --shared "$shared" --device cpu "${common[@]}"

say "figures"
reports=$(find "$repo/docs/benchmarks" -name '*.md' -newer "$stamp" | sort)
{
    echo "# GPU kit run"
    echo
    echo "Adapter $adapter; kit built from $POLYMODAL_KIT_COMMIT; $(date -u '+%Y-%m-%d %H:%M UTC')."
    echo "Steps that failed:${failed:- none}"
    for report in $reports; do
        echo
        echo "---"
        echo "<!-- docs/benchmarks/$(basename "$report") -->"
        cat "$report"
    done
} > "$figures"
for report in $reports; do cp "$report" "$out/"; done
echo "wrote $figures and $(echo "$reports" | grep -c . ) reports to $out"
[ -z "$failed" ]
