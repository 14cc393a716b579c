//! Every store against the one contract (`common/store_contract.rs`), and what each store
//! promises beyond it: the file store across restarts, crashes and its size bound.

use crate::contract;
use bytes::Bytes;
use contract::{key, meta, put, read_all, HOUR};
use std::{path::Path, process::Command, time::Duration};
use tower_etag::store::{
    AnyStore, Expect, FsStore, GetResult, Layered, MemoryStore, Partitioned, Store, StoreWriter,
};

#[tokio::test]
async fn the_memory_store_keeps_the_contract() {
    contract::run(&MemoryStore::new()).await;
}

#[tokio::test]
async fn a_store_behind_any_store_keeps_the_contract() {
    contract::run(&AnyStore::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    contract::run(&store).await;
    contract::run(&AnyStore::new(
        FsStore::open(dir.path().join("any")).await.unwrap(),
    ))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layered_stores_keep_the_contract() {
    contract::run(&Layered::new(MemoryStore::new(), MemoryStore::new())).await;
    let dir = tempfile::tempdir().unwrap();
    let fs = FsStore::open(dir.path()).await.unwrap();
    contract::run(&Layered::new(MemoryStore::new(), fs)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitioned_stores_keep_the_contract() {
    let parts = ["a", "b", "c"].map(|n| (n, MemoryStore::new()));
    contract::run(&Partitioned::new(parts).unwrap()).await;
    let dir = tempfile::tempdir().unwrap();
    let mixed = Partitioned::new([
        ("memory", AnyStore::new(MemoryStore::new())),
        (
            "fs",
            AnyStore::new(FsStore::open(dir.path()).await.unwrap()),
        ),
    ])
    .unwrap();
    contract::run(&mixed).await;
}

#[tokio::test]
async fn a_layered_store_answers_from_l1_once_l2_answered_and_drops_what_changes() {
    let l2 = MemoryStore::new();
    let layered = Layered::new(MemoryStore::new(), l2.clone());
    let k = key("tiered");
    let v = put(&l2, &k, "h", b"from l2", 3, HOUR, Expect::Any)
        .await
        .unwrap();
    let first = layered.get(&k).await.unwrap().unwrap();
    assert_eq!((first.tier, first.version), (Some("l2"), v));
    let second = layered.get(&k).await.unwrap().unwrap();
    assert_eq!(
        (second.tier, second.version),
        (Some("l1"), v),
        "promoted, L2's version"
    );
    assert_eq!(second.meta.bytes, "h", "the head as it was stored");
    assert_eq!(read_all(&second.body).await.unwrap(), b"from l2");
    // A write through the layered store is in both tiers, with L2's version.
    let v2 = put(&layered, &k, "h2", b"new", 1, HOUR, Expect::Version(v))
        .await
        .unwrap();
    let again = layered.get(&k).await.unwrap().unwrap();
    assert_eq!((again.tier, again.version), (Some("l1"), v2));
    assert_eq!(l2.get(&k).await.unwrap().unwrap().version, v2);
    // Negative: a change that bypasses this L1 (another node's, without a bus) is not seen
    // until the copy goes: what the bus is for.
    put(&l2, &k, "h3", b"behind its back", 4, HOUR, Expect::Any)
        .await
        .unwrap();
    let stale = layered.get(&k).await.unwrap().unwrap();
    assert_eq!((stale.tier, stale.version), (Some("l1"), v2));
    // A removal through the store drops both.
    assert!(layered.remove(&k, Expect::Any).await.unwrap());
    assert!(layered.get(&k).await.unwrap().is_none());
    assert!(l2.get(&k).await.unwrap().is_none());
}

#[tokio::test]
async fn a_layered_store_reads_two_from_l1_what_it_has_and_promotes_the_rest() {
    let l2 = MemoryStore::new();
    let layered = Layered::new(MemoryStore::new(), l2.clone());
    let (a, b) = (key("two-l1-a"), key("two-l1-b"));
    let va = put(&l2, &a, "a", b"only in l2", 3, HOUR, Expect::Any)
        .await
        .unwrap();
    let vb = put(&l2, &b, "b", b"also", 3, HOUR, Expect::Any)
        .await
        .unwrap();
    let tiers = |(one, other): (GetResult, GetResult)| {
        let (one, other) = (one.unwrap().unwrap(), other.unwrap().unwrap());
        ((one.tier, one.version), (other.tier, other.version))
    };
    // Neither in L1: both from L2, and promoted.
    assert_eq!(
        tiers(layered.get_two(&a, &b).await),
        ((Some("l2"), va), (Some("l2"), vb))
    );
    assert_eq!(
        tiers(layered.get_two(&a, &b).await),
        ((Some("l1"), va), (Some("l1"), vb))
    );
    // `b` rewritten through the layer (in both tiers); `a` removed, then written to L2
    // alone: one read from each tier.
    let vb2 = put(
        &layered,
        &b,
        "b2",
        b"rewritten",
        2,
        HOUR,
        Expect::Version(vb),
    )
    .await
    .unwrap();
    assert!(layered.remove(&a, Expect::Any).await.unwrap());
    let va2 = put(&l2, &a, "a2", b"back in l2", 3, HOUR, Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        tiers(layered.get_two(&a, &b).await),
        ((Some("l2"), va2), (Some("l1"), vb2))
    );
    assert_eq!(
        tiers(layered.get_two(&b, &a).await),
        ((Some("l1"), vb2), (Some("l1"), va2))
    );
    // Negative: a key in neither tier is absent, whatever the other key holds.
    let (one, none) = layered.get_two(&a, &key("two-l1-absent")).await;
    assert_eq!(one.unwrap().unwrap().version, va2);
    assert!(none.unwrap().is_none());
}

/// The files under `dir` (recursively), as (name, size).
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push((p.display().to_string(), e.metadata().unwrap().len()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_store_entries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 7) as u8).collect();
    let (v1, record_version) = {
        let store = FsStore::open(dir.path()).await.unwrap();
        put(
            &store,
            &key("a"),
            "head-a",
            &body,
            10_000,
            HOUR,
            Expect::Any,
        )
        .await
        .unwrap();
        put(
            &store,
            &key("small"),
            "head-s",
            b"tiny",
            2,
            HOUR,
            Expect::Any,
        )
        .await
        .unwrap();
        assert!(store
            .update_meta(&key("record"), Expect::Absent, meta("r"), HOUR)
            .await
            .unwrap());
        put(&store, &key("gone"), "g", b"gone", 2, HOUR, Expect::Any)
            .await
            .unwrap();
        assert!(store.remove(&key("gone"), Expect::Any).await.unwrap());
        let a = store.get(&key("a")).await.unwrap().unwrap();
        let r = store.get(&key("record")).await.unwrap().unwrap();
        (a.version, r.version)
    };
    let store = FsStore::open(dir.path()).await.unwrap();
    let a = store
        .get(&key("a"))
        .await
        .unwrap()
        .expect("kept across the restart");
    assert_eq!((a.meta.bytes.as_ref(), a.version), (&b"head-a"[..], v1));
    assert_eq!(read_all(&a.body).await.unwrap(), body);
    let s = store.get(&key("small")).await.unwrap().unwrap();
    assert_eq!(read_all(&s.body).await.unwrap(), b"tiny");
    assert_eq!(
        store.get(&key("record")).await.unwrap().unwrap().version,
        record_version
    );
    assert!(
        store.get(&key("gone")).await.unwrap().is_none(),
        "removed stays removed"
    );
    // Versions go on from where they were: a write after the restart is newer.
    put(
        &store,
        &key("a"),
        "again",
        b"x",
        1,
        HOUR,
        Expect::Version(v1),
    )
    .await
    .unwrap();
    assert!(store.get(&key("a")).await.unwrap().unwrap().version > v1);
    assert_eq!(store.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_damaged_entries_are_dropped_on_start() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = FsStore::open(dir.path()).await.unwrap();
        put(
            &store,
            &key("short"),
            "s",
            b"s",
            1,
            Duration::from_millis(1),
            Expect::Any,
        )
        .await
        .unwrap();
        put(
            &store,
            &key("cut"),
            "c",
            &[1u8; 5000],
            500,
            HOUR,
            Expect::Any,
        )
        .await
        .unwrap();
        put(&store, &key("ok"), "o", b"ok", 1, HOUR, Expect::Any)
            .await
            .unwrap();
    }
    // A body cut short on disk (a torn write) is not served as the whole.
    for (name, size) in files(&dir.path().join("entries")) {
        if name.ends_with(".body") && size == 5000 {
            let f = std::fs::OpenOptions::new().write(true).open(&name).unwrap();
            f.set_len(100).unwrap();
        }
    }
    // Junk in the directories.
    std::fs::write(dir.path().join("entries").join("junk.head"), b"not a head").unwrap();
    std::fs::write(dir.path().join("tmp").join("9.tmp"), b"half").unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await; // past the 1 ms ttl
    let store = FsStore::open(dir.path()).await.unwrap();
    assert!(store.get(&key("short")).await.unwrap().is_none());
    assert!(store.get(&key("cut")).await.unwrap().is_none());
    assert!(store.get(&key("ok")).await.unwrap().is_some());
    // Only the good entry's head and body are left.
    let mut left: Vec<String> = files(dir.path()).into_iter().map(|(n, _)| n).collect();
    left.sort();
    let stems: Vec<&str> = left.iter().map(|n| n.rsplit_once('.').unwrap().0).collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left[0].ends_with(".body") && left[1].ends_with(".head") && stems[0] == stems[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_store_is_bounded_by_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let max = 256 * 1024;
    let store = FsStore::builder()
        .max_bytes(max)
        .open(dir.path())
        .await
        .unwrap();
    for i in 0..40 {
        let k = key(&format!("k{i}"));
        put(&store, &k, "h", &[b'x'; 20_000], 4096, HOUR, Expect::Any)
            .await
            .unwrap();
        assert!(store.bytes() <= max, "{} > {max}", store.bytes());
        // Keep k0 in use: it survives, least recently used ones go.
        assert!(store.get(&key("k0")).await.unwrap().is_some(), "at {i}");
    }
    assert!(store.get(&key("k1")).await.unwrap().is_none(), "evicted");
    assert!(store.get(&key("k39")).await.unwrap().is_some());
    // What is on disk follows the bound (removals run in the background: poll).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let on_disk: u64 = files(dir.path()).iter().map(|(_, s)| s).sum();
        if on_disk <= max {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{on_disk} bytes on disk"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An entry larger than the store's limit is refused, holding nothing.
    let big = store
        .writer(&key("big"), meta("b"), HOUR, Expect::Any)
        .await
        .unwrap();
    assert!(big
        .write(Bytes::from(vec![0u8; max as usize]))
        .await
        .is_err());
}

/// Run as a child process by `a_process_killed_mid_write_leaves_no_entry`: writes part of
/// an entry to the store in `TOWER_ETAG_CRASH_DIR` and dies without cleaning up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a helper: run by a_process_killed_mid_write_leaves_no_entry"]
async fn crash_mid_write_helper() {
    let Ok(dir) = std::env::var("TOWER_ETAG_CRASH_DIR") else {
        return;
    };
    let store = FsStore::open(&dir).await.unwrap();
    put(
        &store,
        &key("committed"),
        "c",
        b"committed",
        3,
        HOUR,
        Expect::Any,
    )
    .await
    .unwrap();
    let mut w = store
        .writer(&key("half"), meta("h"), HOUR, Expect::Any)
        .await
        .unwrap();
    for _ in 0..8 {
        w = w.write(Bytes::from(vec![1u8; 100_000])).await.unwrap();
    }
    // The tmp file is on disk now; the process dies before the commit.
    std::process::abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_mid_write_leaves_no_entry() {
    let dir = tempfile::tempdir().unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stores::crash_mid_write_helper",
            "--ignored",
            "--nocapture",
        ])
        .env("TOWER_ETAG_CRASH_DIR", dir.path())
        .status()
        .unwrap();
    assert!(!status.success(), "the helper was to die mid-write");
    let tmp_files = files(&dir.path().join("tmp"));
    assert!(!tmp_files.is_empty(), "the half-written file was on disk");
    let store = FsStore::open(dir.path()).await.unwrap();
    assert!(store.get(&key("half")).await.unwrap().is_none());
    let committed = store.get(&key("committed")).await.unwrap().unwrap();
    assert_eq!(read_all(&committed.body).await.unwrap(), b"committed");
    assert!(
        files(&dir.path().join("tmp")).is_empty(),
        "cleaned on start"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_file_store_bodies_are_kept_in_memory_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).await.unwrap();
    put(
        &store,
        &key("small"),
        "s",
        b"small body",
        3,
        HOUR,
        Expect::Any,
    )
    .await
    .unwrap();
    put(
        &store,
        &key("large"),
        "l",
        &[7u8; 100_000],
        10_000,
        HOUR,
        Expect::Any,
    )
    .await
    .unwrap();
    // Take the files away under the running store: the small body needs none of them.
    for (name, _) in files(&dir.path().join("entries")) {
        std::fs::remove_file(name).unwrap();
    }
    let small = store.get(&key("small")).await.unwrap().unwrap();
    assert_eq!(read_all(&small.body).await.unwrap(), b"small body");
    // Negative: a larger body is read from its file, which is gone.
    assert!(store.get(&key("large")).await.unwrap().is_none());
    // On disk it was all along: after a restart (with the files back) it is read from there.
    drop(store);
    let store = FsStore::open(dir.path()).await.unwrap();
    assert!(
        store.is_empty(),
        "its files were removed, so after a restart it is gone"
    );
}
