"""Storage PUT headers per host, as ciocore sends them: Content-MD5 only to GCS-style URLs."""

from __future__ import annotations

import pytest

from prefect_conductor.conductor_cloud.transfers.uploads import single_part_headers

MD5 = "b1kCrCNwJL3QwXbLkwY9xA=="


@pytest.mark.parametrize(
    "url",
    [
        "https://bucket.s3.us-west-2.amazonaws.com/accounts/a/hashstore/x?X-Amz-Signature=s",
        "https://object.lga1.coreweave.com/bucket/x?X-Amz-Signature=s",
    ],
)
def test_s3_style_urls_get_no_checksum_header(url: str) -> None:
    assert single_part_headers(url, MD5, "projects/p/keys/k") == {}


def test_gcs_style_urls_get_the_base64_md5_and_the_kms_key() -> None:
    url = "https://storage.googleapis.com/bucket/accounts/a/hashstore/x?Signature=s"
    assert single_part_headers(url, MD5, None) == {"Content-MD5": MD5}
    assert single_part_headers(url, MD5, "projects/p/keys/k") == {
        "Content-MD5": MD5,
        "x-goog-encryption-kms-key-name": "projects/p/keys/k",
    }
