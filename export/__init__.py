"""SavedModel (TF-Serving layout) and ONNX export with parity checks: issue 5.

Depends on cocosnet_tf; cocosnet_tf never imports from here."""
