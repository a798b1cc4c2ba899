"""A TF-Serving-compatible server (REST and gRPC) and client, and TF-Serving's model config.

Built on the rest of cocosnet_tf, which never imports from here."""
