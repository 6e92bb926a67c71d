#!/usr/bin/env bash
# lorampi against PyTorch, side by side in one run on this machine: (a) OpenBLAS sgemm on the
# step's own GEMM shapes (bench_sgemm, the list from bench_torch.py gemms); (b) lorampi's
# training step (`lorampi train`, random weights) on 1 rank x 1 thread, 1 rank x 2 threads,
# tp = 2 x 1 thread, dp = 2 x 1 thread; (c) PyTorch (Debian python3-torch, loralib-style LoRA
# in tests/bench/bench_torch.py) in fp32 and under torch.autocast("cpu", bfloat16), same
# threads (torch.set_num_threads = OMP_NUM_THREADS) and the same OPENBLAS_CORETYPE. Modes:
# attn (LoRA on c_attn; Llama q_proj, v_proj), all (LoRA on all linear layers of the blocks),
# full (full fine-tuning); models gpt2 (GPT-2 124M, B x T = 4 x 256) and llama (Llama-3.2-1B
# shape, B x T = 2 x 128: fewer tokens so a step takes seconds, not minutes). A configuration
# whose full fine-tuning needs more memory than the machine has (lorampi plan's total) is
# skipped and says so. The frameworks alternate within each (model, mode) round, so load from
# other jobs falls on all of them alike.
# Per run: tokens/s = B*T / median step time of steps 2..STEPS (step 1 is the warm-up);
# GFLOP/s = the step's FLOPs (bench_torch.py flops: the formula is in its docstring) / that
# time; "of sgemm" = GFLOP/s / the sgemm rate of the same GEMMs on as many threads in total;
# peak RSS per rank; CPU s/run = user + system seconds of the whole run, all ranks and threads,
# initialisation and warm-up included (on a loaded machine it moves much less than wall time,
# and waiting threads that spin show up in it). lorampi runs with LORAMPI_PROFILE=1: its per-phase profile (rank 0, ms
# per step) of each layout follows the table.
# Usage: tests/bench/bench_vs_torch.sh BUILD_DIR [STEPS]     (STEPS >= 2, default 6: 5 timed)
# Env: BENCH_MODELS ("gpt2 llama"), BENCH_MODES ("attn all full"), BENCH_LAYOUTS ("1x1 1x2
# l16 tp2 dp2"; l16: 1 x 2 with [model] dtype = bf16, frozen weights in bf16 through oneDNN;
# also sp2: tp = 2 with [parallel] sequence_parallel = true), BENCH_TORCH ("fp32 bf16"; empty: no torch), BENCH_ROUNDS (1), BENCH_LLAMA_STEPS
# (STEPS), BENCH_GPT2_BT ("4 256"), BENCH_LLAMA_BT ("2 128"), BENCH_PY (/usr/bin/python3: the
# Python with torch), BENCH_OUT (file for the table,
# default bench_vs_torch.md), BENCH_LOG (a directory that keeps every run's output).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [STEPS]" >&2; exit 2; }
build=$(cd "$1" && pwd); steps=${2:-6}
[ "$steps" -ge 2 ] || { echo "$0: STEPS must be >= 2 (step 1 is the warm-up), got $steps" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd); py=${BENCH_PY:-/usr/bin/python3}; tb="$py $here/bench_torch.py"
models=${BENCH_MODELS:-gpt2 llama}; modes=${BENCH_MODES:-attn all full}
layouts=${BENCH_LAYOUTS:-1x1 1x2 l16 tp2 dp2}; torchs=${BENCH_TORCH-fp32 bf16}; rounds=${BENCH_ROUNDS:-1}
out=$(touch "${BENCH_OUT:-bench_vs_torch.md}" && cd "$(dirname "${BENCH_OUT:-bench_vs_torch.md}")" && pwd)/$(basename "${BENCH_OUT:-bench_vs_torch.md}")
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ -z "$torchs" ] || $py -c "import torch" 2> /dev/null ||
  { echo "$0: PyTorch missing for $py: scripts/install-deps.sh bench (or BENCH_TORCH= for lorampi alone)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
logs=${BENCH_LOG:-$work/logs}; mkdir -p "$logs"; logs=$(cd "$logs" && pwd); cd "$work"
awk 'BEGIN { for (i = 0; i < 20000; i++) printf "benchmark text line %d\n", i }' > t.txt
"$build/lorampi" tokenize --bytes --out d t.txt > /dev/null
mkdir -p llama && cp "$here/llama-3.2-1b.json" llama/config.json  # Llama-3.2-1B's shape

ini() {  # model mode B T steps -> the config on stdout (r, alpha as bench_torch.py's SHAPES)
  local model=$1 mode=$2
  if [ "$model" = gpt2 ]; then
    printf '[model]\nn_layer = 12\nn_head = 12\nn_embd = 768\nvocab_size = 50257\nn_ctx = 1024\n'
    printf '[adapter]\nr = 8\nalpha = 16\n'
    case $mode in attn) echo "targets = c_attn" ;; all) echo "targets = all" ;; full) echo "method = none" ;; esac
  else
    printf '[model]\npath = llama\nrandom_init = true\n[adapter]\nr = 16\nalpha = 32\n'
    case $mode in attn) echo "targets = q_proj, v_proj" ;; all) echo "targets = all-linear" ;; full) echo "method = none" ;; esac
  fi
  printf '[train]\nsteps = %s\nbatch_size = %s\nseq_len = %s\n[data]\ntrain = d_train.bin\n[log]\nevery = 1\n' "$5" "$3" "$4"
}

