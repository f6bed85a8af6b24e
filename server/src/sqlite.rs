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
//! The log is copied into the database file (a checkpoint) once the writer
//! has had nothing to commit for 250 ms, or at 32 MiB of log under load that
//! never pauses, instead of SQLite's every 4 MiB inside a commit: a busy job
//! does not pay for it while it runs. A graceful stop ([`Store::close`])
//! copies all of it and empties it, so the stopped database is one file.
//!
//! A `results` row holds one accepted span of a job: one factor list per
//! number, separated by `;` as a worker sends them, so a result's text is
//! stored as it arrived, without a copy (rows written before 2026-11-29 use
//! `\n`; readers accept both). Spans of a job that follow each other within
//! one commit share a row (up to 4096 numbers), so a flood of tiny chunks
//! costs few rows.
//!
//! A deleted job keeps a row marked deleted (so its id is never given again)
//! and nothing else; the pages its rows held go back to the file system a
//! step at a time in the writer's pauses (`auto_vacuum = INCREMENTAL`, set
//! when the database is made; older databases reuse them instead).
//!
//! One coordinator at a time: leases live in the coordinator's memory, so a
//! second one on the same file would hand out the same chunks again; it is
//! refused by a lock on `<db>.lock`, which the kernel drops when the first
//! process ends, however it ends.
//!
//! The SQL sticks to what PostgreSQL also understands (plain tables, TEXT
//! and INTEGER columns, no upserts), except the schema's key declaration.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crowdfactor_protocol::{pack_list_text, unpack_list_text, FactorLists, WorkerKind};
use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension};

use crate::store::{
    check_span, now_ms, restore_largest, ByKind, Completion, Done, JobId, JobInfo, ListBuilder,
    NewJob, Numbers, OpenJob, Span, Store, StoreError,
};

/// Most operations committed in one transaction.
const MAX_BATCH: usize = 512;

/// Bytes of log before a commit checkpoints it (SQLite's default is 1000
/// pages: 4 MiB of 4 KiB pages).
const WAL_MAX_BYTES: i64 = 32 << 20;

/// Page size of the databases this version makes (those made before keep
/// their 4 KiB). A result's lists fill pages end to end, and the log and the
/// checkpoint write them a page at a time (a system call each): on 20
/// back-to-back 10^6-number seed jobs, 16 KiB pages took the coordinator's
/// CPU per job from 61–79 ms (median 74) to 58–77 (61), seven alternations
/// of the two builds with the log bound 32 MiB in both; one-number chunks'
/// round trips stayed within their noise (141–144 k/s against 142–155 k).
const PAGE_SIZE: i64 = 16 << 10;

/// Bytes of log file kept after a checkpoint.
const WAL_KEEP_BYTES: i64 = 4 << 20;

/// How long the writer waits with nothing to commit before it checkpoints.
const CHECKPOINT_WHEN_IDLE: Duration = Duration::from_millis(250);

/// Numbers per row of `job_numbers`.
const SEGMENT: usize = 4096;

/// Schema version kept in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 7;

/// `jobs.chunk_size` is the job's chunk cap (0: none); `jobs.chunks` counts
/// accepted chunks. A range job keeps only its first number and step
/// (decimal text, as u128 does not fit an INTEGER); a list job's numbers are
/// kept in `job_numbers` segments. Each `results` row covers `count` numbers
/// from `start`: their factor lists, separated by `;`, each without its
/// largest factor when `largest_left_out` (as protocol 5 workers send them;
/// the reader restores it from the number). From schema 7 the lists are a
/// BLOB of that text two characters to a byte ([`pack_list_text`]); rows
/// written before are TEXT, and both are read. A deleted job keeps its `jobs` row (`deleted = 1`, no
/// numbers, no results), so its id is never given to another job.
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
    cancelled   INTEGER NOT NULL DEFAULT 0,
    range_start TEXT,
    range_step  TEXT,
    deleted     INTEGER NOT NULL DEFAULT 0,
    name        TEXT
);
CREATE TABLE IF NOT EXISTS job_numbers (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    seg      INTEGER NOT NULL,
    numbers  TEXT NOT NULL,
    PRIMARY KEY (job_id, seg)
);
CREATE TABLE IF NOT EXISTS results (
    job_id   INTEGER NOT NULL REFERENCES jobs(id),
    start    INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    factors  TEXT NOT NULL,
    largest_left_out INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, start)
);
";

/// A `jobs` row of an open job ([`JobInfo::is_open`], not deleted): the
/// condition of the partial index `jobs_open`, which queries name in the
/// same words so that SQLite can use it.
const OPEN_ROW: &str = "cancelled = 0 AND deleted = 0 AND done < total";

/// `v` as SQLite's integer, past its largest as the largest: a bound or
/// limit no row reaches either way.
fn sql_int(v: impl TryInto<i64>) -> i64 {
    v.try_into().unwrap_or(i64::MAX)
}

/// The open jobs' rows, oldest first. The partial index `jobs_open` holds
/// just these rows, so a database that keeps thousands of finished jobs
/// reads the open ones, not every job.
fn open_job_rows(conn: &Connection) -> Result<Vec<JobInfo>, StoreError> {
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_open WHERE {OPEN_ROW} ORDER BY id"
        ))
        .map_err(backend)?;
    let rows = stmt.query_map([], job_from_row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    let any: &dyn std::any::Any = &e;
    let full = any
        .downcast_ref::<rusqlite::Error>()
        .is_some_and(is_disk_full);
    failed(full, e)
}

/// The store's error for `e`; `full` when the write found no room.
fn failed<E: std::error::Error + Send + Sync + 'static>(full: bool, e: E) -> StoreError {
    if full {
        StoreError::Full(Box::new(e))
    } else {
        StoreError::Backend(Box::new(e))
    }
}

/// SQLite could not write for want of room (`SQLITE_FULL`).
fn is_disk_full(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// The database was written by a newer crowdfactor-server, whose schema
/// this one may misread (from version 6 results leave out their largest
/// factors, which an older server would not restore; from version 7 they
/// are packed, which it would not unpack).
#[derive(Debug, thiserror::Error)]
#[error(
    "it was written by a newer crowdfactor-server (schema {found}, this one knows up to {SCHEMA_VERSION}); run that version or a later one"
)]
struct NewerSchema {
    found: i64,
}

/// Why stored text could not be read back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt {what} of job {job} in the database")]
struct Corrupt {
    job: JobId,
    what: &'static str,
}

/// Numbers as space-separated decimals.
fn encode_numbers(numbers: &[u128]) -> String {
    let mut s = String::with_capacity(numbers.len() * 14);
    crowdfactor_protocol::push_decimals(
        &mut s,
        numbers,
        &mut crowdfactor_protocol::DecimalBuf::new(),
    );
    s
}

fn decode_numbers_into(text: &str, job: JobId, out: &mut Vec<u128>) -> Result<(), StoreError> {
    for t in text.split(' ').filter(|t| !t.is_empty()) {
        out.push(crowdfactor_protocol::parse_u128(t).map_err(|_| {
            backend(Corrupt {
                job,
                what: "number",
            })
        })?);
    }
    Ok(())
}

/// Between the factor lists of a `results` row (an empty list for 1).
const LIST_SEP: char = ';';

/// A created job and its numbers.
type Created = Result<(JobInfo, Numbers), StoreError>;

enum Op {
    CreateJob {
        job: NewJob,
        reply: mpsc::SyncSender<Created>,
    },
    Complete {
        span: Span,
        factors: FactorLists,
        kind: WorkerKind,
        done: Done,
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
    Delete {
        job: JobId,
        reply: mpsc::SyncSender<Result<Option<JobInfo>, StoreError>>,
    },
}

/// What the writer thread is asked.
enum Request {
    Write(Op),
    /// Empty the log into the database file and stop ([`Store::close`]).
    Close(mpsc::SyncSender<()>),
}

/// SQLite-backed [`Store`].
#[derive(Debug)]
pub struct SqliteStore {
    writer: Mutex<mpsc::Sender<Request>>,
    reader: Mutex<Connection>,
    path: std::path::PathBuf,
    /// `<db>.lock`, locked while the store is open (see [`lock_db`]).
    _lock: Option<File>,
}

/// The names of `table`'s columns (none if there is no such table).
fn table_columns(conn: &Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn
        .prepare(&format!("PRAGMA table_info({table})"))
        .map_err(backend)?;
    let cols = stmt
        .query_map([], |r| r.get(1))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend);
    cols
}

