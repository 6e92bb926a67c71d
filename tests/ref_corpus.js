// The strings of the tokenizer reference tests (tests/bpe_ref.js, tests/tok_ref.js), built
// deterministically: hand-picked cases for every branch of the pre-tokenisation patterns and
// random mixtures of fragments (prose, code, numbers, runs of spaces and newlines, accents,
// CJK, emoji, other scripts), then invalid UTF-8 between valid text. cases() gives Buffers.
'use strict';

function cases() {
  const fixed = [
    "Hello world", "Hello, world!", "hello  world", " leading space", "trailing space ",
    "I'm here", "don't", "they'll", "we've", "she'd", "it's", "You're", "I'M LOUD", "'s",
    "rock'n'roll", "''", "' '", "O'Neil's dog's bone",
    "12345", "3.14159", "1,000,000", "2026-11-25", "x1y2z3", "v2.0.1-beta", "0xDEADBEEF",
    "a\nb", "a\n\nb", "\n", "\n\n\n", "a \n b", "  \n  ", "\t\tindent", "line\r\nline",
    "a   b", "     ", "x     ", "   x", "tab\tand space \t mix",
    "café", "naïve résumé", "Ångström", "São Paulo", "Ελληνικά γράμματα", "Привет, мир!",
    "日本語のテキスト", "中文字符", "한국어 문장", "עברית", "العربية", "हिन्दी",
    "👍", "👍🏽", "🚀 rocket", "👨‍👩‍👧 family", "I ❤️ NY", "e\u0301", "ﬁ ligature",
    "\u00a0nbsp\u00a0", "zero\u200bwidth", "bom\ufeffinside", "line\u2028sep", "ideo\u3000space",
    "<|endoftext|>", "a<|endoftext|>b", "¡Hola! ¿Qué tal?", "50% off — now $9.99",
    "def f(x):\n    return x**2  # square\n", "for (int i = 0; i < n; i++) { a[i] += b[i]; }",
    "#include <stdio.h>", "{\"key\": [1, 2, 3]}", "https://example.com/path?q=1&r=2",
    "~!@#$%^&*()_+`-=[]\\{}|;':\",./<>?", "....", "----", "====", "!!!???",
    "ℕ ⊆ ℤ ⊆ ℚ", "x² + y² = z²", "½ ¾ ⅓", "Ⅻ roman", "١٢٣ arabic digits", "٣.١٤",
    "", " ", "a", "\u0000nul", "mixed 123abc 456 DEF",
  ];

  const pools = [
    ["The", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "Language", "models",
     "adapters", "learn", "low-rank", "updates", "cluster", "preempted", "requeued", "checkpoint"],
    ["int", "main()", "{", "}", "return", "0;", "x->y", "a[i]", "==", "!=", "&&", "||", "//", "/*", "*/",
     "print(", ")", "self.", "__init__", "=>", "::", "#!"],
    ["0", "7", "42", "1999", "3.5", "-12", "1e-4", "65536", "007", "12,345", "99%"],
    [" ", "  ", "   ", "\n", "\n\n", "\t", " \n", "\n ", "\r\n", "    "],
    ["é", "ü", "ñ", "ø", "ç", "Éclair", "Zürich", "Øresund", "façade", "coöperate"],
    ["漢字", "かな", "カタカナ", "中文", "한글", "テスト", "。", "、", "「引用」"],
    ["😀", "🎉", "👍🏻", "🇩🇪", "✨", "🧪", "💾", "🔥🔥", "⚡"],
    ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "\"", "`"],
    ["Ωmega", "αβγ", "жизнь", "σ", "ß", "İstanbul", "ǅ", "ﬀ"],
  ];

  // mulberry32: a small seeded generator, so the corpus is the same on every run.
  let seed = 20261125;
  function rnd() {
    seed |= 0; seed = seed + 0x6D2B79F5 | 0;
    let t = Math.imul(seed ^ seed >>> 15, 1 | seed);
    t = t + Math.imul(t ^ t >>> 7, 61 | t) ^ t;
    return ((t ^ t >>> 14) >>> 0) / 4294967296;
  }
  const pick = a => a[Math.floor(rnd() * a.length)];
  const seps = ["", " ", " ", " ", "  ", "\n", "\t", ", ", ". "];

  const cases = [];
  for (const s of fixed) cases.push(Buffer.from(s, 'utf8'));
  for (let i = 0; i < 500; i++) {
    let s = "";
    const n = 1 + Math.floor(rnd() * 10);
    for (let k = 0; k < n; k++) s += pick(pick(pools)) + pick(seps);
    cases.push(Buffer.from(s, 'utf8'));
  }
  // Invalid UTF-8: lone continuation bytes, truncated sequences, overlongs, surrogates,
  // bytes that never occur, all between valid text.
  const invalid = [
    [0x80], [0xBF, 0x41], [0xC0, 0xAF], [0xE0, 0x80, 0xAF], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
    [0xF8, 0x88, 0x80, 0x80, 0x80], [0xFE], [0xFF, 0xFE], [0xC3], [0xE2, 0x82], [0xF0, 0x9F, 0x98],
    [0x41, 0xC3, 0x28, 0x42], [0x61, 0xE2, 0x28, 0xA1, 0x62], [0xF0, 0x28, 0x8C, 0xBC], [0x20, 0x80, 0x20],
  ];
  for (const bytes of invalid)
    cases.push(Buffer.concat([Buffer.from("ok "), Buffer.from(bytes), Buffer.from(" fine")]));
  return cases;
}

module.exports = { cases };
