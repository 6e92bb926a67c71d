#!/usr/bin/env bash
# `lorampi merge` and [train] save_model in LoRA runs, end to end through the CLI:
#  - the merged model's loss (eval --no-resume of the merged directory) equals base + adapter
#    (eval --resume CKPT) within 1e-5 relative: all targets trained on tp = 2, and q/v slices
#    trained on 1 rank;
#  - merge on 1, 2 and 4 ranks writes identical files; [train] save_model on tp = 2 in a LoRA
#    run writes the same file as `merge` of its final checkpoint, and so does full
#    fine-tuning's save_model on tp = 2 (the trained weights, no adapters);
#  - B = 0 (lora_B zeroed in the checkpoint) gives the base model bit for bit: every tensor,
#    names and order; with the transformers-written fixture the whole file is identical;
#  - --format llmc writes an llm.c .bin that loads back to the same loss, the same on 1 and 2
#    ranks; an llm.c input merges to llm.c, with B = 0 the same file;
#  - --dtype bf16 / f16: header dtypes, values the fp32 merge rounded to nearest even, bit for
#    bit, and the loss within 1% (derivation at the check);
#  - a non-empty --out without --force: one message naming the dir, every rank exits
#    non-zero, nothing written; bad --format / --dtype, llmc with bf16 refused.
set -u
bin=$1; src=$2; work=$3
source "$src/tests/shlib.sh"
py=/usr/bin/python3
check="$py $src/tests/merge_check.py"

alpha_data
{ tiny_model_ini; cat <<'INI'
[adapter]
method = none
[train]
steps = 30
batch_size = 8
seq_len = 32
lr = 3e-3
seed = 42
[data]
train = alpha_train.bin
val = alpha_val.bin
INI
} > base.ini
# The base: full fine-tuning from scratch, saved on tp = 2 (the path every save_model takes).
mpi 2 "$bin" train base.ini --set parallel.tp=2 --set train.save_model=base > base.log 2>&1 || { cat base.log; fail "base run"; }
[ -s base/model.safetensors ] && [ -s base/config.json ] && ok || fail "save_model (full fine-tuning, tp = 2) wrote no HF directory"
# Full fine-tuning (no adapters) from it: save_model = merge of the final checkpoint on 4 ranks.
mpi 2 "$bin" train base.ini --set model.path=base --set train.steps=4 --set checkpoint.dir=ckff --set checkpoint.every=4 \
  --set parallel.tp=2 --set train.save_model=ffsaved > ff.log 2>&1 || { cat ff.log; fail "full fine-tuning run"; }
mpi 4 "$bin" merge ckff/ckpt-00000004.h5 --out ffm > ffm.log 2>&1 || { cat ffm.log; fail "merge of a full fine-tuning checkpoint"; }
cmp ffsaved/model.safetensors ffm/model.safetensors && ok || fail "full fine-tuning: save_model differs from merge"

cat > lora.ini <<'INI'
[model]
path = base
[adapter]
method = lora
r = 4
alpha = 8
targets = all
[train]
steps = 12
batch_size = 8
seq_len = 32
lr = 1e-2
seed = 1
[data]
train = alpha_train.bin
val = alpha_val.bin
[checkpoint]
dir = ck
every = 6
INI
# "eval" prints one JSON line last; its loss.
loss() { tail -1 "$1" | sed -E 's/.*"loss": ?([-0-9.eE+]+).*/\1/'; }
close() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && d <= t * a) }'; }
ev() { local out=$1; shift; mpi 1 "$bin" eval lora.ini "$@" > "$out" 2>&1 || { cat "$out"; fail "eval $out"; }; }
# merged_ok NAME CKPT [SET...]: merge on 1, 2, 4 ranks, identical files, every rank up; loss of
# the merged model = base + adapter within 1e-5 relative.
merged_ok() {
  local name=$1 ck=$2; shift 2
  for np in 1 2 4; do
    mpi $np "$bin" merge "$ck" --out "${name}_$np" > "merge_${name}_$np.log" 2>&1 || { cat "merge_${name}_$np.log"; fail "$name: merge on $np ranks"; }
    grep -q "ranks 0-$((np-1)) of $np up" "merge_${name}_$np.log" && ok || fail "$name: merge on $np ranks: not every rank reported"
  done
  cmp "${name}_1/model.safetensors" "${name}_2/model.safetensors" && cmp "${name}_1/model.safetensors" "${name}_4/model.safetensors" \
    && ok || fail "$name: merge on 1, 2 and 4 ranks wrote different files"
  ev "ev_${name}_adapter.log" --resume "$ck" "$@"
  ev "ev_${name}_merged.log" --no-resume --set model.path="${name}_2" --set adapter.method=none
  local a b; a=$(loss "ev_${name}_adapter.log"); b=$(loss "ev_${name}_merged.log")
  echo "$name: base + adapter $a, merged $b"
  close "$a" "$b" 1e-5 && ok || fail "$name: merged loss $b vs base + adapter $a"
  $check differs base/model.safetensors "${name}_1/model.safetensors" h.0.attn.c_attn.weight > /dev/null 2>&1 \
    && ok || fail "$name: the merge left c_attn unchanged"
}