cpu_s() { awk '/^cpu / { printf "%.0f", $2 + $3 }' cpu.txt; }  # user + system s of the run (all ranks, init included)

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# One table row: run label ranks threads ms rss trainable total loss1; plus GFLOP/s and of-sgemm.
row() {
  local gf pct
  gf=$(awk -v f="$flop" -v ms="$5" 'BEGIN { printf "%.1f", f / (ms / 1e3) / 1e9 }')
  pct=—
  [ "$1" = "lorampi" ] || [ "$1" = "torch fp32" ] && pct=$(awk -v g="$gf" -v s="${sg[$(($3 * $4))]:-0}" 'BEGIN { if (s > 0) printf "%.0f%%", 100 * g / s; else printf "?" }')
  echo "| $model | $mode | $1 | $2 | $(awk -v n="$ntok" -v ms="$5" 'BEGIN { printf "%.1f", n / (ms / 1e3) }') | $5 | $gf | $pct | $6 | $7 / $8 | $9 | ${10} |" | tee -a "$out"
}

lmp() {  # layout -> one row; keeps the output in $logs
  local np=1 th=1 tp=1 log="$logs/$model-$mode-$1-r$r.log" o ms rss tr tot l1 lab
  local dt=f32 sp=false
  case $1 in 1x1) lab="1 × 1" ;; 1x2) th=2 lab="1 × 2" ;; l16) th=2 dt=bf16 lab="1 × 2" ;;
    tp2) np=2 tp=2 lab="tp 2 × 1" ;; sp2) np=2 tp=2 sp=true lab="tp 2 × 1, SP" ;; dp2) np=2 lab="dp 2 × 1" ;; esac
  LORAMPI_PROFILE=1 OMP_NUM_THREADS=$th /usr/bin/time -f "cpu %U %S" -o cpu.txt mpirun --oversubscribe --bind-to none -n $np "$build/lorampi" train "$model-$mode.ini" \
    --set parallel.tp=$tp --set parallel.sequence_parallel=$sp --set model.dtype=$dt > "$log" 2>&1 || { echo "lorampi $model $mode $1 failed:" >&2; tail -5 "$log" >&2; return 0; }
  o=$(cat "$log")
  ms=$(echo "$o" | sed -nE 's/^step +([0-9]+)\/[0-9]+ .*\| ([0-9]+) ms \|.*/\1 \2/p' | awk '$1 > 1 { print $2 }' | median)
  rss=$(echo "$o" | sed -nE 's/^peak RSS per rank: max ([0-9.]+) MB.*/\1/p')
  tr=$(echo "$o" | sed -nE 's/^training: [^,]*, ([0-9]+) trainable.*/\1/p')
  tot=$(echo "$o" | sed -nE 's/^model: .*: ([0-9.]+)M parameters/\1M/p')
  l1=$(echo "$o" | sed -nE 's/^step +1\/[0-9]+ \| loss ([0-9.]+).*/\1/p')
  row "lorampi$([ $dt = f32 ] || echo " $dt")" "$lab" "$th" "$np" "$ms" "$rss" "$tr" "$tot" "$l1" "$(cpu_s)"
}

