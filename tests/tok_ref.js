// Reference ids for tests/test_tokenizer_json.c from @lenml/tokenizers (a JavaScript port of
// Hugging Face's tokenizers, from transformers.js) on a tokenizer.json + tokenizer_config.json.
// Usage: node tok_ref.js TOKENIZERS_PACKAGE_DIR MODEL_DIR OUT.json
// OUT.json: [{"hex", "text_hex", "ids"}, ...] as tests/bpe_ref.js writes, for the strings of
// tests/ref_corpus.js plus special-token text (Llama 3's and ChatML's markers, whole, cut,
// nested and inside words), encoded without the post-processor (add_special_tokens false).
'use strict';
const fs = require('fs');
const path = require('path');
const { TokenizerLoader } = require(path.resolve(process.argv[2]));
const dir = process.argv[3];
const tok = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
  tokenizerConfig: JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')),
});

const special = [
  "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>", "a<|eot_id|>b", "<|eot_id|><|eot_id|>",
  "<|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|>", "<|reserved_special_token_5|>",
  "<|eot_id", "|eot_id|>", "<<|eot_id|>>", "<|eot_id|>\n\n", " <|eot_id|> ", "x<|begin_of_text|>y",
  "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|im_start|>user\nhello<|im_end|>\n",
  "<|im_start|>assistant\n<think>\n\n</think>\n\nSure.<|im_end|>\n", "<think>", "</think>",
  "<tool_call>{}</tool_call>", "<|im_start", "im_start|>", "<<|im_end|>>", "<|fim_prefix|>x<|fim_suffix|>",
  "<|vision_start|><|image_pad|><|vision_end|>", "text<|endoftext|>more", "<|", "|>", "<||>",
];
const cases = require('./ref_corpus.js').cases();
for (const s of special) cases.push(Buffer.from(s, 'utf8'));
// Text that NFC changes (decomposed accents, Hangul jamo, compatibility characters kept).
for (const s of ["e\u0301t\u00e9", "A\u030A", "\u1100\u1161\u11A8", "n\u0303o", "\u212B", "\uFB01", "o\u0308\u0304"])
  cases.push(Buffer.from(s, 'utf8'));
// Long numbers (Llama 3 groups digits by three, Qwen one by one) and long runs.
cases.push(Buffer.from("31415926535897932384626433832795028841971 and 1234567", 'utf8'));
cases.push(Buffer.from(" ".repeat(40) + "x" + "\n".repeat(17) + "y" + "\t \n".repeat(9), 'utf8'));

const decoder = new TextDecoder('utf-8');  // replacement of invalid input, WHATWG rules
const out = cases.map(b => {
  const text = decoder.decode(b);
  return { hex: b.toString('hex'), text_hex: Buffer.from(text, 'utf8').toString('hex'),
           ids: tok.encode(text, { add_special_tokens: false }) };
});
fs.writeFileSync(process.argv[4], JSON.stringify(out));
console.log(`tok_ref: ${out.length} cases (${dir})`);
