#!/usr/bin/env python3
"""safetensors fixtures written by the Python `safetensors` library, and a checker.

  gen [OUTDIR]            write the fixtures (needs torch and safetensors) into
                          OUTDIR (default tests/data/safetensors) with, per file,
                          NAME.expected.json: what the C++ parser must report.
  seeds [OUTDIR]          write the fuzz seed corpus (no dependencies) into
                          OUTDIR (default tests/fuzz/corpus/safetensors): the
                          fixtures above plus small valid and invalid files.
  verdicts FILE...        print one JSON line {"file", "accepted", "error"} per
                          FILE: whether Python's safetensors loads it (exit 77
                          when the module is missing).
  check FILE EXPECTED     load FILE with Python's safetensors and compare it with
                          EXPECTED (same JSON format); exit 0 when equal, 1 when
                          not, 77 when the safetensors module is missing (the C++
                          test then skips).

Expected-JSON format:
  {"header_len": N, "metadata": {..} or null,
   "tensors": [{"name", "dtype", "shape", "data_offsets", "data_hex"}, ...]}
with tensors in data-offset order. The header fields come from reading the
header with Python's json module; dtype, shape and data come from
safetensors.deserialize.
"""
import json
import os
import struct
import sys

# Every dtype qllm knows, with the torch dtype used to create it.
DTYPES = [
    ("BOOL", "bool"), ("U8", "uint8"), ("I8", "int8"), ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"), ("I16", "int16"), ("U16", "uint16"), ("F16", "float16"),
    ("BF16", "bfloat16"), ("I32", "int32"), ("U32", "uint32"), ("F32", "float32"),
    ("F64", "float64"), ("I64", "int64"), ("U64", "uint64"),
]
SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2,
         "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8}


def pattern(dtype, numel, seed):
    n = numel * SIZES[dtype]
    if dtype == "BOOL":
        return bytes((i + seed) % 2 for i in range(n))
    return bytes((i * 131 + seed * 17 + 7) & 0xFF for i in range(n))


def numel_of(shape):
    n = 1
    for d in shape:
        n *= d
    return n


# name -> (tensors [(name, dtype, shape)], metadata or None)
FIXTURES = {
    "all_dtypes": (
        [(f"t.{d.lower()}", d, [2, 3] if i % 3 == 0 else ([5] if i % 3 == 1 else [1, 2, 2]))
         for i, (d, _) in enumerate(DTYPES)],
        {"format": "pt", "comment": "unicode \u00e9\u2713 and \"quotes\""},
    ),
    "scalars_and_empty": (
        [("scalar.f32", "F32", []), ("scalar.bool", "BOOL", []), ("empty.bf16", "BF16", [0]),
         ("empty.i16", "I16", [3, 0]), ("empty.f64", "F64", [0, 4, 2]), ("bytes", "U8", [2])],
        None,
    ),
    "no_tensors": ([], {"format": "pt"}),
    "names": (
        [("model.layers.0.mlp.experts.7.down_proj.weight", "BF16", [2, 2]),
         ("\u00e9mbed", "F16", [3]), ("\u540d\u524d", "I32", [1]), ("", "U8", [1])],
        None,
    ),
}


def read_header(blob):
    (n,) = struct.unpack("<Q", blob[:8])
    return n, json.loads(blob[8:8 + n].decode("utf-8"))


def describe(blob):
    """What Python sees in a safetensors file, in the expected-JSON format."""
    import safetensors

    n, header = read_header(blob)
    loaded = dict(safetensors.deserialize(blob))
    tensors = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        t = loaded[name]
        tensors.append({"name": name, "dtype": t["dtype"], "shape": list(t["shape"]),
                        "data_offsets": info["data_offsets"], "data_hex": bytes(t["data"]).hex()})
    tensors.sort(key=lambda t: (t["data_offsets"][0], t["data_offsets"][1]))
    return {"header_len": n, "metadata": header.get("__metadata__"), "tensors": tensors}


def gen(outdir):
    import torch
    from safetensors.torch import save

    os.makedirs(outdir, exist_ok=True)
    tdt = dict(DTYPES)
    for fname, (specs, metadata) in FIXTURES.items():
        tensors = {}
        for seed, (name, dtype, shape) in enumerate(specs):
            dt = getattr(torch, tdt[dtype])
            n = numel_of(shape)
            if n == 0:
                tensors[name] = torch.empty(shape, dtype=dt)
            else:
                raw = torch.frombuffer(bytearray(pattern(dtype, n, seed)), dtype=torch.uint8)
                tensors[name] = raw.view(dt).reshape(shape)
        blob = save(tensors, metadata=metadata)
        with open(os.path.join(outdir, fname + ".safetensors"), "wb") as f:
            f.write(blob)
        want = describe(blob)
        for seed, (name, dtype, shape) in enumerate(specs):  # the bytes went in unchanged
            got = next(t for t in want["tensors"] if t["name"] == name)
            assert got["data_hex"] == pattern(dtype, numel_of(shape), seed).hex(), name
        with open(os.path.join(outdir, fname + ".expected.json"), "w", encoding="utf-8") as f:
            json.dump(want, f, indent=1, ensure_ascii=True)
            f.write("\n")
        print(f"wrote {fname}.safetensors ({len(blob)} bytes)")


def raw(header, data=b"", length=None):
    h = header.encode() if isinstance(header, str) else header
    return struct.pack("<Q", len(h) if length is None else length) + h + data