/// Brings databases written by earlier versions up to [`SCHEMA_VERSION`].
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(backend)?;
    if version > SCHEMA_VERSION {
        return Err(backend(NewerSchema { found: version }));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let (cols, result_cols) = (
        table_columns(conn, "jobs")?,
        table_columns(conn, "results")?,
    );
    let tx = conn.transaction().map_err(backend)?;
    // Version 6: results may leave out each largest factor.
    if !result_cols.iter().any(|c| c == "largest_left_out") {
        tx.execute_batch(
            "ALTER TABLE results ADD COLUMN largest_left_out INTEGER NOT NULL DEFAULT 0",
        )
        .map_err(backend)?;
    }
    for (col, ddl) in [
        (
            "priority",
            "ALTER TABLE jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0",
        ),
        (
            "cancelled",
            "ALTER TABLE jobs ADD COLUMN cancelled INTEGER NOT NULL DEFAULT 0",
        ),
        (
            "range_start",
            "ALTER TABLE jobs ADD COLUMN range_start TEXT",
        ),
        ("range_step", "ALTER TABLE jobs ADD COLUMN range_step TEXT"),
        (
            "deleted",
            "ALTER TABLE jobs ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0",
        ),
        ("name", "ALTER TABLE jobs ADD COLUMN name TEXT"),
    ] {
        if !cols.iter().any(|c| c == col) {
            tx.execute_batch(ddl).map_err(backend)?;
        }
    }
    // Version 1 stored pre-cut chunks (numbers and factors per chunk row):
    // each chunk becomes a numbers segment, each finished one a results row.
    let has_chunks: bool = tx
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'chunks'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(backend)?
        > 0;
    if has_chunks {
        tx.execute_batch(
            "INSERT INTO job_numbers (job_id, seg, numbers) SELECT job_id, seq, numbers FROM chunks;
             UPDATE jobs SET chunks = (SELECT count(*) FROM chunks c WHERE c.job_id = jobs.id AND c.factors IS NOT NULL);",
        )
        .map_err(backend)?;
        let rows: Vec<(i64, String, Option<String>)> = {
            let mut stmt = tx
                .prepare("SELECT job_id, numbers, factors FROM chunks ORDER BY job_id, seq")
                .map_err(backend)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            rows
        };
        let (mut job, mut start) = (-1i64, 0i64);
        for (job_id, numbers, factors) in rows {
            if job_id != job {
                (job, start) = (job_id, 0);
            }
            let count = numbers.split(' ').filter(|t| !t.is_empty()).count() as i64;
            if let Some(factors) = factors {
                tx.execute(
                    "INSERT INTO results (job_id, start, count, factors) VALUES (?1, ?2, ?3, ?4)",
                    params![job_id, start, count, factors],
                )
                .map_err(backend)?;
            }
            start += count;
        }
        tx.execute_batch("DROP TABLE chunks").map_err(backend)?;
        tracing::info!("database converted from schema 1 (pre-cut chunks) to 2");
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(backend)?;
    tx.commit().map_err(backend)
}

/// `PRAGMA application_id` of a crowdfactor database ("CrFc"), which marks
/// the file as ours (for tools such as `file` too); the server sets it on
/// every open, so databases made before it carried one gain it.
const APPLICATION_ID: i32 = 0x4372_4663;

/// Refuses a database file that is not crowdfactor's (another program's
/// SQLite database given to `--db` by mistake) before anything writes to
/// it: opening one used to add crowdfactor's tables to it, switch it to WAL
/// mode and set its `user_version`. A file is ours when it carries our
/// [`APPLICATION_ID`], is empty or new, or — from servers before the id was
/// set — holds a `jobs` table as every schema made it and no table of
/// another name.
fn refuse_foreign(path: &Path) -> Result<(), StoreError> {
    if std::fs::metadata(path).map_or(true, |m| m.len() == 0) {
        return Ok(());
    }
    let conn = Connection::open(path).map_err(backend)?;
    let not_ours = |what: String| {
        StoreError::Backend(
            format!(
                "{} is not a crowdfactor database ({what}); it was left as it was: give --db a new file's path",
                path.display()
            )
            .into(),
        )
    };
    let id: i32 = match conn.query_row("PRAGMA application_id", [], |r| r.get(0)) {
        Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::NotADatabase) => {
            return Err(not_ours("nor an SQLite database at all".into()));
        }
        read => read.map_err(backend)?,
    };
    if id == APPLICATION_ID {
        return Ok(());
    }
    // Views too: crowdfactor never made one.
    let tables: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name")
            .map_err(backend)?;
        let names = stmt
            .query_map([], |r| r.get(0))
            .map_err(backend)?
            .collect::<Result<_, _>>()
            .map_err(backend)?;
        names
    };
    let ours = ["jobs", "chunks", "job_numbers", "results"];
    let jobs_columns = || -> Result<bool, StoreError> {
        let cols = table_columns(&conn, "jobs")?;
        Ok(
            ["id", "total", "done", "chunk_size", "chunks", "created_ms"]
                .iter()
                .all(|c| cols.iter().any(|have| have == c)),
        )
    };
    let older_ours = id == 0
        && tables.iter().all(|t| ours.contains(&t.as_str()))
        && (tables.is_empty() || (tables.iter().any(|t| t == "jobs") && jobs_columns()?));
    if older_ours {
        return Ok(());
    }
    Err(not_ours(if id != 0 {
        format!("its application id is {id:#010x}")
    } else {
        format!("it holds {}, not crowdfactor's tables", tables.join(", "))
    }))
}

/// Locks `<db>.lock` for as long as the store is open: two coordinators on
/// one database would lease the same chunks twice, as leases live in each
/// one's memory. The kernel drops the lock when the process ends, `kill -9`
/// included, so a crash leaves nothing to clean up. It holds the owner's
/// process id, for the message a second coordinator prints. A file of its
/// own, not the database: closing any descriptor of the database would drop
/// SQLite's own (POSIX) locks on it. Where the file system cannot lock,
/// the store opens without it (and says so).
fn lock_db(path: &Path) -> Result<Option<File>, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let named = |e: std::io::Error| {
        backend(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", lock_path.display()),
        ))
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(named)?;
    match file.try_lock() {
        Ok(()) => {
            file.set_len(0)
                .and_then(|()| write!(file, "{}", std::process::id()))
                .map_err(named)?;
            Ok(Some(file))
        }
        Err(TryLockError::WouldBlock) => Err(StoreError::InUse {
            holder: std::io::read_to_string(&file)
                .ok()
                .and_then(|pid| pid.trim().parse().ok()),
        }),
        Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
            tracing::warn!(lock = %lock_path.display(), "the file system cannot lock files: nothing stops a second coordinator on this database");
            Ok(None)
        }
        Err(TryLockError::Error(e)) => Err(named(e)),
    }
}

fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path).map_err(backend)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(backend)?;
    // Like `auto_vacuum` below, it takes only in a database not yet made.
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(backend)?;
    // Lets a deleted job's pages go back to the file system (see
    // `writer_loop`). It takes only before the first table is made (and
    // before WAL mode): databases made by older versions keep reusing freed
    // pages for new results without shrinking (`VACUUM` offline shrinks them).
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(backend)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(backend)?;
    // Checkpoints (copying the log into the database file) wait for a pause,
    // see `writer_loop`; this bound applies only under load that never
    // pauses. After a checkpoint the log shrinks back to `journal_size_limit`.
    let page_size = page_size(&conn).map_err(backend)?;
    conn.pragma_update(None, "wal_autocheckpoint", WAL_MAX_BYTES / page_size)
        .map_err(backend)?;
    conn.pragma_update(None, "journal_size_limit", WAL_KEEP_BYTES)
        .map_err(backend)?;
    // Plans must not depend on bound values: otherwise SQLite re-prepares the
    // overlap check (`start < ?2`) on every step, which cost ~12 % of the
    // writer's time.
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG,
        true,
    )
    .map_err(backend)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // SQLite creates the file, not its directory: say so plainly rather
        // than through the lock file's "No such file or directory".
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::Backend(format!(
                    "the directory {} does not exist (create it, or give --db a path in an existing one)",
                    dir.display()
                )
                .into()));
            }
        }
        if path.is_dir() {
            return Err(StoreError::Backend(
                format!(
                    "{} is a directory: give --db a file's path (e.g. {})",
                    path.display(),
                    path.join("crowdfactor.db").display()
                )
                .into(),
            ));
        }
        refuse_foreign(path)?;
        let lock = lock_db(path)?;
        let mut write = open(path)?;
        write.execute_batch(SCHEMA).map_err(backend)?;
        migrate(&mut write)?;
        // Made once the database is migrated: older schemas lack columns
        // the index names.
        write
            .execute_batch(&format!(
                "CREATE INDEX IF NOT EXISTS jobs_open ON jobs(id) WHERE {OPEN_ROW}; \
                 CREATE INDEX IF NOT EXISTS jobs_ended ON jobs(finished_ms) WHERE deleted = 0"
            ))
            .map_err(backend)?;
        write
            .pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(backend)?;
        // Servers before cancelling recorded the time left cancelled jobs
        // without an end: they end now, so a retention period
        // (`Config::keep_finished`) counts from here, not from their start.
        write
            .execute(
                "UPDATE jobs SET finished_ms = ?1 WHERE cancelled = 1 AND deleted = 0 AND finished_ms IS NULL",
                params![now_ms() as i64],
            )
            .map_err(backend)?;
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
            _lock: lock,
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends the writer thread a request and waits for its answer.
    fn ask<T>(&self, make: impl FnOnce(mpsc::SyncSender<T>) -> Request) -> Result<T, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(make(reply))
            .map_err(|_| backend(WriterGone))?;
        answer.recv().map_err(|_| backend(WriterGone))
    }

    fn submit<T>(
        &self,
        make: impl FnOnce(mpsc::SyncSender<Result<T, StoreError>>) -> Op,
    ) -> Result<T, StoreError> {
        self.ask(|reply| Request::Write(make(reply)))?
    }
}

#[derive(Debug, thiserror::Error)]
#[error("the store's writer thread stopped")]
struct WriterGone;

