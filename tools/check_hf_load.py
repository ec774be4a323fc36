#!/usr/bin/env python3
"""Check that Hugging Face transformers loads a checkpoint folder completely.

    tools/check_hf_load.py DIR [--compare-logits] [--tokens 1,2,3] [--dump FILE]

Loads DIR with AutoConfig, AutoModelForCausalLM (float32, CPU) and
AutoTokenizer, then checks:

  * loading info: no missing, unexpected or mismatched keys, no error messages;
  * every parameter of the model equals the tensor in the safetensors files
    (per-expert files are stacked the way transformers fuses them), so no
    weight was newly initialised;
  * the tokenizer loads, fits in vocab_size and round-trips a short text;
  * a forward pass on a few token ids gives finite logits (stats printed).

--compare-logits also runs a plain PyTorch reference of the architecture as
MODELS.md describes it (RMSNorm, QK norm, RoPE, GQA attention, softmax router
with top-k and optional renormalisation, SwiGLU experts), reading the
safetensors files directly, and compares its logits with transformers'.
--dump writes the token ids and the logits as JSON (a golden for C++ tests).

Exits 1 on any problem. Python is tooling only: qllm itself never runs it.
"""
import argparse
import json
import math
import os
import sys

import torch
from safetensors import safe_open


def fail(problems, msg):
    problems.append(msg)
    print(f"PROBLEM: {msg}")


def read_weights(folder):
    """All tensors of model.safetensors or of the shards of the index."""
    index = os.path.join(folder, "model.safetensors.index.json")
    single = os.path.join(folder, "model.safetensors")
    if os.path.exists(single):
        files = [single]
    else:
        with open(index) as f:
            files = sorted({os.path.join(folder, s) for s in json.load(f)["weight_map"].values()})
    out = {}
    for path in files:
        with safe_open(path, framework="pt") as f:
            for name in f.keys():
                out[name] = f.get_tensor(name)
    return out


def fused_view(weights, num_layers, num_experts):
    """The checkpoint's tensors under transformers' in-memory names: experts
    fused as gate_up_proj [E, 2I, H] (gate rows first) and down_proj [E, H, I],
    Mixtral's block_sparse_moe. renamed to mlp."""
    out = {k.replace(".block_sparse_moe.", ".mlp."): v for k, v in weights.items()}
    for layer in range(num_layers):
        p = f"model.layers.{layer}.mlp.experts"
        for gate, up, down in (("w1", "w3", "w2"), ("gate_proj", "up_proj", "down_proj")):
            if f"{p}.0.{gate}.weight" not in out:
                continue
            g = [out.pop(f"{p}.{e}.{gate}.weight") for e in range(num_experts)]
            u = [out.pop(f"{p}.{e}.{up}.weight") for e in range(num_experts)]
            d = [out.pop(f"{p}.{e}.{down}.weight") for e in range(num_experts)]
            out[f"{p}.gate_up_proj"] = torch.cat([torch.stack(g), torch.stack(u)], dim=1)
            out[f"{p}.down_proj"] = torch.stack(d)
    return out


