#!/usr/bin/env python3
"""Custode evidence bundle: the Merkle inclusion check, by hand.

Run it in the directory where the bundle (or log extract) is unzipped:

    python3 verify_proof.py           # entry.json + proof.json, or extract.json
    python3 verify_proof.py receipt   # receipt.eml against entry.json

For each entry it computes the leaf hash SHA-256(0x00 || entry bytes), folds
it with the entry's audit path exactly as RFC 9162 section 2.1.3.2 verifies an
inclusion proof, and requires the root it gets to be the proof's "root" (hex)
and the root line of checkpoint.txt (standard base64 there), for the tree size
checkpoint.txt states. For a bundle it then checks that first-checkpoint.txt
covers the entry and that proof.json's consistency proof leads from its tree
to checkpoint.txt's (RFC 9162 section 2.1.4.2), and holds the delay between
the entry's riferimento temporale and the time of first-checkpoint.tsr to the
bound of BUNDLE.md section 5 (the token itself is checked with openssl: this
script only reads its genTime). With "receipt" it checks receipt.eml against entry.json:
the original has the entry's "sha256"; a reproduction carries entry.json byte
for byte and states its seq, kind, identificativo and riferimento temporale.
(The signatures are checked with openssl: see VERIFY.txt.)

Python 3 standard library only. Exit status 0 only if every check passes.
"""
import base64
import calendar
import email
import hashlib
import json
import re
import sys

HEX64 = re.compile(r"[0-9a-f]{64}")
PROOF = {"leaf_index", "tree_size", "leaf_hash", "root", "hashes"}
BUNDLE_PROOF = PROOF | {"first_tree_size", "first_root", "consistency", "checkpoint_interval_ms"}
SLACK_NS = 5 * 60 * 10**9      # the bound is the checkpoint interval + 5 minutes
TOLERANCE_NS = 60 * 10**9      # a first timestamp may precede the event by 1 minute at most


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


def checkpoint(name="checkpoint.txt"):
    """The size, root (hex) and origin a checkpoint body signs (FORMAT.md section 5)."""
    lines = read(name).decode("utf-8").split("\n")
    if len(lines) != 6 or lines[5] != "" or not lines[1].isdigit():
        fail(name + " is not a checkpoint")
    root = base64.b64decode(lines[2], validate=True)
    if len(root) != 32 or base64.b64encode(root).decode() != lines[2]:
        fail(name + ": the root line is not 32 bytes in base64")
    return int(lines[1]), root.hex(), lines[0]


