// optim.c: AdamW, schedules, clipping.
#include "core/optim.h"
#include "core/prof.h"

#include <math.h>

float lmp_lr_at(const lmp_optim_cfg *o, int step) {
    if (step < o->warmup_steps) return o->lr * (float)(step + 1) / (float)o->warmup_steps;
    if (o->schedule == 2) return o->lr;
    int span = o->total_steps - o->warmup_steps;
    float frac = span > 0 ? (float)(step - o->warmup_steps) / (float)span : 0.0f;
    if (frac > 1.0f) frac = 1.0f;
    float min_lr = o->lr * o->min_lr_ratio;
    float w = o->schedule == 0 ? 0.5f * (1.0f + cosf((float)M_PI * frac)) : 1.0f - frac;
    return min_lr + (o->lr - min_lr) * w;
}

void lmp_adamw_step(lmp_registry *r, const lmp_optim_cfg *o, float lr, int t, float grad_scale) {
    float b1 = o->beta1, b2 = o->beta2;
    float c1 = 1.0f - powf(b1, (float)t), c2 = 1.0f - powf(b2, (float)t);
    if (lmp_prof_on) lmp_prof_push(LMP_PROF_OPTIM);
    // One parallel region for all tensors (LoRA has dozens of small ones): each thread walks
    // the same list and takes its static share of each tensor, without a barrier between
    // tensors. Elementwise, so the result does not depend on the thread count.
#pragma omp parallel
    for (int k = 0; k < r->n; k++) {
        lmp_param *p = &r->p[k];
        if (!p->trainable) continue;
        float wd = p->decay ? o->weight_decay : 0.0f;
        float *w = p->data, *g = p->grad, *m = p->m, *v = p->v;
        size_t n = p->numel;
#pragma omp for schedule(static) nowait
        for (size_t i = 0; i < n; i++) {
            float gi = g[i] * grad_scale;
            m[i] = b1 * m[i] + (1.0f - b1) * gi;
            v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
            float mh = m[i] / c1, vh = v[i] / c2;
            w[i] -= lr * (mh / (sqrtf(vh) + o->eps) + wd * w[i]);
        }
    }
    if (lmp_prof_on) lmp_prof_pop();
}

float lmp_clip_scale(double norm, float max_norm) {
    if (max_norm <= 0.0f || !(norm > max_norm)) return 1.0f;
    return (float)(max_norm / norm);
}
