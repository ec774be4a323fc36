#!/usr/bin/env python3
"""Golden ids for the C++ tokenizer tests, made by Hugging Face `tokenizers`.

  gen_tokenizer_goldens.py [SHARED_DIR] [OUT_DIR] [--retrain]

SHARED_DIR  the real tokenizer files (default: ../shared/data/tokenizers beside
            the repository root)
OUT_DIR     where the goldens go (default: tests/data/tokenizer)

For every tokenizer it writes OUT_DIR/<name>.json:

  {"comment": ..., "source": path, "sha256": ..., "tokenizers_version": ...,
   "cases": [{"text", "ids", "ids_special", "decoded", "decoded_keep_special"}],
   "decode_cases": [{"ids", "skip_special", "keep_special"}]}

  ids          Tokenizer.encode(text, add_special_tokens=False).ids
  ids_special  Tokenizer.encode(text, add_special_tokens=True).ids
  decoded      Tokenizer.decode(ids_special, skip_special_tokens=True)
  decoded_keep_special  Tokenizer.decode(ids_special, skip_special_tokens=False)
  (a decoded text is null where Hugging Face panics instead of decoding)
  decode_cases random id lists (byte tokens, pieces of multi-byte characters,
               special tokens) with their decoded text both ways.

Tokenizers covered:
  * the real files in SHARED_DIR (gpt2, olmoe, qwen3, qwen2.5, mixtral, llama2);
  * two small tokenizers trained here (feature_metaspace, feature_split) that
    exercise components the real files do not use (Metaspace, Split behaviours
    and invert, Digits, Strip/Replace normalizers, added tokens with lstrip,
    rstrip, single_word, byte fallback, unk); their tokenizer.json is written
    to OUT_DIR/<name>.tokenizer.json when missing or with --retrain (training
    is not reproducible run to run, so the committed file is kept otherwise);
  * decoders_bytelevel, decoders_metaspace: the feature tokenizers with other
    decoder chains (Strip, Replace and Metaspace on single tokens and on fused
    text);
  * the generated tokenizers of the C++ engine (OUT_DIR/generated_*.tokenizer.json,
    written by the C++ test tokenizer_generated_test with QLLM_UPDATE_GOLDENS=1):
    they are loaded with Tokenizer.from_str and, when `transformers` is
    installed, with PreTrainedTokenizerFast together with their
    tokenizer_config.json (the chat template is rendered once as a check).
"""
import hashlib
import json
import os
import random
import sys
import tempfile

os.environ["RUST_BACKTRACE"] = "0"  # expected panics: see decode()
import tokenizers  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import trainers
from tokenizers import AddedToken

REAL = {
    "gpt2": "gpt2/tokenizer.json",
    "olmoe": "olmoe/tokenizer.json",
    "qwen3": "qwen2/qwen3/tokenizer.json",
    "qwen2.5": "qwen2/qwen2.5/tokenizer.json",
    "mixtral": "mixtral/tokenizer.json",
    "llama2": "llama2/tokenizer.json",
}

