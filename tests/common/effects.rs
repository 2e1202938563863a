//! Counts every effect a commit applies, independently of the primary keys that would hide a
//! duplicate: triggers a test installs in its own database append one row to `test_effects`
//! for every opt event inserted, every status row inserted or changed, every checkpoint
//! written, every dead letter and test event stored, every change of the change feed and
//! every outbox item written. A record whose effects were applied twice
//! (a status change re-emitted, a batch committed again after a lost answer) then shows as a
//! key counted twice, where the tables alone would look the same.
//!
//! Keys: an opt event by its id; a status change by `account|scope|subscriber|event_id` (each
//! event changes a status at most once); a checkpoint by `stream|shard|sequence|finished` (each
//! commit of a shard writes a checkpoint no other commit writes); a dead letter by
//! `stream|shard|sequence`; a test event by its id; a change by
//! `account|scope|subscriber|event_id|reason`; an outbox item by `target|item_key`.
//!
//! [`roll_back`] loses a shard's last commits the way a database restored or failed over to an
//! asynchronous replica does: their effects, the counts of them and the checkpoint go back
//! together, with no error seen by the running reader.

use std::collections::BTreeMap;

use sqlx::{AnyConnection, Connection, Row};

/// Installs the counting triggers in the database at `url` (creating and migrating it first).
pub async fn install(url: &str) {
    optout::store::open(url, 1).await.unwrap().close().await;
    let sql = if url.starts_with("sqlite:") {
        sqlite_triggers()
    } else {
        postgres_triggers()
    };
    let mut c = connect(url).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut c)
        .await
        .unwrap();
}

async fn connect(url: &str) -> AnyConnection {
    sqlx::any::install_default_drivers();
    AnyConnection::connect(url).await.unwrap()
}

/// A change by its key, the event behind it and its answer (each event changes an answer at
/// most once); `{t}` is the row.
const CHANGE_KEY: &str = "{t}.account_sid || '|' || {t}.scope || '|' || {t}.subscriber || '|' \
     || {t}.event_id || '|' || {t}.reason";

