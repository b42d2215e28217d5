#!/usr/bin/env python3
"""Writes the tokenizer test corpus (tests/tokenizer/corpus/*.txt), deterministically.

The corpus exercises every branch of the DeepSeek pre-tokenizer and the added-token matcher:
source code in several languages, prose in many scripts (CJK, kana, Hangul, Arabic, Hindi, Thai,
Cyrillic, Greek), emoji with ZWJ and modifiers, combining marks, digits of several scripts, long
runs of whitespace and digits, C0/C1 control characters, the White_Space characters one by one,
and text that contains the strings of control tokens, whole and cut. Hand-written samples are
mixed with seeded random strings from those character pools. Code points are limited to ones
assigned by Unicode 14, which both PCRE2 and the oracle's JavaScript engine know.

Run from anywhere: python3 tests/tokenizer/corpus/make_corpus.py
"""
import json
import pathlib
import random

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]

WHITE_SPACE = ("\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) +
               "\u2028\u2029\u202f\u205f\u3000")


def rng_range(a, b):
    return [chr(c) for c in range(a, b + 1)]


POOLS = {
    "ascii": [chr(c) for c in range(0x20, 0x7F)],
    "latin1": rng_range(0xA1, 0xFF) + rng_range(0x100, 0x17F),
    "combining": rng_range(0x300, 0x36F),
    "greek": rng_range(0x391, 0x3A1) + rng_range(0x3A3, 0x3C9),
    "cyrillic": rng_range(0x410, 0x44F),
    "arabic": rng_range(0x621, 0x64A) + rng_range(0x64B, 0x652) + rng_range(0x660, 0x669),
    "devanagari": rng_range(0x905, 0x939) + rng_range(0x93E, 0x94D) + rng_range(0x966, 0x96F),
    "thai": rng_range(0xE01, 0xE3A) + rng_range(0xE40, 0xE5B),
    "cjk": rng_range(0x4E00, 0x9FA5),
    "cjk_ext": rng_range(0x9FA6, 0x9FEF) + rng_range(0x3400, 0x3450),
    "kana": rng_range(0x3041, 0x3096) + rng_range(0x30A1, 0x30FA) + ["ー", "・"],
    "hangul": rng_range(0xAC00, 0xD7A3),
    "cjk_punct": list("、。「」『』【】〈〉《》！？：；（），．～￥＄％＆＠") + rng_range(0xFF01, 0xFF5E),
    "digits": list("0123456789") + rng_range(0x660, 0x669) + rng_range(0x966, 0x96F) +
              rng_range(0xFF10, 0xFF19) + list("²³¹¼½¾") + rng_range(0x2160, 0x2188) +
              rng_range(0x1D7CE, 0x1D7FF) + rng_range(0x2460, 0x2473),
    "symbols": rng_range(0x2190, 0x21FF) + rng_range(0x2200, 0x22FF) + rng_range(0x2500, 0x257F) +
               list("€£¥©®™°±×÷§¶•…‰′″‹›«»“”‘’–—"),
    "emoji": (rng_range(0x1F600, 0x1F64F) + rng_range(0x1F300, 0x1F3FA) +
              rng_range(0x1F680, 0x1F6C5)),
    "emoji_mod": ["\u200d", "\ufe0f", "\U0001F3FB", "\U0001F3FD", "\U0001F3FF", "\u20e3"],
    "space": list(WHITE_SPACE) + ["\u180e", "\u200b", "\u200c", "\u2060"],
    "control": [chr(c) for c in range(0x00, 0x20)] + ["\x7f"] + rng_range(0x80, 0x9F),
}

