// test_peft_read: the PEFT adapter_config.json parser and PEFT's module-matching rules
// (io/peft_read.h). Expected values are PEFT 0.21's documented behaviour, written out here:
//  - target_modules as a list: a module matches an entry it equals or that it ends with
//    after a "." (check_target_module_exists); layers_to_transform then keeps the modules
//    whose layer index (the number after a layers_pattern segment, or after any segment)
//    is listed, except a module named whole in the list;
//  - target_modules as a string: re.fullmatch on the module name, layers ignored;
//  - rank_pattern / alpha_pattern: the first key (file order) with
//    re.match(rf"(.*\.)?({key})$", module) (get_pattern_key);
//  - fields lorampi does not implement are refused by name when set, ignored when unset.
#include "testutil.h"
#include "io/peft_read.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lmp_peft_config pc;
static char err[2048];

static int parse(const char *json) {
    err[0] = 0;
    return lmp_peft_parse_config(json, strlen(json), "cfg.json", &pc, err, sizeof err);
}

static int sel(const char *json, const char *module) {
    if (parse(json)) { T_CHECK(0, "parse %s: %s", json, err); return -1; }
    return lmp_peft_targets(&pc, module, err, sizeof err);
}

#define BASE "\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 8, "

static void fixture(void) {
    const char *dir = LMP_SOURCE_DIR "/tests/fixtures/hf-tiny/gpt2/lora";
    T_CHECK(lmp_peft_read_config(dir, &pc, err, sizeof err) == 0, "fixture config: %s", err);
    T_CHECK(pc.r == 4 && pc.alpha == 8 && pc.dropout == 0 && !pc.rslora && pc.fan_in_fan_out == 1,
            "fixture r %d alpha %g rslora %d fifo %d", pc.r, pc.alpha, pc.rslora, pc.fan_in_fan_out);
    T_CHECK(!pc.target_regex && pc.n_targets == 3 && !strcmp(pc.targets[0], "c_proj") &&
            !strcmp(pc.targets[2], "c_attn") && pc.n_layers == 0 && pc.n_rank == 0, "fixture targets");
    T_CHECK(lmp_peft_read_config("/nonexistent", &pc, err, sizeof err) == -1 &&
            strstr(err, "/nonexistent/adapter_config.json"), "missing file named: %s", err);
}

static void list_form(void) {
    const char *j = "{" BASE "\"target_modules\": [\"c_proj\"]}";
    T_CHECK(sel(j, "transformer.h.0.attn.c_proj") == 1 && sel(j, "transformer.h.3.mlp.c_proj") == 1,
            "c_proj matches attention and MLP projections");
    T_CHECK(sel(j, "transformer.h.0.attn.c_projx") == 0 && sel(j, "transformer.h.0.attnc_proj") == 0,
            "suffix only after a dot");
    j = "{" BASE "\"target_modules\": [\"mlp.c_proj\"]}";
    T_CHECK(sel(j, "transformer.h.0.mlp.c_proj") == 1 && sel(j, "transformer.h.0.attn.c_proj") == 0, "mlp.c_proj");
    j = "{" BASE "\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [1, 3]}";
    T_CHECK(sel(j, "transformer.h.1.attn.c_attn") == 1 && sel(j, "transformer.h.3.attn.c_attn") == 1 &&
            sel(j, "transformer.h.0.attn.c_attn") == 0 && sel(j, "transformer.h.11.attn.c_attn") == 0,
            "layers_to_transform list");
    j = "{" BASE "\"target_modules\": [\"c_attn\"], \"layers_to_transform\": 2, \"layers_pattern\": \"h\"}";
    T_CHECK(sel(j, "transformer.h.2.attn.c_attn") == 1 && sel(j, "transformer.h.1.attn.c_attn") == 0,
            "layers_to_transform int with layers_pattern");
    j = "{" BASE "\"target_modules\": [\"c_attn\"], \"layers_to_transform\": [0], \"layers_pattern\": [\"layers\"]}";
    T_CHECK(sel(j, "transformer.h.0.attn.c_attn") == 0, "a layers_pattern that is not in the name selects nothing");
    j = "{" BASE "\"target_modules\": [\"transformer.h.0.attn.c_attn\"], \"layers_to_transform\": [1]}";
    T_CHECK(sel(j, "transformer.h.0.attn.c_attn") == 1, "a module named whole ignores layers_to_transform");
    T_CHECK(lmp_peft_layer_index(&pc, "transformer.h.12.mlp.c_fc") == 12, "layer index 12");
}

