// The Hugging Face oracle for tests/tokenizer: encodes every corpus file with Transformers.js
// (@huggingface/transformers, whose tokenizer follows the Rust `tokenizers` crate and translates
// its Oniguruma regexes) on data/deepseek-v4-tokenizer/tokenizer.json plus the V4 added tokens of
// v4_added_tokens.json, and writes the ids the C++ tokenizer must reproduce.
//
//   node make_expected.mjs            rewrite expected.json
//   node make_expected.mjs --check    recompute and compare with the committed expected.json
//
// Each corpus file is encoded whole, twice: "special", with every added token matched in the
// text (Hugging Face's only behaviour, our allow_special = true), and "plain", by a copy of the
// tokenizer that has no added tokens at all (our allow_special = false). BOS is never added.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { PreTrainedTokenizer } from '@huggingface/transformers';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const dataDir = join(root, 'data', 'deepseek-v4-tokenizer');
const corpusDir = join(here, '..', 'corpus');
const expectedPath = join(here, 'expected.json');

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function makeTokenizers() {
  const base = readJson(join(dataDir, 'tokenizer.json'));
  const overlay = readJson(join(dataDir, 'v4_added_tokens.json'));
  const config = readJson(join(dataDir, 'tokenizer_config.json'));
  delete config.chat_template;
  const known = new Set(base.added_tokens.map((t) => t.id));
  const withV4 = structuredClone(base);
  for (const t of overlay) {
    if (known.has(t.id)) continue;  // 128799 restates V3's token
    withV4.added_tokens.push({
      id: t.id, content: t.content, single_word: false, lstrip: false, rstrip: false,
      normalized: false, special: t.special,
    });
  }
  const plain = structuredClone(base);
  plain.added_tokens = [];
  const plainConfig = { ...config };
  for (const key of ['bos_token', 'eos_token', 'pad_token']) delete plainConfig[key];
  return {
    special: new PreTrainedTokenizer(withV4, config),
    plain: new PreTrainedTokenizer(plain, plainConfig),
  };
}

function encode(tokenizer, text) {
  return tokenizer.encode(text, { add_special_tokens: false });
}

function compute() {
  const { special, plain } = makeTokenizers();
  const files = readdirSync(corpusDir).filter((f) => f.endsWith('.txt')).sort();
  const out = { tokenizer: 'tokenizer.json + v4_added_tokens.json', files: [] };
  for (const name of files) {
    const bytes = readFileSync(join(corpusDir, name));
    const text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    out.files.push({
      name,
      bytes: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      special: encode(special, text),
      plain: encode(plain, text),
    });
  }
  return out;
}

// One file's ids per line keeps the JSON small and diffs readable.
function serialize(result) {
  const files = result.files.map((f) => '    ' + JSON.stringify(f));
  return `{\n  "tokenizer": ${JSON.stringify(result.tokenizer)},\n  "files": [\n` +
      files.join(',\n') + '\n  ]\n}\n';
}

const text = serialize(compute());
if (process.argv.includes('--check')) {
  const committed = readFileSync(expectedPath, 'utf8');
  if (committed !== text) {
    console.error('expected.json differs from what the Hugging Face oracle computes now; ' +
                  'run `node make_expected.mjs` and review the change');
    process.exit(1);
  }
  console.log('expected.json matches the Hugging Face oracle');
} else {
  writeFileSync(expectedPath, text);
  console.log(`wrote ${expectedPath}`);
}