fn writer_loop(mut conn: Connection, rx: mpsc::Receiver<Request>) {
    // Commits since the last complete checkpoint. Checkpointing in a pause
    // instead of every 4 MiB (SQLite's default) took 8-12 % of the server's
    // CPU and a writer stall per checkpoint out of a busy job.
    let mut unsaved = false;
    // Checkpoints that failed in a row (a full disk): each waits twice as
    // long as the one before (up to a minute), and only the first is logged.
    let mut failures = 0u32;
    // A job was deleted: its freed pages are handed back to the file system
    // in the pauses, a step at a time, so a large job's deletion does not
    // stall the commits of running ones.
    let mut shrink = false;
    loop {
        let first = if unsaved || shrink {
            let wait = CHECKPOINT_WHEN_IDLE.saturating_mul(1 << failures.min(8));
            match rx.recv_timeout(wait.min(Duration::from_secs(60))) {
                Ok(op) => op,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if shrink {
                        shrink = match give_back_pages(&conn) {
                            Ok(more) => more,
                            Err(e) => {
                                tracing::warn!(error = %e, "store could not shrink the database file; it reuses the free room instead");
                                false
                            }
                        };
                        unsaved = true;
                        continue;
                    }
                    match checkpoint(&conn) {
                        Ok(complete) => {
                            if failures > 0 {
                                tracing::info!(failures, "store checkpoint works again");
                            }
                            failures = 0;
                            unsaved = !complete;
                        }
                        Err(e) => {
                            if failures == 0 {
                                tracing::warn!(error = %e, "store checkpoint failed; retrying less and less often");
                            }
                            failures += 1;
                        }
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(op) => op,
                Err(_) => break,
            }
        };
        let mut closing = None;
        let mut batch = Vec::new();
        match first {
            Request::Write(op) => batch.push(op),
            Request::Close(reply) => closing = Some(reply),
        }
        while closing.is_none() && batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Request::Write(op)) => batch.push(op),
                Ok(Request::Close(reply)) => closing = Some(reply),
                Err(_) => break,
            }
        }
        shrink |= batch.iter().any(|op| matches!(op, Op::Delete { .. }));
        write_and_reply(&mut conn, batch);
        if let Some(reply) = closing {
            empty_the_log(&conn);
            let _ = reply.send(());
            return;
        }
        unsaved = true;
    }
    // The store was dropped: SQLite checkpoints and removes the log when its
    // last connection closes.
}

