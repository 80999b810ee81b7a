"""Issuance time per certificate (not a test; run `python tests/unit/sds/issuance_timing.py`)."""

from __future__ import annotations

import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from legation.model import SpiffeId
from legation.security import CertificateAuthority, KeyType


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ca = CertificateAuthority.load_or_create(Path(tmp), trust_domain="cluster.local")
        ident = SpiffeId(trust_domain="cluster.local", namespace="shop", service_account="order-sa")
        for key_type, n in ((KeyType.ECDSA_P256, 2000), (KeyType.RSA_2048, 50)):
            ca.issue(ident, ttl=timedelta(hours=24), key_type=key_type)  # warm up
            start = time.perf_counter()
            for _ in range(n):
                ca.issue(ident, ttl=timedelta(hours=24), key_type=key_type)
            per = (time.perf_counter() - start) / n * 1000
            print(f"{key_type}: {per:.3f} ms per certificate (key generation, signing, PEM), n={n}")


if __name__ == "__main__":
    main()
