import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import { trainBpeTokenizer } from "../../src/tokenizer/bpe-trainer.js";
import { Tokenizer } from "../../src/tokenizer/tokenizer.js";
import {
  ALPACA_PROMPT,
  ALPACA_PROMPT_NO_INPUT,
  type Batch,
  Batcher,
  countTargets,
  DataError,
  type Example,
  evalBatches,
  makeExample,
  packExamples,
  padIdFor,
  prepareSplits,
  recordsDataset,
  splitExamples,
  textDataset,
  tokenizeRecord,
} from "../../src/train/data.js";
import { loadDataset, loadSplits } from "../../src/train/data-node.js";

const CORPUS =
  "Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, " +
  "and nothing particular to interest me on shore, I thought I would sail about a little and see the watery " +
  "part of the world. What is two plus two? Two plus two is four. Hello there, how are you? Fine, thanks.\n";
const trained = trainBpeTokenizer(CORPUS.repeat(4), { vocabSize: 360 });
const tok = Tokenizer.fromJSON(trained.tokenizerJson, trained.tokenizerConfig);
const BOS = tok.bosTokenId!;
const EOS = tok.eosTokenId!;

/** The trained tokens of an example, decoded. */
function trainedText(ex: { ids: ArrayLike<number>; mask: ArrayLike<number> }): string {
  const ids: number[] = [];
  for (let i = 1; i < ex.ids.length; i++) if (ex.mask[i]) ids.push(ex.ids[i]);
  return tok.decode(ids);
}

/** The non -100 targets of a batch, decoded row by row. */
function batchTargets(batch: Batch): string[] {
  const rows: string[] = [];
  for (let b = 0; b < batch.batchSize; b++) {
    const ids: number[] = [];
    for (let t = 0; t < batch.seqLen; t++) {
      const v = batch.targets[b * batch.seqLen + t];
      if (v !== -100) ids.push(v);
    }
    rows.push(tok.decode(ids));
  }
  return rows;
}

function errorMatching(re: RegExp) {
  return (e: unknown) => e instanceof DataError && re.test(e.message);
}

const tmp = mkdtempSync(join(tmpdir(), "lorakit-data-"));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe("plain text", () => {
  it("windows of seqLen+1 overlap by one: every token after the first is a target exactly once", () => {
    const ids = tok.encode(CORPUS);
    for (const seqLen of [1, 7, 16, ids.length - 1, ids.length, 1000]) {
      const ds = textDataset(CORPUS, tok, { seqLen });
      const targets: number[] = [];
      for (const ex of ds.examples) {
        assert.ok(ex.ids.length <= seqLen + 1 && ex.ids.length >= 2);
        assert.equal(ex.mask[0], 0);
        for (let i = 1; i < ex.ids.length; i++) if (ex.mask[i]) targets.push(ex.ids[i]);
      }
      assert.deepEqual(targets, ids.slice(1), `seqLen ${seqLen}`);
      assert.equal(ds.stats.targets, ids.length - 1);
      // The same through batches: inputs are ids[:-1], targets ids[1:].
      const batches = evalBatches(ds.examples, { batchSize: 3, seqLen });
      const fromBatches: number[] = [];
      for (const b of batches) for (const v of b.targets) if (v !== -100) fromBatches.push(v);
      assert.deepEqual(fromBatches, ids.slice(1));
      assert.equal(
        batches.reduce((s, b) => s + b.tokens, 0),
        ids.length - 1,
      );
    }
  });

  it("nothing is prepended; several documents are joined with EOS", () => {
    const ds = textDataset(["Call me", " Ishmael."], tok, { seqLen: 100 });
    assert.equal(ds.examples.length, 1);
    assert.deepEqual(Array.from(ds.examples[0].ids), [
      ...tok.encode("Call me"),
      EOS,
      ...tok.encode(" Ishmael."),
    ]);
    const noSep = textDataset(["Call me", " Ishmael."], tok, { seqLen: 100, eosBetweenDocuments: false });
    assert.ok(!Array.from(noSep.examples[0].ids).includes(EOS));
  });

  it("a tiny text repeats over epochs, filling batches larger than the data", () => {
    const ds = textDataset("Hello there", tok, { seqLen: 64 });
    assert.equal(ds.examples.length, 1);
    const n = ds.examples[0].ids.length;
    assert.ok(n >= 2);
    const batcher = new Batcher(ds.examples, { batchSize: 4, seqLen: 64, seed: 1, padId: padIdFor(tok) });
    for (let step = 0; step < 10; step++) {
      const b = batcher.next();
      assert.equal(b.batchSize, 4);
      assert.equal(b.seqLen, n - 1);
      assert.equal(b.tokens, 4 * (n - 1));
      assert.deepEqual(batchTargets(b), new Array(4).fill(tok.decode(ds.examples[0].ids.slice(1))));
    }
    assert.equal(batcher.epoch, 39);
  });

  it("empty or one-token text is a clear error", () => {
    assert.throws(
      () => textDataset("", tok, { seqLen: 8, source: "e.txt" }),
      errorMatching(/e\.txt: .*empty/),
    );
    assert.throws(
      () => textDataset("a", tok, { seqLen: 8, source: "a.txt" }),
      errorMatching(/a\.txt: .*1 token/),
    );
  });
});