def entry(name, dtype, shape, begin, end):
    return '"%s":{"dtype":"%s","shape":%s,"data_offsets":[%d,%d]}' % (
        name, dtype, json.dumps(shape).replace(" ", ""), begin, end)


SEEDS = {
    "valid_two": raw("{%s,%s}" % (entry("a", "F32", [2], 0, 8), entry("b", "BF16", [1, 2], 8, 12)),
                     bytes(12)),
    "valid_padded": raw('  {"__metadata__":{"format":"pt"},%s}   ' % entry("w", "U8", [3], 0, 3),
                        b"abc"),
    "valid_empty_and_scalar": raw("{%s,%s,%s}" % (entry("z", "F16", [0, 2], 0, 0),
                                                  entry("s", "I64", [], 0, 8),
                                                  entry("z2", "BOOL", [0], 8, 8)), bytes(8)),
    "bad_truncated": raw("{%s}" % entry("a", "F32", [2], 0, 8), bytes(5)),
    "bad_short": b"\x05\x00\x00",
    "bad_len_beyond": raw("{}", b"", length=4096),
    "bad_hole": raw("{%s,%s}" % (entry("a", "F32", [1], 0, 4), entry("b", "F32", [1], 8, 12)),
                    bytes(12)),
    "bad_overlap": raw("{%s,%s}" % (entry("a", "F32", [2], 0, 8), entry("b", "F32", [2], 4, 12)),
                       bytes(12)),
    "bad_duplicate": raw("{%s,%s}" % (entry("a", "F32", [1], 0, 4), entry("a", "F32", [1], 4, 8)),
                         bytes(8)),
    "bad_negative_dim": raw("{%s}" % entry("a", "F32", [-1, 2], 0, 8), bytes(8)),
    "bad_size_mismatch": raw("{%s}" % entry("a", "F64", [2], 0, 8), bytes(8)),
    "bad_dtype": raw("{%s}" % entry("a", "F4", [2], 0, 1), bytes(1)),
    "bad_metadata": raw('{"__metadata__":{"k":1,"j":["x"]}}'),
    "bad_nul_padding": raw(b'{"__metadata__":{}}\0\0\0\0\0'),
    "bad_not_object": raw('["a",{"dtype":"F32"}]'),
    "bad_missing_key": raw('{"a":{"dtype":"F32","shape":[1]}}', bytes(4)),
}


def seeds(outdir, fixtures_dir):
    os.makedirs(outdir, exist_ok=True)
    for name in sorted(FIXTURES):
        with open(os.path.join(fixtures_dir, name + ".safetensors"), "rb") as f:
            SEEDS["py_" + name] = f.read()
    for name, blob in SEEDS.items():
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(blob)
    print(f"wrote {len(SEEDS)} seeds ({sum(map(len, SEEDS.values()))} bytes) to {outdir}")


def check(path, expected_path):
    try:
        import safetensors  # noqa: F401
        from safetensors import safe_open
    except ImportError:
        print("python safetensors module not available", file=sys.stderr)
        return 77
    with open(path, "rb") as f:
        blob = f.read()
    with open(expected_path, encoding="utf-8") as f:
        want = json.load(f)
    got = describe(blob)
    try:  # metadata through the file API too, where numpy is there
        with safe_open(path, framework="numpy") as f:
            md = f.metadata()
    except ImportError:
        md = got["metadata"]
    ok = True
    if (md or None) != (want.get("metadata") or None):
        print(f"{path}: metadata differs: python {md}, expected {want.get('metadata')}")
        ok = False
    gt = {t["name"]: t for t in got["tensors"]}
    wt = {t["name"]: t for t in want["tensors"]}
    if set(gt) != set(wt):
        print(f"{path}: tensor names differ: python {sorted(gt)}, expected {sorted(wt)}")
        ok = False
    for name in sorted(set(gt) & set(wt)):
        for key in ("dtype", "shape", "data_hex"):
            if gt[name][key] != wt[name][key]:
                print(f"{path}: tensor {name!r}: {key} differs: python {gt[name][key]!r}, "
                      f"expected {wt[name][key]!r}")
                ok = False
    return 0 if ok else 1


def verdicts(paths):
    try:
        import safetensors
    except ImportError:
        print("python safetensors module not available", file=sys.stderr)
        return 77
    for path in paths:
        with open(path, "rb") as f:
            blob = f.read()
        try:
            safetensors.deserialize(blob)
            out = {"file": os.path.basename(path), "accepted": True, "error": ""}
        except Exception as e:  # noqa: BLE001 - any refusal counts
            out = {"file": os.path.basename(path), "accepted": False, "error": str(e)[:200]}
        print(json.dumps(out))
    return 0


def main(argv):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if len(argv) >= 1 and argv[0] == "gen":
        gen(argv[1] if len(argv) > 1 else os.path.join(root, "tests", "data", "safetensors"))
        return 0
    if len(argv) >= 1 and argv[0] == "seeds":
        fixtures = os.path.join(root, "tests", "data", "safetensors")
        seeds(argv[1] if len(argv) > 1 else os.path.join(root, "tests", "fuzz", "corpus",
                                                          "safetensors"), fixtures)
        return 0
    if len(argv) >= 1 and argv[0] == "verdicts":
        return verdicts(argv[1:])
    if len(argv) == 3 and argv[0] == "check":
        return check(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
