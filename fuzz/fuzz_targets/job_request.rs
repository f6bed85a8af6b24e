//! A `POST /api/jobs` body: a job within the limits or a 400, never a panic.
#![no_main]

use crowdfactor_server::{api::parse_job, store::Numbers, Config};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let limits = Config::default();
    if let Ok(job) = parse_job(body, &limits) {
        let count = match &job.numbers {
            Numbers::List(list) => list.len() as u64,
            Numbers::Range { count, .. } => *count,
        };
        assert!(count >= 1, "an empty job was accepted");
        assert!(count <= limits.max_numbers_per_job, "{count} numbers");
        if let Some(name) = &job.name {
            assert!(!name.is_empty() && name.trim() == name, "{name:?}");
            assert!(name.chars().count() <= 100 && !name.chars().any(char::is_control));
        }
    }
});