describe("records and masks", () => {
  const loc = { source: "t.jsonl", line: 1 };

  it("prompt/completion: BOS + prompt + completion + EOS, loss on completion and EOS only", () => {
    const r = tokenizeRecord(
      { prompt: "What is two plus two?", completion: " Two plus two is four." },
      tok,
      loc,
    );
    assert.equal(r.format, "completion");
    assert.equal(r.ids[0], BOS);
    assert.equal(r.ids.at(-1), EOS);
    assert.equal(
      tok.decode(r.ids),
      "<|begin_of_text|>What is two plus two? Two plus two is four.<|end_of_text|>",
    );
    assert.equal(trainedText(makeExample(r.ids, r.mask)), " Two plus two is four.<|end_of_text|>");
    const all = tokenizeRecord({ prompt: "What is", completion: " two?" }, tok, loc, { trainOnPrompt: true });
    assert.equal(trainedText(makeExample(all.ids, all.mask)), "What is two?<|end_of_text|>");
    const bare = tokenizeRecord({ prompt: "What is", completion: " two?" }, tok, loc, {
      addBos: false,
      appendEos: false,
    });
    assert.deepEqual(bare.ids, tok.encode("What is two?"));
  });

  it("alpaca: the Stanford prompt, loss on the output", () => {
    const withInput = tokenizeRecord(
      { instruction: "Add them.", input: "two, two", output: "four" },
      tok,
      loc,
    );
    assert.equal(withInput.format, "alpaca");
    const prompt = ALPACA_PROMPT.replace("{instruction}", "Add them.").replace("{input}", "two, two");
    assert.equal(tok.decode(withInput.ids), `<|begin_of_text|>${prompt}four<|end_of_text|>`);
    assert.equal(trainedText(makeExample(withInput.ids, withInput.mask)), "four<|end_of_text|>");
    const noInput = tokenizeRecord({ instruction: "Say hello.", input: "", output: "Hello there" }, tok, loc);
    const prompt2 = ALPACA_PROMPT_NO_INPUT.replace("{instruction}", "Say hello.");
    assert.equal(tok.decode(noInput.ids), `<|begin_of_text|>${prompt2}Hello there<|end_of_text|>`);
    assert.equal(trainedText(makeExample(noInput.ids, noInput.mask)), "Hello there<|end_of_text|>");
  });

  it("chat: loss on the assistant turns only (content + end of turn), through the template", () => {
    const messages = [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Hello there, how are you?" },
      { role: "assistant", content: "Fine, thanks." },
      { role: "user", content: "What is two plus two?" },
      { role: "assistant", content: "Two plus two is four." },
    ];
    const r = tokenizeRecord({ messages }, tok, loc);
    assert.equal(r.format, "chat");
    assert.equal(tok.decode(r.ids), tok.applyChatTemplate(messages));
    assert.equal(
      trainedText(makeExample(r.ids, r.mask)),
      "Fine, thanks.<|eot_id|>Two plus two is four.<|eot_id|>",
    );
    // Each trained run is exactly one assistant turn.
    const runs: string[] = [];
    let cur: number[] = [];
    for (let i = 0; i <= r.ids.length; i++) {
      if (i < r.ids.length && r.mask[i]) cur.push(r.ids[i]);
      else if (cur.length > 0) {
        runs.push(tok.decode(cur));
        cur = [];
      }
    }
    assert.deepEqual(runs, ["Fine, thanks.<|eot_id|>", "Two plus two is four.<|eot_id|>"]);
    // And through a batch: the unmasked targets decode to the assistant text.
    const ds = recordsDataset([{ messages }], tok, { seqLen: 256 });
    const [batch] = evalBatches(ds.examples, { batchSize: 1, seqLen: 256 });
    assert.deepEqual(batchTargets(batch), ["Fine, thanks.<|eot_id|>Two plus two is four.<|eot_id|>"]);
    const all = tokenizeRecord({ messages }, tok, loc, { trainOnPrompt: true });
    assert.equal(countTargets(makeExample(all.ids, all.mask)), all.ids.length - 1);
  });

  it("chat falls back to finding the content when prefixes do not render as prefixes", () => {
    // A template that writes a running turn count at the start breaks the prefix property.
    const template =
      "{{ messages|length }}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{{ eos_token }}{% endfor %}" +
      "{% if add_generation_prompt %}<assistant>{% endif %}";
    const t2 = Tokenizer.fromJSON(trained.tokenizerJson, {
      ...trained.tokenizerConfig,
      chat_template: template,
    });
    const messages = [
      { role: "user", content: "Hello there" },
      { role: "assistant", content: "Fine, thanks." },
    ];
    const r = tokenizeRecord({ messages }, t2, loc);
    assert.equal(trainedText(makeExample(r.ids, r.mask)), "Fine, thanks.");
  });

  it("detects formats per record and counts them", () => {
    const ds = recordsDataset(
      [
        { text: "Call me Ishmael." },
        { prompt: "Q", completion: " A" },
        { instruction: "I", output: "O" },
        {
          messages: [
            { role: "user", content: "u" },
            { role: "assistant", content: "a" },
          ],
        },
      ],
      tok,
      { seqLen: 512 },
    );
    assert.deepEqual(ds.stats.formats, { text: 1, completion: 1, alpaca: 1, chat: 1 });
    assert.equal(ds.examples.length, 4);
    assert.equal(trainedText(ds.examples[0]), "Call me Ishmael.<|end_of_text|>");
  });

  it("long records: prompt/completion truncated, text split, all-prompt windows dropped", () => {
    const long = CORPUS.slice(0, 200);
    const n = tok.encode(long).length;
    const ds = recordsDataset(
      [{ prompt: "Q:", completion: long }, { text: long }, { prompt: long, completion: " end" }],
      tok,
      { seqLen: 16 },
    );
    assert.equal(ds.stats.truncated, 2);
    assert.equal(ds.stats.split, 1);
    assert.equal(ds.stats.dropped, 1);
    for (const ex of ds.examples) assert.ok(ex.ids.length <= 17);
    // The split text record keeps every token as a target once (BOS not a target, EOS is).
    const textWindows = ds.examples.slice(1);
    assert.equal(
      textWindows.reduce((s, ex) => s + countTargets(ex), 0),
      n + 1,
    );
  });
});