pt() {  # fp32|bf16 -> one row (2 threads, as lorampi's 1 x 2)
  local log="$logs/$model-$mode-torch-$1-r$r.log" o flag=
  [ "$1" = bf16 ] && flag=--bf16
  OMP_NUM_THREADS=2 /usr/bin/time -f "cpu %U %S" -o cpu.txt $tb run "$model" "$mode" "$B" "$T" "$msteps" 2 $flag > "$log" 2>&1 ||
    { echo "torch $model $mode $1 failed:" >&2; tail -5 "$log" >&2; return 0; }
  o=$(grep '^torch ' "$log")
  set -- "$1" $o
  row "torch $1" "1 × $5" 2 1 "${7}" "${11}" "${15}" "$(awk -v t="${13}" 'BEGIN { printf "%.2fM", t / 1e6 }')" "${17}" "$(cpu_s)"
}

sgemm() {  # list threads -> GFLOP seconds (the step's GEMMs, best of 2 calls each)
  $tb gemms "$model" "$1" "$B" "$T" | OMP_NUM_THREADS=$2 "$build/tests/bench_sgemm" 1 2>> "$logs/$model-sgemm.log" |
    awk '{ print $5, $7 }'
}

{
  echo "# lorampi vs PyTorch $($py -c 'import torch; print(torch.__version__)' 2> /dev/null || echo '(no torch)')"
  echo
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE;" \
       "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
} | tee "$out"
prof_layouts=""
for model in $models; do
  if [ "$model" = gpt2 ]; then read -r B T <<< "${BENCH_GPT2_BT:-4 256}"; msteps=$steps
  else read -r B T <<< "${BENCH_LLAMA_BT:-2 128}"; msteps=${BENCH_LLAMA_STEPS:-$steps}; fi
  ntok=$((B * T))
  # sgemm of the step's GEMMs at 1 and 2 threads: forward + input gradients, and the weight
  # gradients full fine-tuning adds; rates per mode below.
  declare -A gfl=() gs=()
  for th in 1 2; do
    read -r gfl[l$th] gs[l$th] <<< "$(sgemm attn $th)"
    [[ " $modes " == *" full "* ]] && read -r gfl[w$th] gs[w$th] <<< "$(sgemm dw $th)"
  done
  {
    echo
    echo "## $model, B × T = $B × $T, $((msteps - 1)) timed steps (median), $rounds round(s)"
    echo
    for th in 1 2; do
      line="sgemm on the step's GEMMs, $th thread(s): forward + input gradients ${gfl[l$th]} GFLOP at $(awk -v f="${gfl[l$th]}" -v s="${gs[l$th]}" 'BEGIN { printf "%.1f", f / s }') GFLOP/s"
      [ -z "${gfl[w$th]:-}" ] || line="$line; with the weight gradients (+ ${gfl[w$th]} GFLOP) $(awk -v a="${gfl[l$th]}" -v b="${gfl[w$th]}" -v s="${gs[l$th]}" -v t="${gs[w$th]}" 'BEGIN { printf "%.1f", (a + b) / (s + t) }') GFLOP/s"
      echo "$line  "
    done
    echo
    echo "| model | mode | run | ranks × threads | tokens/s | ms/step | GFLOP/s | of sgemm | peak RSS/rank MB | trainable / total params | loss step 1 | CPU s/run |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
  } | tee -a "$out"
  for mode in $modes; do
    ini "$model" "$mode" "$B" "$T" "$msteps" > "$model-$mode.ini"
    if [ "$mode" = full ]; then
      need=$("$build/lorampi" plan "$model-$mode.ini" --ranks 1 2>&1 | sed -nE 's/^ +total +([0-9.]+) MB/\1/p' | head -1)
      have=$(awk '/^MemTotal/ { printf "%.0f", $2 * 1.024 / 1e3 }' /proc/meminfo)
      if [ -n "$need" ] && awk -v n="$need" -v h="$have" 'BEGIN { exit !(n > 0.9 * h) }'; then
        echo "| $model | full | skipped: lorampi plan needs $need MB per rank (weights, gradients, AdamW m and v) of this machine's $have MB; PyTorch needs at least as much |" | tee -a "$out"
        continue
      fi
    fi
    flop=$($tb flops "$model" "$mode" "$B" "$T")
    declare -A sg=()
    for th in 1 2; do
      if [ "$mode" = full ]; then
        sg[$th]=$(awk -v a="${gfl[l$th]}" -v b="${gfl[w$th]}" -v s="${gs[l$th]}" -v t="${gs[w$th]}" 'BEGIN { printf "%.1f", (a + b) / (s + t) }')
      else
        sg[$th]=$(awk -v f="${gfl[l$th]}" -v s="${gs[l$th]}" 'BEGIN { printf "%.1f", f / s }')
      fi
    done
    for r in $(seq "$rounds"); do
      # Alternate: lorampi 1 x 2, torch fp32, lorampi 1 x 1, torch bf16, lorampi bf16 1 x 2,
      # then the 2-rank layouts.
      for x in 1x2 fp32 1x1 bf16 l16 tp2 sp2 dp2; do
        case $x in
          fp32|bf16) [[ " $torchs " == *" $x "* ]] && pt $x ;;
          *) [[ " $layouts " == *" $x "* ]] && lmp $x ;;
        esac
        true
      done
    done
    prof_layouts="$prof_layouts $model-$mode"
  done
