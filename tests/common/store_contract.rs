//! The contract every [`Store`] keeps, as one suite each store's tests run: commit
//! visibility, abort on drop, TTL expiry, `update_meta`, `remove`, `clear`, concurrent
//! writers of one key, bodies read back whole, in chunks and by range, and `get_two`.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use bytes::Bytes;
use std::time::{Duration, Instant};
use tower_etag::store::{Expect, Key, Meta, Store, StoreError, StoreWriter, Stored, StoredBody};

pub const HOUR: Duration = Duration::from_secs(3600);

pub fn key(name: &str) -> Key {
    Key::new("t", "example.com/contract", name)
}

pub fn meta(text: &'static str) -> Meta {
    Meta::encoded(Bytes::from_static(text.as_bytes()))
}

/// Writes `body` in chunks of `chunk` bytes and commits it.
pub async fn put<S: Store>(
    store: &S,
    k: &Key,
    head: &'static str,
    body: &[u8],
    chunk: usize,
    ttl: Duration,
    expect: Expect,
) -> Result<u64, StoreError> {
    let mut w = store.writer(k, meta(head), ttl, expect).await?;
    for part in body.chunks(chunk.max(1)) {
        w = w.write(Bytes::copy_from_slice(part)).await?;
    }
    w.commit().await
}

/// The whole body of a stored entry, read through its stream.
pub async fn read_all(body: &StoredBody) -> Result<Vec<u8>, StoreError> {
    read_range(body, 0..body.len()).await
}

