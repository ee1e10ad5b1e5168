//! The bucket client's copies in ranges and its conditional writes, against moto's server
//! (`s3-harness`): here, inside the crate, because they lower the copy part size
//! ([`S3Storage::copy_part_bytes`]) so that small objects take the path of objects over 5 GiB,
//! and set a racing writer between a precondition's check and its write
//! ([`S3Storage::after_check`]).

use bytes::Bytes;
use futures_util::FutureExt as _;

use super::{S3Config, S3Storage};
use crate::storage::{ByteStream, Preconditions, PutOptions, Storage, StorageError, TagCondition};

const MIB: usize = 1024 * 1024;

/// A client of a fresh bucket of the test server, files under `media/`, copying in parts of at
/// most `copy_part_bytes`.
fn storage(copy_part_bytes: u64) -> S3Storage {
    let server = s3_harness::shared();
    let config = test_server_config(
        server.endpoint().to_owned(),
        &format!("s3://{}/media", server.bucket()),
        super::http::S3Timeouts::default(),
    );
    let mut storage = S3Storage::new(&config).unwrap();
    storage.copy_part_bytes = copy_part_bytes;
    storage
}

/// The configuration of `url` (`s3://bucket/prefix`) on the S3-compatible server at `endpoint`
/// (plain http), with the test server's credentials and region and these `timeouts`.
fn test_server_config(endpoint: String, url: &str, timeouts: super::http::S3Timeouts) -> S3Config {
    S3Config {
        endpoint: Some(endpoint),
        access_key_id: Some(s3_harness::ACCESS_KEY_ID.to_owned()),
        secret_access_key: Some(s3_harness::SECRET_ACCESS_KEY.to_owned()),
        region: s3_harness::REGION.to_owned(),
        allow_http: true,
        timeouts,
        ..S3Config::from_url(url).unwrap()
    }
}

/// `size` bytes that differ from one offset to the next (a part copied out of place shows).
fn bytes(size: usize, seed: u8) -> Vec<u8> {
    (0..size).map(|i| ((i % 251) as u8).wrapping_add(seed)).collect()
}

fn body(data: &[u8]) -> ByteStream {
    // In chunks, as a request's body arrives.
    let chunks: Vec<std::io::Result<Bytes>> = data.chunks(256 * 1024).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
    Box::pin(futures_util::stream::iter(chunks))
}

fn options(create_only: bool, conditional: bool) -> PutOptions {
    PutOptions { create_only, max_bytes: u64::MAX, conditional }
}

async fn put(storage: &S3Storage, path: &str, data: &[u8]) -> String {
    let staged = storage.put(path, body(data), options(false, false)).await.unwrap();
    staged.commit().await.unwrap().meta.etag
}

