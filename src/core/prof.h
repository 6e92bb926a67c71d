// prof.h: per-phase wall-clock timers of a training step, on when LORAMPI_PROFILE=1.
// Phases nest (a linear layer's all-reduce inside its forward): each phase is charged its
// exclusive time, the time while it is the innermost open phase. Called from serial code
// only (never inside an OpenMP region). At exit every rank prints its table to stderr.
#ifndef LMP_PROF_H
#define LMP_PROF_H

typedef enum {
    LMP_PROF_OTHER,      // the step outside the phases below (memsets, hooks, glue)
    LMP_PROF_EMBED,      // embedding forward/backward
    LMP_PROF_NORM,       // LayerNorm / RMSNorm forward and backward
    LMP_PROF_GEMM,       // the linear layers' base products (and bias)
    LMP_PROF_ADAPTER,    // the adapters' products inside the linear layers and sublayer hooks
    LMP_PROF_ATTN,       // scaled dot-product attention (scores, softmax, values)
    LMP_PROF_ELEM,       // GELU / SwiGLU, residual adds, rotary, q/k norms
    LMP_PROF_HEAD,       // the LM head's products (logits, dx, dW)
    LMP_PROF_XENT,       // cross-entropy statistics and gradient
    LMP_PROF_COMM,       // MPI all-reduces (tp activations, gradients)
    LMP_PROF_OPTIM,      // AdamW update
    LMP_PROF_N
} lmp_prof_phase;

extern int lmp_prof_on;  // set from LORAMPI_PROFILE by lmp_prof_init

void lmp_prof_init(int rank);  // reads LORAMPI_PROFILE; registers the report at exit
void lmp_prof_push(lmp_prof_phase p);
void lmp_prof_pop(void);

// Times one statement as phase p.
#define LMP_PROF(p, stmt)                      \
    do {                                       \
        if (lmp_prof_on) lmp_prof_push(p);     \
        stmt;                                  \
        if (lmp_prof_on) lmp_prof_pop();       \
    } while (0)

#endif
