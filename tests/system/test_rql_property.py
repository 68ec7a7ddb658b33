"""Property test of the RQL compiler through `sluice rql check -0`: whatever the input (arbitrary
text and bytes, soups of RQL tokens, well-formed rules), the compiler answers with exactly one
JSON line per query, never crashes, hangs or leaks, points its errors inside the input, and
compiles every well-formed rule.

Hypothesis only generates the queries (derandomized, no example database, so runs are
reproducible and nothing is written to the repository); they are then fed to the binary in
batches of BATCH, NUL-separated on stdin. A failing batch is replayed query by query to name
the query at fault.

  SLUICE_BIN=build/sluice /usr/bin/python3 -m pytest -q tests/system/test_rql_property.py
  SLUICE_TEST_SCALE multiplies the number of generated queries (default 1.0).
"""

import ipaddress
import json
import os
import re
import subprocess
import tempfile
import time

import pytest

from hypothesis import configuration as _hyp_configuration

# Hypothesis keeps caches (unicode tables) under .hypothesis/ in the working directory unless told
# otherwise; keep them out of the repository.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    _hyp_configuration.set_hypothesis_home_dir(
        os.path.join(tempfile.gettempdir(), "sluice-hypothesis"))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sluice_harness import SCALE, TIME_FACTOR, base_env, sluice_bin  # noqa: E402

BATCH = 200                 # queries per process
BATCH_TIMEOUT = 20          # seconds per batch (times SLUICE_TEST_TIME_FACTOR)
MAX_QUERY = 64 * 1024       # SL_RQL_MAX_QUERY
SANITIZER_RE = re.compile(
    r"ERROR: (Address|Leak|Thread|Memory|UndefinedBehavior)Sanitizer|runtime error:|LeakSanitizer")


def n_examples(n):
    return max(20, int(n * SCALE))


