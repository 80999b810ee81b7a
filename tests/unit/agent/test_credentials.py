"""What a running proxy's bootstrap carries (agent/credentials.py)."""

from __future__ import annotations

from pathlib import Path

from legation.agent.credentials import ProxyCredential


def test_a_minted_token_is_minted_again_at_half_its_lifetime() -> None:
    now = [0.0]
    minted: list[str] = []

    def mint() -> str:
        minted.append(f"t{len(minted)}")
        return minted[-1]

    cred = ProxyCredential(mint=mint, ttl_s=100.0, clock=lambda: now[0])
    assert cred.token() == "t0"
    now[0] = 49.0
    assert cred.token() == "t0"  # the same token: the bootstrap does not change
    now[0] = 50.0
    assert cred.token() == "t1" and minted == ["t0", "t1"]


def test_a_token_file_is_read_again_and_a_bad_read_keeps_the_last(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    cred = ProxyCredential(token_file=path)
    assert cred.token() == "first"
    path.write_text("second")
    assert cred.token() == "second"
    path.write_text("")  # kubelet mid-rotation, or a broken mount
    assert cred.token() == "second"
    path.unlink()
    assert cred.token() == "second"


def test_the_trust_bundle_is_read_each_time_and_kept_on_failure() -> None:
    bundles = iter(["root-a", "root-b"])

    def roots() -> str:
        try:
            return next(bundles)
        except StopIteration:
            raise OSError("gone") from None

    cred = ProxyCredential(roots=roots)
    assert [cred.roots(), cred.roots(), cred.roots()] == ["root-a", "root-b", "root-b"]
    assert ProxyCredential().roots() is None and ProxyCredential().token() is None
