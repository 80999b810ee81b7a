"""Kubernetes API-server side effects other than watching config: the Lease for
leader-only duties, TokenReview, and the CA kept in a Secret shared by replicas.
(Watching config is `legation.sources.kubernetes`.)

Imports model and security (see legation/__init__.py)."""
