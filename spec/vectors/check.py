#!/usr/bin/env python3
"""Self-check of the shared config vectors (dev tool, not part of `make test`).

Usage: python3 spec/vectors/check.py [-v]

For every spec/vectors/config/*.json it checks:

1. The format (spec/vectors/README.md): a JSON object with a string `description`,
   exactly one of `input` / `input_text`, optional integer `pad_to_bytes`, optional
   `current`, and an `expect` that is `{"result":"accepted"}` or
   `{"result":"rejected","code":<known code>,"path":<JSON Pointer>}`; nothing else.
2. The expectation against a small reference validator written from docs/spec.md
   section 2 (this file's `validate`), fed the raw text of `input` exactly as the routers'
   tests must (no re-serialisation). It guards against slips when vectors are written by
   hand; the routers, not this script, are the implementations under test.
3. If the `jsonschema` package is installed: accepted vectors validate against
   spec/config.schema.json, and vectors rejected with a per-field code
   (unknown_field, missing_field, invalid_value, invalid_endpoint) fail it, with an error
   at the expected path or its parent, except the cases listed in SCHEMA_BLIND (rules the
   schema cannot state: see its top-level description).

Exit status 0 when everything holds, 1 otherwise.
"""
import ipaddress
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VECTORS = HERE / "config"
SCHEMA = HERE.parent / "config.schema.json"
MAX_BYTES = 1048576

CODES = {"too_large", "malformed_json", "unknown_field", "missing_field", "invalid_value",
         "invalid_endpoint", "unknown_placement", "fallback_cycle", "stale_version"}
PER_FIELD = {"unknown_field", "missing_field", "invalid_value", "invalid_endpoint"}

# Vectors whose per-field fault the JSON Schema cannot see, with the reason.
SCHEMA_BLIND = {
    "057-missing-lone-client-cert.json": "cert/key pairing is cross-field",
    "058-missing-lone-client-key.json": "cert/key pairing is cross-field",
    "064-version-fraction.json": "JSON Schema counts 5.0 as an integer",
    "065-integer-with-exponent.json": "JSON Schema counts 5e0 as an integer",
    "080-routing-key-258-bytes-multibyte.json": "maxLength counts code points, not bytes",
    "089-tls-on-http-endpoint.json": "tls-only-on-https is cross-field",
    "160-tls-http-check-before-pairing.json": "tls-only-on-https is cross-field",
    "227-weight-fraction.json": "JSON Schema counts 2.0 as an integer",
    "230-duplicate-url.json": "a repeated endpoint is cross-entry",
    "231-duplicate-host-case-and-slash.json": "a repeated endpoint is cross-entry",
    "232-mixed-schemes.json": "one scheme per placement is cross-entry",
    "240-tls-on-http-endpoints.json": "tls-only-on-https is cross-field",
    "254-duplicate-before-later-entry.json": "a repeated endpoint is cross-entry",
    "255-mixed-scheme-before-later-entry.json": "one scheme per placement is cross-entry",
    "259-endpoints-before-tls.json": "one scheme per placement is cross-entry",
    "303-protocol-h2-on-http.json": "protocol h2 only on https is cross-field",
    "304-protocol-h2-on-http-endpoints.json": "protocol h2 only on https is cross-field",
    "307-tls-before-protocol.json": "tls-only-on-https is cross-field",
}


class Fault(Exception):
    """A rejection: `code` from the spec's table, `path` a JSON Pointer (RFC 6901)."""

    def __init__(self, code, path):
        super().__init__(code, path)
        self.code, self.path = code, path


class NonInteger:
    """A JSON number written with a fraction or exponent (never a spec integer)."""

    def __init__(self, text):
        self.text = text


def esc(token):
    """Escape one JSON Pointer reference token (RFC 6901: ~ -> ~0, / -> ~1)."""
    return token.replace("~", "~0").replace("/", "~1")


def byte_order(keys):
    return sorted(keys, key=lambda k: k.encode("utf-8", "surrogatepass"))


