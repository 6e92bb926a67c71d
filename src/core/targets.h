// targets.h: the names [adapter] targets accepts, as a bit set: the linear layers of a block
// an adapter can sit on. The model maps each to a site of its blocks (model/gpt2.c,
// model/llama.c); a name the model's family does not have is refused by the model.
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
    // The Llama family (model/llama.c), by PEFT's module names
    LMP_T_Q_PROJ = 1 << 7,
    LMP_T_K_PROJ = 1 << 8,
    LMP_T_V_PROJ = 1 << 9,
    LMP_T_O_PROJ = 1 << 10,
    LMP_T_GATE_PROJ = 1 << 11,
    LMP_T_UP_PROJ = 1 << 12,
    LMP_T_DOWN_PROJ = 1 << 13,
    // PEFT's "all-linear": every whole linear layer of the family's blocks (the model
    // resolves it from its targets table: GPT-2's four layers, the Llama family's seven)
    LMP_T_ALL_LINEAR = 1 << 14,
};
#define LMP_N_TARGETS 15
// Their names in [adapter] targets, bit i at index i.
#define LMP_TARGET_NAME_LIST "c_attn", "q", "k", "v", "attn.c_proj", "mlp.c_fc", "mlp.c_proj", \
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "all-linear"

#endif
