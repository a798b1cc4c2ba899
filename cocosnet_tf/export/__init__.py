"""SavedModel (TF-Serving layout) and ONNX export with parity checks.

Built on the rest of cocosnet_tf, which never imports from here."""
