"""Helpers of the Kubernetes source (`legation.sources.kubernetes`): the watched
kinds and their client calls (`kinds`), and the per-kind list/watch thread
(`reflector`)."""