def node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def consistent(first, second, first_root, second_root, path):
    """RFC 9162 section 2.1.4.2: verifies a consistency proof."""
    if first == second:
        return not path and first_root == second_root
    if first == 0 or first > second or not path:
        return False
    if first & (first - 1) == 0:
        path = [first_root] + path
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node(c, fr), node(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def der(buf, i, tag):
    """The DER element at i, which must have tag: (start, end) of its content."""
    if i + 2 > len(buf) or buf[i] != tag:
        fail("first-checkpoint.tsr is not a timestamp token")
    n, i = buf[i + 1], i + 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4:
            fail("first-checkpoint.tsr is not a timestamp token")
        n, i = int.from_bytes(buf[i:i + k], "big"), i + k
    if i + n > len(buf):
        fail("first-checkpoint.tsr is not a timestamp token")
    return i, i + n


def skip(buf, i):
    """The offset after the DER element at i."""
    return der(buf, i, buf[i] if i < len(buf) else -1)[1]


def gen_time_ns(token):
    """genTime of an RFC 3161 token, in nanoseconds since 1970 (RFC 3161 section 2.4.2)."""
    s, _ = der(token, 0, 0x30)            # ContentInfo
    s, _ = der(token, skip(token, s), 0xA0)  # after contentType: [0] content
    s, _ = der(token, s, 0x30)            # SignedData
    i = skip(token, skip(token, s))       # version, digestAlgorithms
    s, _ = der(token, i, 0x30)            # encapContentInfo
    s, _ = der(token, skip(token, s), 0xA0)  # after eContentType: [0] eContent
    s, _ = der(token, s, 0x04)            # OCTET STRING
    s, _ = der(token, s, 0x30)            # TSTInfo
    for _ in range(4):                    # version, policy, messageImprint, serialNumber
        s = skip(token, s)
    s, e = der(token, s, 0x18)            # genTime
    m = re.fullmatch(r"(\d{14})(?:\.(\d{1,9}))?Z", token[s:e].decode("ascii", "replace"))
    if not m:
        fail("first-checkpoint.tsr: genTime is not YYYYMMDDhhmmss[.f]Z")
    t = m.group(1)
    sec = calendar.timegm((int(t[:4]), int(t[4:6]), int(t[6:8]), int(t[8:10]), int(t[10:12]), int(t[12:14])))
    return sec * 10**9 + int((m.group(2) or "").ljust(9, "0"))


def rt_ns(rt):
    """riferimento_temporale (YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ) in nanoseconds since 1970."""
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z", rt)
    if not m:
        fail("entry.json: riferimento_temporale %r is not in its form" % rt)
    g = [int(x) for x in m.groups()]
    return calendar.timegm(tuple(g[:6])) * 10**9 + g[6]


def event_time(entry, proof, size, root, origin):
    """The first checkpoint covers the entry, grows into checkpoint.txt, and dates the event."""
    fsize, froot, forigin = checkpoint("first-checkpoint.txt")
    for m in ("first_tree_size", "checkpoint_interval_ms"):
        if not isinstance(proof[m], int) or isinstance(proof[m], bool):
            fail("proof.json: %s is not an integer" % m)
    if forigin != origin:
        fail("first-checkpoint.txt is of the log %r, checkpoint.txt of %r" % (forigin, origin))
    if proof["first_tree_size"] != fsize or proof["first_root"] != froot:
        fail("the consistency proof is from tree %s with root %s; first-checkpoint.txt signs %d with root %s"
             % (proof["first_tree_size"], proof["first_root"], fsize, froot))
    if entry["seq"] >= fsize:
        fail("first-checkpoint.txt does not cover the entry: it signs %d entries, the entry is %d" % (fsize, entry["seq"]))
    path = []
    for h in proof["consistency"] or []:
        if not isinstance(h, str) or not HEX64.fullmatch(h):
            fail("a consistency hash is not 64 lower-case hex digits")
        path.append(bytes.fromhex(h))
    if not consistent(fsize, size, bytes.fromhex(froot), bytes.fromhex(root), path):
        fail("the consistency proof from %d to %d does not verify" % (fsize, size))
    interval = proof["checkpoint_interval_ms"]
    if not 0 < interval <= 86400000:
        fail("checkpoint_interval_ms is not between 1 and 86400000")
    first = gen_time_ns(read("first-checkpoint.tsr"))
    delay = first - rt_ns(entry["riferimento_temporale"])
    bound = interval * 10**6 + SLACK_NS
    facts = "first timestamp %.3f s after the riferimento temporale; bound %.3f s" % (delay / 1e9, bound / 1e9)
    imported = (entry.get("details") or {}).get("imported")
    if delay < -TOLERANCE_NS:
        fail("the first timestamp is before the riferimento temporale by more than 60 s: " + facts)
    if imported:
        print("OK: the entry is IMPORTED (appended by hand on %s): %s, not held to it" % (imported, facts))
    elif delay > bound:
        fail("delay: " + facts + ", and the entry is not marked imported")
    else:
        print("OK: event time: " + facts)


def strict(raw):
    """Parses JSON, refusing NaN, Infinity and floats."""
    def bad(x):
        fail("JSON with " + x)
    return json.loads(raw, parse_constant=bad, parse_float=bad)


def prove(raw, proof, size, root, members=PROOF):
    """Checks one entry's canonical bytes and its proof to the checkpoint."""
    if set(proof) != members:
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
    size, root, origin = checkpoint()
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
    proof = strict(read("proof.json"))
    entry = prove(raw, proof, size, root, BUNDLE_PROOF)
    event_time(entry, proof, size, root, origin)
    if sys.argv[1:] == ["receipt"]:
        receipt(raw, entry)
        return
    print("OK: entry.json (seq %d) is in the tree of %d entries, root %s" % (entry["seq"], size, root))


if __name__ == "__main__":
    main()
