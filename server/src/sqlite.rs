//! The embedded durable store: SQLite in WAL mode.
//!
//! All writes go through one writer thread that commits them in batches
//! (group commit): whatever arrives while a transaction is being written
//! joins the next one, so a busy coordinator pays one `fsync` for many
//! results. A caller's write returns only after its transaction committed,
//! and the coordinator tells a worker `accepted` only after that — so a crash
//! (even `kill -9` or power loss, with `synchronous=FULL`) loses nothing that
//! was accepted. What a crash can cost: results in flight that were not yet
//! committed; their chunks are leased again after restart.
//!
//! The SQL sticks to what PostgreSQL also understands (plain tables, TEXT
//! and INTEGER columns, no upserts), except the schema's key declaration.

use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crowdfactor_protocol::{ChunkId, WorkerKind};
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    now_ms, ByKind, ChunkWork, Completion, JobId, JobInfo, NewJob, Store, StoreError,
};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id          INTEGER PRIMARY KEY,
    total       INTEGER NOT NULL,
    done        INTEGER NOT NULL DEFAULT 0,
    chunk_size  INTEGER NOT NULL,
    chunks      INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    finished_ms INTEGER,
    by_native   INTEGER NOT NULL DEFAULT 0,
    by_browser  INTEGER NOT NULL DEFAULT 0,
    priority    INTEGER NOT NULL DEFAULT 0,
    cancelled   INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    id       INTEGER PRIMARY KEY,
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    seq      INTEGER NOT NULL,
    numbers  TEXT NOT NULL,
    factors  TEXT,
    UNIQUE (job_id, seq)
);
CREATE INDEX IF NOT EXISTS chunks_open ON chunks (job_id, seq) WHERE factors IS NULL;
";

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Backend(Box::new(e))
}

/// Why the stored text of a chunk could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt chunk {chunk} in the database: {what}")]
struct Corrupt {
    chunk: ChunkId,
    what: &'static str,
}

/// Numbers as space-separated decimals.
fn encode_numbers(numbers: &[u128]) -> String {
    let mut s = String::with_capacity(numbers.len() * 14);
    for (i, n) in numbers.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&n.to_string());
    }
    s
}

fn decode_numbers(text: &str, chunk: ChunkId) -> Result<Vec<u128>, StoreError> {
    text.split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            t.parse().map_err(|_| {
                backend(Corrupt {
                    chunk,
                    what: "number",
                })
            })
        })
        .collect()
}

/// Factor lists, one per line (an empty line for 1).
fn encode_factors(factors: &[Vec<u128>]) -> String {
    factors
        .iter()
        .map(|f| encode_numbers(f))
        .collect::<Vec<_>>()
        .join("\n")
}

enum Op {
    CreateJob {
        job: NewJob,
        reply: mpsc::SyncSender<Result<(JobInfo, Vec<ChunkWork>), StoreError>>,
    },
    Complete {
        chunk: ChunkId,
        factors: Vec<Vec<u128>>,
        kind: WorkerKind,
        reply: mpsc::SyncSender<Result<Completion, StoreError>>,
    },
    Cancel {
        job: JobId,
        reply: mpsc::SyncSender<Result<Option<JobInfo>, StoreError>>,
    },
    SetPriority {
        job: JobId,
        priority: i32,
        reply: mpsc::SyncSender<Result<Option<JobInfo>, StoreError>>,
    },
}

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<mpsc::Sender<Op>>,
    reader: Mutex<Connection>,
    path: std::path::PathBuf,
}