pub async fn read_range(
    body: &StoredBody,
    range: std::ops::Range<u64>,
) -> Result<Vec<u8>, StoreError> {
    use futures_util::StreamExt as _;
    let mut out = Vec::new();
    let mut stream = body.stream(range);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn get<S: Store>(store: &S, k: &Key) -> Option<Stored> {
    store.get(k).await.expect("the store answers")
}

/// Runs every rule of the contract on `store`, which must be empty.
pub async fn run<S: Store>(store: &S) {
    commit_makes_an_entry_visible(store).await;
    a_dropped_writer_leaves_nothing(store).await;
    entries_expire(store).await;
    update_meta_replaces_the_head_and_keeps_the_body(store).await;
    remove_and_clear(store).await;
    concurrent_writers_of_one_key(store).await;
    bodies_read_back_whole_in_chunks_and_by_range(store).await;
    get_two_reads_what_two_gets_read(store).await;
}

async fn commit_makes_an_entry_visible<S: Store>(store: &S) {
    let k = key("visible");
    let mut w = store
        .writer(&k, meta("h1"), HOUR, Expect::Absent)
        .await
        .unwrap();
    w = w.write(Bytes::from_static(b"hello ")).await.unwrap();
    w = w.write(Bytes::from_static(b"world")).await.unwrap();
    assert!(get(store, &k).await.is_none(), "nothing before the commit");
    let version = w.commit().await.unwrap();
    let stored = get(store, &k).await.expect("visible after the commit");
    assert_eq!(stored.meta.bytes, "h1");
    assert_ne!(stored.version, 0);
    assert_eq!(
        stored.version, version,
        "the commit says which version it made"
    );
    assert!(
        stored.expires_in.is_none_or(|left| left <= HOUR),
        "{:?}",
        stored.expires_in
    );
    assert_eq!(read_all(&stored.body).await.unwrap(), b"hello world");
    // An empty body is an entry too.
    put(store, &key("empty"), "e", b"", 1, HOUR, Expect::Any)
        .await
        .unwrap();
    let empty = get(store, &key("empty")).await.expect("stored");
    assert!(empty.body.is_empty());
    // Another key is not this one.
    assert!(get(store, &key("other")).await.is_none());
}

async fn a_dropped_writer_leaves_nothing<S: Store>(store: &S) {
    let k = key("dropped");
    let mut w = store
        .writer(&k, meta("d"), HOUR, Expect::Any)
        .await
        .unwrap();
    // Large enough to reach a store's file or backend, not only its buffer.
    for _ in 0..4 {
        w = w.write(Bytes::from(vec![7u8; 100_000])).await.unwrap();
    }
    drop(w);
    assert!(get(store, &k).await.is_none());
    // A dropped commit future aborts too (or commits whole; never half).
    let w = store
        .writer(&k, meta("d"), HOUR, Expect::Any)
        .await
        .unwrap();
    let w = w.write(Bytes::from_static(b"whole")).await.unwrap();
    drop(w.commit());
    if let Some(stored) = get(store, &k).await {
        assert_eq!(read_all(&stored.body).await.unwrap(), b"whole");
    }
}

async fn entries_expire<S: Store>(store: &S) {
    let k = key("expiring");
    put(
        store,
        &k,
        "x",
        b"x",
        1,
        Duration::from_millis(300),
        Expect::Any,
    )
    .await
    .unwrap();
    assert!(get(store, &k).await.is_some(), "alive within its ttl");
    let deadline = Instant::now() + Duration::from_secs(10);
    while get(store, &k).await.is_some() {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Expired counts as absent for a conditional write.
    put(store, &k, "y", b"y", 1, HOUR, Expect::Absent)
        .await
        .unwrap();
}

async fn update_meta_replaces_the_head_and_keeps_the_body<S: Store>(store: &S) {
    let k = key("updated");
    put(store, &k, "old", b"the body", 3, HOUR, Expect::Any)
        .await
        .unwrap();
    let v = get(store, &k).await.unwrap().version;
    assert!(store
        .update_meta(&k, Expect::Version(v), meta("new"), HOUR)
        .await
        .unwrap());
    let stored = get(store, &k).await.unwrap();
    assert_eq!(stored.meta.bytes, "new");
    assert_ne!(stored.version, v, "an update is a new version");
    assert_eq!(read_all(&stored.body).await.unwrap(), b"the body");
    // The version read before the update no longer holds.
    assert!(!store
        .update_meta(&k, Expect::Version(v), meta("lost"), HOUR)
        .await
        .unwrap());
    assert_eq!(get(store, &k).await.unwrap().meta.bytes, "new");
    // Creating where absence is expected, once.
    let record = key("record");
    assert!(store
        .update_meta(&record, Expect::Absent, meta("r1"), HOUR)
        .await
        .unwrap());
    assert!(!store
        .update_meta(&record, Expect::Absent, meta("r2"), HOUR)
        .await
        .unwrap());
    let r = get(store, &record).await.unwrap();
    assert_eq!(r.meta.bytes, "r1");
    assert!(r.body.is_empty());
    // Never on an entry that is not there.
    assert!(!store
        .update_meta(&key("missing"), Expect::Version(r.version), meta("m"), HOUR)
        .await
        .unwrap());
}

async fn remove_and_clear<S: Store>(store: &S) {
    let k = key("removed");
    put(store, &k, "r", b"body", 2, HOUR, Expect::Any)
        .await
        .unwrap();
    let v = get(store, &k).await.unwrap().version;
    assert!(!store.remove(&k, Expect::Version(v + 1000)).await.unwrap());
    assert!(
        get(store, &k).await.is_some(),
        "a newer entry is never removed"
    );
    assert!(store.remove(&k, Expect::Version(v)).await.unwrap());
    assert!(get(store, &k).await.is_none());
    assert!(!store.remove(&k, Expect::Any).await.unwrap());
    put(store, &key("c1"), "c", b"1", 1, HOUR, Expect::Any)
        .await
        .unwrap();
    put(store, &key("c2"), "c", b"2", 1, HOUR, Expect::Any)
        .await
        .unwrap();
    store.clear().await.unwrap();
    assert!(get(store, &key("c1")).await.is_none());
    assert!(get(store, &key("c2")).await.is_none());
}

async fn concurrent_writers_of_one_key<S: Store>(store: &S) {
    let k = key("raced");
    // Two fills that both saw the key absent: the first commit wins, the second changes
    // nothing.
    let first = store
        .writer(&k, meta("1"), HOUR, Expect::Absent)
        .await
        .unwrap();
    let second = store
        .writer(&k, meta("2"), HOUR, Expect::Absent)
        .await
        .unwrap();
    let first = first.write(Bytes::from_static(b"first")).await.unwrap();
    let second = second.write(Bytes::from_static(b"second")).await.unwrap();
    first.commit().await.unwrap();
    assert!(matches!(second.commit().await, Err(StoreError::Conflict)));
    let stored = get(store, &k).await.unwrap();
    assert_eq!(
        (
            stored.meta.bytes.as_ref(),
            read_all(&stored.body).await.unwrap()
        ),
        (&b"1"[..], b"first".to_vec())
    );
    // A writer based on an older version loses to a newer commit.
    let stale = store
        .writer(&k, meta("stale"), HOUR, Expect::Version(stored.version))
        .await
        .unwrap();
    put(store, &k, "newer", b"newer", 2, HOUR, Expect::Any)
        .await
        .unwrap();
    assert!(matches!(stale.commit().await, Err(StoreError::Conflict)));
    assert_eq!(get(store, &k).await.unwrap().meta.bytes, "newer");
    // Many writers at once: exactly one wins.
    let k = key("many");
    let writers = (0..8).map(|i| {
        let store = store.clone();
        let k = k.clone();
        tokio::spawn(async move {
            let body = vec![b'a' + i as u8; 1000];
            put(&store, &k, "m", &body, 100, HOUR, Expect::Absent).await
        })
    });
    let mut won = 0;
    for w in writers {
        match w.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::Conflict) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(won, 1);
    let body = read_all(&get(store, &k).await.unwrap().body).await.unwrap();
    assert_eq!(body.len(), 1000);
    assert!(
        body.iter().all(|&b| b == body[0]),
        "one writer's body, whole"
    );
}

async fn bodies_read_back_whole_in_chunks_and_by_range<S: Store>(store: &S) {
    let k = key("large");
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    put(store, &k, "l", &body, 8192, HOUR, Expect::Any)
        .await
        .unwrap();
    let stored = get(store, &k).await.unwrap();
    assert_eq!(stored.body.len(), body.len() as u64);
    assert_eq!(read_all(&stored.body).await.unwrap(), body);
    for range in [0..1, 10..20, 65_530..65_545, 299_990..300_000] {
        let part = read_range(&stored.body, range.start as u64..range.end as u64)
            .await
            .unwrap();
        assert_eq!(part, &body[range]);
    }
    // Read after the entry was replaced: the body read is the one that was looked up.
    put(store, &k, "l2", b"replaced", 4, HOUR, Expect::Any)
        .await
        .unwrap();
    assert_eq!(read_all(&stored.body).await.unwrap(), body);
}

async fn get_two_reads_what_two_gets_read<S: Store>(store: &S) {
    let (a, b) = (key("two-a"), key("two-b"));
    let elsewhere = Key::new("t", "example.com/another-url", "two-c");
    let large = vec![5u8; 300_000];
    put(store, &a, "a", b"first", 2, HOUR, Expect::Any)
        .await
        .unwrap();
    put(store, &b, "b", &large, 100_000, HOUR, Expect::Any)
        .await
        .unwrap();
    put(store, &elsewhere, "c", b"third", 5, HOUR, Expect::Any)
        .await
        .unwrap();
    let heads = |got: &Option<Stored>| got.as_ref().map(|s| s.meta.bytes.clone());
    // Two keys of one URL, in either order; a key of another URL; an absent key.
    for (one, other, want) in [
        (&a, &b, (Some("a"), Some("b"))),
        (&b, &a, (Some("b"), Some("a"))),
        (&a, &elsewhere, (Some("a"), Some("c"))),
        (&a, &key("two-absent"), (Some("a"), None)),
        (&key("two-absent"), &b, (None, Some("b"))),
    ] {
        let (first, second) = store.get_two(one, other).await;
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(
            heads(&first).as_deref(),
            want.0.map(str::as_bytes),
            "{one:?}"
        );
        assert_eq!(
            heads(&second).as_deref(),
            want.1.map(str::as_bytes),
            "{other:?}"
        );
        for (got, single) in [(&first, one), (&second, other)] {
            let alone = get(store, single).await;
            assert_eq!(heads(got), heads(&alone), "as get reads {single:?}");
            if let (Some(got), Some(alone)) = (got, alone) {
                assert_eq!(got.version, alone.version);
                assert_eq!(
                    read_all(&got.body).await.unwrap(),
                    read_all(&alone.body).await.unwrap()
                );
            }
        }
    }
    let (first, _) = store.get_two(&a, &b).await;
    assert_eq!(
        read_all(&first.unwrap().unwrap().body).await.unwrap(),
        b"first"
    );
    let (_, second) = store.get_two(&a, &b).await;
    assert_eq!(
        read_all(&second.unwrap().unwrap().body).await.unwrap(),
        large
    );
}
