#!/usr/bin/env python3
"""Writes the fixtures that pin httpapi's decoding to the existing deployment.

    python3 httpapi/testdata/gen_fixtures.py   # needs pydantic 2.x

since.json: lists raw JSON values of reconcile's `since` by whether pydantic
accepts them for an Optional[datetime] field (the deployment's model), read
from the body by json.loads as FastAPI does.

content_type.json: lists Content-Type header values by whether FastAPI reads
the body as JSON. The rule is FastAPI's (fastapi/routing.py, lenient mode):
no value, or email.message's main type "application" with subtype "json" or
"...+json". Values are header bytes as Starlette decodes them (Latin-1),
limited to what Go's server passes on (no control bytes but tab).
"""

import email.message
import json
import os
from datetime import datetime
from typing import Optional

import pydantic
import pydantic_core
from pydantic import BaseModel, ValidationError

HERE = os.path.dirname(os.path.abspath(__file__))


class Reconcile(BaseModel):
    since: Optional[datetime] = None


def pydantic_accepts(raw):
    try:
        Reconcile.model_validate(json.loads('{"since":' + raw + "}"))
        return True
    except ValidationError:
        return False


def since_cases():
    strings = set()
    bases = [
        "2026-02-16T12:00:00Z",
        "2026-02-16T12:00:00.123456+01:30",
        "2026-02-16 12:00:00,5-0800",
        "2026-02-16_12:00",
        "2026-02-16t12:00:00z",
        "2026-02-16T12:00:00\u221205:00",
        "2026-02-16",
        "1771243200",
        "-1771243200",
        "1771243200.5",
        "1771243200123.5",
        "+1.5e3",
    ]
    repl = list("09-:.T Z+x") + ["\u2212"]
    for b in bases:
        strings.add(b)
        for i in range(len(b) + 1):
            strings.add(b[:i])  # every prefix
            strings.add(b[:i] + b[i + 1:])  # one character dropped
            for c in repl:
                strings.add(b[:i] + c + b[i + 1:])  # one character replaced
                strings.add(b[:i] + c + b[i:])  # one character inserted
    strings.update([
        "", " ", "not-a-date", "yesterday", "now", "today", "infinity", "nan",
        "2026-02-16T12:00:00Z ", " 2026-02-16T12:00:00Z", "2026-02-16T",
        "2024-02-29", "2023-02-29", "2000-02-29", "1900-02-29", "2026-04-31",
        "2026-13-01", "2026-00-10", "2026-01-00", "0000-01-01", "0001-01-01",
        "9999-12-31", "0000-01-01T00:00:00", "0001-01-01T00:00:00",
        "9999-12-31T23:59:59.999999999Z", "2026-02-16T24:00", "2026-02-16T23:60",
        "2026-02-16T12:00:60", "2026-02-16T12:00:00.", "2026-02-16T12:00:00,",
        "2026-02-16T12:00:00+01", "2026-02-16T12:00:00+0100", "2026-02-16T12:00:00+01:0",
        "2026-02-16T12:00:00+23:59", "2026-02-16T12:00:00-23:59", "2026-02-16T12:00:00+24:00",
        "2026-02-16T12:00:00+00:60", "2026-02-16T12:00:00+99:00", "2026-02-16T12:00:00ZZ",
        "2026-02-16T12:00Z", "2026-02-16T12:00+01:00", "2026-2-16", "20260216",
        "2026-02-16T12:00:00.1234567890123456789Z",
        "0", "-0", "+0", "00001", "-", "+", ".", "-.", "+.", ".5", "-.5", "+.5", "1.", "-1.",
        "1.e5", "1.E5", "1.5e", "1.5e+", "1.5e+3", "1.5e-3", "1e3", "1E3", "1.5.5", "1..5",
        "1,5", "1_000", "0x10", "1.5 ", " 1.5", "1.5x",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "18446744073709551616", "18446744073709551617", "99999999999999999999",
        "20000000000", "20000000001", "-20000000000", "-20000000001",
        "20000000000.5", "20000000000.4", "-20000000000.5",
        "253402300799", "253402300799999", "253402300800000", "253402300799999.9",
        "253402300799999.4", "-62135596800000", "-62135596800001", "-62135596800000.5",
        "25340230079999.5", "25340230080000.5", "2534023007999999999.5",
        "1" + "0" * 400 + ".5", "1.0e400", "1.0e-400",
    ])
    raws = {json.dumps(s) for s in strings}
    raws.update([
        "null", "true", "false", "{}", "[]", '[""]', '{"a":1}',
        "0", "-0", "1", "-1", "1771243200", "-1771243200", "1771243200.5", "1.5", "-1.5",
        "1e3", "1E3", "1e-3", "1.5e3", "-1.5e3", "0.0", "-0.0", "1e400", "-1e400",
        "20000000000", "20000000001", "-20000000000", "-20000000001",
        "20000000000.5", "20000000000.9999", "-20000000000.5", "20000000001.5",
        "253402300799", "253402300800", "253402300799999", "253402300800000",
        "253402300799999.4", "253402300799999.5", "253402300799999.9",
        "-62135596800000", "-62135596800001", "-62135596800000.5", "-62135596799999.5",
        "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "-9223372036854775809", "99999999999999999999", "1e19", "-1e19",
        "9.3e18", "1771243200.1234567", "1771243200.9999999",
    ])
    return split(sorted(raws), pydantic_accepts)