/// Adds columns that databases from earlier versions lack.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA table_info(jobs)").map_err(backend)?;
    let cols: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(1))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    for (col, ddl) in [
        (
            "priority",
            "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        ),
        (
            "cancelled",
            "ALTER TABLE jobs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0",
        ),
    ] {
        if !cols.iter().any(|c| c == col) {
            conn.execute_batch(ddl).map_err(backend)?;
        }
    }
    Ok(())
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let write = open(path)?;
        write.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&write)?;
        let reader = open(path)?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("crowdfactor-store".into())
            .spawn(move || writer_loop(write, rx))
            .map_err(backend)?;
        Ok(SqliteStore {
            writer: Mutex::new(tx),
            reader: Mutex::new(reader),
            path: path.to_owned(),
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn submit<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(make(reply))
            .map_err(|_| backend(WriterGone))?;
        answer.recv().map_err(|_| backend(WriterGone))?
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the store's writer thread stopped")]
struct WriterGone;

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Op>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let outcome = write_batch(&mut conn, &batch);
        // Replies go out only after the commit, so "accepted" means durable.
        match outcome {
            Ok(results) => {
                for (op, result) in batch.into_iter().zip(results) {
                    match (op, result) {
                        (Op::CreateJob { reply, .. }, Answer::Job(r)) => {
                            let _ = reply.send(r);
                        }
                        (Op::Complete { reply, .. }, Answer::Completion(r)) => {
                            let _ = reply.send(r);
                        }
                        (
                            Op::Cancel { reply, .. } | Op::SetPriority { reply, .. },
                            Answer::Cancelled(r),
                        ) => {
                            let _ = reply.send(r);
                        }
                        _ => unreachable!("answers follow the batch's order and kinds"),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store commit failed");
                let msg = e.to_string();
                for op in batch {
                    let err = || backend(CommitFailed(msg.clone()));
                    match op {
                        Op::CreateJob { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                        Op::Complete { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                        Op::Cancel { reply, .. } | Op::SetPriority { reply, .. } => {
                            let _ = reply.send(Err(err()));
                        }
                    }
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("commit failed: {0}")]
struct CommitFailed(String);

enum Answer {
    Job(Result<(JobInfo, Vec<ChunkWork>), StoreError>),
    Completion(Result<Completion, StoreError>),
    Cancelled(Result<Option<JobInfo>, StoreError>),
}

fn write_batch(conn: &mut Connection, batch: &[Op]) -> Result<Vec<Answer>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(batch.len());
    for op in batch {
        answers.push(match op {
            Op::CreateJob { job, .. } => Answer::Job(insert_job(&tx, job)),
            Op::Complete {
                chunk,
                factors,
                kind,
                ..
            } => Answer::Completion(complete(&tx, *chunk, factors, *kind)),
            Op::Cancel { job, .. } => {
                Answer::Cancelled(update_job(&tx, *job, "cancelled = 1", None))
            }
            Op::SetPriority { job, priority, .. } => {
                Answer::Cancelled(update_job(&tx, *job, "priority = ?2", Some(*priority)))
            }
        });
    }
    tx.commit()?;
    Ok(answers)
}

fn insert_job(
    tx: &rusqlite::Transaction<'_>,
    new: &NewJob,
) -> Result<(JobInfo, Vec<ChunkWork>), StoreError> {
    let (numbers, chunk_size, priority) = (&new.numbers, new.chunk_size, new.priority);
    let size = chunk_size.max(1) as usize;
    let chunks = numbers.len().div_ceil(size) as u64;
    let created_ms = now_ms();
    tx.execute(
        "INSERT INTO jobs (total, chunk_size, chunks, created_ms, priority) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![numbers.len() as i64, chunk_size, chunks as i64, created_ms as i64, priority],
    )
    .map_err(backend)?;
    let job = tx.last_insert_rowid() as JobId;
    let mut work = Vec::with_capacity(chunks as usize);
    let mut stmt = tx
        .prepare_cached("INSERT INTO chunks (job_id, seq, numbers) VALUES (?1, ?2, ?3)")
        .map_err(backend)?;
    for (seq, slice) in numbers.chunks(size).enumerate() {
        stmt.execute(params![job as i64, seq as i64, encode_numbers(slice)])
            .map_err(backend)?;
        work.push(ChunkWork {
            id: tx.last_insert_rowid() as ChunkId,
            job,
            priority,
            numbers: slice.into(),
        });
    }
    let info = JobInfo {
        id: job,
        total: numbers.len() as u64,
        done: 0,
        chunk_size,
        chunks,
        created_ms,
        finished_ms: None,
        by_kind: ByKind::default(),
        priority,
        cancelled: false,
    };
    Ok((info, work))
}

fn complete(
    tx: &rusqlite::Transaction<'_>,
    chunk: ChunkId,
    factors: &[Vec<u128>],
    kind: WorkerKind,
) -> Result<Completion, StoreError> {
    let row: Option<(i64, String, bool)> = tx
        .query_row(
            "SELECT c.job_id, c.numbers, c.factors IS NOT NULL OR j.cancelled <> 0 \
             FROM chunks c JOIN jobs j ON j.id = c.job_id WHERE c.id = ?1",
            params![chunk as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let Some((job, numbers, done)) = row else {
        return Ok(Completion::Duplicate);
    };
    if done {
        return Ok(Completion::Duplicate);
    }
    let expected = numbers.split(' ').filter(|t| !t.is_empty()).count();
    if expected != factors.len() {
        return Err(StoreError::ResultCount {
            chunk,
            expected,
            got: factors.len(),
        });
    }
    tx.execute(
        "UPDATE chunks SET factors = ?1 WHERE id = ?2",
        params![encode_factors(factors), chunk as i64],
    )
    .map_err(backend)?;
    let count = factors.len() as i64;
    let (native, browser) = match kind {
        WorkerKind::Native => (count, 0),
        WorkerKind::Browser => (0, count),
    };
    tx.execute(
        "UPDATE jobs SET done = done + ?1, by_native = by_native + ?2, by_browser = by_browser + ?3 WHERE id = ?4",
        params![count, native, browser, job],
    )
    .map_err(backend)?;
    let (done, total): (i64, i64) = tx
        .query_row(
            "SELECT done, total FROM jobs WHERE id = ?1",
            params![job],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(backend)?;
    let job_done = done == total;
    if job_done {
        tx.execute(
            "UPDATE jobs SET finished_ms = ?1 WHERE id = ?2",
            params![now_ms() as i64, job],
        )
        .map_err(backend)?;
    }
    Ok(Completion::Accepted { job_done })
}

/// Applies `set` (an SQL assignment, with `?2` bound to `value`) to one job
/// and returns the job afterwards.
fn update_job(
    tx: &rusqlite::Transaction<'_>,
    job: JobId,
    set: &str,
    value: Option<i32>,
) -> Result<Option<JobInfo>, StoreError> {
    let sql = format!("UPDATE jobs SET {set} WHERE id = ?1");
    match value {
        Some(v) => tx.execute(&sql, params![job as i64, v]),
        None => tx.execute(&sql, params![job as i64]),
    }
    .map_err(backend)?;
    tx.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
        params![job as i64],
        job_from_row,
    )
    .optional()
    .map_err(backend)
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get::<_, i64>(0)? as JobId,
        total: r.get::<_, i64>(1)? as u64,
        done: r.get::<_, i64>(2)? as u64,
        chunk_size: r.get(3)?,
        chunks: r.get::<_, i64>(4)? as u64,
        created_ms: r.get::<_, i64>(5)? as u64,
        finished_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        by_kind: ByKind {
            native: r.get::<_, i64>(7)? as u64,
            browser: r.get::<_, i64>(8)? as u64,
        },
        priority: r.get(9)?,
        cancelled: r.get::<_, i64>(10)? != 0,
    })
}

const JOB_COLUMNS: &str =
    "id, total, done, chunk_size, chunks, created_ms, finished_ms, by_native, by_browser, priority, cancelled";

impl Store for SqliteStore {
    fn create_job(&self, job: NewJob) -> Result<(JobInfo, Vec<ChunkWork>), StoreError> {
        self.submit(|reply| Op::CreateJob { job, reply })
    }

    fn cancel_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        self.submit(|reply| Op::Cancel { job: id, reply })
    }

    fn set_priority(&self, id: JobId, priority: i32) -> Result<Option<JobInfo>, StoreError> {
        self.submit(|reply| Op::SetPriority {
            job: id,
            priority,
            reply,
        })
    }

    fn incomplete_chunks(&self) -> Result<Vec<ChunkWork>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare(
                "SELECT c.id, c.job_id, c.numbers, j.priority FROM chunks c JOIN jobs j ON j.id = c.job_id \
                 WHERE c.factors IS NULL AND j.cancelled = 0 ORDER BY c.job_id, c.seq",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i32>(3)?,
                ))
            })
            .map_err(backend)?;
        let mut out = vec![];
        for row in rows {
            let (id, job, numbers, priority) = row.map_err(backend)?;
            out.push(ChunkWork {
                id: id as ChunkId,
                job: job as JobId,
                priority,
                numbers: decode_numbers(&numbers, id as ChunkId)?.into(),
            });
        }
        Ok(out)
    }

    fn complete_chunk(
        &self,
        chunk: ChunkId,
        factors: Vec<Vec<u128>>,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError> {
        self.submit(|reply| Op::Complete {
            chunk,
            factors,
            kind,
            reply,
        })
    }

    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        let conn = self.reader();
        conn.query_row(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"),
            params![id as i64],
            job_from_row,
        )
        .optional()
        .map_err(backend)
    }

    fn jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare(&format!("SELECT {JOB_COLUMNS} FROM jobs ORDER BY id"))
            .map_err(backend)?;
        let rows = stmt.query_map([], job_from_row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError> {
        if self.job(id)?.is_none() {
            return Ok(false);
        }
        // A connection of its own: streaming a large job must not hold up the
        // short reads of status polls (WAL lets both run at once).
        let conn = open(&self.path)?;
        let mut stmt = conn
            .prepare("SELECT id, numbers, factors FROM chunks WHERE job_id = ?1 ORDER BY seq")
            .map_err(backend)?;
        let mut rows = stmt.query(params![id as i64]).map_err(backend)?;
        let mut buf = Vec::new();
        while let Some(row) = rows.next().map_err(backend)? {
            let chunk = row.get::<_, i64>(0).map_err(backend)? as ChunkId;
            let numbers: String = row.get(1).map_err(backend)?;
            let factors: Option<String> = row.get(2).map_err(backend)?;
            let numbers = decode_numbers(&numbers, chunk)?;
            match factors {
                None => numbers.iter().for_each(|&n| f(n, None)),
                Some(text) => {
                    let mut lines = text.split('\n');
                    for &n in &numbers {
                        let line = lines.next().ok_or_else(|| {
                            backend(Corrupt {
                                chunk,
                                what: "factor lines",
                            })
                        })?;
                        buf.clear();
                        buf.extend(decode_numbers(line, chunk)?);
                        f(n, Some(&buf));
                    }
                }
            }
        }
        Ok(true)
    }
}

/// Opens the store at `path` as a shared trait object.
pub fn open_store(path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen_and_accepts_each_chunk_once() {
        let dir = std::env::temp_dir().join(format!("crowdfactor-sqlite-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("t.db");
        let (job, chunks) = {
            let store = SqliteStore::open(&path).expect("open");
            let (job, chunks) = store
                .create_job(NewJob {
                    numbers: vec![4, 6, 1, 35],
                    chunk_size: 3,
                    priority: 0,
                })
                .expect("create");
            assert_eq!(job.chunks, 2);
            let c = store
                .complete_chunk(
                    chunks[0].id,
                    vec![vec![2, 2], vec![2, 3], vec![]],
                    WorkerKind::Browser,
                )
                .expect("complete");
            assert_eq!(c, Completion::Accepted { job_done: false });
            (job, chunks)
        };
        let store = SqliteStore::open(&path).expect("reopen");
        let open = store.incomplete_chunks().expect("open chunks");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].numbers.as_ref(), &[35]);
        assert_eq!(
            store
                .complete_chunk(
                    chunks[0].id,
                    vec![vec![2, 2], vec![2, 3], vec![]],
                    WorkerKind::Native
                )
                .expect("dup"),
            Completion::Duplicate
        );
        assert_eq!(
            store
                .complete_chunk(open[0].id, vec![vec![5, 7]], WorkerKind::Native)
                .expect("complete"),
            Completion::Accepted { job_done: true }
        );
        let info = store.job(job.id).expect("job").expect("exists");
        assert_eq!(
            (info.done, info.by_kind.browser, info.by_kind.native),
            (4, 3, 1)
        );
        assert!(info.finished_ms.is_some());
        let mut seen = vec![];
        store
            .visit_results(job.id, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        assert_eq!(
            seen,
            vec![
                (4, Some(vec![2, 2])),
                (6, Some(vec![2, 3])),
                (1, Some(vec![])),
                (35, Some(vec![5, 7]))
            ]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
