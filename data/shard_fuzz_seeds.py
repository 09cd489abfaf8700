#!/usr/bin/env python3
"""Seeds for data/shard_fuzz.cc: valid shards as docs/data.md ("Shard
format") lays them out, each behind the target's two control bytes
(seq_len, batch). Written from the specification, not with our writer.
Usage: shard_fuzz_seeds.py CORPUS_DIR"""
import os
import struct
import sys

MAGIC = b"SBTOKENS"


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def shard(tokens, vocab, token_bytes, eos=-1, tokenizer_hash=0x1234):
    docs = sum(1 for t in tokens if t == eos)
    head = MAGIC + struct.pack("<IIQQQQiI", 1, token_bytes, len(tokens), vocab, tokenizer_hash, docs, eos, 0)
    head += struct.pack("<Q", fnv1a64(head))
    assert len(head) == 64, len(head)
    fmt = "<%d%s" % (len(tokens), "H" if token_bytes == 2 else "I")
    return head + struct.pack(fmt, *tokens)


def main():
    out = sys.argv[1]
    seeds = {
        "u16": shard([i * 7 % 50 for i in range(300)], 50, 2),
        "u16_eos": shard([(i * 13) % 20 if i % 17 else 19 for i in range(200)], 20, 2, eos=19),
        "u32": shard([i * 40503 % 70000 for i in range(120)], 70000, 4),
        "short": shard([1, 2, 3], 4, 2),
    }
    for name, data in seeds.items():
        with open(os.path.join(out, "seed-" + name), "wb") as f:
            f.write(bytes([15, 1]) + data)  # seq_len 16, batch 2


if __name__ == "__main__":
    main()