def fastapi_reads_json(value):
    if not value:
        return True
    m = email.message.Message()
    m["content-type"] = value
    if m.get_content_maintype() == "application":
        sub = m.get_content_subtype()
        return sub == "json" or sub.endswith("+json")
    return False


def content_type_cases():
    values = set()
    bases = [
        "application/json",
        "application/json; charset=utf-8",
        "application/vnd.api+json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
    ]
    ins = [" ", "\t", "\x85", "\xa0", ";", "/", "+", "A", "J", "\xe9", '"', ","]
    for b in bases:
        values.add(b)
        for i in range(len(b) + 1):
            values.add(b[:i])
            values.add(b[:i] + b[i + 1:])
            for c in ins:
                values.add(b[:i] + c + b[i:])
    values.update([
        "", "APPLICATION/JSON", "Application/Json;Charset=UTF-8", "application/+json",
        "application/json/x", "application/ json", "application /json", "application",
        "/json", "application/", "application/jsonp", "application/x-json",
        "application/problem+json", "application/json-patch+json", "text/json",
        '"application/json"', "application/json , text/plain", "application/json;a=b/c",
        "application/json\xa0", "\x85application/json", "\xa0\x85application/json\xa0\x85",
        "application/json\t;x",
    ])
    return split(sorted(values), fastapi_reads_json)


def split(cases, accepts):
    yes, no = [], []
    for c in cases:
        (yes if accepts(c) else no).append(c)
    return yes, no


def write(name, doc, cases):
    # One case a line, so a diff shows which answers changed.
    out = json.dumps(doc, ensure_ascii=True)[:-1]
    for key, values in zip(("accepted", "refused"), cases):
        out += ',\n"%s": [\n' % key + ",\n".join(json.dumps(v, ensure_ascii=True) for v in values) + "\n]"
    with open(os.path.join(HERE, name), "w", encoding="utf-8") as f:
        f.write(out + "}\n")


write("since.json", {
    "made_by": "testdata/gen_fixtures.py",
    "pydantic": pydantic.VERSION,
    "pydantic_core": pydantic_core.__version__,
    "what": "raw JSON values of since that pydantic accepts or refuses for Optional[datetime]",
}, since_cases())
write("content_type.json", {
    "made_by": "testdata/gen_fixtures.py",
    "what": "Content-Type values (Latin-1 text of the header bytes) FastAPI reads as JSON or not",
}, content_type_cases())