/// What each trigger counts: (table, events, kind, key expression over `NEW`).
fn counted() -> [(&'static str, &'static str, &'static str, String); 7] {
    let finished = "CASE WHEN NEW.finished THEN '1' ELSE '0' END";
    [
        ("opt_events", "INSERT", "event", "NEW.event_id".into()),
        (
            "opt_status",
            "INSERT OR UPDATE",
            "status",
            "NEW.account_sid || '|' || NEW.scope || '|' || NEW.subscriber || '|' || NEW.event_id"
                .into(),
        ),
        (
            "checkpoints",
            "INSERT OR UPDATE",
            "checkpoint",
            format!(
                "NEW.stream_name || '|' || NEW.shard_id || '|' || \
                 COALESCE(NEW.sequence_number, '') || '|' || {finished}"
            ),
        ),
        (
            "dead_letters",
            "INSERT",
            "dead_letter",
            "NEW.stream_name || '|' || NEW.shard_id || '|' || NEW.sequence_number".into(),
        ),
        (
            "sink_test_events",
            "INSERT",
            "test_event",
            "NEW.test_id".into(),
        ),
        (
            "changes",
            "INSERT",
            "change",
            CHANGE_KEY.replace("{t}", "NEW"),
        ),
        (
            "outbox",
            "INSERT",
            "outbox",
            "NEW.target || '|' || NEW.item_key".into(),
        ),
    ]
}

fn sqlite_triggers() -> String {
    let mut sql = String::from(
        "CREATE TABLE test_effects (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, \
         key TEXT NOT NULL); CREATE TABLE test_effects_paused (x INTEGER);",
    );
    for (table, events, kind, key) in counted() {
        for event in events.split(" OR ") {
            sql.push_str(&format!(
                "CREATE TRIGGER test_count_{kind}_{event} AFTER {event} ON {table} \
                 WHEN NOT EXISTS (SELECT 1 FROM test_effects_paused) BEGIN \
                 INSERT INTO test_effects (kind, key) VALUES ('{kind}', {key}); END;"
            ));
        }
    }
    sql
}

fn postgres_triggers() -> String {
    let mut sql = String::from(
        "CREATE TABLE test_effects (id BIGSERIAL PRIMARY KEY, kind TEXT NOT NULL, \
         key TEXT NOT NULL); CREATE TABLE test_effects_paused (x INTEGER);",
    );
    for (table, events, kind, key) in counted() {
        sql.push_str(&format!(
            "CREATE FUNCTION test_count_{kind}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NOT EXISTS (SELECT 1 FROM test_effects_paused) THEN \
             INSERT INTO test_effects (kind, key) VALUES ('{kind}', {key}); END IF; \
             RETURN NULL; END $$; \
             CREATE TRIGGER test_count_{kind} AFTER {events} ON {table} \
             FOR EACH ROW EXECUTE FUNCTION test_count_{kind}();"
        ));
    }
    sql
}

/// Every counted effect: (kind, key) → how many times it was applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effects(pub BTreeMap<(String, String), u64>);

impl Effects {
    /// The counts in the database at `url`.
    pub async fn read(url: &str) -> Effects {
        let mut c = connect(url).await;
        let rows = sqlx::query(
            "SELECT kind, key, CAST(count(*) AS BIGINT) AS n FROM test_effects GROUP BY kind, key",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        Effects(
            rows.iter()
                .map(|r| ((r.get("kind"), r.get("key")), r.get::<i64, _>("n") as u64))
                .collect(),
        )
    }

    /// How many distinct effects of `kind` were applied.
    pub fn distinct(&self, kind: &str) -> usize {
        self.0.keys().filter(|(k, _)| k == kind).count()
    }

    /// The keys of `kind`.
    pub fn keys(&self, kind: &str) -> Vec<String> {
        let of_kind = self.0.keys().filter(|(k, _)| k == kind);
        of_kind.map(|(_, key)| key.clone()).collect()
    }

    /// Asserts that no effect was applied more than once, naming those that were; returns
    /// how many of each kind were applied, for the caller to compare with what it expects.
    pub fn assert_none_twice(&self) -> BTreeMap<String, usize> {
        let twice: Vec<_> = self.0.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{} effects applied more than once: {twice:?}",
            twice.len()
        );
        let mut per_kind = BTreeMap::new();
        for (kind, _) in self.0.keys() {
            *per_kind.entry(kind.clone()).or_insert(0) += 1;
        }
        per_kind
    }
}

/// Reads the counts at `url` and asserts exactly once: every effect applied once and no more,
/// `events` distinct opt events among them. Returns the counts per kind, for the log.
pub async fn assert_exactly_once(url: &str, events: usize) -> BTreeMap<String, usize> {
    let effects = Effects::read(url).await;
    let per_kind = effects.assert_none_twice();
    assert_eq!(
        effects.distinct("event"),
        events,
        "opt events applied: {per_kind:?}"
    );
    eprintln!("effects applied exactly once: {per_kind:?}");
    per_kind
}

/// Sequence numbers are decimal strings of up to 128 bits: compare by length, then text.
fn after(seq: &str, cp: &str) -> bool {
    (seq.len(), seq) > (cp.len(), cp)
}

/// Loses every commit of `shard` after checkpoint `to` (a checkpoint the shard really had,
/// see [`checkpoints_written`]), in one transaction, as a replica promoted without them: the
/// opt events, dead letters and test events of records after `to`, the status changes they
/// made (each affected status is what the remaining events give), their counts, and the
/// checkpoint, set back to `to`. Returns the opt events lost.
pub async fn roll_back(url: &str, stream: &str, shard: &str, to: &str) -> Vec<String> {
    let mut c = connect(url).await;
    let mut tx = c.begin().await.unwrap();
    sqlx::query("INSERT INTO test_effects_paused (x) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let mut lost_counts: Vec<(&str, String)> = Vec::new();
    let rows = sqlx::query(
        "SELECT event_id, sequence_number, account_sid, scope, subscriber FROM opt_events \
         WHERE stream_name = $1 AND shard_id = $2",
    )
    .bind(stream)
    .bind(shard)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    let mut lost = Vec::new();
    for r in rows
        .iter()
        .filter(|r| after(&r.get::<String, _>("sequence_number"), to))
    {
        let (id, account, scope, subscriber): (String, String, String, String) = (
            r.get("event_id"),
            r.get("account_sid"),
            r.get("scope"),
            r.get("subscriber"),
        );
        sqlx::query("DELETE FROM opt_events WHERE event_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
        let changed = sqlx::query(
            "DELETE FROM opt_status WHERE account_sid = $1 AND scope = $2 AND subscriber = $3 \
             AND event_id = $4",
        )
        .bind(&account)
        .bind(&scope)
        .bind(&subscriber)
        .bind(&id)
        .execute(&mut *tx)
        .await
        .unwrap()
        .rows_affected();
        if changed > 0 {
            // The status the remaining events give (Twilio- and keyword-detected STOP/START).
            sqlx::query(
                "INSERT INTO opt_status (account_sid, scope, subscriber, messaging_service_sid, \
                 sender, status, changed_at, event_id) SELECT account_sid, scope, subscriber, \
                 messaging_service_sid, sender, CASE opt_out_type WHEN 'STOP' THEN 'opted_out' \
                 ELSE 'opted_in' END, occurred_at, event_id FROM opt_events \
                 WHERE account_sid = $1 AND scope = $2 AND subscriber = $3 \
                 AND opt_out_type IN ('STOP', 'START') AND detection <> 'phrase' \
                 ORDER BY occurred_at DESC, event_id DESC LIMIT 1",
            )
            .bind(&account)
            .bind(&scope)
            .bind(&subscriber)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        // Every status change the lost event made is lost with it (at most one).
        lost_counts.push(("status", format!("{account}|{scope}|{subscriber}|{id}")));
        lost_counts.push(("event", id.clone()));
        lost.push(id);
    }
    let letters = sqlx::query(
        "SELECT sequence_number FROM dead_letters WHERE stream_name = $1 AND shard_id = $2",
    )
    .bind(stream)
    .bind(shard)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    for seq in letters
        .iter()
        .map(|r| r.get::<String, _>("sequence_number"))
    {
        if after(&seq, to) {
            sqlx::query(
                "DELETE FROM dead_letters WHERE stream_name = $1 AND shard_id = $2 \
                 AND sequence_number = $3",
            )
            .bind(stream)
            .bind(shard)
            .bind(&seq)
            .execute(&mut *tx)
            .await
            .unwrap();
            lost_counts.push(("dead_letter", format!("{stream}|{shard}|{seq}")));
        }
    }
    let tests = sqlx::query(
        "SELECT test_id, sequence_number FROM sink_test_events \
         WHERE stream_name = $1 AND shard_id = $2",
    )
    .bind(stream)
    .bind(shard)
    .fetch_all(&mut *tx)
    .await
    .unwrap();
    for r in tests
        .iter()
        .filter(|r| after(&r.get::<String, _>("sequence_number"), to))
    {
        let id: String = r.get("test_id");
        sqlx::query("DELETE FROM sink_test_events WHERE test_id = $1")
            .bind(&id)
            .execute(&mut *tx)
            .await
            .unwrap();
        lost_counts.push(("test_event", id));
    }
    lost_counts.extend(roll_back_changes(&mut tx, &lost).await);
    for (seq, finished) in checkpoints_written_in(&mut tx, stream, shard).await {
        if after(&seq, to) {
            lost_counts.push(("checkpoint", format!("{stream}|{shard}|{seq}|{finished}")));
        }
    }
    let moved = sqlx::query(
        "UPDATE checkpoints SET sequence_number = $3, finished = (1 = 0) \
         WHERE stream_name = $1 AND shard_id = $2",
    )
    .bind(stream)
    .bind(shard)
    .bind(to)
    .execute(&mut *tx)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(moved, 1, "no checkpoint of {shard} to move back");
    for (kind, key) in lost_counts {
        sqlx::query(
            "DELETE FROM test_effects WHERE id = \
             (SELECT min(id) FROM test_effects WHERE kind = $1 AND key = $2)",
        )
        .bind(kind)
        .bind(&key)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM test_effects_paused")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    lost
}

/// Loses the changes the `lost` events made, with their outbox items, and sets each key's
/// last answer back to its latest change left. Returns the counts lost.
async fn roll_back_changes(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    lost: &[String],
) -> Vec<(&'static str, String)> {
    let mut counts = Vec::new();
    for id in lost {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, account_sid, scope, subscriber, {} AS k FROM changes c \
             WHERE event_id = $1",
            CHANGE_KEY.replace("{t}", "c")
        )))
        .bind(id)
        .fetch_all(&mut **tx)
        .await
        .unwrap();
        for r in &rows {
            let change: i64 = r.get("id");
            let items = sqlx::query("SELECT target, item_key FROM outbox WHERE change_id = $1")
                .bind(change)
                .fetch_all(&mut **tx)
                .await
                .unwrap();
            for i in &items {
                let (target, key): (String, String) = (i.get("target"), i.get("item_key"));
                counts.push(("outbox", format!("{target}|{key}")));
            }
            for sql in [
                "DELETE FROM outbox WHERE change_id = $1",
                "DELETE FROM changes WHERE id = $1",
            ] {
                sqlx::query(sql)
                    .bind(change)
                    .execute(&mut **tx)
                    .await
                    .unwrap();
            }
            counts.push(("change", r.get("k")));
            let (account, scope, subscriber): (String, String, String) =
                (r.get("account_sid"), r.get("scope"), r.get("subscriber"));
            sqlx::query(
                "DELETE FROM change_heads WHERE account_sid = $1 AND scope = $2 \
                 AND subscriber = $3",
            )
            .bind(&account)
            .bind(&scope)
            .bind(&subscriber)
            .execute(&mut **tx)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO change_heads (account_sid, scope, subscriber, status, send_allowed, \
                 reason, change_id) SELECT account_sid, scope, subscriber, status, send_allowed, \
                 reason, id FROM changes WHERE account_sid = $1 AND scope = $2 \
                 AND subscriber = $3 ORDER BY id DESC LIMIT 1",
            )
            .bind(&account)
            .bind(&scope)
            .bind(&subscriber)
            .execute(&mut **tx)
            .await
            .unwrap();
        }
    }
    counts
}

/// The checkpoints written for `shard`, oldest first: the commit boundaries a roll-back can go
/// back to.
pub async fn checkpoints_written(url: &str, stream: &str, shard: &str) -> Vec<String> {
    let mut c = connect(url).await;
    let mut tx = c.begin().await.unwrap();
    let written = checkpoints_written_in(&mut tx, stream, shard).await;
    tx.commit().await.unwrap();
    let mut seqs: Vec<String> = written.into_iter().map(|(seq, _)| seq).collect();
    seqs.dedup();
    seqs
}

/// Every (sequence number, finished flag) written as `shard`'s checkpoint, in sequence order.
async fn checkpoints_written_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    stream: &str,
    shard: &str,
) -> Vec<(String, String)> {
    let prefix = format!("{stream}|{shard}|");
    let rows = sqlx::query("SELECT key FROM test_effects WHERE kind = 'checkpoint'")
        .fetch_all(&mut **tx)
        .await
        .unwrap();
    let mut written: Vec<(String, String)> = rows
        .iter()
        .filter_map(|r| {
            let key: String = r.get("key");
            let (seq, finished) = key.strip_prefix(&prefix)?.rsplit_once('|')?;
            (!seq.is_empty()).then(|| (seq.to_string(), finished.to_string()))
        })
        .collect();
    written.sort_by(|a, b| (a.0.len(), &a.0, &a.1).cmp(&(b.0.len(), &b.0, &b.1)));
    written
}
