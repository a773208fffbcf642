#!/usr/bin/env python3
"""Custode evidence bundle: the Merkle inclusion check, by hand.

Run it in the directory where the bundle (or log extract) is unzipped:

    python3 verify_proof.py           # entry.json + proof.json, or extract.json
    python3 verify_proof.py receipt   # receipt.eml against entry.json

For each entry it computes the leaf hash SHA-256(0x00 || entry bytes), folds
it with the entry's audit path exactly as RFC 9162 section 2.1.3.2 verifies an
inclusion proof, and requires the root it gets to be the proof's "root" (hex)
and the root line of checkpoint.txt (standard base64 there), for the tree size
checkpoint.txt states. With "receipt" it checks receipt.eml against entry.json:
the original has the entry's "sha256"; a reproduction carries entry.json byte
for byte and states its seq, kind, identificativo and riferimento temporale.
(The signatures are checked with openssl: see VERIFY.txt.)

Python 3 standard library only. Exit status 0 only if every check passes.
"""
import base64
import email
import hashlib
import json
import re
import sys

HEX64 = re.compile(r"[0-9a-f]{64}")


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def read(name):
    with open(name, "rb") as f:
        return f.read()


def fold(index, size, leaf, path):
    """RFC 9162 section 2.1.3.2: the root an inclusion proof leads to."""
    if index >= size:
        fail("leaf %d is outside a tree of %d" % (index, size))
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            fail("the audit path is too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn >>= 1
        sn >>= 1
    if sn != 0:
        fail("the audit path is too short")
    return r


def checkpoint():
    """The size and root (hex) that checkpoint.txt signs (FORMAT.md section 5)."""
    lines = read("checkpoint.txt").decode("utf-8").split("\n")
    if len(lines) != 6 or lines[5] != "" or not lines[1].isdigit():
        fail("checkpoint.txt is not a checkpoint")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        fail("checkpoint.txt: the root line is not 32 bytes in base64")
    return int(lines[1]), root.hex()


def strict(raw):
    """Parses JSON, refusing NaN, Infinity and floats."""
    def bad(x):
        fail("JSON with " + x)
    return json.loads(raw, parse_constant=bad, parse_float=bad)


def prove(raw, proof, size, root):
    """Checks one entry's canonical bytes and its proof to the checkpoint."""
    if set(proof) != {"leaf_index", "tree_size", "leaf_hash", "root", "hashes"}:
        fail("a proof has members %s" % sorted(proof))
    entry = strict(raw)
    again = json.dumps(entry, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    if again != raw:
        fail("an entry is not in its canonical form")
    leaf = hashlib.sha256(b"\x00" + raw).digest()
    if proof["leaf_hash"] != leaf.hex():
        fail("entry seq %s: leaf hash %s, the proof says %s" % (entry.get("seq"), leaf.hex(), proof["leaf_hash"]))
    if proof["leaf_index"] != entry["seq"]:
        fail("the proof is for leaf %s, the entry is seq %s" % (proof["leaf_index"], entry["seq"]))
    if proof["tree_size"] != size or proof["root"] != root:
        fail("the proof is for tree %s with root %s; checkpoint.txt signs %d with root %s" % (proof["tree_size"], proof["root"], size, root))
    path = []
    for h in proof["hashes"] or []:
        if not isinstance(h, str) or not HEX64.fullmatch(h):
            fail("a proof hash is not 64 lower-case hex digits")
        path.append(bytes.fromhex(h))
    if fold(proof["leaf_index"], proof["tree_size"], leaf, path).hex() != root:
        fail("entry seq %s: the audit path does not lead to the root %s" % (entry["seq"], root))
    return entry


def receipt(raw, entry):
    """Checks receipt.eml against the entry: original or reproduction."""
    msg = read("receipt.eml")
    if hashlib.sha256(msg).hexdigest() == entry.get("sha256"):
        print("OK: receipt.eml is the ORIGINAL: its SHA-256 is the entry's")
        return
    m = email.message_from_bytes(msg)
    if m.get_content_type() != "multipart/signed" or not m.is_multipart():
        fail("receipt.eml is neither the original (SHA-256) nor a signed reproduction")
    signed = m.get_payload()[0]
    text, attached = [], []
    for part in signed.walk():
        if part.is_multipart():
            continue
        if part.get_filename() == "entry.json":
            attached.append(part.get_payload(decode=True))
        elif part.get_content_type() == "text/plain":
            text.append(part.get_payload(decode=True).decode("utf-8", "replace"))
    if len(text) != 1 or len(attached) != 1:
        fail("receipt.eml: a reproduction has one text and one entry.json attachment")
    if attached[0] != raw:
        fail("receipt.eml is the reproduction of another entry: the entry.json it carries is not entry.json")
    lines = {l.strip() for l in text[0].splitlines()}
    for want in ("seq: %d" % entry["seq"], "kind: " + entry["kind"],
                 "identificativo: " + entry.get("identificativo", ""),
                 "riferimento_temporale: " + entry["riferimento_temporale"]):
        if want not in lines:
            fail("receipt.eml does not state %r" % want)
    print("OK: receipt.eml is a REPRODUCTION of entry.json (check its signature with openssl)")


def main():
    size, root = checkpoint()
    try:
        doc = strict(read("extract.json"))
    except FileNotFoundError:
        doc = None
    if doc is not None:
        for e in doc["entries"]:
            prove(e["entry"].encode("utf-8"), e["proof"], size, root)
        print("OK: %d entries of extract.json are in the tree of %d, root %s" % (len(doc["entries"]), size, root))
        return
    raw = read("entry.json")
    entry = prove(raw, strict(read("proof.json")), size, root)
    if sys.argv[1:] == ["receipt"]:
        receipt(raw, entry)
        return
    print("OK: entry.json (seq %d) is in the tree of %d entries, root %s" % (entry["seq"], size, root))


if __name__ == "__main__":
    main()
