"""Object-storage sources against a real S3 API (moto on loopback, behind a counting proxy):
listing with globs, change tokens, reads with retries, scrubbed errors."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest

from kbflow.config import load_config, source_config
from kbflow.sources.base import Source
from kbflow.errors import SourceUnreachable
from kbflow.formats import file_format
from kbflow.tasks.sources.discover import diff_against_documents, discover_source
from kbflow.sources.objects import (
    ObjectReadFailed,
    discover_objects,
    fsspec_options,
    list_objects,
    read_object,
    scrub,
    with_retries,
)
from kbflow.schemas import DOCUMENTS

from s3_servers import s3_client, start_authenticating_moto

BUCKET = "kbflow-test"
SECRET = "s3cr3t-value-7f2a"


def upload(endpoint: str, files: dict[str, bytes | str]) -> str:
    """Put files under a fresh prefix of the bucket; its s3:// URL."""
    prefix = f"src-{uuid.uuid4().hex[:8]}"
    client = s3_client(endpoint)
    for key, body in files.items():
        client.put_object(Bucket=BUCKET, Key=f"{prefix}/{key}", Body=body.encode() if isinstance(body, str) else body)
    return f"s3://{BUCKET}/{prefix}"


def source_at(url: str, endpoint: str, **fields) -> Source:
    # object_store's option names, as [store] storage_options takes them
    options = {"aws_endpoint": endpoint, "aws_access_key_id": "test", "aws_secret_access_key": "test",
               "aws_region": "us-east-1", "allow_http": "true"}
    return source_config(name="bucket", kind="files", path=url, storage_options=options, **fields)


def test_object_store_option_names_map_to_s3fs_and_others_pass_through():
    mapped = fsspec_options("s3", {"aws_endpoint": "http://minio:9000", "aws_region": "eu-west-1",
                                   "aws_access_key_id": "AK", "aws_secret_access_key": "SK", "allow_http": "true",
                                   "anon": "false", "requester_pays": True})
    assert mapped == {"endpoint_url": "http://minio:9000", "key": "AK", "secret": "SK", "anon": False,
                      "requester_pays": True, "client_kwargs": {"region_name": "eu-west-1"}}
    assert fsspec_options("s3", {"endpoint_url": "http://x", "region": "r"}) == {
        "endpoint_url": "http://x", "client_kwargs": {"region_name": "r"}}
    assert fsspec_options("az", {"azure_storage_account_name": "acct", "azure_storage_account_key": "K"}) == {
        "account_name": "acct", "account_key": "K"}
    assert fsspec_options("gs", {"project": "p", "token": "anon"}) == {"project": "p", "token": "anon"}


def test_scrub_removes_secret_options_credential_variables_and_url_passwords():
    options = {"aws_secret_access_key": SECRET, "key": "AKIAEXAMPLE", "endpoint_url": "http://minio:9000",
               "region": "eu-west-1"}
    environ = {"AWS_SESSION_TOKEN": "session-token-99", "HOME": "/root"}
    message = (f"denied: key AKIAEXAMPLE secret {SECRET} token session-token-99 at http://minio:9000 "
               "in eu-west-1 via https://admin:hunter22@proxy:8080/x")
    scrubbed = scrub(message, options, environ)
    for secret in (SECRET, "AKIAEXAMPLE", "session-token-99", "hunter22"):
        assert secret not in scrubbed
    assert "http://minio:9000" in scrubbed and "eu-west-1" in scrubbed and "https://admin:***@proxy:8080" in scrubbed


def test_urls_stay_urls_and_local_paths_resolve_as_before(tmp_path):
    config = tmp_path / "kbflow.toml"
    config.write_text('[[sources]]\nname = "s3"\nkind = "files"\npath = "s3://bucket/kb/docs"\n'
                      '[sources.storage_options]\nendpoint_url = "http://127.0.0.1:9000"\nanon = true\n\n'
                      '[[sources]]\nname = "globbed"\nkind = "files"\npath = "gs://bucket/kb/**/*.md"\n\n'
                      '[[sources]]\nname = "local"\nkind = "files"\npath = "docs/"\n', encoding="utf-8")
    s3, globbed, local = load_config(config).sources
    assert s3.path == "s3://bucket/kb/docs" and s3.root == "s3://bucket/kb/docs" and s3.is_object_storage
    assert s3.storage_options == {"endpoint_url": "http://127.0.0.1:9000", "anon": True}
    assert (globbed.root, globbed.path_glob) == ("gs://bucket/kb", "**/*.md")
    assert globbed.selects("a/b.md") and not globbed.selects("a/b.txt")
    assert local.path == tmp_path / "docs" and not local.is_object_storage
    assert SECRET not in repr(source_config(name="x", kind="files", path="s3://b", storage_options={"secret": SECRET}))
    with pytest.raises(ValueError, match="storage_options are for an object-storage path"):
        source_config(name="x", kind="files", path="docs/", storage_options={"anon": True})
    with pytest.raises(ValueError, match="records sources read local files"):
        source_config(name="x", kind="records", path="s3://b/r", id_field="id", text_field="t")
    assert file_format("s3://b/kb/page.rst.txt") == "rst"