TEXTS = [
    "",
    "Hello world",
    "Hello World!",
    " Hello world",
    "hello   world  ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm here, you're there. Don't stop! We'll see; they've gone, she'd said.",
    "DON'T SHOUT, I'M LISTENING. IT'S FINE",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 1,000,000 2026",
    "Prices: $5.99, \u20ac12,50, \u00a33, \u00a51000, 50%",
    "def f(x):\n    return x * 2\n\n\n",
    "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}\n",
    "import numpy as np\nprint(np.arange(10).reshape(2, 5))",
    '{"key": "value", "list": [1, 2, 3], "nested": {"a": null}}',
    '<html><body><p class="x">Hi &amp; bye</p></body></html>',
    "https://www.example.com/path?query=1&other=two#frag",
    "user@example.com, +1 (555) 123-4567",
    "   leading spaces and\ttabs\tand trailing   ",
    "\t\t\tTabs only\t",
    "Line one\nLine two\r\nLine three\rLine four",
    "\n\n\n",
    "     ",
    " ",
    "a",
    "a" * 50,
    "supercalifragilistic" * 16,
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u4eca\u5929\u5929\u6c14\u5f88\u597d\u3002",
    "\u3053\u3093\u306b\u3061\u306f\u4e16\u754c\u3001\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a\u3002",
    "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4",
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u092f\u0939 \u090f\u0915 \u092a\u0930\u0940\u0915\u094d\u0937\u0923 \u0939\u0948\u0964",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0401\u0436\u0438\u043a \u0432 \u0442\u0443\u043c\u0430\u043d\u0435.",
    "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01",
    "Emoji: \U0001f600\U0001f680\U0001f525 \U0001f44d\U0001f3fd "
    "\U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 \U0001f1eb\U0001f1f7 \u2764\ufe0f",
    "\U0001f916",
    "Combining: e\u0301 vs \u00e9, A\u030a vs \u00c5, \u212b angstrom, n\u0303o, q\u0307\u0323",
    "Hangul jamo: \u1100\u1161\u11a8 and \u1112\u1161\u11ab",
    "\u03a9 \u2126 ohm, \ufb01 ligature, \u2460 circled, \uff46\uff55\uff4c\uff4c width",
    "Special <|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<s>[INST] What is 2+2? [/INST] 4</s>",
    "<s> <s>  </s>",
    "<think>\nreasoning\n</think>\n\nanswer",
    "<unk> and <pad> and <|padding|>",
    "<|im_start|><|im_end|><|im_start|>",
    "not special: <|im_start |> <im_start> <|imstart|> <|im_start",
    "non\u00a0breaking\u00a0space and\u202fnarrow",
    "Unicode spaces:\u2003em\u3000ideographic\u2028line sep\u0085nel",
    "Mongolian\u180evowel separator",
    "Control chars: \x00\x01\x07\x1b[31m\x7f end",
    "Zero width: a\u200bb\u200cc\u200dd\ufeffe",
    "Math: \u2211_{i=1}^{n} x_i\u00b2 \u2264 \u221e \u2260 \u221a2 \u222b f(x) dx",
    "Markdown: # Title\n\n- item **bold** _italic_ `code`\n\n```python\nx = 1\n```",
    "Mixed: abc123def 456ghi 7-8-9 x2y3",
    "Long whitespace run:" + " " * 30 + "end",
    "|||IP_ADDRESS||| and |||EMAIL_ADDRESS|||",
    "'s 't 're 've 'm 'll 'd ''s ''' '",
    "\u017f KELVIN \u212a 'S '\u017f 'LL",
    "\ue000 \U0001f9ff \U00010348",
    "Tab\tafter word\t \t mixed",
    "trailing newline\n",
    "   \n   \n",
    "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac and English mixed with \u4e2d\u6587 and \u0627\u0644\u0639\u0631\u0628\u064a\u0629",
    "word-with-hyphens and under_scores and CamelCaseWords",
    # Added tokens with lstrip / rstrip / single_word in the feature tokenizers.
    "a <mask> b  <mask>c <mask>",
    "x [SEP]   y [SEP]",
    "cat concat cat. cats _cat (cat)",
    "Hello<mask>world [SEP]again",
    "call <tool>  {}  </tool> done",
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def decode(tok, ids, skip):
    """Tokenizer.decode, or None where it panics (its Strip decoder with
    stop > 0 indexes out of bounds on an empty token)."""
    try:
        return tok.decode(ids, skip_special_tokens=skip)
    except BaseException as e:  # pyo3's PanicException is not an Exception
        if type(e).__name__ != "PanicException":
            raise
        return None


def decode_cases(tok, rng, n=16):
    """Random id lists that stress decoding: pieces of multi-byte characters,
    byte tokens, special tokens, arbitrary ids."""
    vocab = tok.get_vocab(with_added_tokens=True)
    size = max(vocab.values()) + 1
    byte_tokens = [vocab[f"<0x{b:02X}>"] for b in range(256) if f"<0x{b:02X}>" in vocab]
    specials = [i for i, t in tok.get_added_tokens_decoder().items() if t.special]
    multibyte = []
    for text in ["\U0001f600\U0001f680", "\u4f60\u597d\u4e16\u754c", "\u0928\u092e\u0938\u094d\u0924\u0947",
                 "\u00e9\u00e8", "\U0001f468\u200d\U0001f469"]:
        multibyte += tok.encode(text, add_special_tokens=False).ids
    out = []
    for k in range(n):
        ids = []
        for _ in range(rng.randint(1, 24)):
            r = rng.random()
            if r < 0.3 and byte_tokens:
                ids.append(rng.choice(byte_tokens))
            elif r < 0.55 and multibyte:
                ids.append(rng.choice(multibyte))
            elif r < 0.65 and specials:
                ids.append(rng.choice(specials))
            else:
                ids.append(rng.randrange(size))
        run = ["<0xE2>", "<0x82>", "<0xAC>", "<0xF0>"]  # a valid run, then a dangling lead byte
        if k == 0 and all(t in vocab for t in run):
            ids = [vocab[t] for t in run]
        ids = [i for i in ids if tok.id_to_token(i) is not None]
        out.append({"ids": ids, "skip_special": decode(tok, ids, True),
                    "keep_special": decode(tok, ids, False)})
    return out


def goldens(tok, source, digest, seed):
    cases = []
    for text in TEXTS:
        ids = tok.encode(text, add_special_tokens=False).ids
        ids_special = tok.encode(text, add_special_tokens=True).ids
        cases.append({"text": text, "ids": ids, "ids_special": ids_special,
                      "decoded": decode(tok, ids_special, True),
                      "decoded_keep_special": decode(tok, ids_special, False)})
    return {
        "comment": "Generated by tools/gen_tokenizer_goldens.py: ids and decoded text from "
                   f"Hugging Face tokenizers {tokenizers.__version__} (Tokenizer.encode / "
                   "Tokenizer.decode). Do not edit by hand.",
        "source": source,
        "sha256": digest,
        "tokenizers_version": tokenizers.__version__,
        "cases": cases,
        "decode_cases": decode_cases(tok, random.Random(seed)),
    }


def write_json(path, obj):
    """One case per line: small diffs, small files."""
    lines = ["{"]
    keys = list(obj.keys())
    for i, k in enumerate(keys):
        v = obj[k]
        sep = "," if i + 1 < len(keys) else ""
        if isinstance(v, list):
            lines.append(f"{json.dumps(k)}: [")
            for j, item in enumerate(v):
                lines.append(json.dumps(item, ensure_ascii=True) + ("," if j + 1 < len(v) else ""))
            lines.append("]" + sep)
        else:
            lines.append(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=True)}{sep}")
    lines.append("}")
    with open(path, "w", encoding="ascii") as f:
        f.write("\n".join(lines) + "\n")


