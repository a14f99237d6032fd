#!/usr/bin/env python3
"""Interoperability check: a Python grpcio client against a running dev-mode mapreg server.

Usage: python3 tests/python/interop.py HOST:PORT

Generates the Python stubs from proto/ into a temporary directory (needs grpcio and
grpcio-tools), then creates an API, a stage, a domain and a mapping, lists the domain's
mappings, checks a duplicate key is refused with ALREADY_EXISTS, and reads the services back
through server reflection with grpcio-reflection's client. Expects a fresh server
(the domain name py.example.com must not exist yet). Exits 0 on success, 1 with a message otherwise.
"""

import glob
import importlib
import os
import sys
import tempfile

import grpc
import grpc_tools
from grpc_tools import protoc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO_DIR = os.path.join(REPO, "proto")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def generate_stubs(out_dir):
    """Runs protoc on proto/mapreg/v1/*.proto, writing *_pb2.py and *_pb2_grpc.py to out_dir."""
    well_known = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    files = sorted(glob.glob(os.path.join(PROTO_DIR, "mapreg", "v1", "*.proto")))
    check(files, f"no .proto files under {PROTO_DIR}/mapreg/v1")
    args = [
        "grpc_tools.protoc",
        f"-I{PROTO_DIR}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
    ] + [os.path.relpath(f, PROTO_DIR) for f in files]
    rc = protoc.main(args)
    check(rc == 0, f"protoc failed with exit code {rc}")


def run(addr, out_dir):
    generate_stubs(out_dir)
    sys.path.insert(0, out_dir)
    pb = importlib.import_module("mapreg.v1.registry_pb2")
    res = importlib.import_module("mapreg.v1.resources_pb2")
    rpc = importlib.import_module("mapreg.v1.registry_pb2_grpc")

    with grpc.insecure_channel(addr) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        registry = rpc.RegistryStub(channel)

        api = registry.CreateApi(
            pb.CreateApiRequest(name="py-api", protocol_type=res.PROTOCOL_TYPE_REST),
            timeout=10,
        )
        check(len(api.api_id) == 10, f"api_id should have 10 characters: {api.api_id!r}")
        check(api.protocol_type == res.PROTOCOL_TYPE_REST, f"protocol_type: {api}")

        stage = registry.CreateStage(
            pb.CreateStageRequest(api_id=api.api_id, stage_name="prod"), timeout=10
        )
        check(stage.stage_name == "prod", f"stage: {stage}")

        domain = registry.CreateDomainName(
            pb.CreateDomainNameRequest(domain_name="py.example.com"), timeout=10
        )
        check(domain.domain_name == "py.example.com", f"domain: {domain}")

        mapping = registry.CreateApiMapping(
            pb.CreateApiMappingRequest(
                domain_name="py.example.com",
                api_mapping_key="py/v1",
                api_id=api.api_id,
                stage="prod",
            ),
            timeout=10,
        )
        check(len(mapping.api_mapping_id) == 6, f"api_mapping_id: {mapping}")
        check(mapping.create_revision > 0, f"create_revision: {mapping}")

        listed = registry.GetApiMappings(
            pb.GetApiMappingsRequest(domain_name="py.example.com"), timeout=10
        )
        check(len(listed.items) == 1, f"expected 1 mapping, got {list(listed.items)}")
        got = listed.items[0]
        expected = {
            "api_mapping_id": mapping.api_mapping_id,
            "domain_name": "py.example.com",
            "api_mapping_key": "py/v1",
            "api_id": api.api_id,
            "stage": "prod",
        }
        for field, want in expected.items():
            check(getattr(got, field) == want, f"{field}: got {getattr(got, field)!r}, want {want!r}")
        check(got.create_revision == mapping.create_revision, f"create_revision: {got}")
        check(listed.next_token == "", f"next_token should be empty: {listed.next_token!r}")

        try:
            registry.CreateApiMapping(
                pb.CreateApiMappingRequest(
                    domain_name="py.example.com",
                    api_mapping_key="py/v1",
                    api_id=api.api_id,
                    stage="prod",
                ),
                timeout=10,
            )
        except grpc.RpcError as e:
            check(
                e.code() == grpc.StatusCode.ALREADY_EXISTS,
                f"duplicate key: expected ALREADY_EXISTS, got {e.code()}: {e.details()}",
            )
        else:
            raise Failure("duplicate key: expected ALREADY_EXISTS, got OK")

        check_reflection(channel)


def check_reflection(channel):
    """grpcio-reflection's client finds the services and the message types through reflection."""
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(channel)
    services = set(db.get_services())
    for name in ("mapreg.v1.Registry", "grpc.health.v1.Health"):
        check(name in services, f"reflection: {name} not in {sorted(services)}")
    proto = db.FindFileContainingSymbol("mapreg.v1.ApiMapping")
    check(
        any(m.name == "ApiMapping" for m in proto.message_type),
        f"reflection: ApiMapping not in {proto.name}",
    )


def main():
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} HOST:PORT", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="mapreg-py-") as out_dir:
            run(sys.argv[1], out_dir)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    except grpc.RpcError as e:
        print(f"FAIL: unexpected RPC error {e.code()}: {e.details()}", file=sys.stderr)
        return 1
    except grpc.FutureTimeoutError:
        print(f"FAIL: could not connect to {sys.argv[1]} within 10 s", file=sys.stderr)
        return 1
    print("python interop: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