# (1), (3), (7): all targets on tp = 2, save_model = merge of the last checkpoint.
mpi 2 "$bin" train lora.ini --set parallel.tp=2 --set train.save_model=saved > lora.log 2>&1 || { cat lora.log; fail "LoRA run tp = 2"; }
merged_ok all ck/ckpt-00000012.h5
cmp saved/model.safetensors all_1/model.safetensors && cmp saved/config.json all_1/config.json \
  && ok || fail "save_model (LoRA, tp = 2) differs from merge of the final checkpoint"
# q and v slices of the fused c_attn, trained on 1 rank.
mpi 1 "$bin" train lora.ini --set adapter.targets=q,v --set checkpoint.dir=ckqv > qv.log 2>&1 || { cat qv.log; fail "LoRA run q,v"; }
merged_ok qv ckqv/ckpt-00000012.h5 --set adapter.targets=q,v

# (2) B = 0: zeroed in a copy of the checkpoint (h5py rewrites the chunk checksums), the
# merge is the base bit for bit, the whole file included (same names, order and header).
zero_b() { $py -c 'import h5py, sys
f = h5py.File(sys.argv[1], "r+"); n = [k for k in f["adapter"] if "lora_B" in f["adapter"][k]]
for k in n: f["adapter"][k]["lora_B"][...] = 0
assert n; f.close()' "$1"; }
cp ck/ckpt-00000006.h5 zero.h5 && zero_b zero.h5 || fail "zeroing lora_B"
mpi 2 "$bin" merge zero.h5 --out zero > zero.log 2>&1 || { cat zero.log; fail "merge B = 0"; }
$check same base/model.safetensors zero/model.safetensors > same.log 2>&1 && ok || { cat same.log; fail "B = 0: tensors differ from the base"; }
cmp base/model.safetensors zero/model.safetensors && ok || fail "B = 0: the file differs from the base's"
fx=$src/tests/fixtures/hf-tiny/gpt2
if [ -d "$fx/model" ]; then
  # The transformers-written GPT-2 ("transformer." names, sorted): merged with B = 0 on 4
  # ranks it is the same file; with a trained q/v adapter the loss of base + adapter.
  cat > fx.ini <<INI
[model]
path = $fx/model
[adapter]
method = lora
r = 4
alpha = 8
targets = q, v
[train]
steps = 3
batch_size = 2
seq_len = 32
lr = 1e-2
[data]
train = $fx/data.bin
val = $fx/data.bin
[checkpoint]
dir = fxck
every = 3
INI
  mpi 2 "$bin" train fx.ini --set parallel.tp=2 > fx.log 2>&1 || { cat fx.log; fail "fixture LoRA run"; }
  cp fxck/ckpt-00000003.h5 fxzero.h5 && zero_b fxzero.h5 || fail "zeroing lora_B (fixture)"
  mpi 4 "$bin" merge fxzero.h5 --out fxzero > fxzero.log 2>&1 || { cat fxzero.log; fail "merge fixture B = 0"; }
  cmp "$fx/model/model.safetensors" fxzero/model.safetensors && ok || fail "fixture, B = 0: file differs from transformers'"
  mpi 4 "$bin" merge fxck/ckpt-00000003.h5 --out fxm > fxm.log 2>&1 || { cat fxm.log; fail "merge fixture"; }
  mpi 1 "$bin" eval fx.ini --resume fxck/ckpt-00000003.h5 > fxa.log 2>&1 || fail "eval fixture + adapter"
  mpi 1 "$bin" eval fx.ini --no-resume --set model.path=fxm --set adapter.method=none > fxb.log 2>&1 || fail "eval fixture merged"
  echo "fixture: base + adapter $(loss fxa.log), merged $(loss fxb.log)"
  close "$(loss fxa.log)" "$(loss fxb.log)" 1e-5 && ok || fail "fixture: merged loss $(loss fxb.log) vs $(loss fxa.log)"
else
  echo "note: $fx absent, the transformers fixture checks are skipped"
fi

# (4) llm.c: loads back to the HF merge's loss; the same file on 1 and 2 ranks.
for np in 1 2; do
  mpi $np "$bin" merge ck/ckpt-00000012.h5 --out llmc_$np --format llmc > llmc_$np.log 2>&1 || { cat llmc_$np.log; fail "merge --format llmc on $np"; }
done
cmp llmc_1/model.bin llmc_2/model.bin && ok || fail "llm.c files differ between 1 and 2 ranks"
ev ev_llmc.log --no-resume --set model.path=llmc_2/model.bin --set adapter.method=none
close "$(loss ev_all_merged.log)" "$(loss ev_llmc.log)" 1e-5 && ok || fail "llm.c merged loss $(loss ev_llmc.log) vs $(loss ev_all_merged.log)"
# An llm.c input merges to llm.c by default; with B = 0 it is the input file byte for byte.
mpi 1 "$bin" train lora.ini --set model.path=llmc_1/model.bin --set checkpoint.dir=cklc --set train.steps=6 > lc.log 2>&1 || { cat lc.log; fail "LoRA run on the llm.c file"; }
cp cklc/ckpt-00000006.h5 lczero.h5 && zero_b lczero.h5 || fail "zeroing lora_B (llm.c)"
mpi 4 "$bin" merge lczero.h5 --out lczero > lczero.log 2>&1 || { cat lczero.log; fail "merge llm.c B = 0"; }
cmp llmc_1/model.bin lczero/model.bin && ok || fail "llm.c, B = 0: the file differs from the input"

# (5) bf16 / f16: the fp32 merge rounded to nearest even, bit for bit. Loss tolerance: each
# weight carries a relative rounding error of at most 2^-9 (bf16's 8-bit significand; f16:
# 2^-11); through the model's 2 blocks (4 rounded matrices on a path, plus the embeddings
# and the tied head) the logits move by about 6 * 2^-9 = 1.2% of their size at worst, far
# less on average (errors of independent weights cancel): 1% of the loss, measured here at
# about 0.03% (bf16) and 0.004% (f16).
for dt in bf16 f16; do
  DT=$(echo $dt | tr a-z A-Z)
  mpi 4 "$bin" merge ck/ckpt-00000012.h5 --out m_$dt --dtype $dt > m_$dt.log 2>&1 || { cat m_$dt.log; fail "merge --dtype $dt"; }
  $check rounded all_1/model.safetensors m_$dt/model.safetensors $DT > r_$dt.log 2>&1 && ok || { cat r_$dt.log; fail "$dt values"; }
  ev ev_$dt.log --no-resume --set model.path=m_$dt --set adapter.method=none
  echo "$dt: merged loss $(loss ev_$dt.log), fp32 $(loss ev_all_merged.log)"
  close "$(loss ev_all_merged.log)" "$(loss ev_$dt.log)" 1e-2 && ok || fail "$dt loss $(loss ev_$dt.log) vs $(loss ev_all_merged.log)"
done

# (6) Bad input: every rank exits non-zero (each rank's own status recorded), one message
# naming the problem, nothing written.
each_rank() {  # each_rank NAME PATTERN NP ARGS...: every rank non-zero, message matches
  local name=$1 pat=$2 np=$3; shift 3
  rm -f "rc_$name.txt"
  timeout 60 "${MPIEXEC:-mpiexec}" --oversubscribe -n "$np" bash -c '"$0" "$@"; echo "rank $OMPI_COMM_WORLD_RANK rc $?" >> "'"rc_$name.txt"'"' \
    "$bin" "$@" > "err_$name.log" 2>&1
  local nz; nz=$(grep -c "rc [1-9]" "rc_$name.txt" 2>/dev/null)
  [ "$nz" = "$np" ] && ok || { fail "$name: $nz of $np ranks exited non-zero"; cat "rc_$name.txt"; }
  grep -q -- "$pat" "err_$name.log" && ok || { fail "$name: message lacks '$pat'"; cat "err_$name.log"; }
}
mkdir -p full && echo keep > full/notes.txt
each_rank nonempty "full exists and is not empty" 2 merge ck/ckpt-00000012.h5 --out full
[ "$(ls full)" = "notes.txt" ] && [ "$(cat full/notes.txt)" = keep ] && ok || fail "non-empty --out: something was written"
[ "$(grep -c "lorampi: error" err_nonempty.log)" = 1 ] && ok || fail "non-empty --out: not one message"
mpi 2 "$bin" merge ck/ckpt-00000012.h5 --out full --force > force.log 2>&1 && cmp full/model.safetensors all_1/model.safetensors \
  && ok || fail "--force into a non-empty dir"
each_rank llmc_bf16 "fp32" 2 merge ck/ckpt-00000012.h5 --out l16 --format llmc --dtype bf16
[ ! -e l16/model.bin ] && ok || fail "llmc bf16 wrote a file"
each_rank missing "nope.h5" 2 merge nope.h5 --out nope
each_rank format "format xyz" 1 merge ck/ckpt-00000012.h5 --out x --format xyz
each_rank dtype "dtype f8" 1 merge ck/ckpt-00000012.h5 --out x --dtype f8
ls ./*.tmp */*.tmp > /dev/null 2>&1 && fail "a temporary file was left" || ok

finish