FEATURE_CORPUS = [t for t in TEXTS if t] + [
    "the cat sat on the mat with another cat and the dog sat on the log",
    "tokenizers split text into pieces; pieces become ids; ids become text again",
    "numbers like 12345 and 678 and 90 appear in text, as do dates: 2024-01-31",
]


def feature_metaspace():
    """Metaspace pre-tokenizer and decoder, byte fallback, unk, normalizers
    NFKC/Replace/Strip, added tokens with lstrip/rstrip/single_word."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Replace(Regex(r"[ \t]+"), " "), normalizers.Strip(left=False, right=True)])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence([decoders.ByteFallback(), decoders.Metaspace(replacement="\u2581",
                                                                                  prepend_scheme="first")])
    # Byte tokens for ASCII only: other characters outside the alphabet become
    # (fused) <unk>. The trainer adds them as special tokens; they are made
    # ordinary vocabulary entries afterwards, as in Llama's tokenizer.
    byte_tokens = [f"<0x{b:02X}>" for b in range(128)]
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"] + byte_tokens,
                                  show_progress=False, limit_alphabet=60)
    tok.train_from_iterator(FEATURE_CORPUS, trainer)
    data = json.loads(tok.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in byte_tokens]
    tok = Tokenizer.from_str(json.dumps(data))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, normalized=False, special=True)])
    tok.add_tokens([AddedToken("[SEP]", rstrip=True, normalized=False),
                    AddedToken("cat", single_word=True, normalized=True),
                    AddedToken("Hello", normalized=True)])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>",
        special_tokens=[("<s>", tok.token_to_id("<s>")), ("</s>", tok.token_to_id("</s>"))])
    return tok


def feature_split():
    """Split behaviours (and invert), Digits, ByteLevel with add_prefix_space,
    a Prepend normalizer and a Replace decoder."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Replace("``", '"')])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"[.,;:!?]"), behavior="merged_with_previous"),
        pre_tokenizers.Split(Regex(r"\s+"), behavior="contiguous", invert=True),
        pre_tokenizers.Split(Regex(r"_"), behavior="removed"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True),
    ])
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("  ", " ")])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<|bos|>", "<|eos|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(FEATURE_CORPUS, trainer)
    tok.add_tokens([AddedToken("  ", normalized=True), AddedToken("<tool>", normalized=False, lstrip=True,
                                                                   rstrip=True)])
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|bos|> $A <|eos|>", special_tokens=[
            ("<|bos|>", tok.token_to_id("<|bos|>")), ("<|eos|>", tok.token_to_id("<|eos|>"))])])
    return tok