/// Commits `batch` in one transaction, then answers each of its writes.
fn write_and_reply(conn: &mut Connection, mut batch: Vec<Op>) {
    if batch.is_empty() {
        return;
    }
    let outcome = write_batch(conn, &mut batch);
    // Replies go out only after the commit, so "accepted" means durable.
    match outcome {
        Ok(results) => {
            for (op, result) in batch.into_iter().zip(results) {
                match (op, result) {
                    (Op::CreateJob { reply, .. }, Answer::Job(r)) => {
                        let _ = reply.send(r);
                    }
                    (Op::Complete { done, .. }, Answer::Completion(r)) => done(r),
                    (
                        Op::Cancel { reply, .. }
                        | Op::SetPriority { reply, .. }
                        | Op::Delete { reply, .. },
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
            let full = is_disk_full(&e);
            for op in batch {
                let err = || failed(full, CommitFailed(msg.clone()));
                match op {
                    Op::CreateJob { reply, .. } => {
                        let _ = reply.send(Err(err()));
                    }
                    Op::Complete { done, .. } => done(Err(err())),
                    Op::Cancel { reply, .. }
                    | Op::SetPriority { reply, .. }
                    | Op::Delete { reply, .. } => {
                        let _ = reply.send(Err(err()));
                    }
                }
            }
        }
    }
}

/// Copies the whole log into the database file and truncates it, so the
/// file alone holds every commit (a graceful stop: the reader's connection
/// stays open until the process ends, so closing the writer's alone would
/// leave the log as it is).
fn empty_the_log(conn: &Connection) {
    match conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::TRUNCATE) {
        Ok((0, 0)) => tracing::info!("store closed: the database file holds every commit"),
        Ok((log, copied)) => {
            tracing::warn!(log, copied, "store closed with part of its log not copied (a reader held it); the -wal file holds the rest")
        }
        Err(e) => {
            tracing::warn!(error = %e, "store closed without emptying its log; the -wal file holds the latest commits")
        }
    }
}

/// Bytes [`give_back_pages`] hands back per step.
const SHRINK_STEP_BYTES: i64 = 16 << 20;

/// The database's page size (the one it was made with).
fn page_size(conn: &Connection) -> rusqlite::Result<i64> {
    Ok(conn
        .query_row("PRAGMA page_size", [], |r| r.get::<_, i64>(0))?
        .max(512))
}

/// Moves up to [`SHRINK_STEP_BYTES`] of free pages to the end of the file
/// and cuts them off; whether free pages are left (always false for a
/// database made without `auto_vacuum`, which cannot shrink this way).
fn give_back_pages(conn: &Connection) -> rusqlite::Result<bool> {
    let auto: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if auto != 2 {
        return Ok(false);
    }
    let pages = SHRINK_STEP_BYTES / page_size(conn)?;
    // It frees one page per step: step it to the end.
    let mut stmt = conn.prepare(&format!("PRAGMA incremental_vacuum({pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(free > 0)
}

/// Copies the log into the database file; whether all of it was copied (a
/// passive checkpoint stops at frames a reader may still need).
fn checkpoint(conn: &Connection) -> rusqlite::Result<bool> {
    conn.wal_checkpoint_v2(None::<&str>, rusqlite::wal::CheckpointMode::PASSIVE)
        .map(|(log, copied)| copied == log)
}

#[derive(Debug, thiserror::Error)]
#[error("commit failed: {0}")]
struct CommitFailed(String);

enum Answer {
    Job(Created),
    Completion(Result<Completion, StoreError>),
    Cancelled(Result<Option<JobInfo>, StoreError>),
}

/// A job's counters as a batch changes them; written once per batch.
#[derive(Debug, Default)]
struct Tally {
    total: i64,
    cancelled: bool,
    done: i64,
    add_done: i64,
    add_chunks: i64,
    add_native: i64,
    add_browser: i64,
    finished: bool,
}

/// Writes the gathered counters of every job touched since the last flush.
fn flush_tallies(
    tx: &rusqlite::Transaction<'_>,
    tallies: &mut HashMap<i64, Tally>,
) -> rusqlite::Result<()> {
    for (job, t) in tallies.drain() {
        if t.add_chunks == 0 {
            continue;
        }
        tx.prepare_cached(
            "UPDATE jobs SET done = done + ?1, chunks = chunks + ?2, by_native = by_native + ?3, \
             by_browser = by_browser + ?4, finished_ms = CASE WHEN ?5 THEN ?6 ELSE finished_ms END \
             WHERE id = ?7",
        )?
        .execute(params![
            t.add_done,
            t.add_chunks,
            t.add_native,
            t.add_browser,
            t.finished,
            now_ms() as i64,
            job
        ])?;
    }
    Ok(())
}

/// Accepted spans of one job that follow each other within a batch, not yet
/// written: one `results` row instead of one per chunk (small chunks come
/// back in lease order, so most of a batch merges).
#[derive(Debug)]
struct Run {
    start: u64,
    end: u64,
    factors: String,
    /// The form of every list of the run ([`FactorLists::largest_left_out`]).
    largest_left_out: bool,
}

/// Runs grow to at most this many numbers, so a row stays small enough to
/// stream (`visit_results` holds one row at a time).
const RUN_MAX_NUMBERS: u64 = 4096;

fn flush_runs(
    tx: &rusqlite::Transaction<'_>,
    runs: &mut HashMap<i64, Run>,
) -> rusqlite::Result<()> {
    for (job, run) in runs.drain() {
        insert_run(tx, job, &run)?;
    }
    Ok(())
}

/// Stores a run's lists packed two characters to a byte
/// ([`pack_list_text`]): half the bytes for SQLite to log and copy into the
/// file (most of the store thread's time is the kernel's, per page
/// written); on a 5·10^6-number seed range the server's CPU fell from
/// 0.59–0.63 to 0.52–0.56 s (four alternations).
fn insert_run(tx: &rusqlite::Transaction<'_>, job: i64, run: &Run) -> rusqlite::Result<()> {
    let packed = pack_list_text(&run.factors);
    let factors = match &packed {
        Some(bytes) => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Blob(bytes)),
        // Not from a factor list writer: kept as it is.
        None => rusqlite::types::ToSqlOutput::Borrowed(ValueRef::Text(run.factors.as_bytes())),
    };
    tx.prepare_cached(
        "INSERT INTO results (job_id, start, count, factors, largest_left_out) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        job,
        run.start as i64,
        (run.end - run.start) as i64,
        factors,
        run.largest_left_out
    ])?;
    Ok(())
}

fn write_batch(conn: &mut Connection, batch: &mut [Op]) -> Result<Vec<Answer>, rusqlite::Error> {
    let tx = conn.transaction()?;
    let mut answers = Vec::with_capacity(batch.len());
    let mut tallies = HashMap::new();
    let mut runs = HashMap::new();
    let mut displaced = Vec::new();
    for op in batch {
        if !matches!(op, Op::Complete { .. }) {
            flush_runs(&tx, &mut runs)?;
            flush_tallies(&tx, &mut tallies)?;
        }
        answers.push(match op {
            Op::CreateJob { job, .. } => Answer::Job(insert_job(&tx, job)),
            Op::Complete {
                span,
                factors,
                kind,
                ..
            } => {
                let answer = complete(
                    &tx,
                    &mut tallies,
                    &mut runs,
                    &mut displaced,
                    *span,
                    // Moved into the row: after a failed commit the batch
                    // only reports the failure.
                    std::mem::take(factors),
                    *kind,
                );
                for (job, run) in displaced.drain(..) {
                    insert_run(&tx, job, &run)?;
                }
                Answer::Completion(answer)
            }
            Op::Cancel { job, .. } => Answer::Cancelled(update_job(
                &tx,
                *job,
                "cancelled = 1, finished_ms = coalesce(finished_ms, ?2)",
                Some(now_ms() as i64),
            )),
            Op::SetPriority { job, priority, .. } => Answer::Cancelled(update_job(
                &tx,
                *job,
                "priority = ?2",
                Some((*priority).into()),
            )),
            Op::Delete { job, .. } => Answer::Cancelled(delete_job(&tx, *job)),
        });
    }
    flush_runs(&tx, &mut runs)?;
    flush_tallies(&tx, &mut tallies)?;
    tx.commit()?;
    Ok(answers)
}

fn insert_job(
    tx: &rusqlite::Transaction<'_>,
    new: &NewJob,
) -> Result<(JobInfo, Numbers), StoreError> {
    let numbers = &new.numbers;
    let created_ms = now_ms();
    let (range_start, range_step) = match numbers {
        Numbers::Range { start, step, .. } => (Some(start.to_string()), Some(step.to_string())),
        Numbers::List(_) => (None, None),
    };
    tx.execute(
        "INSERT INTO jobs (total, chunk_size, chunks, created_ms, priority, range_start, range_step, name)
         VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7)",
        params![
            numbers.len() as i64,
            new.chunk_cap.unwrap_or(0),
            created_ms as i64,
            new.priority,
            range_start,
            range_step,
            new.name
        ],
    )
    .map_err(backend)?;
    let job = tx.last_insert_rowid() as JobId;
    if let Numbers::List(list) = numbers {
        let mut stmt = tx
            .prepare_cached("INSERT INTO job_numbers (job_id, seg, numbers) VALUES (?1, ?2, ?3)")
            .map_err(backend)?;
        let mut slice = Vec::with_capacity(SEGMENT);
        for (seg, start) in (0..list.len()).step_by(SEGMENT).enumerate() {
            let len = SEGMENT.min(list.len() - start);
            slice.clear();
            slice.extend(list.span(start as u64, len as u64));
            stmt.execute(params![job as i64, seg as i64, encode_numbers(&slice)])
                .map_err(backend)?;
        }
    }
    let info = JobInfo {
        id: job,
        total: numbers.len(),
        done: 0,
        chunk_cap: new.chunk_cap,
        chunks: 0,
        created_ms,
        finished_ms: None,
        by_kind: ByKind::default(),
        priority: new.priority,
        cancelled: false,
        name: new.name.clone(),
    };
    Ok((info, numbers.clone()))
}

/// Calls `f` with each number of a list job, in order, reading one segment
/// at a time.
fn visit_list(
    conn: &Connection,
    job: JobId,
    f: &mut dyn FnMut(u128) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT numbers FROM job_numbers WHERE job_id = ?1 ORDER BY seg")
        .map_err(backend)?;
    let mut rows = stmt.query(params![job as i64]).map_err(backend)?;
    let mut numbers = vec![];
    while let Some(row) = rows.next().map_err(backend)? {
        let text: String = row.get(0).map_err(backend)?;
        numbers.clear();
        decode_numbers_into(&text, job, &mut numbers)?;
        for &n in &numbers {
            f(n)?;
        }
    }
    Ok(())
}

/// A range job's numbers; `None` for a list job.
fn job_range(conn: &Connection, info: &JobInfo) -> Result<Option<Numbers>, StoreError> {
    let (start, step): (Option<String>, Option<String>) = conn
        .prepare_cached("SELECT range_start, range_step FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row(params![info.id as i64], |r| Ok((r.get(0)?, r.get(1)?))))
        .map_err(backend)?;
    let (Some(start), Some(step)) = (start, step) else {
        return Ok(None);
    };
    let corrupt = || {
        backend(Corrupt {
            job: info.id,
            what: "range",
        })
    };
    let start = crowdfactor_protocol::parse_u128(&start).map_err(|_| corrupt())?;
    let step = crowdfactor_protocol::parse_u128(&step).map_err(|_| corrupt())?;
    // Valid as it was when the job was accepted.
    Numbers::range(start, step, info.total)
        .map(Some)
        .ok_or_else(corrupt)
}

fn complete(
    tx: &rusqlite::Transaction<'_>,
    tallies: &mut HashMap<i64, Tally>,
    runs: &mut HashMap<i64, Run>,
    displaced: &mut Vec<(i64, Run)>,
    span: Span,
    factors: FactorLists,
    kind: WorkerKind,
) -> Result<Completion, StoreError> {
    let job = span.job as i64;
    let t = match tallies.entry(job) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(v) => {
            let row: Option<(i64, bool, i64)> = tx
                .prepare_cached("SELECT total, cancelled <> 0, done FROM jobs WHERE id = ?1")
                .map_err(backend)?
                .query_row(params![job], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(backend)?;
            let Some((total, cancelled, done)) = row else {
                return Ok(Completion::Duplicate);
            };
            v.insert(Tally {
                total,
                cancelled,
                done,
                ..Tally::default()
            })
        }
    };
    check_span(span, t.total as u64, factors.len())?;
    if t.cancelled {
        return Ok(Completion::Duplicate);
    }
    // Accepted spans are disjoint, so only the last one starting before this
    // span's end can overlap it.
    let before: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT start, count FROM results WHERE job_id = ?1 AND start < ?2 ORDER BY start DESC LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![job, span.end() as i64], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    if before.is_some_and(|(start, count)| (start + count) as u64 > span.start) {
        return Ok(Completion::Duplicate);
    }
    // The job's unwritten run is not in the table yet: check it too.
    let run = runs.get_mut(&job);
    if run
        .as_ref()
        .is_some_and(|r| span.start < r.end && span.end() > r.start)
    {
        return Ok(Completion::Duplicate);
    }
    let left_out = factors.largest_left_out();
    match run {
        Some(r)
            if r.end == span.start
                && r.end - r.start + span.len <= RUN_MAX_NUMBERS
                && r.largest_left_out == left_out =>
        {
            r.factors.push(LIST_SEP);
            factors.write_text(&mut r.factors, LIST_SEP);
            r.end = span.end();
        }
        _ => {
            let fresh = Run {
                start: span.start,
                end: span.end(),
                factors: factors.into_text(LIST_SEP),
                largest_left_out: left_out,
            };
            if let Some(old) = runs.insert(job, fresh) {
                // Written by the caller: a failure there fails the batch,
                // whose earlier results this run holds.
                displaced.push((job, old));
            }
        }
    }
    let count = span.len as i64;
    t.done += count;
    t.add_done += count;
    t.add_chunks += 1;
    match kind {
        WorkerKind::Native => t.add_native += count,
        WorkerKind::Browser => t.add_browser += count,
    }
    let job_done = t.done == t.total;
    t.finished |= job_done;
    Ok(Completion::Accepted { job_done })
}

/// Applies `set` (an SQL assignment, with `?2` bound to `value`) to one job
/// and returns the job afterwards.
fn update_job(
    tx: &rusqlite::Transaction<'_>,
    job: JobId,
    set: &str,
    value: Option<i64>,
) -> Result<Option<JobInfo>, StoreError> {
    let sql = format!("UPDATE jobs SET {set} WHERE id = ?1 AND deleted = 0");
    match value {
        Some(v) => tx.execute(&sql, params![job as i64, v]),
        None => tx.execute(&sql, params![job as i64]),
    }
    .map_err(backend)?;
    live_job(tx, job)
}

/// One job, `None` if unknown or deleted.
fn live_job(conn: &Connection, job: JobId) -> Result<Option<JobInfo>, StoreError> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND deleted = 0"),
        params![job as i64],
        job_from_row,
    )
    .optional()
    .map_err(backend)
}

/// Deletes a job's numbers and results and marks its row deleted (cancelled
/// too, so a result for it later in the same batch is a duplicate). Returns
/// the job as it was, `None` if unknown or already deleted.
fn delete_job(tx: &rusqlite::Transaction<'_>, job: JobId) -> Result<Option<JobInfo>, StoreError> {
    let Some(info) = live_job(tx, job)? else {
        return Ok(None);
    };
    for sql in [
        "DELETE FROM results WHERE job_id = ?1",
        "DELETE FROM job_numbers WHERE job_id = ?1",
        "UPDATE jobs SET deleted = 1, cancelled = 1, range_start = NULL, range_step = NULL WHERE id = ?1",
    ] {
        tx.execute(sql, params![job as i64]).map_err(backend)?;
    }
    Ok(Some(info))
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get::<_, i64>(0)? as JobId,
        total: r.get::<_, i64>(1)? as u64,
        done: r.get::<_, i64>(2)? as u64,
        chunk_cap: Some(r.get::<_, u32>(3)?).filter(|&c| c > 0),
        chunks: r.get::<_, i64>(4)? as u64,
        created_ms: r.get::<_, i64>(5)? as u64,
        finished_ms: r.get::<_, Option<i64>>(6)?.map(|v| v as u64),
        by_kind: ByKind {
            native: r.get::<_, i64>(7)? as u64,
            browser: r.get::<_, i64>(8)? as u64,
        },
        priority: r.get(9)?,
        cancelled: r.get::<_, i64>(10)? != 0,
        name: r.get(11)?,
    })
}

const JOB_COLUMNS: &str =
    "id, total, done, chunk_size, chunks, created_ms, finished_ms, by_native, by_browser, priority, cancelled, name";

impl Store for SqliteStore {
    fn close(&self) {
        // A writer already gone has nothing left to save.
        let _ = self.ask(Request::Close);
    }