def top_level_raw(text):
    """Return {member: raw text of its value} for the top-level object of a vector file."""
    dec = json.JSONDecoder()
    ws = re.compile(r"[ \t\n\r]*")
    i = ws.match(text, 0).end()
    if text[i] != "{":
        raise ValueError("vector is not a JSON object")
    i = ws.match(text, i + 1).end()
    out = {}
    while text[i] != "}":
        key, i = dec.raw_decode(text, i)
        i = ws.match(text, i).end()
        assert text[i] == ":"
        i = ws.match(text, i + 1).end()
        _, end = dec.raw_decode(text, i)
        if key in out:
            raise ValueError(f"duplicate member {key!r}")
        out[key] = text[i:end]
        i = ws.match(text, end).end()
        if text[i] == ",":
            i = ws.match(text, i + 1).end()
    return out


def parse(text):
    def bad_constant(name):
        raise ValueError(name)
    return json.loads(text, parse_float=NonInteger, parse_constant=bad_constant)


def integer(lo, hi):
    def check(v, path, _ctx):
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise Fault("invalid_value", path)
    return check


def string(v, path, _ctx):
    if not isinstance(v, str):
        raise Fault("invalid_value", path)


def hc_path(v, path, _ctx):
    if not isinstance(v, str) or not v.startswith("/") or len(v.encode()) > 1024:
        raise Fault("invalid_value", path)


DNS = r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?"
ENDPOINT = re.compile(r"(https?)://(" + DNS + r"|\[[^\]]*\]):([1-9][0-9]{0,4})/?")


def endpoint(v, path, ctx):
    if not isinstance(v, str):
        raise Fault("invalid_value", path)
    m = ENDPOINT.fullmatch(v)
    ok = m is not None and int(m.group(3)) <= 65535
    if ok and m.group(2).startswith("["):
        try:
            ipaddress.IPv6Address(m.group(2)[1:-1])
        except ValueError:
            ok = False
    if not ok:
        raise Fault("invalid_endpoint", path)
    ctx["scheme"] = m.group(1)


def obj(fields, after=None):
    """Check an object: unknown keys, missing required keys, present keys in table order."""
    def check(v, path, ctx):
        if not isinstance(v, dict):
            raise Fault("invalid_value", path)
        names = [f[0] for f in fields]
        unknown = [k for k in v if k not in names]
        if unknown:
            raise Fault("unknown_field", path + "/" + esc(byte_order(unknown)[0]))
        for name, required, _ in fields:
            if required and name not in v:
                raise Fault("missing_field", path + "/" + name)
        for name, _, rule in fields:
            if name in v:
                rule(v[name], path + "/" + name, ctx)
        if after:
            after(v, path, ctx)
    return check


def tls_after(v, path, ctx):
    if ctx.get("scheme") == "http":
        raise Fault("invalid_value", path)
    if "client_cert_file" in v and "client_key_file" not in v:
        raise Fault("missing_field", path + "/client_key_file")
    if "client_key_file" in v and "client_cert_file" not in v:
        raise Fault("missing_field", path + "/client_cert_file")


TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
ALGORITHMS = ("round_robin", "random", "consistent_hash")


def protocol(v, path, ctx):
    if v not in ("http/1.1", "h2") or (v == "h2" and ctx.get("scheme") == "http"):
        raise Fault("invalid_value", path)


def same_endpoint(a, b):
    """Spec 'Endpoints': equal scheme, host (ASCII case-insensitive) and port."""
    ma, mb = ENDPOINT.fullmatch(a), ENDPOINT.fullmatch(b)
    return (ma.group(1), ma.group(2).lower(), ma.group(3)) == \
        (mb.group(1), mb.group(2).lower(), mb.group(3))


ENTRY = None  # set below (needs obj)


def endpoints(v, path, ctx):
    if ctx.get("has_endpoint"):
        raise Fault("invalid_value", path)
    if not isinstance(v, list) or not 1 <= len(v) <= 256:
        raise Fault("invalid_value", path)
    for i, e in enumerate(v):
        ep = f"{path}/{i}"
        ENTRY(e, ep, ctx)
        if any(same_endpoint(e["url"], v[j]["url"]) for j in range(i)):
            raise Fault("invalid_value", ep)
        if ENDPOINT.fullmatch(e["url"]).group(1) != ENDPOINT.fullmatch(v[0]["url"]).group(1):
            raise Fault("invalid_value", ep)
    ctx["scheme"] = ENDPOINT.fullmatch(v[0]["url"]).group(1)


def selection(v, path, _ctx):
    if v not in ALGORITHMS:
        raise Fault("invalid_value", path)