def test_listing_applies_include_exclude_and_globs_relative_to_the_prefix(s3_endpoint):
    url = upload(s3_endpoint, {"guide.md": "# G", "sub/notes.txt": "n", "sub/drafts/wip.md": "w",
                               "image.png": b"\x89PNG", "sub/manual.pdf": b"%PDF"})
    listed = list_objects(source_at(url, s3_endpoint, exclude=["**/drafts/**"]))
    assert [o.uri for o in listed] == ["guide.md", "sub/manual.pdf", "sub/notes.txt"]
    assert listed[0].url == f"{url}/guide.md" and listed[0].size == 3 and listed[0].token.startswith("etag:")
    assert [o.uri for o in list_objects(source_at(f"{url}/sub/**/*.md", s3_endpoint))] == ["drafts/wip.md"]
    assert read_object(source_at(url, s3_endpoint), listed[0].url) == b"# G"


def test_unchanged_tokens_cost_no_body_read_and_a_same_bytes_upload_only_moves_the_token(s3_proxy):
    url = upload(s3_proxy.endpoint, {"a.md": "# A\n\nalpha", "b.md": "# B\n\nbeta", "c.md": "# C\n\ngamma"})
    source = source_at(url, s3_proxy.endpoint)
    first = discover_objects(source, 1_000_000, {})
    assert sorted(s3_proxy.body_reads(BUCKET).values()) == [1, 1, 1]  # new: each read once, to hash it
    stored = {row["doc_id"]: (row["change_token"], row["content_hash"]) for row in first.items.to_pylist()}

    s3_proxy.clear()
    again = discover_objects(source, 1_000_000, stored)
    assert s3_proxy.body_reads(BUCKET) == {}  # nothing changed: listing only
    assert again.items.column("content_hash").to_pylist() == first.items.column("content_hash").to_pylist()

    client, prefix = s3_client(s3_proxy.endpoint), url.split("/", 3)[3]
    client.put_object(Bucket=BUCKET, Key=f"{prefix}/b.md", Body=b"# B\n\nbeta, edited")
    # c.md: the same bytes as a multipart upload, so a new ETag
    upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/c.md")["UploadId"]
    part = client.upload_part(Bucket=BUCKET, Key=f"{prefix}/c.md", UploadId=upload_id, PartNumber=1, Body=b"# C\n\ngamma")
    client.complete_multipart_upload(Bucket=BUCKET, Key=f"{prefix}/c.md", UploadId=upload_id,
                                     MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]})
    client.delete_object(Bucket=BUCKET, Key=f"{prefix}/a.md")
    s3_proxy.clear()
    later = discover_objects(source, 1_000_000, stored)
    assert sorted(s3_proxy.body_reads(BUCKET)) == [f"{prefix}/b.md", f"{prefix}/c.md"]

    documents = pa.Table.from_pylist([{**row, "status": "active"} for row in first.items.to_pylist()], schema=DOCUMENTS)
    assert later.quarantined == [] and later.items.num_rows == 2
    changes = diff_against_documents(later, documents)
    assert changes.counts == {"new": 0, "changed": 1, "unchanged": 1, "deleted": 1}
    c_doc = next(r for r in later.items.to_pylist() if r["uri"] == "c.md")
    assert changes.moved_tokens == {c_doc["doc_id"]: c_doc["change_token"]}
    assert c_doc["change_token"] != stored[c_doc["doc_id"]][0]


def test_discover_source_dispatches_urls_and_quarantines_what_cannot_be_read(s3_proxy):
    url = upload(s3_proxy.endpoint, {"ok.md": "# OK\n\nfine", "big.md": "x" * 5000, "locked.md": "# L\n\nsecret"})
    s3_proxy.deny.add(f"/{url.split('/', 3)[2]}/{url.split('/', 3)[3]}/locked.md")
    discovery = discover_source(source_at(url, s3_proxy.endpoint), 1000)
    assert discovery.items.column("uri").to_pylist() == ["ok.md"]
    reasons = {q.uri: q.reason for q in discovery.quarantined}
    assert reasons == {"big.md": "file_too_large", "locked.md": "unreadable"}
    assert "Access Denied" in next(q.detail for q in discovery.quarantined if q.uri == "locked.md")
    assert discovery.unreadable == {("bucket", "big.md"), ("bucket", "locked.md")}
    assert s3_proxy.body_reads(BUCKET)[f"{url.split('/', 3)[3]}/big.md"] == 0  # too large: never downloaded