describe("packing", () => {
  it("packs short examples into rows; no target crosses an example boundary", () => {
    const records = ["Call me Ishmael.", "Hello there.", "Two plus two is four.", "Fine, thanks."].map(
      (c, i) => ({ prompt: `Q${i}:`, completion: ` ${c}` }),
    );
    const ds = recordsDataset(records, tok, { seqLen: 24 });
    const packed = packExamples(ds.examples, 24);
    assert.ok(packed.length < ds.examples.length);
    assert.equal(
      packed.reduce((s, ex) => s + ex.ids.length, 0),
      ds.stats.tokens,
    );
    // Targets are conserved: the first token of every example (BOS) was never a target.
    assert.equal(
      packed.reduce((s, ex) => s + countTargets(ex), 0),
      ds.stats.targets,
    );
    for (const ex of packed) {
      assert.ok(ex.ids.length <= 25);
      for (let i = 0; i < ex.ids.length; i++) if (ex.ids[i] === BOS) assert.equal(ex.mask[i], 0);
    }
    const [batch] = evalBatches(packed, { batchSize: packed.length, seqLen: 24 });
    // In the batch: the position that holds an EOS (end of one example) never predicts the next BOS.
    for (let i = 0; i < batch.inputs.length; i++) {
      if (batch.inputs[i] === EOS) assert.equal(batch.targets[i], -100);
      assert.notEqual(batch.targets[i], BOS);
    }
    assert.equal(batchTargets(batch).join(""), records.map((r) => `${r.completion}<|end_of_text|>`).join(""));
  });
});

