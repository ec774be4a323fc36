#!/usr/bin/env python3
"""Golden logits from Hugging Face transformers for qllm's CPU reference.

For each architecture, writes a tiny synthetic checkpoint with `qllm make-model`
(float32 weights, fixed seed), loads it with transformers'
AutoModelForCausalLM in float32 on the CPU, and records:
  * prefill logits for every prompt position,
  * greedy decode steps with the KV cache (the token fed and its logits).
Output: tests/data/logits/<arch>.json. The C++ test rebuilds the same
checkpoint (weights are a pure function of the seed) and compares.

usage: tools/gen_logit_goldens.py --qllm build/qllm [--out tests/data/logits]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import transformers
from transformers import AutoModelForCausalLM

ARCHS = ["mixtral", "qwen3_moe", "olmoe"]
SEED = 1234
PROMPT = [5, 17, 200, 33, 2, 401, 99, 77, 300, 12, 8, 250, 64, 128, 7, 311]
DECODE_STEPS = 6


def floats(t):
    return [float("%.9g" % v) for v in t.tolist()]


def run(qllm, arch, out_dir):
    with tempfile.TemporaryDirectory() as tmp:
        ck = os.path.join(tmp, arch)
        args = ["make-model", "--arch", arch, "--preset", "tiny", "--dtype", "f32",
                "--seed", str(SEED), "--out", ck, "--quiet"]
        subprocess.run([qllm] + args, check=True, stdout=subprocess.DEVNULL)
        model, info = AutoModelForCausalLM.from_pretrained(
            ck, dtype=torch.float32, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            sys.exit(f"{arch}: transformers did not load every weight: {bad}")
        model.eval()
        with torch.no_grad():
            ids = torch.tensor([PROMPT])
            out = model(ids, use_cache=True)
            prefill = out.logits[0]
            past = out.past_key_values
            steps = []
            nxt = int(prefill[-1].argmax())
            for _ in range(DECODE_STEPS):
                o = model(torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = o.past_key_values
                steps.append({"token": nxt, "logits": floats(o.logits[0, -1])})
                nxt = int(o.logits[0, -1].argmax())
        doc = {
            "source": "Hugging Face transformers %s, torch %s, float32 on CPU "
                      "(tools/gen_logit_goldens.py)" % (transformers.__version__, torch.__version__),
            "make_model": " ".join(args[:-3]),
            "arch": arch,
            "seed": SEED,
            "prompt": PROMPT,
            "prefill_logits": [floats(r) for r in prefill],
            "decode": steps,
        }
        path = os.path.join(out_dir, f"{arch}.json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        print(f"{path}: vocab {prefill.shape[-1]}, {len(PROMPT)} prefill rows, {DECODE_STEPS} decode steps")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--qllm", default="build/qllm")
    ap.add_argument("--out", default="tests/data/logits")
    ap.add_argument("--arch", action="append", choices=ARCHS)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for arch in a.arch or ARCHS:
        run(a.qllm, arch, a.out)


if __name__ == "__main__":
    main()
