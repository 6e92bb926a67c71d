// targets.h: the names [adapter] targets accepts, as a bit set: the linear layers of a block
// an adapter can sit on. The model maps each to a site of its blocks (model/gpt2.c).
#ifndef LORAMPI_TARGETS_H
#define LORAMPI_TARGETS_H

enum {
    LMP_T_C_ATTN = 1 << 0,     // the fused qkv projection as a whole
    LMP_T_Q = 1 << 1,          // the q columns of c_attn (loralib MergedLinear style)
    LMP_T_K = 1 << 2,
    LMP_T_V = 1 << 3,
    LMP_T_ATTN_PROJ = 1 << 4,  // attn.c_proj
    LMP_T_MLP_FC = 1 << 5,     // mlp.c_fc
    LMP_T_MLP_PROJ = 1 << 6,   // mlp.c_proj
};
#define LMP_N_TARGETS 7

#endif