    fn create_job(&self, job: NewJob) -> Result<(JobInfo, Numbers), StoreError> {
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

    fn delete_job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        self.submit(|reply| Op::Delete { job: id, reply })
    }

    fn open_jobs(&self) -> Result<Vec<OpenJob>, StoreError> {
        let conn = self.reader();
        let infos = open_job_rows(&conn)?;
        let mut out = Vec::with_capacity(infos.len());
        for info in infos {
            let numbers = if let Some(range) = job_range(&conn, &info)? {
                range
            } else {
                let mut numbers = ListBuilder::with_capacity(info.total as usize);
                visit_list(&conn, info.id, &mut |n| {
                    numbers.push(n);
                    Ok(())
                })?;
                if numbers.len() as u64 != info.total {
                    return Err(backend(Corrupt {
                        job: info.id,
                        what: "number list",
                    }));
                }
                Numbers::List(numbers.finish())
            };
            let mut stmt = conn
                .prepare_cached("SELECT start, count FROM results WHERE job_id = ?1 ORDER BY start")
                .map_err(backend)?;
            let done = stmt
                .query_map(params![info.id as i64], |r| {
                    Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
                })
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            out.push(OpenJob {
                info,
                numbers,
                done,
            });
        }
        Ok(out)
    }

    fn complete_span(
        &self,
        span: Span,
        factors: FactorLists,
        kind: WorkerKind,
    ) -> Result<Completion, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let done: Done = Box::new(move |r| {
            let _ = reply.send(r);
        });
        self.complete_span_then(span, factors, kind, done);
        answer.recv().map_err(|_| backend(WriterGone))?
    }

    fn complete_span_then(&self, span: Span, factors: FactorLists, kind: WorkerKind, done: Done) {
        let op = Op::Complete {
            span,
            factors,
            kind,
            done,
        };
        let sent = self
            .writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Request::Write(op));
        if let Err(mpsc::SendError(Request::Write(Op::Complete { done, .. }))) = sent {
            done(Err(backend(WriterGone)));
        }
    }

    fn job(&self, id: JobId) -> Result<Option<JobInfo>, StoreError> {
        live_job(&self.reader(), id)
    }

    fn active_jobs(&self) -> Result<Vec<JobInfo>, StoreError> {
        open_job_rows(&self.reader())
    }

    fn jobs_after(&self, after: JobId, limit: usize) -> Result<Vec<JobInfo>, StoreError> {
        let conn = self.reader();
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs WHERE deleted = 0 AND id > ?1 ORDER BY id LIMIT ?2"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(params![sql_int(after), sql_int(limit)], job_from_row)
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn ended_during(&self, during: Range<u64>) -> Result<Vec<JobInfo>, StoreError> {
        let conn = self.reader();
        // The index `jobs_ended` finds them by time: a scrape of /metrics
        // reads the few that ended lately, not every job kept.
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs INDEXED BY jobs_ended \
                 WHERE deleted = 0 AND finished_ms >= ?1 AND finished_ms < ?2 \
                 AND NOT ({OPEN_ROW}) ORDER BY id"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map(
                params![sql_int(during.start), sql_int(during.end)],
                job_from_row,
            )
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)
    }

    fn latest_finished(&self, limit: usize) -> Result<(Vec<JobInfo>, u64), StoreError> {
        let conn = self.reader();
        // Counted, not read: the rows past `limit` are never built.
        let (kept, open): (i64, i64) = conn
            .prepare_cached(&format!(
                "SELECT (SELECT count(*) FROM jobs WHERE deleted = 0), \
                 (SELECT count(*) FROM jobs INDEXED BY jobs_open WHERE {OPEN_ROW})"
            ))
            .and_then(|mut stmt| stmt.query_row([], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(backend)?;
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLUMNS} FROM jobs \
                 WHERE deleted = 0 AND NOT ({OPEN_ROW}) ORDER BY id DESC LIMIT ?1"
            ))
            .map_err(backend)?;
        let rows = stmt
            .query_map([sql_int(limit)], job_from_row)
            .map_err(backend)?;
        let mut latest = rows.collect::<Result<Vec<_>, _>>().map_err(backend)?;
        latest.reverse();
        Ok((latest, (kept - open).max(0) as u64))
    }

    fn visit_results(
        &self,
        id: JobId,
        f: &mut dyn FnMut(u128, Option<&[u128]>),
    ) -> Result<bool, StoreError> {
        let Some(info) = self.job(id)? else {
            return Ok(false);
        };
        // A connection of its own: streaming a large job must not hold up the
        // short reads of status polls (WAL lets both run at once).
        let conn = open(&self.path)?;
        let range = job_range(&conn, &info)?;
        let mut results = conn
            .prepare("SELECT start, count, factors, largest_left_out FROM results WHERE job_id = ?1 ORDER BY start")
            .map_err(backend)?;
        let mut results = results.query(params![id as i64]).map_err(backend)?;
        let corrupt = |what| backend(Corrupt { job: id, what });
        // The current result span: its end index and its remaining lines.
        let mut span_end = 0u64;
        let mut span_start = 0u64;
        let mut lines: Vec<String> = vec![];
        // Whether the current span's lists leave out their largest factors.
        let mut left_out = false;
        let mut next_result = |span_start: &mut u64,
                               span_end: &mut u64,
                               lines: &mut Vec<String>,
                               left_out: &mut bool|
         -> Result<(), StoreError> {
            match results.next().map_err(backend)? {
                Some(row) => {
                    let start = row.get::<_, i64>(0).map_err(backend)? as u64;
                    let count = row.get::<_, i64>(1).map_err(backend)? as u64;
                    let text = match row.get_ref(2).map_err(backend)? {
                        ValueRef::Blob(packed) => {
                            unpack_list_text(packed).ok_or_else(|| corrupt("factor lists"))?
                        }
                        // Written before schema 7.
                        ValueRef::Text(text) => std::str::from_utf8(text)
                            .map_err(|_| corrupt("factor lists"))?
                            .to_owned(),
                        _ => return Err(corrupt("factor lists")),
                    };
                    *left_out = row.get(3).map_err(backend)?;
                    *lines = text
                        .split(['\n', LIST_SEP])
                        .rev()
                        .map(str::to_owned)
                        .collect();
                    if lines.len() as u64 != count {
                        return Err(corrupt("factor lines"));
                    }
                    (*span_start, *span_end) = (start, start + count);
                }
                None => (*span_start, *span_end) = (u64::MAX, u64::MAX),
            }
            Ok(())
        };
        next_result(&mut span_start, &mut span_end, &mut lines, &mut left_out)?;
        let (mut index, mut factors) = (0u64, Vec::new());
        let mut visit = |n: u128| -> Result<(), StoreError> {
            if index >= span_end {
                next_result(&mut span_start, &mut span_end, &mut lines, &mut left_out)?;
            }
            if index >= span_start {
                let line = lines.pop().ok_or_else(|| corrupt("factor lines"))?;
                factors.clear();
                decode_numbers_into(&line, id, &mut factors)?;
                if left_out && !restore_largest(n, &mut factors) {
                    return Err(corrupt("factor list"));
                }
                f(n, Some(&factors));
            } else {
                f(n, None);
            }
            index += 1;
            Ok(())
        };
        match range {
            Some(numbers) => numbers.iter().try_for_each(visit)?,
            None => visit_list(&conn, id, &mut visit)?,
        }
        Ok(true)
    }
}

/// What [`compact`] did to a database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The database's size before (its file and its log), bytes.
    pub before: u64,
    /// And after.
    pub after: u64,
    /// Whether it gave room back by itself before (`auto_vacuum`): those
    /// made by servers from before that was set do not.
    pub was_shrinking: bool,
    /// Its page size before, bytes: databases made before 16 KiB pages
    /// have 4 KiB ones, which cost the store more writes per result.
    pub page_size_before: i64,
    /// And after (16 KiB).
    pub page_size_after: i64,
}

/// Rewrites the database at `path` without its free pages (the room of
/// deleted jobs), and so that from then on the server gives such room back
/// to the file system by itself (`auto_vacuum = INCREMENTAL`, which a
/// database made by an older server lacks), in 16 KiB pages (older
/// databases have 4 KiB ones). The server must be stopped:
/// fails with [`StoreError::InUse`] while one has the database open.
/// Needs free disk space about twice the database's size while it runs (a
/// copy, and the journal that can roll the rewrite back).
pub fn compact(path: &Path) -> Result<Compacted, StoreError> {
    if !path.is_file() {
        return Err(StoreError::Backend(
            format!("there is no database file at {}", path.display()).into(),
        ));
    }
    refuse_foreign(path)?;
    let _lock = lock_db(path)?;
    let size = || {
        let mut log = path.as_os_str().to_owned();
        log.push("-wal");
        [path.as_os_str(), &log]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum::<u64>()
    };
    let before = size();
    let conn = Connection::open(path).map_err(backend)?;
    let mode: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .map_err(backend)?;
    let page_size_before = page_size(&conn).map_err(backend)?;
    drop(conn);
    let conn = open(path)?;
    // A WAL database keeps its page size through `VACUUM`: the rewrite
    // takes the new size only in rollback-journal mode (which first copies
    // the log into the file). A crash in between loses nothing: the journal
    // rolls an unfinished `VACUUM` back, and the server sets WAL again
    // when it opens the file.
    conn.pragma_update(None, "journal_mode", "DELETE")
        .map_err(backend)?;
    conn.pragma_update(None, "page_size", PAGE_SIZE)
        .map_err(backend)?;
    conn.execute_batch("VACUUM").map_err(backend)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(backend)?;
    let page_size_after = page_size(&conn).map_err(backend)?;
    drop(conn);
    Ok(Compacted {
        before,
        after: size(),
        was_shrinking: mode == 2,
        page_size_before,
        page_size_after,
    })
}

