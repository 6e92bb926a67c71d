// optim.h: AdamW with decoupled weight decay, the learning-rate schedule and gradient
// clipping, over the trainable entries of the registry.
#ifndef LORAMPI_OPTIM_H
#define LORAMPI_OPTIM_H
#include "core/registry.h"

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
    int warmup_steps, total_steps;
    int schedule;        // lmp_schedule from config.h: 0 cosine, 1 linear, 2 constant
    float min_lr_ratio;
} lmp_optim_cfg;

// Learning rate of optimizer step `step` (0-based): linear warmup from lr/warmup to lr over
// warmup_steps, then cosine or linear decay to lr*min_lr_ratio at total_steps, or constant.
float lmp_lr_at(const lmp_optim_cfg *o, int step);

// One AdamW update of every trainable entry with bias correction for step t (1-based):
// m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
// w -= lr * (m_hat / (sqrt(v_hat) + eps) + wd * w)   (wd only where entry->decay).
// grad_scale multiplies every gradient first (clipping).
void lmp_adamw_step(lmp_registry *r, const lmp_optim_cfg *o, float lr, int t, float grad_scale);

// Clipping factor for a global norm: min(1, max_norm / norm); 1 when max_norm <= 0.
float lmp_clip_scale(double norm, float max_norm);

#endif
