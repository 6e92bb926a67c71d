// export.h: `lorampi export CKPT --out DIR`: the adapter of a checkpoint as a PEFT directory
// (adapter_config.json + adapter_model.safetensors, exactly what [train] save_adapter writes
// for the same weights), from a checkpoint of any layout. Reads only the adapter tensors and
// needs neither the base model nor the run's layout; rank 0 does the work.
#ifndef LORAMPI_EXPORT_H
#define LORAMPI_EXPORT_H

// Writes DIR (created; an existing non-empty DIR only with force). Every rank calls it; errors
// end every rank with one message naming the file. Returns 0.
int lmp_export(const char *ckpt, const char *dir, int force);

#endif
