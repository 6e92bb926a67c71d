// bottleneck.h: bottleneck adapters, a small MLP C -> m -> C on the hidden states of a block,
// whole on every tp rank (so replicated, with tp-identical gradients: LMP_GRAD_TP_SAME).
//  - houlsby (Houlsby et al., 2019; LMP_HOOK_SUBLAYER): in series after a sublayer's output
//    projection, before the residual add: h <- h + W_up f(W_down h + b_down) + b_up.
//    Init as adapter-bert: both weights from a normal of std init_scale truncated at 2 std
//    (TF's truncated_normal: draws beyond are redrawn), biases 0: near identity, not exact.
//  - parallel (He et al., 2022; LMP_HOOK_BESIDE): a branch beside a sublayer fed by its input
//    x (the sublayer's norm output): h <- h + s (W_up f(W_down x + b_down) + b_up).
//    Init as LoRA / He et al.'s "lora" option: W_down Kaiming-uniform (a = sqrt(5): bound
//    1/sqrt(C)), W_up and both biases 0: exactly neutral (the logits equal the base model's
//    bit for bit), while W_down's gradient is non-zero from the first step.
// f is GELU (tanh approximation, as adapter-bert's and GPT-2's) or ReLU. Tensors, in record
// order, named under the record "h.<l>.<attn|mlp>.adapter": down.weight (m, C), down.bias
// (m), up.weight (C, m), up.bias (C): torch Linear's orientation.
#ifndef LORAMPI_BOTTLENECK_H
#define LORAMPI_BOTTLENECK_H
#include "adapters/adapter.h"

extern const lmp_adapter_method lmp_houlsby_method, lmp_parallel_method;

// One bottleneck's tensors and shape (exposed for tests: forward/backward on raw buffers).
typedef struct {
    lmp_adapter base;
    lmp_param *Wd, *bd, *Wu, *bu;
    int C, m, relu, series;
    float s;                // output scale: 1 (houlsby) or s (parallel)
    float init_scale;
} lmp_bottleneck;

// h (N,C) += s (f(x Wd^T + bd) Wu^T + bu); u (N,m) keeps the pre-activation, a (N,m) scratch.
void lmp_bottleneck_forward(const lmp_bottleneck *b, float *h, const float *x, float *u, float *a,
                            int N);
// From dh (N,C) = d/d(output): accumulates the four gradients and dx (N,C) += d/dx through
// the bottleneck only (dx may be dh itself: the series adapter's identity path). a, du (N,m)
// scratch; u from forward.
void lmp_bottleneck_backward(const lmp_bottleneck *b, float *dx, const float *dh, const float *x,
                             const float *u, float *a, float *du, int N);

#endif
