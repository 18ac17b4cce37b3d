// Test inputs shared by the tokenizer tests (and the HF cross-check script).

// Text that stresses the split regex and the byte-level mapping.
export const HARD_TEXTS: string[] = [
  "",
  "a",
  " ",
  "Call me Ishmael.",
  "  leading spaces and trailing   ",
  "\n\nnewlines\nand\r\nCRLF\r\n\ttabs\t\t",
  "DON'T you'll we'd I'M they're it's SHE'LL",
  "numbers 1 12 123 1234 1234567 3.14159 -42 1e10 ٣٤٥ ²³",
  "emoji 🐋🐳 family 👨‍👩‍👧 flags 🇳🇴 skin 👍🏽",
  "CJK 白鲸记 日本語のテキスト 한국어",
  "Arabic مرحبا بالعالم and Hebrew שלום",
  "combining: e\u0301 n\u0303 a\u030a; NFC é ñ å",
  "odd spaces:\u00a0nbsp\u2003em\u3000ideographic\u0085NEL\ufeffBOM\u200bZWSP",
  "punctuation!!! ??? ... --- ___ ### $$$ @@@ (((nested))) [x] {y} <z>",
  "code: function f(x) { return x * 2; } // done\n    indented();",
  "    \n   \n\n \t \n",
  "a".repeat(300),
  " ".repeat(257),
  "Whale—whale–whale…“quoted” ‘single’ «guillemets»",
];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Random strings over ASCII, whitespace, Latin-1, BMP and astral code points (no lone surrogates). */
export function randomUnicode(seed: number, count: number, maxLen: number): string[] {
  const rand = mulberry32(seed);
  const pools: [number, number][] = [
    [0x20, 0x7e],
    [0x09, 0x0d],
    [0xa0, 0x17f],
    [0x370, 0x6ff],
    [0x3000, 0x30ff],
    [0x4e00, 0x4fff],
    [0x1f300, 0x1f6ff],
    [0x0, 0xd7ff],
    [0xe000, 0x10ffff],
  ];
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const n = Math.floor(rand() * maxLen);
    let s = "";
    for (let j = 0; j < n; j++) {
      const [lo, hi] = pools[Math.floor(rand() * pools.length)];
      s += String.fromCodePoint(lo + Math.floor(rand() * (hi - lo + 1)));
    }
    out.push(s);
  }
  return out;
}

/** How the committed HF cross-check fixture's tokenizers were trained. */
export const FIXTURE_TRAINING = { chars: 200_000, vocabSize: 512 } as const;

/** The texts whose ids HF's Rust tokenizers wrote into test/fixtures/tokenizer/hf-ids.json. */
export function FIXTURE_TEXTS(): string[] {
  return [
    ...HARD_TEXTS,
    ...randomUnicode(5, 40, 40),
    "hi<|end_of_text|> there <|eot_id|>x<|begin_of_text|>",
    "It was the Bottle Conjuror! Upon the 1st of January, 1851, at 3 p.m., 1,000,000 whales.",
  ];
}