/// Opens the store at `path` as a shared trait object.
pub fn open_store(path: &Path) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SqliteStore::open(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::Value;

    /// A database path in a fresh temporary directory, removed (with
    /// whatever the test left in it) when the test ends, passed or not.
    struct TempDb(std::path::PathBuf);

    impl std::ops::Deref for TempDb {
        type Target = Path;
        fn deref(&self) -> &Path {
            &self.0
        }
    }

    impl AsRef<Path> for TempDb {
        fn as_ref(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            if let Some(dir) = self.0.parent() {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }

    fn temp_db(name: &str) -> TempDb {
        let dir =
            std::env::temp_dir().join(format!("crowdfactor-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        TempDb(dir.join("t.db"))
    }

    /// A write that finds no room is told apart from other failures (the
    /// API answers it with `507`): here the database may not grow, as on a
    /// full disk.
    #[test]
    fn a_full_disk_is_told_apart() {
        let db = temp_db("full");
        let conn = open(&db).expect("opens");
        conn.execute_batch("CREATE TABLE filler (x BLOB)")
            .expect("table");
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .expect("page count");
        conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))
            .expect("limit");
        let err = conn
            .execute("INSERT INTO filler VALUES (zeroblob(1000000))", [])
            .expect_err("no room");
        assert!(matches!(backend(err), StoreError::Full(_)));
        let other = conn
            .execute("INSERT INTO nowhere VALUES (1)", [])
            .expect_err("no table");
        assert!(matches!(backend(other), StoreError::Backend(_)));
    }

    /// A database made before the server set `auto_vacuum` keeps the room
    /// of what was deleted; `compact` gives it back, and the database gives
    /// such room back by itself from then on. Not while a server has it
    /// open, nor on a file that is no crowdfactor database.
    #[test]
    fn compact_shrinks_an_old_database_and_makes_it_shrink_by_itself() {
        let path = temp_db("compact");
        let pragma = |name: &str| -> Value {
            let conn = Connection::open(&*path).expect("opens");
            conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
                .expect("pragma")
        };
        let mode = || pragma("auto_vacuum");
        {
            let conn = Connection::open(&*path).expect("opens");
            conn.execute_batch(SCHEMA).expect("schema");
            conn.execute_batch("CREATE TABLE filler (x BLOB)")
                .expect("table");
            for _ in 0..50 {
                conn.execute("INSERT INTO filler VALUES (zeroblob(100000))", [])
                    .expect("insert");
            }
            conn.execute_batch("DROP TABLE filler").expect("drop");
        }
        assert_eq!(mode(), Value::Integer(0));
        let store = SqliteStore::open(&path).expect("an old database opens");
        assert!(matches!(compact(&path), Err(StoreError::InUse { .. })));
        // Results written in the old pages, some of them still in the log.
        let job = list_job(&store, (1..=5000).collect());
        let span = Span {
            job: job.id,
            start: 10,
            len: 3,
        };
        let lists = vec![vec![11], vec![2, 2, 3], vec![13]];
        store
            .complete_span(span, lists.clone().into(), WorkerKind::Native)
            .expect("complete");
        let before = visited(&store, job.id);
        drop(store);
        assert_eq!(pragma("page_size"), Value::Integer(4096), "an old database");

        let done = compact(&path).expect("compacts");
        assert!(!done.was_shrinking);
        assert_eq!(
            (done.page_size_before, done.page_size_after),
            (4096, PAGE_SIZE)
        );
        assert!(
            done.before > 5_000_000 && done.after < 1_000_000,
            "{done:?}"
        );
        assert_eq!(mode(), Value::Integer(2), "incremental from now on");
        assert_eq!(pragma("page_size"), Value::Integer(PAGE_SIZE));
        assert_eq!(pragma("journal_mode"), Value::Text("wal".into()));
        let store = SqliteStore::open(&path).expect("opens after");
        assert_eq!(visited(&store, job.id), before, "every result kept");
        assert_eq!(
            before[10..13]
                .iter()
                .map(|(_, f)| f.clone())
                .collect::<Vec<_>>(),
            lists.into_iter().map(Some).collect::<Vec<_>>()
        );
        drop(store);
        let again = compact(&path).expect("again");
        assert!(again.was_shrinking);
        assert_eq!(again.page_size_before, PAGE_SIZE);

        let missing = compact(&path.with_file_name("none.db")).expect_err("no file");
        assert!(missing.to_string().contains("there is no database file at"));
        let other = path.with_file_name("other.db");
        Connection::open(&other)
            .and_then(|c| c.execute_batch("CREATE TABLE t (x)"))
            .expect("another database");
        let refused = compact(&other).expect_err("not ours");
        assert!(refused
            .to_string()
            .contains("is not a crowdfactor database"));
    }

    /// One store per database at a time: a second open is refused naming
    /// the holder's process; once the first is closed it opens again.
    #[test]
    fn a_database_opens_once_at_a_time() {
        let path = temp_db("lock");
        let first = SqliteStore::open(&path).expect("open");
        let second = SqliteStore::open(&path).expect_err("opened twice");
        assert!(
            matches!(second, StoreError::InUse { holder: Some(pid) } if pid == std::process::id()),
            "{second:?}"
        );
        assert!(second.to_string().contains(&format!(
            "in use by another crowdfactor-server (process {})",
            std::process::id()
        )));
        drop(first);
        SqliteStore::open(&path).expect("reopen once closed");
    }

    #[test]
    fn sqlite_store_reads_left_out_factors_whole() {
        let path = temp_db("left-out");
        crate::store::tests::left_out_factors_read_whole(&SqliteStore::open(&path).expect("open"));
    }

    #[test]
    fn sqlite_store_reads_gaps_as_missing() {
        let path = temp_db("gaps");
        crate::store::tests::gaps_read_as_missing(&SqliteStore::open(&path).expect("open"));
    }

    #[test]
    fn job_names_survive_reopen() {
        let path = temp_db("names");
        let id = {
            let store = SqliteStore::open(&path).expect("open");
            let (info, _) = store
                .create_job(NewJob {
                    name: Some("batch 7 · août".into()),
                    numbers: vec![12].into(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create");
            assert_eq!(info.name.as_deref(), Some("batch 7 · août"));
            info.id
        };
        let store = SqliteStore::open(&path).expect("reopen");
        let info = store.job(id).expect("job").expect("exists");
        assert_eq!(info.name.as_deref(), Some("batch 7 · août"));
        assert_eq!(store.jobs().expect("jobs")[0].name, info.name);
    }

    /// Cancelling records when the job ended (a retention period counts
    /// from it); a job cancelled by an older server, without that time, is
    /// given the time the store is next opened, and keeps it.
    #[test]
    fn cancelled_jobs_record_when_they_ended() {
        let path = temp_db("cancel-time");
        let (recorded, legacy) = {
            let store = SqliteStore::open(&path).expect("open");
            let (a, b) = (list_job(&store, vec![12]), list_job(&store, vec![12]));
            let before = now_ms();
            let cancelled = store.cancel_job(a.id).expect("cancel").expect("job");
            let at = cancelled.finished_ms.expect("an end time");
            assert!(before <= at && at <= now_ms());
            let again = store.cancel_job(a.id).expect("cancel").expect("job");
            assert_eq!(
                again.finished_ms,
                Some(at),
                "a second cancel keeps the first time"
            );
            store.cancel_job(b.id).expect("cancel").expect("job");
            (a.id, b.id)
        };
        let recorded_at = {
            let conn = Connection::open(&path).expect("open");
            conn.execute(
                "UPDATE jobs SET finished_ms = NULL WHERE id = ?1",
                params![legacy as i64],
            )
            .expect("as an older server left it");
            conn.query_row(
                "SELECT finished_ms FROM jobs WHERE id = ?1",
                params![recorded as i64],
                |r| r.get::<_, i64>(0),
            )
            .expect("kept") as u64
        };
        let before = now_ms();
        let given = {
            let store = SqliteStore::open(&path).expect("reopen");
            assert_eq!(
                store
                    .job(recorded)
                    .expect("job")
                    .expect("exists")
                    .finished_ms,
                Some(recorded_at)
            );
            let given = store
                .job(legacy)
                .expect("job")
                .expect("exists")
                .finished_ms
                .expect("given one");
            assert!(before <= given && given <= now_ms());
            given
        };
        std::thread::sleep(Duration::from_millis(5));
        let store = SqliteStore::open(&path).expect("reopen");
        assert_eq!(
            store.job(legacy).expect("job").expect("exists").finished_ms,
            Some(given)
        );
    }

    #[test]
    fn sqlite_store_tells_open_and_finished_jobs_apart() {
        crate::store::tests::open_and_finished_jobs_are_told_apart(
            &SqliteStore::open(&temp_db("finished")).expect("open"),
        );
    }

    #[test]
    fn sqlite_store_deletes_jobs_for_good() {
        let path = temp_db("delete");
        crate::store::tests::deleted_jobs_are_gone(&SqliteStore::open(&path).expect("open"));
        // Reopened: still gone, ids still not given again.
        let store = SqliteStore::open(&path).expect("reopen");
        let ids: Vec<JobId> = store.jobs().expect("jobs").iter().map(|j| j.id).collect();
        assert_eq!(ids, [1, 4]);
        let (next, _) = store
            .create_job(NewJob {
                name: None,
                numbers: vec![8].into(),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        assert_eq!(next.id, 5);
    }

    #[test]
    fn sqlite_store_lets_writers_pass_a_stalled_reader() {
        let path = temp_db("stalled");
        crate::store::tests::a_stalled_reader_blocks_no_writer(
            &SqliteStore::open(&path).expect("open"),
        );
    }

    #[test]
    fn sqlite_store_completes_spans_once_and_survives_reopen() {
        let path = temp_db("spans");
        let id = {
            let store = SqliteStore::open(&path).expect("open");
            crate::store::tests::spans_complete_once(&store)
        };
        let store = SqliteStore::open(&path).expect("reopen");
        let info = store.job(id).expect("job").expect("exists");
        assert_eq!((info.done, info.chunks, info.chunk_cap), (5, 3, Some(2)));
        let (second, _) = store
            .create_job(NewJob {
                name: None,
                numbers: (1..=10_000).collect(),
                chunk_cap: None,
                priority: 3,
            })
            .expect("create");
        let span = Span {
            job: second.id,
            start: 4095,
            len: 2,
        };
        store
            .complete_span(
                span,
                vec![vec![2; 12], vec![17, 241]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        drop(store);
        let store = SqliteStore::open(&path).expect("reopen");
        let open = store.open_jobs().expect("open jobs");
        assert_eq!(open.len(), 1, "the finished job is not open");
        assert_eq!(open[0].numbers.len(), 10_000);
        assert_eq!(open[0].numbers.iter().nth(9_999), Some(10_000));
        assert_eq!(open[0].done, vec![(4095, 2)]);
        assert_eq!(open[0].info.priority, 3);
        let mut seen = vec![];
        store
            .visit_results(second.id, &mut |n, f| {
                if f.is_some() {
                    seen.push(n)
                }
            })
            .expect("visit");
        assert_eq!(seen, vec![4096, 4097], "results line up across segments");
    }

    /// A list job of `numbers` in `store`.
    fn list_job(store: &SqliteStore, numbers: Vec<u128>) -> JobInfo {
        let job = NewJob {
            name: None,
            numbers: numbers.into_iter().collect(),
            chunk_cap: None,
            priority: 0,
        };
        store.create_job(job).expect("create").0
    }

    /// Every number of a job with its factors, if it has them.
    fn visited(store: &SqliteStore, job: JobId) -> Vec<(u128, Option<Vec<u128>>)> {
        let mut seen = vec![];
        store
            .visit_results(job, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        seen
    }

    /// New rows are stored packed; the server reads them as it wrote them.
    #[test]
    fn results_are_stored_packed() {
        let path = temp_db("packed");
        let store = SqliteStore::open(&path).expect("open");
        let job = list_job(&store, vec![12, 97, 1]);
        let span = Span {
            job: job.id,
            start: 0,
            len: 3,
        };
        store
            .complete_span(
                span,
                vec![vec![2, 2, 3], vec![97], vec![]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        let (kind, bytes): (String, i64) = Connection::open(&path)
            .expect("raw")
            .query_row(
                "SELECT typeof(factors), length(factors) FROM results WHERE job_id = ?1",
                params![job.id as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("the row");
        // "2 2 3;97;": 9 characters in 5 bytes.
        assert_eq!((kind.as_str(), bytes), ("blob", 5));
        let seen = visited(&store, job.id);
        assert_eq!(
            seen,
            vec![
                (12, Some(vec![2, 2, 3])),
                (97, Some(vec![97])),
                (1, Some(vec![]))
            ]
        );
    }

    /// Rows written before lists were kept `;`-separated (one per line) read
    /// back beside new ones.
    #[test]
    fn rows_with_either_separator_read_back() {
        let path = temp_db("separators");
        let store = SqliteStore::open(&path).expect("open");
        let job = list_job(&store, vec![4, 3, 1, 12, 10]);
        Connection::open(&path)
            .expect("raw")
            .execute(
                "INSERT INTO results (job_id, start, count, factors) VALUES (?1, 0, 3, '2 2\n3\n')",
                params![job.id as i64],
            )
            .expect("an old row");
        let span = Span {
            job: job.id,
            start: 3,
            len: 2,
        };
        store
            .complete_span(
                span,
                vec![vec![2, 2, 3], vec![2, 5]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        let seen = visited(&store, job.id);
        let want: Vec<(u128, Option<Vec<u128>>)> = vec![
            (4, Some(vec![2, 2])),
            (3, Some(vec![3])),
            (1, Some(vec![])),
            (12, Some(vec![2, 2, 3])),
            (10, Some(vec![2, 5])),
        ];
        assert_eq!(seen, want);
    }

    /// Accepted results reach the database file in the first pause, not only
    /// every 8192 pages of log; closing the store leaves no log behind.
    #[test]
    fn the_log_is_checkpointed_in_a_pause_and_gone_on_close() {
        let path = temp_db("checkpoint");
        let wal = path.with_extension("db-wal");
        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        let eventually = |what: &str, ok: &dyn Fn() -> bool| {
            let start = std::time::Instant::now();
            while !ok() {
                assert!(start.elapsed() < Duration::from_secs(20), "{what}");
                thread::sleep(Duration::from_millis(20));
            }
        };
        let count = 40_000u64;
        let store = SqliteStore::open(&path).expect("open");
        let (job, _) = store
            .create_job(NewJob {
                name: None,
                numbers: (1..=u128::from(count)).collect(),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        for start in (0..count).step_by(4000) {
            let lists: Vec<Vec<u128>> = (0..4000).map(|_| vec![2; 12]).collect();
            let span = Span {
                job: job.id,
                start,
                len: 4000,
            };
            store
                .complete_span(span, lists.into(), WorkerKind::Native)
                .expect("complete");
        }
        // ~0.5 MiB of factor lists (24 characters a number, packed in 12):
        // below SQLite's own 4 MiB checkpoint.
        let data = count * 12;
        eventually("no checkpoint after the writes stopped", &|| {
            size(&path) > data
        });
        drop(store);
        eventually("the log is not emptied on close", &|| size(&wal) == 0);
        let store = SqliteStore::open(&path).expect("reopen");
        let info = store.job(job.id).expect("job").expect("exists");
        assert_eq!(info.done, count);
    }

    /// After `close` (a graceful stop) the database file alone holds every
    /// commit, even right after a write: copying it is a backup.
    #[test]
    fn after_close_the_database_file_alone_holds_every_commit() {
        let path = temp_db("close");
        let store = SqliteStore::open(&path).expect("open");
        let (job, _) = store
            .create_job(NewJob {
                name: None,
                numbers: (1..=1000u128).collect(),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        let span = Span {
            job: job.id,
            start: 0,
            len: 500,
        };
        let lists: Vec<Vec<u128>> = (1..=500u128).map(crowdfactor_factor::factor).collect();
        store
            .complete_span(span, lists.into(), WorkerKind::Native)
            .expect("complete");
        store.close();
        let copy = temp_db("close-copy");
        std::fs::copy(&*path, &*copy).expect("copy the file alone");
        let copied = SqliteStore::open(&copy).expect("open the copy");
        let info = copied.job(job.id).expect("job").expect("in the copy");
        assert_eq!((info.done, info.total), (500, 1000));
        assert!(
            store.cancel_job(job.id).is_err(),
            "a write after close fails"
        );
    }

    #[test]
    fn range_jobs_keep_only_their_parameters_and_survive_reopen() {
        let path = temp_db("range");
        let (start, step, count) = (u128::MAX - 2 * 9_999, 2, 10_000);
        let numbers = Numbers::Range { start, step, count };
        let id = {
            let store = SqliteStore::open(&path).expect("open");
            let (info, back) = store
                .create_job(NewJob {
                    name: None,
                    numbers: numbers.clone(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create");
            assert_eq!((info.total, &back), (count, &numbers));
            let stored: i64 = store
                .reader()
                .query_row("SELECT count(*) FROM job_numbers", [], |r| r.get(0))
                .expect("count");
            assert_eq!(stored, 0, "a range stores no numbers");
            let span = Span {
                job: info.id,
                start: 9_998,
                len: 2,
            };
            let factors: Vec<Vec<u128>> = numbers
                .span(9_998, 2)
                .iter()
                .map(crowdfactor_factor::factor)
                .collect();
            store
                .complete_span(span, factors.into(), WorkerKind::Native)
                .expect("complete");
            info.id
        };
        let store = SqliteStore::open(&path).expect("reopen");
        let open = store.open_jobs().expect("open jobs");
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].info.id, id);
        assert_eq!(open[0].numbers, numbers);
        assert_eq!(open[0].done, vec![(9_998, 2)]);
        let mut seen = vec![];
        store
            .visit_results(id, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        assert_eq!(seen.len(), 10_000);
        assert!(seen.iter().zip(numbers.iter()).all(|((n, _), m)| *n == m));
        assert!(seen[..9_998].iter().all(|(_, f)| f.is_none()));
        assert_eq!(seen[9_999].1, Some(crowdfactor_factor::factor(u128::MAX)));
    }

    #[test]
    fn schema_2_databases_gain_range_columns() {
        let path = temp_db("schema2");
        {
            let store = SqliteStore::open(&path).expect("open");
            store
                .create_job(NewJob {
                    name: None,
                    numbers: vec![10, 11].into(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create");
        }
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "ALTER TABLE jobs DROP COLUMN range_start; ALTER TABLE jobs DROP COLUMN range_step;
                 PRAGMA user_version = 2;",
            )
            .expect("make it a schema 2 database");
        }
        let store = SqliteStore::open(&path).expect("open upgrades");
        let range = Numbers::Range {
            start: 3,
            step: 1,
            count: 4,
        };
        store
            .create_job(NewJob {
                name: None,
                numbers: range.clone(),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create after upgrade");
        drop(store);
        let store = SqliteStore::open(&path).expect("reopen");
        let open = store.open_jobs().expect("open jobs");
        assert_eq!(open.len(), 2);
        assert_eq!(open[0].numbers, Numbers::from(vec![10, 11]));
        assert_eq!(open[1].numbers, range);
    }

    #[test]
    fn lists_of_every_width_read_back_the_same() {
        let path = temp_db("widths");
        let store = SqliteStore::open(&path).expect("open");
        // Three segments and more; one list with a 128-bit number far in.
        let narrow: Vec<u128> = (1..=10_000).map(|i| i * 1_000_000_007).collect();
        let mut wide = narrow.clone();
        wide[9_000] = u128::MAX;
        for numbers in [&narrow, &wide] {
            store
                .create_job(NewJob {
                    name: None,
                    numbers: numbers.clone().into(),
                    chunk_cap: None,
                    priority: 0,
                })
                .expect("create");
        }
        drop(store);
        let open = SqliteStore::open(&path)
            .expect("reopen")
            .open_jobs()
            .expect("open jobs");
        for (job, want) in open.iter().zip([narrow, wide]) {
            assert_eq!(job.numbers.iter().collect::<Vec<_>>(), want);
            assert_eq!(job.numbers, Numbers::from(want));
        }
    }

    #[test]
    fn back_to_back_spans_share_rows_and_overlaps_are_still_refused() {
        let path = temp_db("runs");
        let store = SqliteStore::open(&path).expect("open");
        let (job, _) = store
            .create_job(NewJob {
                name: None,
                numbers: (2..=10_001).collect(),
                chunk_cap: None,
                priority: 0,
            })
            .expect("create");
        // Sent without waiting, so they meet in the writer's batches; every
        // third span is sent twice and the copy must be refused.
        let (tx, rx) = std::sync::mpsc::channel();
        let mut sent = 0;
        for start in 0..10_000u64 {
            let copies = if start % 3 == 0 { 2 } else { 1 };
            for _ in 0..copies {
                let tx = tx.clone();
                let n = start as u128 + 2;
                let factors = crowdfactor_factor::factor(n);
                let span = Span {
                    job: job.id,
                    start,
                    len: 1,
                };
                store.complete_span_then(
                    span,
                    vec![factors].into(),
                    WorkerKind::Native,
                    Box::new(move |r| {
                        let _ = tx.send((start, r));
                    }),
                );
                sent += 1;
            }
        }
        let answers: Vec<_> = rx.iter().take(sent).collect();
        let accepted = answers
            .iter()
            .filter(|(_, r)| matches!(r, Ok(Completion::Accepted { .. })))
            .count();
        assert_eq!(accepted, 10_000, "each span accepted exactly once");
        assert!(answers.iter().all(|(_, r)| r.is_ok()));
        let rows: i64 = store
            .reader()
            .query_row("SELECT count(*) FROM results", [], |r| r.get(0))
            .expect("count");
        assert!(rows < 10_000, "{rows} rows: spans were merged");
        let info = store.job(job.id).expect("job").expect("exists");
        assert_eq!((info.done, info.chunks), (10_000, 10_000));
        let mut seen = 0u128;
        store
            .visit_results(job.id, &mut |n, f| {
                assert_eq!(f.map(<[u128]>::to_vec), Some(crowdfactor_factor::factor(n)));
                seen += 1;
            })
            .expect("visit");
        assert_eq!(seen, 10_000);
    }

    /// Another program's database given to `--db` by mistake is refused
    /// and left byte for byte as it was (no lock file beside it either);
    /// crowdfactor's own, new or made before databases carried the
    /// application id, open and carry it from then on.
    #[test]
    fn another_programs_database_is_refused_untouched() {
        let path = temp_db("foreign");
        let dir = path.parent().expect("dir").to_owned();
        let files = || {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        Connection::open(&*path)
            .and_then(|c| c.execute_batch("CREATE TABLE jobs (x); INSERT INTO jobs VALUES (1);"))
            .expect("another program's database");
        let before = std::fs::read(&*path).expect("read");
        let err = SqliteStore::open(&path).expect_err("not ours").to_string();
        assert!(
            err.contains("is not a crowdfactor database (it holds jobs, not crowdfactor's tables)"),
            "{err}"
        );
        assert_eq!(std::fs::read(&*path).expect("read"), before);
        assert_eq!(files(), ["t.db"]);
        let err = compact(&path).expect_err("not ours").to_string();
        assert!(err.contains("is not a crowdfactor database"), "{err}");
        assert_eq!(std::fs::read(&*path).expect("read"), before);

        let view = dir.join("view.db");
        Connection::open(&view)
            .and_then(|c| c.execute_batch("CREATE VIEW v AS SELECT 1;"))
            .expect("a database of a view alone");
        let err = SqliteStore::open(&view).expect_err("not ours").to_string();
        assert!(err.contains("(it holds v, not"), "{err}");

        let garbage = dir.join("garbage.db");
        std::fs::write(&garbage, [7u8; 5000]).expect("write");
        let err = SqliteStore::open(&garbage)
            .expect_err("not ours")
            .to_string();
        assert!(err.contains("nor an SQLite database at all"), "{err}");
        assert_eq!(std::fs::read(&garbage).expect("read"), [7u8; 5000]);

        let marked = dir.join("marked.db");
        Connection::open(&marked)
            .and_then(|c| c.execute_batch("PRAGMA application_id = 7; CREATE TABLE results (x);"))
            .expect("a database marked as another program's");
        let err = SqliteStore::open(&marked)
            .expect_err("not ours")
            .to_string();
        assert!(err.contains("its application id is 0x00000007"), "{err}");

        let ours = dir.join("ours.db");
        let id = || -> i32 {
            Connection::open(&ours)
                .and_then(|c| c.query_row("PRAGMA application_id", [], |r| r.get(0)))
                .expect("application id")
        };
        SqliteStore::open(&ours).expect("new").close();
        assert_eq!(id(), APPLICATION_ID);
        Connection::open(&ours)
            .and_then(|c| c.pragma_update(None, "application_id", 0))
            .expect("as an older server left it");
        SqliteStore::open(&ours).expect("older").close();
        assert_eq!(id(), APPLICATION_ID);
    }

    /// A database from a newer server is refused, not misread (it may keep
    /// results in a form this one does not know), and left as it was.
    #[test]
    fn a_newer_schema_is_refused() {
        let path = temp_db("newer");
        SqliteStore::open(&path).expect("create").close();
        {
            let conn = Connection::open(&*path).expect("open");
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .expect("set version");
        }
        let err = SqliteStore::open(&path)
            .expect_err("newer schema")
            .to_string();
        assert!(err.contains("newer crowdfactor-server"), "{err}");
        let conn = Connection::open(&*path).expect("open");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION + 1);
    }

    #[test]
    fn schema_1_databases_are_converted() {
        let path = temp_db("migrate");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE jobs (id INTEGER PRIMARY KEY, total INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0,
                   chunk_size INTEGER NOT NULL, chunks INTEGER NOT NULL, created_ms INTEGER NOT NULL,
                   finished_ms INTEGER, by_native INTEGER NOT NULL DEFAULT 0, by_browser INTEGER NOT NULL DEFAULT 0);
                 CREATE TABLE chunks (id INTEGER PRIMARY KEY, job_id INTEGER NOT NULL, seq INTEGER NOT NULL,
                   numbers TEXT NOT NULL, factors TEXT, UNIQUE (job_id, seq));
                 INSERT INTO jobs (id, total, done, chunk_size, chunks, created_ms, by_native) VALUES (1, 5, 2, 2, 3, 0, 2);
                 INSERT INTO chunks (job_id, seq, numbers, factors) VALUES (1, 0, '4 6', '2 2\n2 3');
                 INSERT INTO chunks (job_id, seq, numbers, factors) VALUES (1, 1, '9 10', NULL);
                 INSERT INTO chunks (job_id, seq, numbers, factors) VALUES (1, 2, '1', NULL);",
            )
            .expect("old schema");
        }
        let store = SqliteStore::open(&path).expect("open converts");
        let open = store.open_jobs().expect("open jobs");
        assert_eq!(open[0].numbers.iter().collect::<Vec<_>>(), [4, 6, 9, 10, 1]);
        assert_eq!(open[0].done, vec![(0, 2)]);
        assert_eq!(open[0].info.chunks, 1);
        let done = store
            .complete_span(
                Span {
                    job: 1,
                    start: 2,
                    len: 3,
                },
                vec![vec![3, 3], vec![2, 5], vec![]].into(),
                WorkerKind::Native,
            )
            .expect("complete");
        assert_eq!(done, Completion::Accepted { job_done: true });
        let mut seen = vec![];
        store
            .visit_results(1, &mut |n, f| seen.push((n, f.map(<[u128]>::to_vec))))
            .expect("visit");
        assert_eq!(seen[1], (6, Some(vec![2, 3])));
        assert_eq!(seen[4], (1, Some(vec![])));
        drop(store);
        SqliteStore::open(&path).expect("opening a converted database again is a no-op");
    }
}