static void regex_form(void) {
    const char *j = "{" BASE "\"target_modules\": \".*\\\\.(c_attn|c_fc)\", \"layers_to_transform\": [3]}";
    T_CHECK(sel(j, "transformer.h.0.attn.c_attn") == 1 && sel(j, "transformer.h.2.mlp.c_fc") == 1 &&
            sel(j, "transformer.h.0.attn.c_proj") == 0, "regex alternation, layers ignored");
    j = "{" BASE "\"target_modules\": \"c_attn\"}";
    T_CHECK(sel(j, "transformer.h.0.attn.c_attn") == 0, "a regex must match the whole name");
    j = "{" BASE "\"target_modules\": \"transformer\\\\.h\\\\.[01]\\\\.attn\\\\.c_attn\"}";
    T_CHECK(sel(j, "transformer.h.1.attn.c_attn") == 1 && sel(j, "transformer.h.2.attn.c_attn") == 0 &&
            sel(j, "transformer.h.1.attn.c_attnX") == 0, "regex with classes, anchored at the end");
    T_CHECK(lmp_regex_fullmatch("a)|(b", "b", err, sizeof err) == -1 && strstr(err, "a)|(b"),
            "unbalanced regex refused: %s", err);
    T_CHECK(lmp_regex_fullmatch("(a+)+$", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", err, sizeof err) <= 0,
            "catastrophic backtracking ends");
}

static void patterns(void) {
    T_CHECK(parse("{" BASE "\"target_modules\": [\"c_attn\"], \"rank_pattern\": {\"h.1.mlp.c_fc\": 2, "
                  "\"c_attn\": 8, \"attn.c_attn\": 6, \"h\\\\.[0-1]\\\\.attn\\\\.c_proj\": 3}, "
                  "\"alpha_pattern\": {\"tn.c_attn\": 5}}") == 0, "patterns parse: %s", err);
    const lmp_peft_pattern *rp = pc.rank_pattern;
    int n = pc.n_rank;
    T_CHECK(n == 4 && rp[0].value == 2 && !strcmp(rp[1].key, "c_attn"), "file order kept");
    T_CHECK(lmp_peft_pattern_find(rp, n, "transformer.h.1.mlp.c_fc", err, sizeof err) == 0, "full suffix");
    T_CHECK(lmp_peft_pattern_find(rp, n, "transformer.h.11.mlp.c_fc", err, sizeof err) == -1, "h.1 is not h.11");
    T_CHECK(lmp_peft_pattern_find(rp, n, "transformer.h.0.attn.c_attn", err, sizeof err) == 1, "first match wins");
    T_CHECK(lmp_peft_pattern_find(rp, n, "transformer.h.1.attn.c_proj", err, sizeof err) == 3 &&
            lmp_peft_pattern_find(rp, n, "transformer.h.2.attn.c_proj", err, sizeof err) == -1, "regex key");
    T_CHECK(lmp_peft_pattern_find(pc.alpha_pattern, pc.n_alpha, "transformer.h.0.attn.c_attn", err, sizeof err) == -1,
            "a key must start after a dot");
    T_CHECK(lmp_peft_pattern_find(rp, n, "c_attn", err, sizeof err) == 1, "a key may be the whole name");
}

// parse(json) fails with every word in w (NULL-terminated) in the message.
static void refused(const char *json, const char *w1, const char *w2) {
    int rc = parse(json);
    T_CHECK(rc == -1 && strstr(err, "cfg.json") && strstr(err, w1) && (!w2 || strstr(err, w2)),
            "refused %s: '%s'", json, err);
}

static void fields(void) {
    const char *T = "\"target_modules\": [\"c_attn\"]";
    char j[1024];
#define J(extra) (snprintf(j, sizeof j, "{" BASE "%s, %s}", T, extra), j)
    refused(J("\"feedforward_modules\": [\"c_attn\"]"), "feedforward_modules", "IA3");
    refused(J("\"modules_to_save\": [\"lm_head\"]"), "modules_to_save", NULL);
    refused(J("\"lora_bias\": true"), "lora_bias", NULL);
    refused(J("\"layer_replication\": [[0, 2]]"), "layer_replication", NULL);
    refused(J("\"trainable_token_indices\": [1, 2]"), "trainable_token_indices", NULL);
    refused(J("\"exclude_modules\": \"lm_head\""), "exclude_modules", NULL);
    refused(J("\"bias\": \"all\""), "bias", "none");
    refused(J("\"init_lora_weights\": \"pissa\""), "init_lora_weights", "base weights");
    refused(J("\"something_new\": 3"), "something_new", "unknown field");
    refused(J("\"layers_to_transform\": \"0\""), "layers_to_transform", NULL);
    refused(J("\"rank_pattern\": {\"c_attn\": 0}"), "rank_pattern", "c_attn");
    refused(J("\"lora_alpha\": \"8\""), "lora_alpha", NULL);
    refused("{\"peft_type\": \"LORA\", \"r\": 2.5, \"target_modules\": [\"c_attn\"]}", "\"r\"", "integer");
    refused(J("\"r\": 2"), "not valid JSON", "duplicate");
    refused("{\"peft_type\": \"ADALORA\", \"target_modules\": [\"c_attn\"]}", "peft_type", "IA3");
    // IA3: feedforward_modules within target_modules; LoRA's fields refused.
    refused("{\"peft_type\": \"IA3\", \"target_modules\": [\"c_attn\"], \"feedforward_modules\": [\"c_fc\"]}",
            "feedforward_modules", "subset");
    refused("{\"peft_type\": \"IA3\", \"target_modules\": [\"c_attn\"], \"lora_alpha\": 8}", "lora_alpha", "IA3");
    refused("{\"peft_type\": \"IA3\", \"target_modules\": [\"c_attn\"], \"feedforward_modules\": 3}",
            "feedforward_modules", NULL);
    T_CHECK(parse("{\"peft_type\": \"IA3\", \"target_modules\": [\"c_attn\", \"mlp.c_proj\"], "
                  "\"feedforward_modules\": [\"mlp.c_proj\"], \"init_ia3_weights\": true, \"fan_in_fan_out\": true}") == 0 &&
            pc.ia3 && pc.n_ff == 1 && lmp_peft_feedforward(&pc, "transformer.h.0.mlp.c_proj", err, sizeof err) == 1 &&
            lmp_peft_feedforward(&pc, "transformer.h.0.attn.c_attn", err, sizeof err) == 0, "IA3 config: %s", err);
    T_CHECK(parse(J("\"use_dora\": true")) == 0 && pc.use_dora == 1 && !pc.ia3, "use_dora read: %s", err);
    refused("{" BASE "\"bias\": \"none\"}", "target_modules", "absent");
    refused("{" BASE "\"target_modules\": [\"c_attn\", 3]}", "target_modules", NULL);
    refused("[1, 2]", "object", NULL);
    refused("{\"peft_type\": ", "cfg.json:1", "not valid JSON");
    // Unset values of any field, and PEFT's metadata, are accepted.
    T_CHECK(parse(J("\"use_dora\": false, \"modules_to_save\": null, \"layer_replication\": [], "
                    "\"loftq_config\": {}, \"something_new\": null, \"task_type\": \"CAUSAL_LM\", "
                    "\"megatron_core\": \"megatron.core\", \"qalora_group_size\": 16, \"lora_dropout\": 0.1, "
                    "\"use_rslora\": true, \"init_lora_weights\": \"gaussian\", \"fan_in_fan_out\": false")) == 0,
            "unset fields and metadata accepted: %s", err);
    T_CHECK(pc.rslora == 1 && pc.dropout == 0.1 && pc.fan_in_fan_out == 0, "rslora, dropout, fan_in_fan_out read");
    T_CHECK(parse("{\"peft_type\": \"LORA\", \"target_modules\": [\"c_attn\"]}") == 0 && pc.r == 8 &&
            pc.alpha == 8 && pc.fan_in_fan_out == -1, "PEFT's defaults r = 8, lora_alpha = 8");
#undef J
}

int main(void) {
    fixture();
    list_form();
    regex_form();
    patterns();
    fields();
    return t_finish();
}
