#!/usr/bin/env python3
"""boto3 driver for the REST edge tests (tests/e2e/aws.rs): runs API Gateway v2 calls with the
real boto3 against a mapreg server and reports what boto3 saw, one JSON line per call.

Usage: python3 tests/python/aws_sdk.py ENDPOINT_URL   (e.g. http://127.0.0.1:50051)

Reads one JSON object per line on stdin and answers one JSON line on stdout for each:

  {"op": "create_api_mapping", "params": {...},
   "key": "AKIA...", "secret": "...", "region": "us-east-1"}   # key/secret optional
  {"parallel": [CALL, CALL, ...]}                              # at once, one answer: a list

An answer is {"status": HTTP status, "revision": x-mapreg-revision or null, "request_id"
(x-amzn-RequestId, on success), and either
"body": the parsed response (ResponseMetadata removed, timestamps ISO 8601) or
"error": {"code", "message", "fields": other parsed members (ResourceType, ...)}}.
Without key/secret the call is sent unsigned (dev mode). botocore's retries are off, so a
429 or 5xx is seen as it was answered.

Exits 0 at the end of input; with a message on stderr, exits 3 if boto3 is missing and 2 if a
line is not a call it can make (an unknown operation, a parameter botocore's model refuses).
"""

import datetime
import json
import sys
from concurrent.futures import ThreadPoolExecutor

try:
    import boto3
    import botocore
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError, ParamValidationError
except ImportError as e:  # the Rust test shows this and skips or fails
    print(f"boto3 is not installed: {e} (python3 -m pip install boto3)", file=sys.stderr)
    sys.exit(3)


class BadCall(Exception):
    pass


_clients = {}


def client(endpoint, key, secret, region):
    """One client per (key, secret, region); unsigned when key is None."""
    ident = (key, secret, region)
    c = _clients.get(ident)
    if c is None:
        cfg = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=10, read_timeout=60)
        if key is None:
            cfg = cfg.merge(Config(signature_version=UNSIGNED))
        session = boto3.session.Session(
            aws_access_key_id=key or "unused",
            aws_secret_access_key=secret or "unused",
            region_name=region,
        )
        c = session.client("apigatewayv2", endpoint_url=endpoint, config=cfg)
        _clients[ident] = c
    return c


def plain(v):
    """JSON-able copy: datetimes as ISO 8601 UTC with Z."""
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [plain(x) for x in v]
    if isinstance(v, datetime.datetime):
        return v.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return v


def call(endpoint, req):
    op = req.get("op")
    c = client(endpoint, req.get("key"), req.get("secret"), req.get("region", "us-east-1"))
    fn = getattr(c, op or "", None)
    if fn is None:
        raise BadCall(f"boto3's apigatewayv2 client has no operation {op!r}")
    try:
        resp = fn(**req.get("params", {}))
        meta = resp.pop("ResponseMetadata", {})
        headers = meta.get("HTTPHeaders", {})
        return {
            "status": meta.get("HTTPStatusCode"),
            "revision": headers.get("x-mapreg-revision"),
            "request_id": meta.get("RequestId"),
            "body": plain(resp),
        }
    except ClientError as e:
        r = dict(e.response)
        meta = r.pop("ResponseMetadata", {})
        err = r.pop("Error", {})
        headers = meta.get("HTTPHeaders", {})
        return {
            "status": meta.get("HTTPStatusCode"),
            "revision": headers.get("x-mapreg-revision"),
            "error_type_header": headers.get("x-amzn-errortype"),
            "error": {
                "code": err.get("Code"),
                "message": err.get("Message"),
                "fields": plain(r),
            },
        }
    except ParamValidationError as e:
        raise BadCall(f"{op}: botocore refused the parameters before sending: {e}")


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    endpoint = sys.argv[1]
    pool = ThreadPoolExecutor(max_workers=16)
    for n, line in enumerate(sys.stdin, 1):
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            if "parallel" in req:
                out = list(pool.map(lambda r: call(endpoint, r), req["parallel"]))
            else:
                out = call(endpoint, req)
        except (BadCall, ValueError, TypeError, KeyError) as e:
            print(f"aws_sdk.py: line {n}: {e}", file=sys.stderr)
            sys.exit(2)
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    print(f"boto3 {boto3.__version__} botocore {botocore.__version__}", file=sys.stderr)
    main()