def test_a_transient_read_failure_is_retried_then_succeeds(s3_proxy):
    url = upload(s3_proxy.endpoint, {"flaky.md": "# Flaky\n\nworks eventually"})
    path = f"/{BUCKET}/{url.split('/', 3)[3]}/flaky.md"
    s3_proxy.fail_next[path] = [503, 503]
    assert read_object(source_at(url, s3_proxy.endpoint), f"{url}/flaky.md") == b"# Flaky\n\nworks eventually"
    tries = [method for method, requested, _ in s3_proxy.requests if requested == path]
    assert s3_proxy.fail_next[path] == [] and len(tries) >= 3 and tries[-1] == "GET"  # two 503s, then the body


def test_with_retries_backs_off_on_transient_errors_and_gives_up_with_a_scrubbed_reason():
    source = source_config(name="s", kind="files", path="s3://b", storage_options={"secret": SECRET})
    calls = []

    def flaky() -> bytes:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionResetError(f"connection reset while sending {SECRET}")
        return b"body"

    assert with_retries(flaky, source, "s3://b/x.md", tries=3, backoff_s=(0.01,)) == b"body" and len(calls) == 3

    def down() -> bytes:
        raise TimeoutError(f"read timed out, secret={SECRET}")

    with pytest.raises(ObjectReadFailed) as failed:
        with_retries(down, source, "s3://b/x.md", tries=3, backoff_s=(0.01,))
    assert "after 3 tries" in str(failed.value) and SECRET not in str(failed.value)

    def missing() -> bytes:
        calls.append(1)
        raise FileNotFoundError("s3://b/gone.md")

    calls.clear()
    with pytest.raises(ObjectReadFailed, match="after 1 tries"):
        with_retries(missing, source, "s3://b/gone.md", tries=3, backoff_s=(0.01,))
    assert len(calls) == 1  # a missing object does not come back by waiting


def test_an_unreachable_endpoint_fails_with_the_source_and_endpoint_named_and_no_secret():
    source = source_config(name="kb", kind="files", path="s3://bucket/kb", storage_options={
        "endpoint_url": "http://127.0.0.1:9", "key": "AKIDEXAMPLEKEY", "secret": SECRET})
    with pytest.raises(SourceUnreachable) as failed:
        list_objects(source)
    message = str(failed.value)
    assert "source 'kb'" in message and "http://127.0.0.1:9" in message and "s3://bucket/kb" in message
    assert SECRET not in message and "AKIDEXAMPLEKEY" not in message


def test_wrong_credentials_fail_with_a_clear_message_and_no_secret():
    process, endpoint = start_authenticating_moto()
    try:
        source = source_config(name="kb", kind="files", path="s3://bucket/kb", storage_options={
            "endpoint_url": endpoint, "key": "AKIDWRONGKEY", "secret": SECRET, "region": "us-east-1"})
        with pytest.raises(SourceUnreachable) as failed:
            list_objects(source)
    finally:
        process.terminate()
        process.wait(10)
    message = str(failed.value)
    assert "source 'kb'" in message and endpoint in message and "Access Key Id" in message
    assert SECRET not in message and "AKIDWRONGKEY" not in message


def test_a_file_url_is_listed_and_read_through_fsspec_with_size_and_mtime_as_its_token(tmp_path):
    (tmp_path / "kb/sub").mkdir(parents=True)
    (tmp_path / "kb/a.md").write_text("# A\n\nalpha")
    (tmp_path / "kb/sub/b.rst").write_text("B\n=\n\nbeta")
    source = source_config(name="local", kind="files", path=f"file://{tmp_path}/kb")
    discovery = discover_source(source, 1_000_000)
    rows = discovery.items.to_pylist()
    assert [(r["uri"], r["format"]) for r in rows] == [("a.md", "md"), ("sub/b.rst", "rst")]
    assert rows[0]["path"] == f"file://{tmp_path}/kb/a.md" and rows[0]["change_token"].startswith("size:10:mtime:")
    assert read_object(source, rows[1]["path"]) == b"B\n=\n\nbeta"


@pytest.mark.parametrize("scheme", ["az", "abfs"])
def test_an_azure_source_s_storage_options_reach_adlfs(scheme):
    """No Azure Blob server can be started here (Azurite is an npm package): the options are checked
    at adlfs's constructor, which makes no request."""
    pytest.importorskip("adlfs")
    from kbflow.sources.objects import open_filesystem

    source = source_config(name="az", kind="files", path=f"{scheme}://docs/kb", storage_options={
        "azure_storage_account_name": "kbflowacct", "azure_storage_account_key": "a2V5LXZhbHVl"})
    fs = open_filesystem(source)
    assert type(fs).__name__ == "AzureBlobFileSystem"
    assert (fs.account_name, fs.account_key) == ("kbflowacct", "a2V5LXZhbHVl")
    assert fs.account_url == "https://kbflowacct.blob.core.windows.net"