describe("Batcher", () => {
  const ds = textDataset(CORPUS.repeat(3), tok, { seqLen: 8 });
  const ex = ds.examples;
  const opts = { batchSize: 3, seqLen: 8, seed: 7, padId: padIdFor(tok) };
  const snapshot = (b: Batch) => [Array.from(b.inputs), Array.from(b.targets), b.epoch];

  it("each epoch is a permutation; the same seed gives the same batches, another seed others", () => {
    const a = new Batcher(ex, opts);
    const b = new Batcher(ex, opts);
    const c = new Batcher(ex, { ...opts, seed: 8 });
    const sa: unknown[] = [];
    const sc: unknown[] = [];
    for (let i = 0; i < 2 * a.batchesPerEpoch; i++) {
      const ba = a.next();
      sa.push(snapshot(ba));
      assert.deepEqual(snapshot(b.next()), snapshot(ba));
      sc.push(snapshot(c.next()));
    }
    assert.notDeepEqual(sa, sc);
    // Without shuffling, an epoch's rows are the examples in order.
    const plain = new Batcher(ex, { ...opts, batchSize: 1, shuffle: false });
    for (let i = 0; i < ex.length; i++) assert.deepEqual(plain.next().inputs, ex[i].ids.slice(0, -1));
    assert.equal(plain.epoch, 0);
    plain.next();
    assert.equal(plain.epoch, 1);
    // Shuffled: the multiset of rows of one epoch equals the examples.
    const one = new Batcher(ex, { ...opts, batchSize: 1 });
    const seen = new Set<string>();
    for (let i = 0; i < ex.length; i++) seen.add(String(one.next().inputs));
    assert.equal(seen.size, new Set(ex.map((e) => String(e.ids.slice(0, -1)))).size);
  });

  it("getState/setState resumes exactly (through JSON, across epoch boundaries)", () => {
    for (const at of [0, 1, 5, 11, 17]) {
      const a = new Batcher(ex, opts);
      for (let i = 0; i < at; i++) a.next();
      const state = JSON.parse(JSON.stringify(a.getState()));
      const expected = Array.from({ length: 13 }, () => snapshot(a.next()));
      const b = new Batcher(ex, opts);
      b.next();
      b.setState(state);
      assert.deepEqual(
        Array.from({ length: 13 }, () => snapshot(b.next())),
        expected,
        `resume after ${at}`,
      );
    }
    const other = new Batcher(ex.slice(1), opts);
    assert.throws(() => other.setState(new Batcher(ex, opts).getState()), errorMatching(/saved with/));
  });

  it("pads right to the longest row with the pad id and -100 targets", () => {
    const short = makeExample([1, 2, 3], [0, 1, 1]);
    const long = makeExample([4, 5, 6, 7, 8], [0, 0, 1, 1, 1]);
    const [b] = evalBatches([short, long], { batchSize: 2, seqLen: 8, padId: 99 });
    assert.equal(b.seqLen, 4);
    assert.deepEqual(Array.from(b.inputs), [1, 2, 99, 99, 4, 5, 6, 7]);
    assert.deepEqual(Array.from(b.targets), [2, 3, -100, -100, -100, 6, 7, 8]);
    assert.deepEqual(Array.from(b.lengths), [2, 4]);
    assert.equal(b.tokens, 5);
    const [fixed] = evalBatches([short], { batchSize: 1, seqLen: 8, padToSeqLen: true });
    assert.equal(fixed.inputs.length, 8);
    assert.throws(() => new Batcher([], opts), DataError);
  });
});