def rms(x, w, eps):
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def reference_logits(cfg, W, ids):
    """Forward pass of the three architectures from MODELS.md, float32."""
    mt = cfg["model_type"]
    H, L = cfg["hidden_size"], cfg["num_hidden_layers"]
    nh = cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads") or nh
    hd = cfg.get("head_dim") or H // nh
    eps = cfg.get("rms_norm_eps", 1e-5)
    rp = cfg.get("rope_parameters") or {}
    theta = rp.get("rope_theta", cfg.get("rope_theta", 10000.0))
    E = cfg.get("num_local_experts") or cfg.get("num_experts")
    k = cfg["num_experts_per_tok"]
    renorm = True if mt == "mixtral" else bool(cfg.get("norm_topk_prob", False))
    clip = cfg.get("clip_qkv") if mt == "olmoe" else None
    only = set(cfg.get("mlp_only_layers") or [])
    step = cfg.get("decoder_sparse_step", 1) or 1

    T = len(ids)
    x = W["model.embed_tokens.weight"][torch.tensor(ids)].float()
    pos = torch.arange(T, dtype=torch.float32)
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float32) / hd))
    freqs = torch.outer(pos, inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    mask = torch.full((T, T), float("-inf")).triu(1)
    for l in range(L):
        p = f"model.layers.{l}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = h @ W[p + "self_attn.q_proj.weight"].T
        kk = h @ W[p + "self_attn.k_proj.weight"].T
        v = h @ W[p + "self_attn.v_proj.weight"].T
        if mt == "olmoe":  # full-width QK norm on the projection outputs
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            kk = rms(kk, W[p + "self_attn.k_norm.weight"], eps)
        if clip is not None:
            q, kk, v = q.clamp(-clip, clip), kk.clamp(-clip, clip), v.clamp(-clip, clip)
        q, kk, v = q.view(T, nh, hd), kk.view(T, nkv, hd), v.view(T, nkv, hd)
        if mt == "qwen3_moe":  # per-head QK norm over head_dim
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            kk = rms(kk, W[p + "self_attn.k_norm.weight"], eps)
        q = q * cos[:, None] + rotate_half(q) * sin[:, None]
        kk = kk * cos[:, None] + rotate_half(kk) * sin[:, None]
        rep = nh // nkv
        kk, v = kk.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        s = torch.einsum("thd,shd->hts", q, kk) / math.sqrt(hd) + mask
        a = torch.einsum("hts,shd->thd", s.softmax(-1), v).reshape(T, nh * hd)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        moe = mt != "qwen3_moe" or (l not in only and (l + 1) % step == 0)
        if not moe:
            g = h @ W[p + "mlp.gate_proj.weight"].T
            u = h @ W[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(g) * u) @ W[p + "mlp.down_proj.weight"].T
            continue
        probs = (h @ W[p + "mlp.gate.weight"].T).float().softmax(-1)
        topv, topi = probs.topk(k, dim=-1)
        if renorm:
            topv = topv / topv.sum(-1, keepdim=True)
        gu, dn = W[p + "mlp.experts.gate_up_proj"], W[p + "mlp.experts.down_proj"]
        I = gu.shape[1] // 2
        y = torch.zeros_like(x)
        for t in range(T):
            for j in range(k):
                e = int(topi[t, j])
                g, u = gu[e, :I] @ h[t], gu[e, I:] @ h[t]
                y[t] += topv[t, j] * (dn[e] @ (torch.nn.functional.silu(g) * u))
        x = x + y
    x = rms(x, W["model.norm.weight"], eps)
    head = W.get("lm_head.weight", W["model.embed_tokens.weight"])
    return x @ head.float().T


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--compare-logits", action="store_true")
    ap.add_argument("--tokens", default="", help="comma-separated token ids (default: a few spread over the vocab)")
    ap.add_argument("--dump", default="", help="write {tokens, logits} as JSON here")
    ap.add_argument("--atol", type=float, default=1e-4)
    args = ap.parse_args()

    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    transformers.logging.set_verbosity_error()
    problems = []
    folder = args.dir
    with open(os.path.join(folder, "config.json")) as f:
        raw_cfg = json.load(f)
    config = AutoConfig.from_pretrained(folder)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}")
    print(f"config: {type(config).__name__} model_type={config.model_type} architectures={config.architectures}")

    model, info = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, output_loading_info=True)
    model.eval()
    print(f"model: {type(model).__name__}, {sum(p.numel() for p in model.parameters()):,} parameters")
    for key in ("missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"):
        items = list(info.get(key) or [])
        print(f"loading info {key}: {len(items)}")
        if items:
            fail(problems, f"{key}: {items[:8]}{' ...' if len(items) > 8 else ''}")

    weights = read_weights(folder)
    E = raw_cfg.get("num_local_experts") or raw_cfg.get("num_experts")
    expected = fused_view(weights, raw_cfg["num_hidden_layers"], E)
    if raw_cfg.get("tie_word_embeddings") and "lm_head.weight" not in expected:
        expected["lm_head.weight"] = expected["model.embed_tokens.weight"]
    checked = 0
    for name, param in model.state_dict().items():
        want = expected.get(name)
        if want is None:
            fail(problems, f"parameter {name} {tuple(param.shape)} has no tensor in the files (newly initialised)")
        elif tuple(want.shape) != tuple(param.shape):
            fail(problems, f"parameter {name}: model shape {tuple(param.shape)}, file {tuple(want.shape)}")
        elif not torch.equal(want.float(), param.float()):
            diff = (want.float() - param.float()).abs().max().item()
            fail(problems, f"parameter {name} differs from the file (max abs diff {diff:.3g})")
        else:
            checked += 1
    print(f"parameters equal to the file: {checked} of {len(model.state_dict())}")

    try:
        tok = AutoTokenizer.from_pretrained(folder)
        text = "Hello world, 12 tokens!"
        ids = tok(text, add_special_tokens=False)["input_ids"]
        back = tok.decode(ids)
        print(f"tokenizer: {type(tok).__name__}, {len(tok)} tokens; {text!r} -> {ids[:16]} -> {back!r}")
        if len(tok) > config.vocab_size:
            fail(problems, f"tokenizer has {len(tok)} tokens, more than vocab_size {config.vocab_size}")
        if back != text:
            fail(problems, f"tokenizer round trip changed {text!r} into {back!r}")
    except Exception as e:  # noqa: BLE001 - report any loader failure
        fail(problems, f"AutoTokenizer failed: {type(e).__name__}: {e}")

    V = config.vocab_size
    tokens = [int(t) for t in args.tokens.split(",")] if args.tokens else \
        [1 % V, 17 % V, 123 % V, (V // 3), (V // 2), V - 1, 42 % V, 7 % V]
    with torch.no_grad():
        logits = model(torch.tensor([tokens])).logits[0].float()
    finite = bool(torch.isfinite(logits).all())
    print(f"forward: tokens {tokens} -> logits {tuple(logits.shape)} mean {logits.mean():.5f} "
          f"std {logits.std():.5f} min {logits.min():.5f} max {logits.max():.5f} "
          f"argmax(last) {int(logits[-1].argmax())}")
    if not finite:
        fail(problems, "logits are not all finite")

    if args.compare_logits:
        with torch.no_grad():
            ref = reference_logits(raw_cfg, {k: v.float() for k, v in expected.items()}, tokens)
        diff = (ref - logits).abs().max().item()
        scale = logits.abs().max().item()
        print(f"reference forward: max abs diff {diff:.3g} (logits max {scale:.3g}, atol {args.atol:g})")
        if not diff <= args.atol:
            fail(problems, f"reference logits differ from transformers' by {diff:.3g} > {args.atol:g}")

    if args.dump:
        with open(args.dump, "w") as f:
            json.dump({"tokens": tokens, "logits": logits.tolist()}, f)

    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