ENTRY = obj([("url", True, endpoint), ("weight", False, integer(1, 1000))])
PLACEMENT_FIELDS = [
    ("endpoint", True, endpoint),
    ("endpoints", False, endpoints),
    ("selection", False, selection),
    ("hash_key", False, None),
    ("fallback", False, string),
    ("max_concurrency", True, integer(1, 100000)),
    ("timeouts", True, obj([("connect_ms", True, integer(1, 60000)),
                            ("request_ms", True, integer(1, 600000))])),
    ("health_check", False, obj([("path", True, hc_path),
                                 ("interval_ms", True, integer(10, 3600000)),
                                 ("timeout_ms", True, integer(1, 60000)),
                                 ("unhealthy_threshold", True, integer(1, 100)),
                                 ("healthy_threshold", True, integer(1, 100))])),
    ("circuit_breaker", False, obj([("failure_threshold", True, integer(1, 1000)),
                                    ("open_ms", True, integer(1, 3600000)),
                                    ("half_open_max_requests", True, integer(1, 1000)),
                                    ("success_threshold", True, integer(1, 1000))])),
    ("tls", False, obj([("ca_file", False, string), ("server_name", False, string),
                        ("client_cert_file", False, string), ("client_key_file", False, string)],
                       after=tls_after)),
    ("protocol", False, protocol),
]


def PLACEMENT(v, path, ctx):
    """A placement (spec section 2 Order): unknown keys, missing keys (endpoint stands
    for "endpoint or endpoints"; hash_key's condition is not part of this step), then the
    present keys in table order, hash_key visited at its place whether present or not."""
    if not isinstance(v, dict):
        raise Fault("invalid_value", path)
    names = [f[0] for f in PLACEMENT_FIELDS]
    unknown = [k for k in v if k not in names]
    if unknown:
        raise Fault("unknown_field", path + "/" + esc(byte_order(unknown)[0]))
    for name, required, _ in PLACEMENT_FIELDS:
        present = name in v or (name == "endpoint" and "endpoints" in v)
        if required and not present:
            raise Fault("missing_field", path + "/" + name)
    ctx["has_endpoint"] = "endpoint" in v
    for name, _, rule in PLACEMENT_FIELDS:
        if name == "hash_key":
            consistent = v.get("selection") == "consistent_hash"
            if "hash_key" not in v:
                if consistent:
                    raise Fault("missing_field", path + "/hash_key")
                continue
            hk = v["hash_key"]
            ok = isinstance(hk, str) and (hk in ("routing_key", "path") or (
                hk.startswith("header:") and TOKEN.fullmatch(hk[len("header:"):])))
            if not consistent or not ok:
                raise Fault("invalid_value", path + "/hash_key")
        elif name in v:
            rule(v[name], path + "/" + name, ctx)


ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def routes(v, path, _ctx):
    if not isinstance(v, dict):
        raise Fault("invalid_value", path)
    for k in byte_order(v):
        if not 1 <= len(k.encode("utf-8", "surrogatepass")) <= 256:
            raise Fault("invalid_value", path + "/" + esc(k))
        string(v[k], path + "/" + esc(k), None)


def placements(v, path, _ctx):
    if not isinstance(v, dict):
        raise Fault("invalid_value", path)
    for k in byte_order(v):
        if not ID.fullmatch(k):
            raise Fault("invalid_value", path + "/" + esc(k))
        PLACEMENT(v[k], path + "/" + k, {})


TOP = obj([("version", True, integer(0, 9007199254740991)),
           ("routes", True, routes), ("placements", True, placements)])


def validate(text, size, current=None):
    """Reference validation of a document (docs/spec.md section 2, order rules 1-5).

    text: the document text; size: its length in bytes after padding; current: the
    parsed current config for the control-plane stale check, or None.
    Returns the parsed document; raises Fault.
    """
    if size > MAX_BYTES:
        raise Fault("too_large", "")
    try:
        doc = parse(text)
    except ValueError:
        raise Fault("malformed_json", "")
    if not isinstance(doc, dict):
        raise Fault("malformed_json", "")
    TOP(doc, "", {})
    pl = doc["placements"]
    for k in byte_order(doc["routes"]):
        if doc["routes"][k] not in pl:
            raise Fault("unknown_placement", "/routes/" + esc(k))
    for k in byte_order(pl):
        if "fallback" in pl[k] and pl[k]["fallback"] not in pl:
            raise Fault("unknown_placement", f"/placements/{k}/fallback")
    for k in byte_order(pl):
        seen, cur = [k], k
        while "fallback" in pl[cur]:
            nxt = pl[cur]["fallback"]
            if nxt in seen or len(seen) == 8:
                raise Fault("fallback_cycle", f"/placements/{k}/fallback")
            seen.append(nxt)
            cur = nxt
    if current is not None:
        if doc["version"] < current["version"] or (
                doc["version"] == current["version"] and doc != current):
            raise Fault("stale_version", "/version")
    return doc


