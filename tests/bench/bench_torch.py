#!/usr/bin/python3
"""PyTorch side of tests/bench/bench_vs_torch.sh: one training step of the same model, the
same adapters and the same loss as lorampi's, timed; and the step's FLOP count and GEMM list
for both frameworks.

Models (random weights, shapes only): gpt2 = GPT-2 124M (12 layers, 768 wide, 12 heads, vocab
50257, learned positions, tied head, Conv1D weights stored (in, out), tanh GELU); llama =
Llama-3.2-1B (16 layers, hidden 2048, 32 heads over 8 KV heads of 64, SwiGLU 8192, vocab
128256, RMSNorm, rotary positions, untied head, nn.Linear weights (out, in)).

Modes: attn = LoRA on c_attn (GPT-2; the whole 768 -> 2304 Conv1D, as lorampi's target
`c_attn`) or on q_proj and v_proj (Llama); all = LoRA on every linear layer of the blocks
(GPT-2: c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; Llama: q, k, v, o, gate, up, down; not the
head, as PEFT's all-linear); full = every parameter trained (embeddings and norms included).
The LoRA layer is loralib's: frozen base weight and bias, lora_A (r, in) Kaiming-uniform,
lora_B (out, r) zero, y = base(x) + (x A^T B^T) * alpha / r; requires_grad only on the
adapters; AdamW (weight decay 0.01) over the trainable parameters, gradients clipped to norm
1.0 as lorampi's default; loss: mean cross-entropy over the vocabulary, logits in fp32.

Usage:
  bench_torch.py run MODEL MODE B T STEPS THREADS [--bf16]   one line of results
  bench_torch.py flops MODEL MODE B T                         FLOPs of one step
  bench_torch.py gemms MODEL MODE B T                         "M N K TA TB COUNT" lines for bench_sgemm
  bench_torch.py gemms MODEL dw B T                           the weight-gradient GEMMs alone
"""
import math
import resource
import statistics
import sys
import time

SHAPES = {
    "gpt2": dict(L=12, d=768, heads=12, kv=12, hd=64, ff=3072, V=50257, r=8, alpha=16),
    "llama": dict(L=16, d=2048, heads=32, kv=8, hd=64, ff=8192, V=128256, r=16, alpha=32),
}


def linears(model):
    """The linear layers of one block: (name, in, out, adapted in mode attn)."""
    s = SHAPES[model]
    d, q, kv, ff = s["d"], s["heads"] * s["hd"], s["kv"] * s["hd"], s["ff"]
    if model == "gpt2":
        return [("c_attn", d, 3 * d, True), ("attn.c_proj", d, d, False),
                ("mlp.c_fc", d, ff, False), ("mlp.c_proj", ff, d, False)]
    return [("q_proj", d, q, True), ("k_proj", d, kv, False), ("v_proj", d, kv, True),
            ("o_proj", q, d, False), ("gate_proj", d, ff, False), ("up_proj", d, ff, False),
            ("down_proj", ff, d, False)]


def adapted(model, mode):
    return [(n, i, o) for n, i, o, a in linears(model) if mode == "all" or (mode == "attn" and a)]


def head_chunk(V, N):
    """lorampi's LM-head row chunk (src/model/embed.c, logit_chunk) on one rank."""
    small, big = (1 << 22) // V, (1 << 24) // V
    return min(N, max(min(big, 256), small, 1))


def flops(model, mode, B, T):
    """FLOPs of one training step (multiply-add = 2), the formula stated in the README:
    linear layers and head 2*N*P forward + 2*N*P input gradient (+ 2*N*P weight gradient when
    full), attention 2*B*T^2*(heads*hd) per product with the causal half, 2 products forward
    and 4 backward, LoRA 6*N*r*(in+out) per adapted layer (forward, dA, dB, dx)."""
    s = SHAPES[model]
    N = B * T
    P = s["L"] * sum(i * o for _, i, o, _ in linears(model)) + s["V"] * s["d"]
    f = (6 if mode == "full" else 4) * N * P
    f += s["L"] * 6 * B * T * T * s["heads"] * s["hd"]
    if mode != "full":
        f += s["L"] * sum(6 * N * s["r"] * (i + o) for _, i, o in adapted(model, mode))
    return f


