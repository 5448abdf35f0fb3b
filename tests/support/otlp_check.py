"""Decode OTLP/HTTP JSON export bodies with the official protobuf definitions.

Usage: otlp_check.py BODIES.json   (a JSON list of request bodies as received)

Each body is parsed strictly (unknown fields are errors) into
opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest with
google.protobuf.json_format. OTLP's JSON encoding writes trace and span ids as hex where
the proto3 mapping would use base64, so they are converted first (and must be valid hex of
the right length). Prints one JSON object per span: ids as hex, name, kind, parent, status
code, resource service.name and attributes as plain values.
"""

import base64
import json
import sys

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

ID_LEN = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def ids_to_base64(span):
    for field, n in ID_LEN.items():
        if field in span:
            raw = bytes.fromhex(span[field])
            if len(raw) != n or span[field] != span[field].lower():
                raise ValueError(f"{field} {span[field]!r} is not {n} bytes of lowercase hex")
            span[field] = base64.b64encode(raw).decode()


def value(v):
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    return getattr(v, kind)


def main():
    bodies = json.load(open(sys.argv[1]))
    out = []
    for body in bodies:
        for rs in body.get("resourceSpans", []):
            for ss in rs.get("scopeSpans", []):
                for span in ss.get("spans", []):
                    ids_to_base64(span)
        req = json_format.Parse(json.dumps(body), ExportTraceServiceRequest())
        for rs in req.resource_spans:
            resource = {a.key: value(a.value) for a in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    if s.end_time_unix_nano < s.start_time_unix_nano or s.start_time_unix_nano == 0:
                        raise ValueError(f"bad times on {s.name}")
                    out.append({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": s.kind,
                        "status": s.status.code,
                        "service": resource.get("service.name"),
                        "scope": ss.scope.name,
                        "attrs": {a.key: value(a.value) for a in s.attributes},
                    })
    print(json.dumps(out))


main()
