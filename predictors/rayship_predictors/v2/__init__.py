"""The KServe V2 Open Inference Protocol: datatypes, request/response codec, errors."""
