"""The one failure type of every verification stage, with its closed set of codes."""

from __future__ import annotations

__all__ = ["CODES", "InclusionError", "VerificationFailure"]

# What failed, as a word a script can branch on; docs/format.md says what each means.
CODES = frozenset(
    {
        "hash_mismatch",  # an event_hash recomputed from the event's fields differs
        "broken_link",  # prev_hash is not the previous event's event_hash
        "gap",  # a seq is missing, or anchored ranges leave one out
        "overlap",  # anchored ranges cover a seq twice
        "order",  # rows out of (tenant_id, seq) order
        "head_mismatch",  # a tenant's recorded head is not the end of its chain
        "bad_proof",  # an audit path does not reach its root, or its position is wrong
        "bad_signature",  # an anchor's or a manifest's Ed25519 signature does not verify
        "untrusted_key",  # signed by a key the trust file does not list, or a published key that is not it
        "missing_anchor",  # an anchor, proofs or key object is not in the bucket
        "unrecorded_anchor",  # the bucket holds an anchor the database never recorded
        "anchor_replaced",  # an anchor's bytes differ from those recorded when it was written
        "anchor_fields",  # an anchor's fields disagree with its name, its proofs or its predecessor
        "proofs_sha256",  # a proofs file does not hash to its anchor's proofs_sha256
        "anchor_record",  # the database's record of an anchored range differs from the bucket's
        "events_root",  # the stored events of a range no longer give its anchored events_root
        "retention",  # an anchor or proofs object has no Object Lock retention, or too short a one
        "lock_mode",  # an anchor or proofs object is locked in a mode the trust file does not allow
        "versions",  # an anchor or proofs object has more than one version
        "pending",  # an exported row is not anchored yet (allowed only with --allow-pending)
        "manifest",  # the manifest is missing, unsigned, malformed, or names another bucket or cadence
        "row_count",  # the file holds another number of rows than the manifest says
        "data_sha256",  # the file's SHA-256 differs from the manifest's
        "dropped_or_added_row",  # the file does not hold exactly the rows the manifest lists
        "malformed_row",  # a row cannot be read as an export row
        "malformed_file",  # the file cannot be read as an export
    }
)


class VerificationFailure(Exception):
    """What did not verify: ``code`` (one of :data:`CODES`), a ``detail`` saying what differs, and where:
    the export ``row`` (1-based, header excluded), the ``tenant_id`` and ``seq``, the ``anchor`` (cadence id)."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        tenant_id: str | None = None,
        seq: int | None = None,
        row: int | None = None,
        anchor: str | None = None,
    ) -> None:
        if code not in CODES:
            raise ValueError(f"{code!r} is not a verification failure code")
        self.code = code
        self.detail = detail
        self.tenant_id = tenant_id
        self.seq = seq
        self.row = row
        self.anchor = anchor
        super().__init__(self.message())

    def message(self) -> str:
        parts = []
        if self.row is not None:
            parts.append(f"row {self.row}")
        if self.anchor:
            parts.append(f"anchor {self.anchor}")
        if self.tenant_id is not None:
            parts.append(f"tenant {self.tenant_id}" + (f" seq {self.seq}" if self.seq is not None else ""))
        return f"{', '.join(parts) or 'ledger'}: {self.code}: {self.detail}"

    def where(
        self, *, row: int | None = None, tenant_id: str | None = None, seq: int | None = None
    ) -> VerificationFailure:
        """The same failure placed at an export row (the anchor stage does not know which row asked)."""
        return VerificationFailure(
            self.code,
            self.detail,
            tenant_id=self.tenant_id if tenant_id is None else tenant_id,
            seq=self.seq if seq is None else seq,
            row=row if row is not None else self.row,
            anchor=self.anchor,
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "code": self.code,
            "detail": self.detail,
            "row": self.row,
            "tenant_id": self.tenant_id,
            "seq": self.seq,
            "anchor": self.anchor,
            "message": self.message(),
        }


class InclusionError(ValueError):
    """An RFC 6962 inclusion proof that does not hold: ``reason`` says why; for a root that differs,
    ``computed`` and ``expected`` hold both roots; for a path of the wrong shape, ``path_length`` and
    ``expected_length``."""

    def __init__(
        self,
        reason: str,
        *,
        computed: bytes | None = None,
        expected: bytes | None = None,
        path_length: int | None = None,
        expected_length: int | None = None,
    ) -> None:
        self.reason = reason
        self.computed = computed
        self.expected = expected
        self.path_length = path_length
        self.expected_length = expected_length
        text = reason
        if computed is not None and expected is not None:
            text += f": computed root {computed.hex()}, expected {expected.hex()}"
        if path_length is not None and expected_length is not None:
            text += f": the path has {path_length} elements, a leaf at this index needs {expected_length}"
        super().__init__(text)
