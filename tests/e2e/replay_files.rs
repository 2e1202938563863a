//! `optout replay` of several files at once, and of a gzip cut short.
//!
//! - `--parallel 2` with two valid files: each file's summary in the order given, every event
//!   of both stored exactly once (counted by triggers).
//! - A truncated gzip beside a valid file: the valid file is stored; of the truncated one the
//!   whole lines inflated before the cut are stored (as docs/operating.md says), the line cut
//!   in the middle is not; the run exits 1 with one line naming the file, the cut and the last
//!   line stored. Replaying the whole file afterwards stores the rest, once.

use crate::common::effects;
use crate::common::optout::*;
use crate::common::records::*;

use std::io::{Read, Write};

/// Lines `range` of the steady stream ([`opt_event`]), one per line.
fn lines(range: std::ops::Range<usize>) -> Vec<u8> {
    let mut text = Vec::new();
    for i in range {
        text.extend(opt_event(i));
        text.push(b'\n');
    }
    text
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// How many whole lines inflating `gz` gives before it fails.
fn whole_lines_before_the_cut(gz: &[u8]) -> usize {
    let mut d = flate2::read::MultiGzDecoder::new(gz);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match d.read(&mut buf) {
            Ok(0) => panic!("the cut gzip inflated to its end"),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out.iter().filter(|&&b| b == b'\n').count()
}

fn event_count(o: &Optout) -> usize {
    o.query(&["events"]).len()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_files_in_parallel_are_both_stored_once() {
    let o = Optout::new(vec![]);
    effects::install(&o.store).await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl.gz"));
    std::fs::write(&a, lines(0..400)).unwrap();
    std::fs::write(&b, gzip(&lines(400..1000))).unwrap();
    let out = o.stdout(&[
        "replay",
        "--parallel",
        "2",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
    ]);
    let summaries: Vec<&str> = out.lines().collect();
    assert_eq!(summaries.len(), 2, "{out}");
    assert!(
        summaries[0].starts_with(&format!(
            "{}: 400 lines, 400 opt events (400 new",
            a.display()
        )),
        "{out}"
    );
    assert!(
        summaries[1].starts_with(&format!(
            "{}: 600 lines, 600 opt events (600 new",
            b.display()
        )),
        "{out}"
    );
    check_tables(&o, 1000);
    effects::assert_exactly_once(&o.store, 1000).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_gzip_keeps_the_lines_before_the_cut() {
    const N: usize = 3000;
    let o = Optout::new(vec![]);
    effects::install(&o.store).await;
    let dir = tempfile::tempdir().unwrap();
    let whole = gzip(&lines(0..N));
    let cut = &whole[..whole.len() / 2];
    let kept = whole_lines_before_the_cut(cut);
    assert!(0 < kept && kept < N, "{kept}");
    let (truncated, good) = (
        dir.path().join("cut.jsonl.gz"),
        dir.path().join("good.jsonl"),
    );
    std::fs::write(&truncated, cut).unwrap();
    std::fs::write(&good, lines(N..N + 100)).unwrap();
    let out = o.output(&[
        "replay",
        truncated.to_str().unwrap(),
        good.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("100 lines, 100 opt events (100 new"),
        "{stdout}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.contains(&format!("reading {}", truncated.display()))
            && last.contains("truncated gzip?")
            && last.contains(&format!("lines 1 to {kept} are stored")),
        "{stderr}"
    );
    assert_eq!(event_count(&o), kept + 100);
    assert!(
        o.query(&["dead-letters"]).is_empty(),
        "the cut line is no dead letter"
    );

    // The whole file, replayed once it is repaired, stores the rest.
    let repaired = dir.path().join("whole.jsonl.gz");
    std::fs::write(&repaired, &whole).unwrap();
    let out = o.stdout(&["replay", repaired.to_str().unwrap()]);
    assert!(
        out.contains(&format!("({} new, {kept} already stored)", N - kept)),
        "{out}"
    );
    assert_eq!(event_count(&o), N + 100);
    effects::assert_exactly_once(&o.store, N + 100).await;
}
