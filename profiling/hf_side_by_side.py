#!/usr/bin/env python3
"""Hugging Face transformers and qllm side by side: one checkpoint, one GPU.

    python3 profiling/hf_side_by_side.py --out DIR
        [--bench build-device/profiling/qllm_bench_model] [--qllm build-device/qllm]
        [--checkpoint CKPT | --preset olmoe-1b-7b --layers 2]
        [--batches 1,8] [--context 512] [--prompt 512] [--steps 20] [--warmup 3] [--reps 5]
        [--scratch SCRATCH] [--commit REV] [--json FILE]

The checkpoint: --checkpoint, else one written by `qllm make-model --preset
PRESET --layers N` (bf16, seed 0; OLMoE-1B-7B with 2 layers is about 2 GB)
into SCRATCH/checkpoint-PRESET-Nl (SCRATCH defaults to DIR), reused when it
is already there.

qllm: `qllm_bench_model --checkpoint CKPT --batches B --context C --prompts P
--prefill-chunk 0 --skip copy,launch` (the checkpoint's weights through the
host dispatcher; the prompt as one pass, as transformers runs it), run first,
in its own process, so the two never share the GPU.

transformers: AutoModelForCausalLM in bf16 on the GPU, eval mode, inference
mode, the default attention implementation (printed):
  decode   a forward of C tokens per sequence (batch B) fills the KV cache,
           then one token per sequence per forward (the next token: argmax of
           the last logits), `warmup` untimed and `steps` timed, each
           between two torch.cuda.synchronize() calls; the context grows from
           C to C + warmup + steps tokens (qllm stays at C)
  prefill  one forward of a P-token prompt (batch 1), use_cache=True, logits
           of the last position only where the model takes logits_to_keep;
           one warm-up, `reps` timed

Both sides give medians; ratio = transformers time / qllm time (above 1: qllm
is faster), for qllm's host-dispatched passes (as the engine runs) and its
replayed graphs (no host round trip). Prints a table and writes
DIR/hf_side_by_side.json (or --json) with both sides' figures, the GPU, the
versions and the commit. Exits 2 with a message when torch, transformers or a
CUDA device is missing, 1 when a step fails. Python is tooling only: qllm
itself never runs it.
"""
import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def die(code, msg):
    print(f"hf_side_by_side: {msg}", file=sys.stderr)
    sys.exit(code)