def gen_settings(n):
    return settings(max_examples=n_examples(n), deadline=None, database=None, derandomize=True,
                    phases=(Phase.explicit, Phase.generate), print_blob=False,
                    suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------------------------- running


@pytest.fixture(scope="module")
def rql(tmp_path_factory):
    """Runs `sluice rql check -0`; fails the module when the binary has no `rql` command."""
    d = tmp_path_factory.mktemp("rql")
    env = base_env(d)
    cmd = [str(sluice_bin()), "rql", "check", "-0"]
    probe = subprocess.run(cmd, input=b'title = "x"', capture_output=True, env=env, cwd=str(d),
                           timeout=30 * TIME_FACTOR)
    text = (probe.stdout + probe.stderr).decode("utf-8", "replace")
    assert probe.returncode == 0, (f"{sluice_bin()} rql check -0 failed (exit "
                                   f"{probe.returncode}): {text.strip()[:300]}")

    def run(queries, timeout=BATCH_TIMEOUT):
        payload = b"\0".join(queries)
        try:
            p = subprocess.run(cmd, input=payload, capture_output=True, env=env, cwd=str(d),
                               timeout=timeout * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            return None
        return p

    return run


def problems(queries, p):
    """What is wrong with one batch's run p (None: it timed out); [] when nothing is."""
    if p is None:
        return ["no answer within the timeout (hang?)"]
    out = []
    err = p.stderr.decode("utf-8", "replace")
    if SANITIZER_RE.search(err):
        out.append("sanitizer report on stderr:\n" + err[-3000:])
    if p.returncode not in (0, 1):
        out.append(f"exit status {p.returncode} (expected 0 or 1); stderr: {err[-2000:]}")
        return out
    try:
        text = p.stdout.decode("utf-8")
    except UnicodeDecodeError as e:
        return out + [f"stdout is not UTF-8: {e}"]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if len(lines) != len(queries):
        return out + [f"{len(lines)} output lines for {len(queries)} queries"]
    all_ok = True
    for i, (q, line) in enumerate(zip(queries, lines)):
        try:
            r = json.loads(line)
        except ValueError:
            out.append(f"query {i}: output line is not JSON: {line[:300]!r}")
            continue
        if not isinstance(r, dict) or not isinstance(r.get("ok"), bool):
            out.append(f"query {i}: no boolean \"ok\": {line[:300]!r}")
            continue
        if r["ok"]:
            continue
        all_ok = False
        ln, col = r.get("line"), r.get("col")
        if not isinstance(r.get("error"), str) or not r["error"]:
            out.append(f"query {i}: an error without a message: {line[:300]!r}")
        if not (isinstance(ln, int) and isinstance(col, int)):
            out.append(f"query {i}: line/col are not integers: {line[:300]!r}")
            continue
        if len(q) > MAX_QUERY:
            continue  # refused for its length: any position inside is fine
        qlines = q.split(b"\n")
        if not 1 <= ln <= len(qlines) or not 1 <= col <= len(qlines[ln - 1]) + 1:
            out.append(f"query {i}: error at {ln}:{col} is outside the input {q[:200]!r}: "
                       f"{r['error']}")
    if p.returncode != (0 if all_ok else 1):
        out.append(f"exit status {p.returncode} but {'all' if all_ok else 'not all'} queries "
                   "compiled")
    return out


def culprit(run, queries):
    """The first query that fails on its own, with what is wrong, for the report."""
    end = time.monotonic() + 120 * TIME_FACTOR
    for q in queries:
        if time.monotonic() > end:
            return "\n(gave up replaying the batch query by query: out of time)"
        p = run([q], timeout=10)
        bad = problems([q], p)
        if bad:
            return f"\nfirst failing query on its own: {q[:400]!r}\n" + "\n".join(bad)[:3000]
    return "\n(no query fails on its own: the failure needs the batch)"


def check_all(run, queries, must_compile=False):
    """Feeds queries in batches; asserts the properties (and ok for every query when
    must_compile)."""
    queries = [q.replace(b"\0", b"\1") for q in queries]
    for start in range(0, len(queries), BATCH):
        batch = queries[start:start + BATCH]
        # a final empty query would be ambiguous (is a trailing NUL a terminator?): move it
        if batch and batch[-1] == b"":
            nonempty = [i for i, q in enumerate(batch) if q]
            if not nonempty:
                continue
            j = nonempty[-1]
            batch[j], batch[-1] = batch[-1], batch[j]
        p = run(batch)
        bad = problems(batch, p)
        if bad:
            pytest.fail(f"batch of {len(batch)} queries: " + "; ".join(bad)[:4000] +
                        culprit(run, batch), pytrace=False)
        if must_compile:
            lines = p.stdout.decode("utf-8").split("\n")
            for q, line in zip(batch, lines):
                r = json.loads(line)
                assert r["ok"], (f"well-formed rule did not compile: {q.decode('utf-8')!r}\n"
                                 f"-> {line}")


def collect(strategy, n):
    """n_examples(n) values drawn from strategy by Hypothesis."""
    out = []

    @gen_settings(n)
    @given(strategy)
    def draw(v):
        out.append(v)

    draw()
    return out


# ------------------------------------------------------------------------------- vocabulary

KEYWORDS = [
    "=", "eq", "Eq", "EQ", "!=", "ne", "NE", "contains", "Contains", "containscis",
    "ContainsCIS", "In", "in", "IN", "Is", "is", "IS", "and", "AND", "And", "or", "OR", "Or",
    "not", "NOT", "Not", ">", "gt", "GT", ">=", "gte", "GTE", "<", "lt", "LT", "<=", "lte", "LTE",
    "True", "true", "False", "false", "Exists", "exists", "EXISTS", "RegExp", "regexp", "regex",
    "re", "Between", "between", "InRange", "range", "cidr", "InCIDR", "incidr", "StartsWith",
    "startswith", "EndsWith", "endswith", "Expand", "EXPAND", "expand", "ThreatLookup",
    "threatlookup", "threat_lookup", "threatlist", "ThreatList", "threat", "threat_list",
    "intel_list", "intel", "IntelList",
]
KEYWORD_WORDS = {k.lower() for k in KEYWORDS if k[0].isalpha()}
MUTATORS = [
    "count", "length", "lowercase", "uppercase", "refang", "b64decode", "b64extract", "urldecode",
    "any", "all", "avg", "max", "min", "sum", "split", "geo_country", "geo_continent",
    "geo_timezone", "reverse_lookup", "ns_lookup_a", "ns_lookup_aaaa", "ns_lookup_mx",
    "ns_lookup_ns", "ns_lookup_ptr", "nslookup_a", "nslookup_aaaa", "nslookup_mx", "nslookup_ns",
    "nslookup_ptr", "is_private", "is_global", "is_multicast", "is_ipv6", "to_integer",
    "to_string",
]
FIELDS = [
    "title", "description", "severity", "tags", "source", "reference", "signature",
    "organization", "status.name", "status.closed", "observables", "observables.value",
    "observables.data_type", "observables.tags", "raw_log", "raw_log.winlog.event_id",
    "raw_log.user.name", "raw_log.@timestamp", "raw_log.event-id", "raw_log.a$b",
    "entity.host.name",
    "value", "data_type", "_x", "@version", "risk_score", "a.b.c.d.e.f.g.h",
]
ODD_STRINGS = [
    '""', "''", '"\\"', "'\\'", '"\\\\"', '"\\x"', '"\\x4"', '"\\xZZ"', '"\\u"', '"\\u12"',
    '"\\u12345"', '"\\uD800"', '"\\uDFFF\\uD800"', '"\\x00"', '"\\u0000"', '"\\q"', '"\\N{DASH}"',
    '"\\777"', '"a\nb"', '"unterminated', "'mixed\"", '"\\', '"é"', '"\xff"', '"🚀"',
    '"' + "x" * 3000 + '"', '"(\\"', '"[z-a]"', '"(?<n>a)(?P=n)"', '"\\\\p{L}+"', '"*"', '"(("',
    '"10.0.0.0/8"', '"10.0.0.0/33"', '"::/0"', '"1,5"', '"5,1"', '"a,b"', '"-1,-5"',
    '"99999999999999999999,1"', '"1,2,3"', '","',
]
NUMBERS = ["0", "3", "3.5", "007", "1e5", "-1", ".5", "5.", "1.2.3", "99999999999999999999999",
           "1" * 400, "0.0000000000000000000000001", "inf", "nan", "0x10"]
PUNCT = ["(", ")", "[", "]", ",", "|", "'", '"', "#", ".", "..", "!", "==", "=>", "<>", "\\", "$",
         "@", "-", "_", "&&", "||", ";", "{", "}"]
SEPARATORS = [" ", " ", " ", "", "\n", "\t", "\r\n", " # comment\n", "#\n", " . "]


def soup_token():
    return st.one_of(
        st.sampled_from(KEYWORDS),
        st.sampled_from(KEYWORDS).map(str.swapcase),
        st.sampled_from(MUTATORS).map(lambda m: "|" + m),
        st.sampled_from(["|", "|nosuch", "|COUNT", "| count", "||"]),
        st.sampled_from(FIELDS),
        st.sampled_from(ODD_STRINGS),
        st.sampled_from(NUMBERS),
        st.sampled_from(PUNCT),
        st.text(max_size=8).map(lambda s: json.dumps(s)),
        st.integers(min_value=-10**30, max_value=10**30).map(str),
        st.from_regex(r"\A[A-Za-z_@][A-Za-z0-9_@$-]{0,12}(\.[A-Za-z_@][A-Za-z0-9_@$-]{0,8}){0,3}\Z",
                      fullmatch=False),
    )


@st.composite
def token_soup(draw):
    toks = draw(st.lists(soup_token(), max_size=40))
    seps = draw(st.lists(st.sampled_from(SEPARATORS), min_size=len(toks), max_size=len(toks)))
    return "".join(t + s for t, s in zip(toks, seps)).encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ well-formed rule grammar

SEGMENTS = ["a", "b", "x1", "_", "@", "@timestamp", "_source", "event-id", "a$b", "user_name",
            "Z9", "winlog", "event_data", "x-y-z", "notes", "index", "orbit", "range_x", "isx",
            "eqx", "nex", "trueish", "intel_source", "expanded", "between_x", "containsx", "A",
            "lowercase", "count", "a" * 40]
SEGMENT = st.sampled_from(SEGMENTS)
PATH = st.one_of(st.sampled_from(FIELDS), st.lists(SEGMENT, min_size=1, max_size=4).map(".".join))


def spell(words):
    """One of a keyword's spellings, sometimes in another case (keywords fold case)."""
    return st.one_of(st.sampled_from(words), st.sampled_from(words).map(str.upper),
                     st.sampled_from(words).map(str.swapcase))


def rql_string(s, quote):
    out = [quote]
    for ch in s:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + quote)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif o < 0x20 or o == 0x7F:
            out.append("\\x%02x" % o)
        elif 0xD800 <= o <= 0xDFFF:
            out.append("?")
        elif o > 0x7F and o % 3 == 0 and o <= 0xFFFF:
            out.append("\\u%04x" % o)   # some non-ASCII as escapes, the rest as UTF-8
        else:
            out.append(ch)
    out.append(quote)
    return "".join(out)


TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"),
               max_size=12)