describe("errors name the file and line", () => {
  const cases: [string, string, RegExp][] = [
    ["not JSON", '{"text": "a"}\n\n{"text": "b"\n', /bad\.jsonl:3: not valid JSON/],
    [
      "no known fields",
      '{"text": "a"}\n{"question": "q", "answer": "a"}\n',
      /bad\.jsonl:2: .*"question", "answer"/,
    ],
    [
      "wrong type",
      '{"prompt": "a", "completion": 4}\n',
      /bad\.jsonl:1: field "completion" must be a string, got number/,
    ],
    ["empty completion", '{"prompt": "a", "completion": ""}\n', /bad\.jsonl:1: field "completion" is empty/],
    ["not an object", "[1, 2]\n", /bad\.jsonl: record 1: a record must be a JSON object/],
    ["line not an object", '"just a string"\n', /bad\.jsonl:1: a record must be a JSON object, got string/],
    [
      "bad messages",
      '{"messages": [{"role": "user", "content": "q"}, {"role": "assistant"}]}\n',
      /bad\.jsonl:1: messages\[1\]\.content must be a string, got nothing/,
    ],
    [
      "no assistant",
      '{"messages": [{"role": "user", "content": "q"}]}\n',
      /bad\.jsonl:1: no assistant message to train on/,
    ],
    ["alpaca input type", '{"instruction": "i", "input": 3, "output": "o"}\n', /bad\.jsonl:1: field "input"/],
    ["empty file", "\n  \n", /bad\.jsonl: no records/],
  ];
  for (const [name, text, re] of cases) {
    it(name, () => {
      const path = join(tmp, "bad.jsonl");
      writeFileSync(path, text);
      assert.throws(() => loadDataset(path, tok, { seqLen: 32 }), errorMatching(re));
    });
  }

  it("a forced format names the missing field and the ones found", () => {
    assert.throws(
      () => recordsDataset('{"text": "a"}\n', tok, { seqLen: 8, source: "f.jsonl", format: "completion" }),
      errorMatching(/f\.jsonl:1: missing field "prompt"; the record has fields: "text"/),
    );
  });

  it("files: unknown extension, missing file, empty text file", () => {
    assert.throws(
      () => loadDataset(join(tmp, "x.csv"), tok, { seqLen: 8 }),
      errorMatching(/unknown data file type/),
    );
    assert.throws(
      () => loadDataset(join(tmp, "none.txt"), tok, { seqLen: 8 }),
      errorMatching(/no such data file/),
    );
    writeFileSync(join(tmp, "empty.txt"), "");
    assert.throws(
      () => loadDataset(join(tmp, "empty.txt"), tok, { seqLen: 8 }),
      errorMatching(/empty\.txt: .*empty/),
    );
  });
});

describe("loading and splitting", () => {
  it("loads .txt and .jsonl by extension", () => {
    writeFileSync(join(tmp, "c.txt"), CORPUS);
    const t = loadDataset(join(tmp, "c.txt"), tok, { seqLen: 16 });
    assert.equal(t.kind, "text");
    assert.equal(t.stats.targets, tok.encode(CORPUS).length - 1);
    writeFileSync(join(tmp, "c.jsonl"), '{"prompt": "Q", "completion": " A"}\r\n{"text": "Hello"}\r\n');
    const j = loadDataset(join(tmp, "c.jsonl"), tok, { seqLen: 16 });
    assert.equal(j.kind, "records");
    assert.equal(j.examples.length, 2);
  });

  it("splits by seed and fraction at example level", () => {
    const exs: Example[] = Array.from({ length: 20 }, (_, i) => makeExample([i, i + 1], [0, 1]));
    const s1 = splitExamples(exs, 0.1, 3);
    assert.equal(s1.valid.length, 2);
    assert.equal(s1.train.length, 18);
    const ids = (xs: Example[]) => xs.map((e) => e.ids[0]);
    assert.deepEqual(new Set([...ids(s1.train), ...ids(s1.valid)]).size, 20);
    assert.deepEqual(ids(splitExamples(exs, 0.1, 3).valid), ids(s1.valid));
    assert.equal(splitExamples(exs, 0.01, 3).valid.length, 1);
    assert.equal(splitExamples(exs, 0, 3).valid.length, 0);
    assert.throws(() => splitExamples(exs.slice(0, 1), 0.5), DataError);
    assert.throws(() => splitExamples(exs, 1), DataError);
  });

  it("prepareSplits / loadSplits: hold out text windows, or use a separate file; then pack", () => {
    writeFileSync(join(tmp, "s.txt"), CORPUS.repeat(2));
    const { train, valid, data } = loadSplits(join(tmp, "s.txt"), tok, {
      seqLen: 8,
      validFraction: 0.2,
      seed: 1,
    });
    assert.equal(train.length + valid.length, data.examples.length);
    assert.equal(valid.length, Math.round(data.examples.length * 0.2));
    writeFileSync(join(tmp, "v.jsonl"), '{"prompt": "Q", "completion": " A"}\n');
    const sep = loadSplits(join(tmp, "s.txt"), tok, { seqLen: 8, validPath: join(tmp, "v.jsonl") });
    assert.equal(sep.valid.length, 1);
    assert.equal(sep.train.length, sep.data.examples.length);
    const recs = recordsDataset(
      Array.from({ length: 10 }, (_, i) => ({ prompt: `Q${i}`, completion: " A" })),
      tok,
      { seqLen: 32 },
    );
    const packed = prepareSplits(recs, { seqLen: 32, validFraction: 0.2, seed: 2, pack: true });
    assert.ok(packed.train.length < 8);
    assert.equal(
      packed.train.reduce((s, e) => s + countTargets(e), 0) +
        packed.valid.reduce((s, e) => s + countTargets(e), 0),
      recs.stats.targets,
    );
  });
});
