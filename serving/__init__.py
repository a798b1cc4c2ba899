"""TF-Serving model config and a TF-Serving-compatible REST server: issue 5.

Depends on cocosnet_tf; cocosnet_tf never imports from here."""