STRING = st.builds(rql_string, TEXT, st.sampled_from(['"', "'"]))
INT = st.integers(min_value=0, max_value=10**6).map(str)
FLOAT = st.builds(lambda a, b: f"{a}.{b}", st.integers(0, 9999), st.integers(0, 999))
NUMBER = st.one_of(INT, FLOAT)
BOOL = spell(["true", "false"])
ARRAY_ELEM = st.one_of(STRING, NUMBER)
SEP = st.sampled_from([" ", " ", " ", "\n", "\t", " # c\n", "  "])


def array_of(elem):
    return st.builds(lambda xs, sp: "[" + ("," + sp).join(xs) + "]",
                     st.lists(elem, min_size=1, max_size=4), st.sampled_from(["", " ", "\n"]))


REGEXES = ["abc", "^a.*z$", "(?i)foo", "\\d+", "[a-z]{2,5}", "a|b", "(x)(y)?", "",
           "\\w+@\\w+\\.com",
           ".*\\.(exe|dll)$", "[^\\s]+", "\\Qa.b\\E", "(?:ab)+c"]
REGEX = st.builds(rql_string, st.sampled_from(REGEXES), st.sampled_from(['"', "'"]))


@st.composite
def cidr_literal(draw):
    if draw(st.booleans()):
        addr = draw(st.integers(0, 2**32 - 1))
        plen = draw(st.integers(0, 32))
        net = ipaddress.ip_network((addr, plen), strict=False)
    else:
        addr = draw(st.integers(0, 2**128 - 1))
        plen = draw(st.integers(0, 128))
        net = ipaddress.ip_network((addr, plen), strict=False)
    text = str(net.network_address) if draw(st.booleans()) and plen in (32, 128) else str(net)
    return '"' + text + '"'


