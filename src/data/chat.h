// chat.h: conversations ({"messages": [{"role", "content"}, ...]}) rendered as the model's
// own chat template does, written out in C (no Jinja engine), equal token for token to
// Hugging Face transformers' apply_chat_template (add_generation_prompt false) for:
//  - llama3: BOS, then per message "<|start_header_id|>ROLE<|end_header_id|>\n\n" + content
//    (whitespace trimmed) + "<|eot_id|>", and the template's closing assistant header;
//  - chatml (Qwen): a leading system message, then per message "<|im_start|>ROLE\n" + content
//    + "<|im_end|>\n" (content as is); with a tokenizer that has <think> (Qwen3), an
//    assistant turn after the last user turn gets a think block: "<think>\n" + its reasoning
//    (text before </think> in the content) + "\n</think>\n\n", empty when there is none.
// Targets (loss mask 1): each assistant turn's content and its end token (<|eot_id|>,
// <|im_end|>), and a think block only when it holds reasoning; headers, the empty think block
// and the other roles' turns are not targets.
#ifndef LORAMPI_CHAT_H
#define LORAMPI_CHAT_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include "data/bpe.h"

typedef enum { LMP_CHAT_AUTO = 0, LMP_CHAT_LLAMA3, LMP_CHAT_CHATML } lmp_chat_format;

// A rendered conversation: its text, cut into segments that are targets or not.
typedef struct {
    char *text;
    size_t len, cap;
    size_t *end;       // end of each segment in text
    uint8_t *target;   // whether each segment is a target
    size_t n, seg_cap;
} lmp_chat_text;

// The format: want, or with LMP_CHAT_AUTO the tokenizer's (llama3 when it has
// <|start_header_id|>, chatml when it has <|im_start|>); dies naming `what` when neither.
lmp_chat_format lmp_chat_format_of(const lmp_bpe *b, lmp_chat_format want, const char *what);
// Parses "auto", "llama3" or "chatml"; -1 for anything else.
int lmp_chat_format_parse(const char *s);
// Renders messages (think: the tokenizer has <think>, Qwen3) into out (reset first). Returns
// NULL, or what is wrong with the messages (a static string naming the field).
const char *lmp_chat_render(lmp_chat_format f, int think, json_t *messages, lmp_chat_text *out,
                            size_t *bad_index);
// Encodes a rendered conversation: appends its ids (those of the whole text, as the
// template's) to ids and one mask byte per id to mask (reallocated as ids grows: *mask_cap
// tracks its size): 1 for a token that starts inside a target segment. Returns the count
// of invalid UTF-8 sequences replaced.
size_t lmp_chat_encode(lmp_bpe *b, const lmp_chat_text *t, lmp_ids *ids, uint8_t **mask, size_t *mask_cap);
void lmp_chat_text_free(lmp_chat_text *t);

#endif
