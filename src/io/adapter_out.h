// adapter_out.h: a model's adapters as files, whatever their method (`[train] save_adapter`,
// `lorampi export`). LoRA, DoRA or IA3 alone: a PEFT directory (io/peft.h, io/peft_methods.h). Bottleneck adapters
// (houlsby, parallel): lorampi's documented directory (README "Files"):
//   adapter_model.safetensors  transformer.h.<l>.<attn|mlp>.adapter.{down,up}.{weight,bias},
//                              down.weight (m, C), down.bias (m), up.weight (C, m), up.bias (C)
//                              (torch Linear's orientation), fp32;
//   adapter_config.json        {"format": "lorampi-bottleneck", "format_version": 1,
//                               "method", "size", "hidden_size", "act", "scale", "init_scale",
//                               "sublayers", "layers", "modules", "base_model_name_or_path",
//                               "forward"}.
// prefix: PEFT's prefix-tuning directory (io/peft_prefix.h).
// Methods combined (lora,houlsby / dora,parallel / lora,prefix ...): one subdirectory per
// method, DIR/<lora|dora|ia3> (PEFT), DIR/<bottleneck method>, DIR/prefix (PEFT). Tensors must
// be whole on this rank; call on one rank.
#ifndef LORAMPI_ADAPTER_OUT_H
#define LORAMPI_ADAPTER_OUT_H
#include "core/config.h"
#include "core/registry.h"

void lmp_adapters_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg);
// Only the bottleneck records of `method` in reg, as described above, into dir (created).
void lmp_bottleneck_save(const char *dir, const lmp_registry *reg, const lmp_config *cfg, const char *method);

#endif
