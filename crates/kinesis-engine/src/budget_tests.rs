//! Unit tests of the in-flight budget: the line of waiters, cancellation, settling, and the
//! sizing of calls from a reader's share.

use super::*;
use std::time::Duration;

#[tokio::test]
async fn reservations_wait_in_line_and_never_exceed_the_budget() {
    let b = Budget::new(100);
    let r1 = b.reserve(60).await;
    let b2 = b.clone();
    let second = tokio::spawn(async move { b2.reserve(60).await });
    tokio::task::yield_now().await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A small request arriving later may not pass the waiting one (no starvation).
    let b3 = b.clone();
    let third = tokio::spawn(async move { b3.reserve(10).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!second.is_finished() && !third.is_finished());
    assert_eq!(b.stats().used, 60);
    drop(r1);
    let r2 = second.await.unwrap();
    let r3 = third.await.unwrap();
    assert_eq!(b.stats().used, 70);
    assert_eq!(b.stats().peak, 70);
    assert_eq!(b.stats().waits, 2);
    drop((r2, r3));
    assert_eq!(b.stats().used, 0);
}

#[tokio::test]
async fn a_request_larger_than_the_budget_is_capped_so_it_can_be_granted() {
    let b = Budget::new(100);
    let r = b.reserve(1_000).await;
    assert_eq!(r.amount(), 100);
}

#[tokio::test]
async fn a_cancelled_waiter_leaves_the_line_and_lets_the_next_in() {
    let b = Budget::new(100);
    let r1 = b.reserve(90).await;
    let b2 = b.clone();
    let big = tokio::spawn(async move { b2.reserve(50).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let b3 = b.clone();
    let small = tokio::spawn(async move { b3.reserve(10).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(!small.is_finished(), "waits behind the head of the line");
    big.abort();
    let _ = big.await;
    let r3 = small.await.unwrap();
    assert_eq!(b.stats().used, 100);
    drop((r1, r3));
    assert_eq!(b.stats().used, 0);
}

#[tokio::test]
async fn settle_trims_or_charges_the_overdraft() {
    let b = Budget::new(100);
    let mut r = b.reserve(50).await;
    r.settle(20);
    assert_eq!(b.stats().used, 20);
    r.settle(120);
    let s = b.stats();
    assert_eq!((s.used, s.peak, s.overdraft), (120, 120, 100));
    drop(r);
    assert_eq!(b.stats().used, 0);
}

#[test]
fn the_limit_follows_the_share_and_the_observed_record_size() {
    let b = Budget::new(64 << 20);
    let mut shares: Vec<Share> = (0..4).map(|_| b.join()).collect();
    assert_eq!(b.stats().readers, 4);
    // 16 MiB each; unknown records are assumed to be 4 KiB.
    assert_eq!(shares[0].plan_call(10_000).0, 4096);
    shares[0].observe(10, 10_000);
    let (limit, bytes) = shares[0].plan_call(10_000);
    // Shrinks gradually: (3 × 4096 + 1000) / 4.
    assert_eq!(limit, (16.0 * 1048576.0 / 3322.0_f64).floor() as i32);
    assert!(bytes <= b.capacity());
    for _ in 0..20 {
        shares[0].observe(10, 10_000);
    }
    assert_eq!(shares[0].plan_call(10_000).0, 10_000);
    // 256 readers share 64 MiB: a quarter MiB each.
    let more: Vec<Share> = (0..252).map(|_| b.join()).collect();
    let (limit, _) = shares[0].plan_call(10_000);
    assert_eq!(
        limit,
        (262_144.0 / shares[0].bytes_per_record()).floor() as i32
    );
    drop(more);
    shares.truncate(1);
    assert_eq!(b.stats().readers, 1);
    // A record larger than the whole budget still gets a call of one record.
    let tiny = Budget::new(1000);
    let mut s = tiny.join();
    s.observe(1, 5000);
    assert_eq!(s.plan_call(10_000), (1, 1000));
}
