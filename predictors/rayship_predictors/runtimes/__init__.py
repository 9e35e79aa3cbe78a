"""Model runtimes behind one small interface (see `base.Runtime`).

`loader` is the only module that imports a runtime (`onnx`, `pytorch`, `python`, `kserve`), so
a replica imports only its own; the runtimes share `base`, `errors` and `imports` and never the
loader.
"""