CODE_SNIPPETS = [
    '''fn main() {
    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();
    println!("{:?} sum={}", v, v.iter().sum::<u64>());
    if let Some(&last) = v.last() { assert_eq!(last, 100); }
}
''',
    '''package main

import "fmt"

func main() {
\tm := map[string]int{"a": 1, "b": 2}
\tfor k, v := range m {
\t\tfmt.Printf("%s=%d\\n", k, v)
\t}
}
''',
    '''const fetchJson = async (url) => {
  const res = await fetch(url, { headers: { 'Accept': 'application/json' } });
  if (!res.ok) throw new Error(`HTTP ${res.status}: ${res.statusText}`);
  return res.json();
};
export default fetchJson;   // 3 spaces before the comment
''',
    '''SELECT u.id, u.name, COUNT(o.id) AS orders
FROM users u LEFT JOIN orders o ON o.user_id = u.id
WHERE u.created_at >= '2024-01-01' AND u.email LIKE '%@example.com'
GROUP BY u.id, u.name HAVING COUNT(o.id) > 3 ORDER BY orders DESC LIMIT 100;
''',
    '''<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>测试页面</title></head>
<body><div class="a b" id='x'>&lt;tag&gt; &amp; &#x4E2D;&#25991;</div><br/></body></html>
''',
    '''quicksort :: Ord a => [a] -> [a]
quicksort [] = []
quicksort (p:xs) = quicksort [x | x <- xs, x < p] ++ [p] ++ quicksort [x | x <- xs, x >= p]
''',
    '''#!/usr/bin/env bash
set -euo pipefail
for f in "$@"; do
  [[ -f "$f" ]] || { echo "missing: $f" >&2; exit 2; }
  sha256sum -- "$f" | awk '{print $1}'
done
''',
    '''\\documentclass{article}\\usepackage{amsmath}
\\begin{equation} \\int_0^\\infty e^{-x^2}\\,dx = \\frac{\\sqrt{\\pi}}{2} \\end{equation}
''',
    '''{"model": "deepseek-v4-flash", "messages": [{"role": "user", "content": "你好，世界！"}],
 "temperature": 0.7, "max_tokens": 4096, "stream": true, "tools": [], "n": 1e-3}
''',
    '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

print([fib(i) for i in range(20)], f"{3.14159:.2f}", 0x1F, 0b1010, 1_000_000)
''',
]

PROSE = [
    "DeepSeek V4 是一个混合专家模型。它支持百万级上下文，推理速度很快！今天天气不错，我们去公园散步吧。",
    "東京タワーは高さ333メートルです。ひらがなとカタカナ、そして漢字が混ざった文章をテストします。",
    "한국어 문장도 토큰화합니다. 안녕하세요, 만나서 반갑습니다! 123개의 사과가 있어요.",
    "مرحبا بالعالم! هذه جملة عربية للاختبار، تحتوي على أرقام ١٢٣٤٥ وعلامات ترقيم؟",
    "नमस्ते दुनिया! यह हिंदी में एक परीक्षण वाक्य है। संख्याएँ: १२३४५६७ और 2024।",
    "Привет, мир! Это тестовое предложение на русском языке: 42 кота, 7 собак.",
    "Γειά σου κόσμε! Αυτή είναι μια δοκιμαστική πρόταση με τόνους: ά έ ή ί ό ύ ώ.",
    "สวัสดีชาวโลก นี่คือประโยคทดสอบภาษาไทย ๑๒๓",
    "Ünïcödé wïth cömbïnïng: e\u0301 a\u0308 n\u0303 o\u0302\u0323"
    " — and ligatures ﬁ ﬂ, Å vs A\u030a.",
    "Emoji: 👍🏽 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ 1️⃣ 🇨🇳🇺🇸 😀😃😄 ok👌",
    "“Smart quotes” and ‘single’ — em dash – en dash … ellipsis «guillemets» ¿Qué? ¡Olé!",
    "Mixed: café中文 naïve，日本語テキストabc、１２３４５６ and x\u00a0y a\u3000b.",
    "Numbers: 3.14159 2,718,281,828 1e-10 0xDEADBEEF 1234567890123456789012345678901234567890",
]


def random_text(rng, pools, n):
    out = []
    names = list(pools)
    while len(out) < n:
        pool = POOLS[rng.choice(names)]
        out.extend(rng.choice(pool) for _ in range(rng.randint(1, 12)))
    return "".join(out)


def added_tokens():
    data = ROOT / "data" / "deepseek-v4-tokenizer"
    base = json.loads((data / "tokenizer.json").read_text(encoding="utf-8"))["added_tokens"]
    overlay = json.loads((data / "v4_added_tokens.json").read_text(encoding="utf-8"))
    return sorted({t["content"] for t in base} | {t["content"] for t in overlay})


def main():
    rng = random.Random(20250601)
    files = {}

    # Code: Magnetar's own sources (several languages) and the snippets above.
    code = []
    for pattern in ["src/gguf/*.cc", "src/synth/*.h", "tests/reference/*.py", "scripts/*.sh",
                    "CMakeLists.txt", "Makefile"]:
        for path in sorted(ROOT.glob(pattern)):
            code.append(f"// ==== {path.relative_to(ROOT)} ====\n")
            code.append(path.read_text(encoding="utf-8"))
    code.extend(CODE_SNIPPETS * 3)
    files["code.txt"] = "".join(code)[:110_000]

    prose = []
    for _ in range(40):
        prose.append(rng.choice(PROSE))
        prose.append(rng.choice([" ", "\n", "\n\n", "\r\n", "  ", "\t", "。", "! "]))
    files["multilingual.txt"] = "".join(prose)

    files["random_unicode.txt"] = "\n".join(
        random_text(rng, POOLS, rng.randint(5, 80)) for _ in range(900))

    ws = []
    for _ in range(200):
        kind = rng.randrange(6)
        if kind == 0:
            ws.append(" " * rng.randint(1, 300) + rng.choice(["x", "\n", "if", "1", ""]))
        elif kind == 1:
            ws.append("".join(rng.choice(" \t\n\r") for _ in range(rng.randint(1, 60))))
        elif kind == 2:
            ws.append("".join(rng.choice("0123456789") for _ in range(rng.randint(1, 200))))
        elif kind == 3:
            ws.append("".join(rng.choice(POOLS["digits"]) for _ in range(rng.randint(1, 40))))
        elif kind == 4:
            ws.append(rng.choice(WHITE_SPACE) * rng.randint(1, 9) + rng.choice(["a", "中", "!", ""]))
        else:
            ws.append("\n" * rng.randint(1, 20) + "    " * rng.randint(0, 8) + "return 0;")
    ws.append(" " * 5000 + "end")
    ws.append("9" * 4000)
    files["whitespace_digits.txt"] = "".join(ws)

    ctl = []
    for c in POOLS["control"] + POOLS["space"]:
        for ctx in ["a{}b", "{}", " {}x", "{}{}", "1{}2", "中{}文", "!{}?", "\n{}\n"]:
            ctl.append(ctx.format(c, c))
    files["control_chars.txt"] = "|".join(ctl) + random_text(rng, ["control", "ascii", "space"],
                                                                 4000)

    tokens = added_tokens()
    sp = []
    for t in tokens:
        sp.append(rng.choice(["", " ", "x", "\n", "中", "<", "｜"]) + t +
                  rng.choice(["", " ", "y", "\n", "文", ">", "|"]))
    for _ in range(600):
        t = rng.choice(tokens)
        cut = rng.randint(1, max(1, len(t) - 1))
        sp.append(rng.choice([t[:cut], t[cut:], t + t, "<" + t, t[:cut] + t]))
        sp.append(random_text(rng, ["ascii", "cjk", "space"], rng.randint(0, 10)))
    sp.append("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>")
    sp.append("\n\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"now\">\n\n</｜DSML｜invoke>\n"
              "</｜DSML｜tool_calls><｜end▁of▁sentence｜><tool_result>x</tool_result>a<dsml:b")
    files["special_tokens.txt"] = "".join(sp)

    for name, text in files.items():
        (HERE / name).write_text(text, encoding="utf-8", newline="")
        print(f"{name}: {len(text.encode('utf-8'))} bytes")


if __name__ == "__main__":
    main()