async fn read(storage: &S3Storage, path: &str) -> Vec<u8> {
    use futures_util::StreamExt as _;
    let file = storage.open(path).await.unwrap();
    let size = file.meta().size;
    let mut stream = file.read(0..size);
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

/// Sets a writer that puts `data` at `path` right after the next precondition check.
fn race(storage: &S3Storage, path: &str, data: Vec<u8>) {
    let (writer, path) = (storage.clone(), path.to_owned());
    let racer = async move {
        put(&writer, &path, &data).await;
    };
    *storage.after_check.lock().unwrap() = Some(racer.boxed());
}

/// The number of parts S3 made an object of (its entity tag ends with `-N`; none: one `PUT`
/// or `CopyObject`).
fn parts(etag: &str) -> Option<u32> {
    etag.trim_matches('"').rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

/// A copy of an object larger than the copy part size (5 GiB on AWS: one `CopyObject` or one
/// `UploadPartCopy` cannot make it) is a multipart copy in ranges, byte for byte, both
/// without a condition (a backup) and create-only (publishing a `-n` output, a create-only
/// upload); an object that fits is still one copy, and an empty one copies too.
#[tokio::test]
async fn copies_over_the_part_size_go_in_ranges_and_keep_every_byte() {
    // moto refuses parts under 5 MiB but the last: 5 MiB parts, 11 MiB + 3 bytes: 3 parts.
    let storage = storage(5 * MIB as u64);
    let data = bytes(11 * MIB + 3, 7);
    put(&storage, "big.bin", &data).await;

    // A backup: the file to the temporary area, then back to a new name, create-only.
    storage.copy_to_temp("big.bin", "backup/big").await.unwrap();
    storage.publish_temp("backup/big", "copy.bin", true).await.unwrap();
    let copied = storage.head("copy.bin").await.unwrap();
    assert_eq!(copied.size, data.len() as u64);
    assert_eq!(parts(&copied.etag), Some(3), "three ranged parts: {}", copied.etag);
    assert!(read(&storage, "copy.bin").await == data, "the copy holds every byte in order");

    // Create-only onto an existing file: refused, the file unchanged, no upload left open.
    storage.copy_to_temp("big.bin", "backup/again").await.unwrap();
    let refused = storage.publish_temp("backup/again", "copy.bin", true).await;
    assert!(matches!(refused, Err(StorageError::Exists(_))), "{refused:?}");
    assert_eq!(storage.head("copy.bin").await.unwrap().etag, copied.etag);

    // An object within one part: one copy without a condition, one whole part with one.
    put(&storage, "small.bin", &bytes(1000, 1)).await;
    storage.copy_to_temp("small.bin", "backup/small").await.unwrap();
    storage.publish_temp("backup/small", "small-copy.bin", false).await.unwrap();
    assert_eq!(parts(&storage.head("small-copy.bin").await.unwrap().etag), None);
    assert_eq!(read(&storage, "small-copy.bin").await, bytes(1000, 1));
    put(&storage, "empty.bin", b"").await;
    storage.copy_to_temp("empty.bin", "backup/empty").await.unwrap();
    storage.publish_temp("backup/empty", "empty-copy.bin", true).await.unwrap();
    assert_eq!(storage.head("empty-copy.bin").await.unwrap().size, 0);

    let bucket = storage.url().trim_start_matches("s3://").split('/').next().unwrap().to_owned();
    assert_eq!(s3_harness::shared().unfinished_uploads(&bucket), Vec::<String>::new());
}

/// `DELETE` with `If-Match`: a file replaced between the check and the delete is not
/// deleted (412), the new version stays; without a race the delete goes through.
#[tokio::test]
async fn a_conditional_delete_never_deletes_a_file_replaced_after_its_check() {
    let storage = storage(super::COPY_MAX_BYTES);
    let first = put(&storage, "f.txt", b"first").await;
    let if_match =
        Preconditions { if_match: Some(TagCondition::Tags(vec![first.clone()])), ..Preconditions::default() };
    race(&storage, "f.txt", b"second".to_vec());
    let result = storage.delete_if("f.txt", false, &if_match).await;
    assert!(matches!(result, Err(StorageError::PreconditionFailed { .. })), "{result:?}");
    assert_eq!(read(&storage, "f.txt").await, b"second");

    let second = storage.head("f.txt").await.unwrap().etag;
    let if_match = Preconditions { if_match: Some(TagCondition::Tags(vec![second])), ..Preconditions::default() };
    storage.delete_if("f.txt", false, &if_match).await.unwrap();
    assert!(matches!(storage.head("f.txt").await, Err(StorageError::NotFound(_))));
}

/// A conditional upload of many parts (`If-None-Match: *` on a file that is not there yet,
/// and a create-only one) is written by one conditional request: a file that appears between
/// the check and the write is never replaced. Without a race, it is written whole.
#[tokio::test]
async fn a_conditional_upload_of_many_parts_never_replaces_a_file_that_appeared_after_its_check() {
    let storage = storage(super::COPY_MAX_BYTES);
    let data = bytes(9 * MIB, 3);
    let absent = Preconditions { if_none_match: Some(TagCondition::Any), ..Preconditions::default() };

    let staged = storage.put("a.bin", body(&data), options(false, true)).await.unwrap();
    race(&storage, "a.bin", b"the other writer".to_vec());
    let result = staged.commit_if(&absent).await;
    assert!(matches!(result, Err(StorageError::PreconditionFailed { .. })), "{result:?}");
    assert_eq!(read(&storage, "a.bin").await, b"the other writer");

    let staged = storage.put("b.bin", body(&data), options(true, false)).await.unwrap();
    race(&storage, "b.bin", b"the other writer".to_vec());
    let result = staged.commit().await;
    assert!(matches!(result, Err(StorageError::Exists(_))), "{result:?}");
    assert_eq!(read(&storage, "b.bin").await, b"the other writer");

    let staged = storage.put("c.bin", body(&data), options(false, true)).await.unwrap();
    let outcome = staged.commit_if(&absent).await.unwrap();
    assert!(outcome.created);
    assert!(read(&storage, "c.bin").await == data);
    // `If-Match` the entity tag just written: replaced.
    let if_match =
        Preconditions { if_match: Some(TagCondition::Tags(vec![outcome.meta.etag])), ..Preconditions::default() };
    let newer = bytes(9 * MIB, 9);
    let staged = storage.put("c.bin", body(&newer), options(false, true)).await.unwrap();
    let outcome = staged.commit_if(&if_match).await.unwrap();
    assert!(!outcome.created);
    assert!(read(&storage, "c.bin").await == newer);
    // Nothing left in the temporary area or open.
    assert!(storage.list_temps("").await.unwrap().is_empty());
    let bucket = storage.url().trim_start_matches("s3://").split('/').next().unwrap().to_owned();
    assert_eq!(s3_harness::shared().unfinished_uploads(&bucket), Vec::<String>::new());
}

/// The bucket's name of a storage made by [`storage`].
fn bucket_of(storage: &S3Storage) -> String {
    storage.url().trim_start_matches("s3://").split('/').next().unwrap().to_owned()
}

/// Open multipart uploads are listed and aborted by their key's exact text (tester G11, and
/// issue 12's duplicate sender): an upload another tool left under a key no path names
/// (`out//big.mkv`) is aborted itself, not one of another key (an `object_store` path
/// dropped the empty name and aborted nothing); one under a `.` or `..` name, which no
/// request can name safely, is left out of the listing, not aborted elsewhere.
#[tokio::test]
async fn open_uploads_are_listed_and_aborted_by_their_exact_key() {
    let storage = storage(super::COPY_MAX_BYTES);
    let server = s3_harness::shared();
    let bucket = bucket_of(&storage);
    for key in ["media/out//big.mkv", "media/out/../odd.mkv", "media/in/a.mkv", "elsewhere/x.mkv"] {
        server.start_upload(&bucket, key);
    }
    let mut listed: Vec<String> = storage.open_uploads("").await.unwrap().into_iter().map(|u| u.path).collect();
    listed.sort();
    assert_eq!(listed, ["in/a.mkv", "out//big.mkv"]);
    let below: Vec<String> = storage.open_uploads("out/").await.unwrap().into_iter().map(|u| u.path).collect();
    assert_eq!(below, ["out//big.mkv"]);
    for upload in storage.open_uploads("").await.unwrap() {
        storage.abort_upload(&upload).await.unwrap();
    }
    let mut left = server.unfinished_uploads(&bucket);
    left.sort();
    assert_eq!(left, ["elsewhere/x.mkv", "media/out/../odd.mkv"]);
}

/// A key with a `.` or `..` name is never sent in a URL (the HTTP client would resolve it to
/// another key): the one sender refuses it without a request.
#[tokio::test]
async fn the_sender_refuses_a_key_a_url_would_resolve_to_another() {
    let storage = storage(super::COPY_MAX_BYTES);
    let server = s3_harness::shared();
    let bucket = bucket_of(&storage);
    server.put_object(&bucket, "media/b", b"another key");
    let refused = storage.raw.send("DELETE", Some("media/a/../b"), "", &[], Bytes::new(), "a/../b").await;
    let error = refused.unwrap_err().into_storage("a/../b");
    assert!(error.to_string().contains("no request can name it safely"), "{error}");
    assert_eq!(server.object(&bucket, "media/b").unwrap(), b"another key");
}

/// The publish check's answers (tester G14) keep their meaning when it lists each directory
/// once (tester H7): of many outputs in one directory, the one the bucket holds as a
/// directory is found whether a file (`i2.png`), a folder marker (`i1.png/`), a key no path
/// names (`i3.png//x`) or a deeper key (`i4.png/a/b`) makes it one, and keys that sort
/// between a name and its `/` (`i2.png.bak`, `i2.png-x`) make no directory.
#[tokio::test]
async fn many_outputs_in_one_directory_are_checked_by_one_listing_with_the_same_answers() {
    let storage = storage(super::COPY_MAX_BYTES);
    let server = s3_harness::shared();
    let bucket = bucket_of(&storage);
    let outputs: Vec<String> = (0..6).map(|n| format!("seq/i{n}.png")).collect();
    for key in ["media/seq/i2.png.bak", "media/seq/i2.png-x", "media/seq/i0.png", "media/other/i2.png/x"] {
        server.put_object(&bucket, key, b"x");
    }
    storage.writable_paths(&outputs, &[]).await.unwrap();
    for (key, conflict) in [
        ("media/seq/i2.png/inner.txt", "seq/i2.png"),
        ("media/seq/i1.png/", "seq/i1.png"),
        ("media/seq/i3.png//x", "seq/i3.png"),
        ("media/seq/i4.png/a/b", "seq/i4.png"),
        ("media/seq/i5.png/z", "seq/i5.png"),
    ] {
        server.put_object(&bucket, key, b"x");
        let result = storage.writable_paths(&outputs, &[]).await;
        assert!(matches!(&result, Err(StorageError::IsADirectory(path)) if path == conflict), "{key}: {result:?}");
        server.delete_object(&bucket, key);
        storage.writable_paths(&outputs, &[]).await.unwrap();
    }
    // Below a file, and a directory of one output, as before.
    server.put_object(&bucket, "media/seq", b"a file");
    let result = storage.writable_paths(&outputs, &[]).await;
    assert!(matches!(&result, Err(StorageError::NotADirectory { parent, .. }) if parent == "seq"), "{result:?}");
    server.put_object(&bucket, "media/one/a.mp4/x", b"x");
    let result = storage.writable_paths(&["one/a.mp4".to_owned()], &[]).await;
    assert!(matches!(&result, Err(StorageError::IsADirectory(path)) if path == "one/a.mp4"), "{result:?}");
}

/// A bucket deleted while the server runs (tester H8) is named as such by every kind of
/// request, whether it went through `object_store` (a `PUT`, whose answer's body says
/// `NoSuchBucket`; a `HEAD`, which has none, is followed by a listing) or the signed-request
/// sender (listings, deletes, open uploads): never "no file", never a silent storage.
#[tokio::test]
async fn a_deleted_bucket_is_named_by_every_request() {
    let storage = storage(super::COPY_MAX_BYTES);
    let server = s3_harness::shared();
    let bucket = bucket_of(&storage);
    put(&storage, "in/a.txt", b"x").await;
    server.delete_bucket(&bucket);
    let no_bucket = |result: Result<(), StorageError>, what: &str| match result {
        Err(e @ StorageError::NoBucket { .. }) => {
            assert!(e.to_string().contains(&format!("bucket `{bucket}` does not exist")), "{what}: {e}");
            assert!(!e.is_transient(), "{what}");
        }
        other => panic!("{what}: {other:?}"),
    };
    no_bucket(storage.check().await, "check");
    no_bucket(storage.open("in/a.txt").await.map(drop), "open");
    no_bucket(storage.head("in/a.txt").await.map(drop), "head");
    no_bucket(storage.list("in/", None, 10).await.map(drop), "list");
    no_bucket(storage.delete("in/a.txt", false).await, "delete");
    no_bucket(storage.delete("in", true).await, "recursive delete");
    no_bucket(storage.put_temp("t/a", body(b"x")).await.map(drop), "put_temp");
    no_bucket(storage.open_uploads("").await.map(drop), "open uploads");
    no_bucket(storage.writable_paths(&["o.mp4".to_owned()], &[]).await, "writable");
    let staged = storage.put("new.txt", body(b"x"), options(false, false)).await.map(drop);
    no_bucket(staged, "put");
    server.create_bucket(&bucket);
    storage.check().await.unwrap();
}

/// A bucket that does not answer (its port refuses connections): the error of a call on the
/// whole storage (a listing of every file, the temporary area's, every open upload's: the
/// sweep's calls) names the storage, never an empty path ("unavailable for ``", tester).
#[tokio::test]
async fn errors_about_the_whole_storage_name_it_not_an_empty_path() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let timeouts = super::http::S3Timeouts {
        connect: std::time::Duration::from_secs(1),
        request: std::time::Duration::from_secs(1),
        ..super::http::S3Timeouts::default()
    };
    let config = test_server_config(endpoint, "s3://down-bucket/media", timeouts);
    let storage = S3Storage::new(&config).unwrap();
    let named = |result: Result<(), StorageError>, what: &str| {
        let e = result.expect_err(what);
        assert!(e.is_transient(), "{what}: {e:?}");
        let text = e.to_string();
        assert!(!text.contains("``") && text.contains("`s3://down-bucket/media`"), "{what}: {text}");
    };
    named(storage.list_temps("").await.map(drop), "temporary area");
    named(storage.open_uploads("").await.map(drop), "open uploads");
    named(storage.list("", None, 10).await.map(drop), "every file");
}

/// A `CompleteMultipartUpload` whose answer is lost (the bucket completed the upload; the
/// answer never came back) is retried, and the retry finds no such upload (or, create-only,
/// the object the first try made: 412). Either used to fail a copy that had happened: now the
/// object at the key with the entity tag its parts make counts as the completion. Through the
/// switchable proxy, which loses the first completion's answer; a multipart copy of two parts,
/// create-only and not.
#[tokio::test]
async fn a_completion_whose_answer_was_lost_counts_as_done_when_its_object_is_there() {
    let server = s3_harness::shared();
    let proxy = s3_harness::Proxy::start(server.port());
    let timeouts = super::http::S3Timeouts {
        connect: std::time::Duration::from_secs(1),
        request: std::time::Duration::from_secs(2),
        copy: std::time::Duration::from_secs(2),
    };
    let config = test_server_config(proxy.endpoint(), &format!("s3://{}/media", server.bucket()), timeouts);
    let mut storage = S3Storage::new(&config).unwrap();
    // Two parts (all but the last at least 5 MiB, as S3 and moto require).
    storage.copy_part_bytes = 5 * MIB as u64;
    let data = bytes(5 * MIB + 1000, 3);
    put(&storage, "src.bin", &data).await;
    let completions = proxy.counter("?uploadId=");
    for (target, create_only) in [("new.bin", true), ("any.bin", false)] {
        let before = completions.get();
        proxy.set(s3_harness::ProxyMode::LoseOneCompletionAnswer);
        let (from, to) = (storage.key("src.bin"), storage.key(target));
        storage.copy_key(&from, &to, target, create_only).await.unwrap_or_else(|e| panic!("{target}: {e:?}"));
        assert!(completions.get() >= before + 2, "{target}: the completion was not retried");
        assert!(read(&storage, target).await == data, "{target}: the copy, whole");
    }
    assert!(server.unfinished_uploads(&bucket_of(&storage)).is_empty());
}