@st.composite
def between_literal(draw):
    lo = draw(st.integers(0, 1000))
    hi = draw(st.integers(lo, 2000))
    return f'"{lo},{hi}"'


LIST_NAME = st.builds(rql_string, st.sampled_from(["Bad IPs", "Allowed Users", "x", "é list"]),
                      st.sampled_from(['"', "'"]))
INTEL = spell(["ThreatLookup", "threatlookup", "threat_lookup", "threatlist", "threat",
               "threat_list", "intel_list", "intel", "IntelList"])
NOT = spell(["not"])


def op_with_value():
    """(operator text, value text, whether an infix not is allowed)."""
    def op(words, value, negatable=True):
        return st.tuples(spell(words), value, st.just(negatable))
    return st.one_of(
        op(["=", "eq"], st.one_of(STRING, NUMBER, BOOL)),
        op(["!=", "ne"], st.one_of(STRING, NUMBER, BOOL), negatable=False),
        op(["contains", "containscis"], st.one_of(STRING, array_of(STRING))),
        op(["in"], array_of(ARRAY_ELEM)),
        op(["regexp", "regex", "re"], REGEX),
        op(["startswith", "endswith"], STRING, negatable=False),
        op(["cidr", "incidr"], st.one_of(cidr_literal(), array_of(cidr_literal()))),
        op(["cidr", "incidr"], st.builds(lambda i, n: f"{i}({n})", INTEL, LIST_NAME),
           negatable=False),
        op([">", ">=", "<", "<=", "gt", "gte", "lt", "lte"], NUMBER, negatable=False),
        op(["between", "inrange", "range"], between_literal()),
        op(["is"], BOOL, negatable=False),
        op(["exists"], st.just(""), negatable=True),
    )


MUTS = st.lists(st.sampled_from(MUTATORS), max_size=5).map(lambda ms: "".join("|" + m for m in ms))


