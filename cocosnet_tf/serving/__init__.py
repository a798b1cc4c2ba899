"""TF-Serving model config and a TF-Serving-compatible REST server and client.

Built on the rest of cocosnet_tf, which never imports from here."""
