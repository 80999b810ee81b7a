"""Sources: the outside world -> the typed model -> `MeshStore`.

`convert/` turns manifest dicts into `legation.model` objects (pure, with
diagnostics); `files.py` watches directories of YAML manifests;
`kubernetes.py` lists and watches a cluster. Only this package knows YAML and
Kubernetes shapes; it never imports `legation.xds`.
"""
