#!/usr/bin/env bash
# A first session with grpcurl against a FRESH dev-mode server (`mapreg serve`, no tokens).
# Run it once: the second run fails because api.example.com already exists.
set -euo pipefail
ADDR=${MAPREG_ADDR:-localhost:50051}

# What does the server offer? (It supports gRPC reflection, so grpcurl needs no .proto files.)
grpcurl -plaintext "$ADDR" list

# Create an HTTP API and keep its generated id.
API_ID=$(grpcurl -plaintext -d '{"name": "pets", "protocol_type": "PROTOCOL_TYPE_HTTP"}' \
  "$ADDR" mapreg.v1.Registry/CreateApi |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["apiId"])')
echo "API id: $API_ID"

# Give the API a stage named "test".
grpcurl -plaintext -d "{\"api_id\": \"$API_ID\", \"stage_name\": \"test\"}" \
  "$ADDR" mapreg.v1.Registry/CreateStage

# Register the custom domain name (REGIONAL + TLS 1.2 by default).
grpcurl -plaintext -d '{"domain_name": "api.example.com"}' \
  "$ADDR" mapreg.v1.Registry/CreateDomainName

# Map https://api.example.com/v1/... to the API's stage "test", like
# `aws apigatewayv2 create-api-mapping --domain-name api.example.com --api-mapping-key v1 --api-id <id> --stage test`.
grpcurl -plaintext -d "{\"domain_name\": \"api.example.com\", \"api_mapping_key\": \"v1\",
  \"api_id\": \"$API_ID\", \"stage\": \"test\"}" "$ADDR" mapreg.v1.Registry/CreateApiMapping

# List the domain's mappings.
grpcurl -plaintext -d '{"domain_name": "api.example.com"}' "$ADDR" mapreg.v1.Registry/GetApiMappings

# Is the server healthy? Prints {"status": "SERVING"}.
grpcurl -plaintext "$ADDR" grpc.health.v1.Health/Check
