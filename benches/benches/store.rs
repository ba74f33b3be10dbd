//! Criterion benches of the store's hot paths, on the test corpus:
//! - `append/1_writer`: one durable append (hash, parse, compress, write, fdatasync) on a temp
//!   dir under the current directory (not /tmp, which may be a tmpfs);
//! - `prepare/*`: `PreparedMessage::new` (the caller-thread part of an append);
//! - `meta/parse`, `meta/decode`: building and decoding the cached metadata;
//! - `read/read_message`: a body read by UID from a store of the corpus.
//!
//! `cargo bench -p postlog-benches --bench store` (measurement times are kept short).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use postlog_benches::{Rng, big_message, default_corpus_dir, load_corpus, unique_variant};
use postlog_engine::meta::{self, MessageMeta};
use postlog_engine::{AppendTarget, Options, PreparedMessage, Store};

fn corpus() -> Vec<Vec<u8>> {
    load_corpus(&default_corpus_dir()).expect("the test corpus")
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("bench-store-").tempdir_in(".").expect("a temp dir in the current directory")
}

fn inbox(store: &Store, name: &str) -> AppendTarget {
    let account = store.create_account(name, &[]).expect("create account");
    let mailbox = store.mailbox_by_name(account, "INBOX").expect("INBOX").id;
    AppendTarget { account, mailbox, flags: 0, keywords: Vec::new(), internal_date: 1_767_225_600 }
}

fn append(c: &mut Criterion) {
    let corpus = corpus();
    let dir = temp_dir();
    let store = Store::open(dir.path(), Options::default()).expect("open store");
    let target = inbox(&store, "bench");
    let mut i = 0u64;
    let mut g = c.benchmark_group("append");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    g.bench_function("1_writer", |b| {
        b.iter_batched(
            || {
                i += 1;
                unique_variant(&corpus[(i % corpus.len() as u64) as usize], i)
            },
            |raw| store.append(&raw, std::slice::from_ref(&target)).expect("append"),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    store.close().expect("close");
}

fn prepare(c: &mut Criterion) {
    let corpus = corpus();
    let options = Options::default();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let mut g = c.benchmark_group("prepare");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("corpus", |b| {
        b.iter(|| {
            for m in &corpus {
                black_box(PreparedMessage::new(m, &options));
            }
        })
    });
    for (name, compressible) in [("1mib_incompressible", false), ("1mib_compressible", true)] {
        let m = big_message(1 << 20, compressible, 1);
        g.throughput(Throughput::Bytes(m.len() as u64));
        g.bench_function(name, |b| b.iter(|| black_box(PreparedMessage::new(&m, &options))));
    }
    g.finish();
}

fn meta(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(Vec::len).sum();
    let encoded: Vec<Vec<u8>> = corpus.iter().map(|m| meta::parse(m).encode()).collect();
    let mut g = c.benchmark_group("meta");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("parse_corpus", |b| {
        b.iter(|| {
            for m in &corpus {
                black_box(meta::parse(m));
            }
        })
    });
    g.throughput(Throughput::Elements(encoded.len() as u64));
    g.bench_function("decode_corpus", |b| {
        b.iter(|| {
            for e in &encoded {
                black_box(MessageMeta::decode(e).expect("decode"));
            }
        })
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let corpus = corpus();
    let dir = temp_dir();
    let store = Store::open(dir.path(), Options::default()).expect("open store");
    let target = inbox(&store, "bench");
    // 16 threads so that appends share fdatasyncs and the setup stays short.
    std::thread::scope(|s| {
        for t in 0..16 {
            let (store, target, corpus) = (&store, &target, &corpus);
            s.spawn(move || {
                for (i, m) in corpus.iter().enumerate().skip(t).step_by(16) {
                    store.append(&unique_variant(m, i as u64), std::slice::from_ref(target)).expect("append");
                }
            });
        }
    });
    let uids: Vec<u32> =
        store.messages(target.account, target.mailbox).expect("messages").iter().map(|m| m.uid).collect();
    let mut rng = Rng::new(3);
    let mut g = c.benchmark_group("read");
    g.sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    g.bench_function("read_message", |b| {
        b.iter(|| {
            let uid = uids[rng.below(uids.len() as u64) as usize];
            black_box(store.read_message(target.account, target.mailbox, uid).expect("read"))
        })
    });
    g.bench_function("metas_300", |b| {
        b.iter(|| black_box(store.metas(target.account, target.mailbox).expect("metas")))
    });
    g.finish();
    store.close().expect("close");
}

criterion_group!(benches, append, prepare, meta, read);
criterion_main!(benches);