done

# Per-phase profile (LORAMPI_PROFILE=1, rank 0, wall ms per step over all steps, warm-up
# included) of each lorampi layout of the first round: where 2 threads or 2 ranks lose time.
{
  echo
  echo "## lorampi per-phase profile (rank 0, ms per step, all steps)"
  for c in $prof_layouts; do
    files=(); for l in $layouts; do [ -s "$logs/$c-$l-r1.log" ] && files+=("$logs/$c-$l-r1.log"); done
    [ ${#files[@]} -gt 0 ] || continue
    echo
    for f in "${files[@]}"; do  # "layout|steps" then "phase|seconds" lines per file
      l=${f%-r1.log}; echo "@${l##*-}|$(sed -nE 's/^step +[0-9]+\/([0-9]+) .*/\1/p' "$f" | head -1)"
      sed -nE 's/^ +rank 0 (.*[^ ]) +([0-9.]+) s +[0-9.]+% .*/\1|\2/p' "$f"
    done | awk -F'|' -v c="$c" '
      /^@/ { n++; lay[n] = substr($1, 2); st[n] = $2; next }
      { if (!($1 in seen)) { seen[$1] = 1; order[++k] = $1 }; v[n, $1] = $2 }
      END { printf "| %s phase |", c; for (j = 1; j <= n; j++) printf " %s |", lay[j]; printf "\n|---|"
            for (j = 1; j <= n; j++) printf "---|"; printf "\n"
            for (q = 1; q <= k; q++) { printf "| %s |", order[q]
              for (j = 1; j <= n; j++) printf " %.0f |", 1e3 * v[j, order[q]] / st[j]; printf "\n" } }'
  done
} | tee -a "$out"
echo
echo "table written to $out"