def check_format(v):
    errs = []
    allowed = {"description", "input", "input_text", "pad_to_bytes", "current", "expect"}
    if not isinstance(v, dict):
        return ["not an object"]
    if set(v) - allowed:
        errs.append(f"unexpected members {sorted(set(v) - allowed)}")
    if not isinstance(v.get("description"), str) or not v["description"]:
        errs.append("description missing")
    if ("input" in v) == ("input_text" in v):
        errs.append("need exactly one of input / input_text")
    if "input_text" in v and not isinstance(v["input_text"], str):
        errs.append("input_text not a string")
    if "pad_to_bytes" in v and (isinstance(v["pad_to_bytes"], bool)
                                or not isinstance(v["pad_to_bytes"], int)):
        errs.append("pad_to_bytes not an integer")
    e = v.get("expect")
    if e == {"result": "accepted"}:
        pass
    elif (isinstance(e, dict) and set(e) == {"result", "code", "path"}
          and e["result"] == "rejected" and e["code"] in CODES
          and isinstance(e["path"], str) and (e["path"] == "" or e["path"].startswith("/"))):
        pass
    else:
        errs.append(f"bad expect {e!r}")
    return errs


def schema_paths(err):
    """Instance paths (JSON Pointers) of an error and of all its sub-errors."""
    out = {"".join("/" + esc(str(p)) for p in err.absolute_path)}
    for sub in err.context or ():
        out |= schema_paths(sub)
    return out


def main():
    verbose = "-v" in sys.argv
    try:
        import jsonschema
        validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
        jsonschema.Draft202012Validator.check_schema(validator.schema)
    except ImportError:
        validator = None
        print("note: jsonschema not installed; schema checks skipped")
    failures, counts = 0, {}
    files = sorted(VECTORS.glob("*.json"))
    for f in files:
        problems = []
        raw_file = f.read_text(encoding="utf-8")
        v = json.loads(raw_file)
        problems += check_format(v)
        if problems:
            print(f"FAIL {f.name}: {'; '.join(problems)}")
            failures += 1
            continue
        raw = top_level_raw(raw_file)
        text = v["input_text"] if "input_text" in v else raw["input"]
        size = len(text.encode("utf-8"))
        if "pad_to_bytes" in v:
            if v["pad_to_bytes"] < size:
                problems.append("pad_to_bytes is smaller than the document")
            text += " " * max(0, v["pad_to_bytes"] - size)
            size = max(size, v["pad_to_bytes"])
        current = None
        if "current" in v:
            current = validate(raw["current"], len(raw["current"].encode()))
        try:
            doc = validate(text, size, current)
            got = {"result": "accepted"}
        except Fault as fault:
            doc = None
            got = {"result": "rejected", "code": fault.code, "path": fault.path}
        exp = v["expect"]
        key = exp.get("code", "accepted")
        counts[key] = counts.get(key, 0) + 1
        if got != exp:
            problems.append(f"reference validator says {got}, vector expects {exp}")
        if validator is not None:
            if exp["result"] == "accepted":
                errs = list(validator.iter_errors(doc))
                if errs:
                    problems.append(f"accepted vector fails the schema: {errs[0].message}")
            elif exp["code"] in PER_FIELD and f.name not in SCHEMA_BLIND:
                instance = json.loads(text)
                errs = list(validator.iter_errors(instance))
                paths = set().union(*(schema_paths(e) for e in errs)) if errs else set()
                parent = exp["path"].rsplit("/", 1)[0]
                if not errs:
                    problems.append("rejected vector passes the schema")
                elif exp["path"] not in paths and parent not in paths:
                    problems.append(f"schema errors at {sorted(paths)}, not at {exp['path']!r}")
        if problems:
            failures += 1
            print(f"FAIL {f.name}: {'; '.join(problems)}")
        elif verbose:
            print(f"ok   {f.name}")
    print(f"{len(files)} vectors, {failures} failing; per expected result: "
          + ", ".join(f"{k}={counts[k]}" for k in sorted(counts)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