def ints(s):
    try:
        v = [int(x) for x in s.split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {s}")
    if not v or min(v) < 1:
        raise argparse.ArgumentTypeError(f"need positive integers: {s}")
    return v


def commit_of(arg):
    if arg:
        return arg
    if os.environ.get("QLLM_COMMIT"):
        return os.environ["QLLM_COMMIT"]
    try:
        out = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def median(v):
    return statistics.median(v) if v else float("nan")


def p90(v):
    s = sorted(v)
    return s[max(0, -(-9 * len(s) // 10) - 1)] if s else float("nan")


def ensure_checkpoint(a):
    if a.checkpoint:
        if not os.path.isfile(os.path.join(a.checkpoint, "config.json")):
            die(1, f"{a.checkpoint}: no config.json (not a checkpoint folder)")
        return a.checkpoint
    ck = os.path.join(a.scratch or a.out, f"checkpoint-{a.preset}-{a.layers}l")
    if os.path.isfile(os.path.join(ck, "config.json")) and os.path.isfile(os.path.join(ck, "model.safetensors")):
        print(f"checkpoint {ck} (already written)")
        return ck
    if not os.access(a.qllm, os.X_OK):
        die(1, f"{a.qllm}: no qllm binary to write the checkpoint with (build first, or give --checkpoint)")
    os.makedirs(os.path.dirname(ck), exist_ok=True)
    cmd = [a.qllm, "make-model", "--preset", a.preset, "--layers", str(a.layers), "--dtype", "bf16",
           "--seed", "0", "--out", ck, "--force", "--quiet"]
    print("$ " + " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    r = subprocess.run(cmd)
    if r.returncode != 0:
        die(1, f"make-model failed with status {r.returncode}")
    print(f"checkpoint {ck} written in {time.perf_counter() - t0:.1f} s")
    return ck


def run_qllm(a, ck, commit):
    path = os.path.join(a.out, "qllm-side-by-side.json")
    cmd = [a.bench, "--checkpoint", ck, "--batches", ",".join(map(str, a.batches)), "--context", str(a.context),
           "--prompts", str(a.prompt), "--prefill-chunk", "0", "--max-tokens", str(max(a.prompt, max(a.batches))),
           "--steps", str(a.steps), "--warmup", str(a.warmup), "--prefill-reps", str(a.reps),
           "--skip", "copy,launch", "--commit", commit, "--json", path]
    print("$ " + " ".join(cmd), flush=True)
    if not os.access(a.bench, os.X_OK):
        die(1, f"{a.bench}: no qllm_bench_model binary (build first, or give --bench)")
    r = subprocess.run(cmd)
    if r.returncode == 2:
        die(2, "qllm_bench_model found no CUDA device")
    if r.returncode != 0:
        die(1, f"qllm_bench_model failed with status {r.returncode}")
    with open(path) as f:
        return json.load(f)


def load_hf(ck):
    import torch
    from transformers import AutoModelForCausalLM
    try:
        model = AutoModelForCausalLM.from_pretrained(ck, dtype=torch.bfloat16)
    except TypeError:  # transformers before the dtype argument
        model = AutoModelForCausalLM.from_pretrained(ck, torch_dtype=torch.bfloat16)
    model = model.to("cuda").eval()
    params = inspect.signature(model.forward).parameters
    keep = "logits_to_keep" if "logits_to_keep" in params else (
        "num_logits_to_keep" if "num_logits_to_keep" in params else None)
    return model, keep


def hf_decode(model, vocab, batch, context, warmup, steps):
    import torch
    g = torch.Generator().manual_seed(batch)
    ids = torch.randint(0, vocab, (batch, context), generator=g).to("cuda")
    times = []
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True)
        past = out.past_key_values
        tok = out.logits[:, -1].argmax(-1, keepdim=True)
        torch.cuda.synchronize()
        for i in range(warmup + steps):
            t0 = time.perf_counter()
            out = model(input_ids=tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1].argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    del past, out
    torch.cuda.empty_cache()
    return times


def hf_prefill(model, keep, vocab, prompt, reps):
    import torch
    g = torch.Generator().manual_seed(prompt)
    ids = torch.randint(0, vocab, (1, prompt), generator=g).to("cuda")
    kwargs = {keep: 1} if keep else {}
    times = []
    with torch.inference_mode():
        for i in range(1 + reps):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model(input_ids=ids, use_cache=True, **kwargs)
            out.logits[:, -1].argmax(-1)
            torch.cuda.synchronize()
            if i >= 1:
                times.append((time.perf_counter() - t0) * 1e3)
            del out
    torch.cuda.empty_cache()
    return times


def main():
    ap = argparse.ArgumentParser(description="transformers and qllm side by side on one checkpoint and GPU")
    ap.add_argument("--out", required=True, help="folder for the JSON files (and a generated checkpoint)")
    ap.add_argument("--bench", default=os.path.join(ROOT, "build-device", "profiling", "qllm_bench_model"))
    ap.add_argument("--qllm", default=os.path.join(ROOT, "build-device", "qllm"))
    ap.add_argument("--checkpoint", help="checkpoint folder (default: write one with qllm make-model)")
    ap.add_argument("--preset", default="olmoe-1b-7b", help="make-model preset for the generated checkpoint")
    ap.add_argument("--layers", type=int, default=2, help="layers of the generated checkpoint")
    ap.add_argument("--batches", type=ints, default=[1, 8])
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scratch", help="folder for the generated checkpoint (default: OUT)")
    ap.add_argument("--commit")
    ap.add_argument("--json", help="output file (default: OUT/hf_side_by_side.json)")
    a = ap.parse_args()
    if min(a.context, a.prompt, a.steps, a.reps, a.layers) < 1 or a.warmup < 0:
        die(1, "--context, --prompt, --steps, --reps and --layers must be positive, --warmup not negative")

    try:
        import torch
        import transformers
    except ImportError as e:
        die(2, f"needs torch and transformers ({e}); nothing measured")
    if not torch.cuda.is_available():
        die(2, f"torch {torch.__version__} sees no CUDA device; nothing measured")
    os.makedirs(a.out, exist_ok=True)
    commit = commit_of(a.commit)

    ck = ensure_checkpoint(a)
    q = run_qllm(a, ck, commit)

    with open(os.path.join(ck, "config.json")) as f:
        config = json.load(f)
    vocab = int(config["vocab_size"])
    t0 = time.perf_counter()
    model, keep = load_hf(ck)
    load_s = time.perf_counter() - t0
    attn_impl = getattr(model.config, "_attn_implementation", "unknown")
    print(f"transformers {transformers.__version__}, torch {torch.__version__}: {config.get('architectures')} "
          f"loaded in {load_s:.1f} s, attention '{attn_impl}', on {torch.cuda.get_device_name(0)}", flush=True)

    hf = {"decode": [], "prefill": []}
    for b in a.batches:
        t = hf_decode(model, vocab, b, a.context, a.warmup, a.steps)
        hf["decode"].append({"batch": b, "context_first": a.context, "context_last": a.context + a.warmup + a.steps,
                             "ms": {"median": median(t), "p90": p90(t), "n": len(t)},
                             "tokens_per_s": b / (median(t) * 1e-3)})
    t = hf_prefill(model, keep, vocab, a.prompt, a.reps)
    hf["prefill"].append({"prompt": a.prompt, "ms": {"median": median(t), "p90": p90(t), "n": len(t)},
                          "tokens_per_s": a.prompt / (median(t) * 1e-3)})

    rows = []
    print(f"\n{'':18} {'transformers ms':>16} {'qllm host ms':>13} {'qllm replay ms':>15} {'HF/host':>8} "
          f"{'HF/replay':>10}")
    q_decode = {d["batch"]: d for d in q.get("decode", [])}
    for h in hf["decode"]:
        d = q_decode.get(h["batch"])
        if d is None:
            continue
        hm, qh, qr = h["ms"]["median"], d["host"]["wall_ms"]["median"], d["replay"]["wall_ms"]["median"]
        rows.append({"what": "decode", "batch": h["batch"], "hf_ms": hm, "qllm_host_ms": qh, "qllm_replay_ms": qr,
                     "hf_over_qllm_host": hm / qh, "hf_over_qllm_replay": hm / qr})
        print(f"{'decode batch ' + str(h['batch']):18} {hm:16.3f} {qh:13.3f} {qr:15.3f} {hm / qh:8.2f} "
              f"{hm / qr:10.2f}")
    q_prefill = {p["prompt"]: p for p in q.get("prefill", [])}
    for h in hf["prefill"]:
        p = q_prefill.get(h["prompt"])
        if p is None:
            continue
        hm, qm = h["ms"]["median"], p["wall_ms"]["median"]
        rows.append({"what": "prefill", "prompt": h["prompt"], "hf_ms": hm, "qllm_ms": qm, "hf_over_qllm": hm / qm,
                     "hf_tokens_per_s": h["tokens_per_s"], "qllm_tokens_per_s": p["tokens_per_s"]})
        print(f"{'prefill ' + str(h['prompt']):18} {hm:16.3f} {qm:13.3f} {'':15} {hm / qm:8.2f}")
    print("ratio = transformers time / qllm time (above 1: qllm is faster)")

    doc = {
        "benchmark": "hf_side_by_side",
        "commit": commit,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device": torch.cuda.get_device_name(0),
        "checkpoint": os.path.abspath(ck),
        "architecture": config.get("architectures"),
        "layers": config.get("num_hidden_layers"),
        "dtype": "bf16",
        "context": a.context,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "cuda": torch.version.cuda},
        "hf": {"attn_implementation": attn_impl, "load_seconds": load_s, "logits_to_keep": keep, **hf},
        "qllm": q,
        "ratios": rows,
    }
    path = a.json or os.path.join(a.out, "hf_side_by_side.json")
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