SPACE = "\u2581"
DECODER_VARIANTS = [
    # Per-token Replace before ByteLevel (then " " is outside the byte table),
    # Strip and a regex Replace on the fused text.
    ("decoders_bytelevel", "feature_split", {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u0120"}, "content": " "},
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        {"type": "Strip", "content": " ", "start": 1, "stop": 2},
        {"type": "Replace", "pattern": {"Regex": "o+"}, "content": "0"}]}),
    # Per-token Strip and Metaspace, then Fuse, a string Replace and Strip on
    # the fused text.
    ("decoders_metaspace", "feature_metaspace", {"type": "Sequence", "decoders": [
        {"type": "ByteFallback"},
        {"type": "Strip", "content": SPACE, "start": 1, "stop": 0},
        {"type": "Metaspace", "replacement": SPACE, "prepend_scheme": "always", "split": True},
        {"type": "Fuse"},
        {"type": "Replace", "pattern": {"String": "ab"}, "content": "X"},
        {"type": "Strip", "content": " ", "start": 0, "stop": 3}]}),
]


def check_generated(path, tok):
    """Loads a generated tokenizer with transformers, as a checkpoint would be."""
    try:
        from transformers import PreTrainedTokenizerFast
    except ImportError:
        print("  transformers not installed: skipped the transformers check")
        return
    config_path = path.replace(".tokenizer.json", ".tokenizer_config.json")
    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            f.write(tok.to_str())
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f)
        hf = PreTrainedTokenizerFast.from_pretrained(d)
        text = "Hello world, this is a test."
        assert hf.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False).ids
        assert hf.eos_token == "<|endoftext|>" and hf.bos_token == "<|endoftext|>"
        chat = hf.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False,
                                      add_generation_prompt=True)
        assert chat == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", repr(chat)
        print(f"  transformers: loads, encodes the same, chat template renders {chat!r}")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    flags = [a for a in sys.argv[1:] if a.startswith("--")]
    shared = args[0] if len(args) > 0 else os.path.join(root, "..", "shared", "data", "tokenizers")
    out = args[1] if len(args) > 1 else os.path.join(root, "tests", "data", "tokenizer")
    os.makedirs(out, exist_ok=True)
    for seed, (name, rel) in enumerate(REAL.items()):
        path = os.path.join(shared, rel)
        if not os.path.exists(path):
            print(f"{name}: {path} not found, skipped")
            continue
        tok = Tokenizer.from_file(path)
        write_json(os.path.join(out, f"{name}.json"), goldens(tok, rel, sha256(path), seed))
        print(f"{name}: {len(TEXTS)} texts from {rel}")

    retrain = "--retrain" in flags
    for seed, (name, make) in enumerate([("feature_metaspace", feature_metaspace),
                                         ("feature_split", feature_split)], start=100):
        json_path = os.path.join(out, f"{name}.tokenizer.json")
        # Training is not reproducible run to run: keep the committed file.
        trained = retrain or not os.path.exists(json_path)
        if trained:
            with open(json_path, "w", encoding="utf-8") as f:
                f.write(make().to_str())
        tok = Tokenizer.from_file(json_path)  # exactly what the C++ test loads
        write_json(os.path.join(out, f"{name}.json"),
                   goldens(tok, f"{name}.tokenizer.json", sha256(json_path), seed))
        print(f"{name}: {'trained here' if trained else 'kept the committed tokenizer.json'}, {len(TEXTS)} texts")

    # Other decoder chains on the same models (decoding only differs).
    for name, base, decoder in DECODER_VARIANTS:
        with open(os.path.join(out, f"{base}.tokenizer.json"), encoding="utf-8") as f:
            data = json.load(f)
        data["decoder"] = decoder
        json_path = os.path.join(out, f"{name}.tokenizer.json")
        with open(json_path, "w", encoding="utf-8") as f:
            f.write(Tokenizer.from_str(json.dumps(data)).to_str())
        tok = Tokenizer.from_file(json_path)
        write_json(os.path.join(out, f"{name}.json"),
                   goldens(tok, f"{name}.tokenizer.json", sha256(json_path), 150))
        print(f"{name}: {base} with another decoder, {len(TEXTS)} texts")

    for fname in sorted(os.listdir(out)):
        if not (fname.startswith("generated_") and fname.endswith(".tokenizer.json")):
            continue
        path = os.path.join(out, fname)
        with open(path, encoding="utf-8") as f:
            tok = Tokenizer.from_str(f.read())
        name = fname[: -len(".tokenizer.json")]
        write_json(os.path.join(out, f"{name}.json"), goldens(tok, fname, sha256(path), 200))
        print(f"{name}: loaded with Tokenizer.from_str, {len(TEXTS)} texts")
        check_generated(path, tok)


if __name__ == "__main__":
    main()