@st.composite
def predicate(draw):
    if draw(st.integers(0, 9)) == 0:
        return f"{draw(INTEL)}({draw(PATH)}{draw(MUTS)},{draw(SEP)}{draw(LIST_NAME)})"
    opw, value, negatable = draw(op_with_value())
    neg = f"{draw(NOT)} " if negatable and draw(st.booleans()) else ""
    return f"{draw(PATH)}{draw(MUTS)}{draw(SEP)}{neg}{opw}{draw(SEP)}{value}"


def compound(inner):
    return st.one_of(
        st.builds(lambda a, k, s, b: f"{a}{s}{k}{s}{b}", inner, spell(["and", "or"]), SEP, inner),
        st.builds(lambda a, s: f"({s}{a}{s})", inner, SEP),
        st.builds(lambda n, a: f"{n} {a}", NOT, inner),
        st.builds(lambda n, a: f"{n} ({a})", NOT, inner),
        st.builds(lambda e, p, a: f"{e} {p} ({a})", spell(["expand"]), PATH, inner),
    )


WELL_FORMED = st.builds(lambda pre, r, post: pre + r + post,
                        st.sampled_from(["", "", "# a rule\n", "\n  "]),
                        st.recursive(predicate(), compound, max_leaves=8),
                        st.sampled_from(["", "", "\n", " # end", "\n# end\n"])
                        ).map(lambda s: s.encode("utf-8"))


# ------------------------------------------------------------------------------------ tests


def test_arbitrary_text_and_bytes(rql):
    text = collect(st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass")), 600)
    raw = collect(st.binary(max_size=300), 600)
    check_all(rql, text + raw)


def test_token_soup(rql):
    check_all(rql, collect(token_soup(), 1200))


def test_well_formed_rules_compile(rql):
    check_all(rql, collect(WELL_FORMED, 1000), must_compile=True)


def test_limits(rql):
    """Pathological shapes: deep nesting, long chains, huge literals, the length limit."""
    refused = [
        b"(" * 30000 + b'title = "x"' + b")" * 30000,           # deeper than SL_RQL_MAX_DEPTH
        b"not " * 15000 + b'title = "x"',
        b"expand a (" * 5000 + b'b = "x"' + b")" * 5000,
        b"(" * 60000,
        b'title = "' + b"a" * (MAX_QUERY + 10) + b'"',          # longer than SL_RQL_MAX_QUERY
        b'title = "x" or ' * 6000 + b'title = "y"',             # 90 KB: too long
        b"[" * 20000,
        b"title" + b"|lowercase" * 3000 + b' = "x"',            # more than 5 mutators
        b'title regexp "' + b"(" * 5000 + b'"',                 # bad regex
        b"intel(" * 5000,
        b"# " + b"x" * 60000,                                   # empty query
        b"\n" * 60000 + b"and",
    ]
    anything = [  # no documented limit decides these: only the general properties hold
        b'title in [' + b'"a",' * 15000 + b'"b"]',
        b"a." * 20000 + b'b = "x"',
        b'title regexp "' + b"(a" * 3000 + b")" * 3000 + b'"',
        b'title = "' + b"\\u00e9" * 10000 + b'"',
        b'title = "' + b"\xff" * 20000 + b'"',
    ]
    check_all(rql, refused + anything)
    p = rql(refused)
    res = [json.loads(line) for line in p.stdout.decode().splitlines()]
    assert [r["ok"] for r in res] == [False] * len(refused), res
    assert p.returncode == 1
    # long but within the limits: these compile
    fine = [
        b"(" * 40 + b'title = "x"' + b")" * 40,
        b'title = "' + b"a" * 60000 + b'"',
        b'title = "x" or ' * 2000 + b'title = "y"',
        b'title = "x" and ' * 2000 + b'title = "y"',
        b'title in [' + b'"a",' * 3000 + b'"b"]',
        b"title" + b"|lowercase" * 5 + b' = "x"',
        ".".join(["a"] * 20).encode() + b' = "x"',
        b"# comment\n" * 3000 + b'title = "x"',
    ]
    check_all(rql, fine, must_compile=True)
    p = rql(fine)
    assert p.returncode == 0, p.stdout.decode()[-2000:]