def gemms(model, mode, B, T, only_dw=False):
    """The step's base-weight GEMMs as lorampi calls them (row-major, src/model/kernels*.c,
    embed.c): GPT-2 W (in, out): forward NN, dx NT, dW TN; Llama W (out, in): forward NT, dx
    NN, dW TN; the head E (V, d) in row chunks: logits NT, dx NN, dE TN. only_dw: the weight
    gradients alone (what full fine-tuning adds)."""
    s = SHAPES[model]
    N, L, V, d = B * T, s["L"], s["V"], s["d"]
    out = []
    for _, i, o, _ in linears(model):
        if model == "gpt2":
            out += [(N, o, i, "N", "N", L), (N, i, o, "N", "T", L)]
            if mode == "full":
                out.append((i, o, N, "T", "N", L))
        else:
            out += [(N, o, i, "N", "T", L), (N, i, o, "N", "N", L)]
            if mode == "full":
                out.append((o, i, N, "T", "N", L))
    c = head_chunk(V, N)
    for rows, n in ((c, N // c), (N % c, 1)):
        if rows == 0 or n == 0:
            continue
        out += [(rows, V, d, "N", "T", n), (rows, d, V, "N", "N", n)]
        if mode == "full":
            out.append((V, d, rows, "T", "N", n))
    return [g for g in out if g[3] == "T"] if only_dw else out


def build(model, mode, torch, nn, F):
    s = SHAPES[model]
    full = mode == "full"
    lora = set(n for n, _, _ in adapted(model, mode)) if not full else set()
    scaling = s["alpha"] / s["r"]

    class LoRALinear(nn.Module):
        """loralib's Linear/Conv1D: frozen W (and bias), trainable lora_A, lora_B."""

        def __init__(self, nin, nout, name, bias, conv1d):
            super().__init__()
            shape = (nin, nout) if conv1d else (nout, nin)
            self.conv1d = conv1d
            self.weight = nn.Parameter(torch.randn(shape) * 0.02, requires_grad=full)
            self.bias = nn.Parameter(torch.zeros(nout), requires_grad=full) if bias else None
            self.r = s["r"] if name in lora else 0
            if self.r:
                self.lora_A = nn.Parameter(torch.empty(self.r, nin))
                self.lora_B = nn.Parameter(torch.zeros(nout, self.r))
                nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

        def forward(self, x):
            if self.conv1d:  # transformers' Conv1D: x @ W + b, W (in, out)
                y = x @ self.weight if self.bias is None else torch.addmm(self.bias, x, self.weight)
            else:
                y = F.linear(x, self.weight, self.bias)
            if self.r:
                y = y + (x @ self.lora_A.t() @ self.lora_B.t()) * scaling
            return y

    def norm(dim):
        p = nn.Parameter(torch.ones(dim), requires_grad=full)
        b = nn.Parameter(torch.zeros(dim), requires_grad=full) if model == "gpt2" else None
        return p, b

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.ModuleDict({n.replace(".", "_"): LoRALinear(i, o, n, model == "gpt2", model == "gpt2")
                                      for n, i, o, _ in linears(model)})
            self.n1w, self.n1b = norm(s["d"])
            self.n2w, self.n2b = norm(s["d"])

        def nrm(self, x, w, b):
            if model == "gpt2":
                return F.layer_norm(x, (s["d"],), w, b, 1e-5)
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w

        def attn(self, x, B, T, rope):
            H, KV, hd = s["heads"], s["kv"], s["hd"]
            if model == "gpt2":
                q, k, v = self.lin["c_attn"](x).split(s["d"], dim=-1)
            else:
                q, k, v = self.lin["q_proj"](x), self.lin["k_proj"](x), self.lin["v_proj"](x)
            q = q.view(B, T, H, hd).transpose(1, 2)
            k = k.view(B, T, KV, hd).transpose(1, 2)
            v = v.view(B, T, KV, hd).transpose(1, 2)
            if rope is not None:
                cos, sin = rope
                q, k = q * cos + rot(q) * sin, k * cos + rot(k) * sin
                k = k.repeat_interleave(H // KV, dim=1)  # transformers' repeat_kv
                v = v.repeat_interleave(H // KV, dim=1)
            a = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
            a = a.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
            y = (F.softmax(a.float(), dim=-1).to(v.dtype) @ v).transpose(1, 2).reshape(B * T, H * hd)
            return self.lin["attn_c_proj" if model == "gpt2" else "o_proj"](y)

        def mlp(self, x):
            if model == "gpt2":
                return self.lin["mlp_c_proj"](F.gelu(self.lin["mlp_c_fc"](x), approximate="tanh"))
            return self.lin["down_proj"](F.silu(self.lin["gate_proj"](x)) * self.lin["up_proj"](x))

        def forward(self, x, B, T, rope):
            x = x + self.attn(self.nrm(x, self.n1w, self.n1b), B, T, rope)
            return x + self.mlp(self.nrm(x, self.n2w, self.n2b))

    def rot(x):  # transformers' rotate_half
        h = x.shape[-1] // 2
        return torch.cat((-x[..., h:], x[..., :h]), dim=-1)

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Parameter(torch.randn(s["V"], s["d"]) * 0.02, requires_grad=full)
            if model == "gpt2":
                self.wpe = nn.Parameter(torch.randn(1024, s["d"]) * 0.01, requires_grad=full)
            else:
                self.head = nn.Parameter(torch.randn(s["V"], s["d"]) * 0.02, requires_grad=full)
            self.blocks = nn.ModuleList(Block() for _ in range(s["L"]))
            self.nfw, self.nfb = norm(s["d"])

        def forward(self, tok, tgt):
            B, T = tok.shape
            x = self.wte[tok.reshape(-1)]  # (B*T, d)
            rope = None
            if model == "gpt2":
                x = x + self.wpe[:T].repeat(B, 1)
            else:  # rotary tables (the llama3 frequency scaling changes the values, not the work)
                inv = 1.0 / (500000.0 ** (torch.arange(0, s["hd"], 2).float() / s["hd"]))
                ang = torch.outer(torch.arange(T).float(), inv)
                ang = torch.cat((ang, ang), dim=-1)
                rope = (ang.cos(), ang.sin())
            for b in self.blocks:
                x = b(x, B, T, rope)
            x = self.blocks[0].nrm(x, self.nfw, self.nfb)
            logits = x @ (self.wte if model == "gpt2" else self.head).t()
            return F.cross_entropy(logits.float(), tgt.reshape(-1))

    return Model()


def run(model, mode, B, T, steps, threads, bf16):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(1234)
    m = build(model, mode, torch, nn, F)
    params = [p for p in m.parameters() if p.requires_grad]
    total = sum(p.numel() for p in m.parameters())
    trainable = sum(p.numel() for p in params)
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)
    V = SHAPES[model]["V"]
    times, losses = [], []
    for step in range(steps):
        g = torch.Generator().manual_seed(step)
        tok = torch.randint(0, V, (B, T), generator=g)
        tgt = torch.randint(0, V, (B, T), generator=g)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = m(tok, tgt)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
    med = statistics.median(times[1:]) if steps > 1 else times[0]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} ms {med * 1e3:.0f} "
          f"tokps {B * T / med:.1f} rss_mb {rss:.1f} total {total} trainable {trainable} "
          f"loss {losses[0]:.4f} {losses[-1]:.4f} steps_ms {' '.join(f'{t * 1e3:.0f}' for t in times)}")


def main(a):
    modes = ("attn", "all", "full", "dw") if a[:1] == ["gemms"] else ("attn", "all", "full")
    if len(a) < 5 or a[0] not in ("run", "flops", "gemms") or a[1] not in SHAPES or a[2] not in modes:
        sys.exit(__doc__)
    model, mode, B, T = a[1], a[2], int(a[3]), int(a[4])
    if a[0] == "flops":
        print(flops(model, mode, B, T))
    elif a[0] == "gemms":
        for g in gemms(model, "full" if mode == "dw" else mode, B, T, mode == "dw"):
            print(*g)
    else:
        run(model, mode, B, T, int(a[5]), int(a[6]), "--bf16" in a[7:])


if __name__ == "__main__":
    main(sys.argv[1:])
